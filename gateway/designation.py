"""Several gateways, one of them designated to keep the stored things (the Responses store, files,
batches: SQLite in its --state-dir). With --redis-url, the designated gateway holds a lease in Redis
(refreshed while it runs); a second gateway started with stored things on finds the lease taken and
refuses to start, naming the holder. The others run with --no-stateful and answer those routes
with 503 naming the reason; the load balancer sends those routes to the designated one."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from gateway.config import Settings
from gateway.errors import APIError
from gateway.state import SETTINGS

log = structlog.get_logger()
LEASE_KEY = "enginehouse:stateful-gateway"
LEASE_S = 30
REFRESH_S = 10
STORED_PREFIXES = ("/v1/responses", "/v1/files", "/v1/batches")


def identity(settings: Settings) -> str:
    return f"{socket.gethostname()}:{settings.port}:{settings.state_dir}"


def claim(settings: Settings) -> str | None:
    """Take (or keep) the lease; the holder's identity when another gateway has it. Redis away at
    start: no check (the gateway serves; the lease is taken when Redis answers)."""
    import redis
    from redis.exceptions import RedisError

    me = identity(settings)
    client = redis.Redis.from_url(settings.redis_url or "", socket_timeout=1, socket_connect_timeout=1)
    try:
        if client.set(LEASE_KEY, me, nx=True, ex=LEASE_S):
            return None
        holder = client.get(LEASE_KEY)
        holder_id = holder.decode() if holder else None
        return None if holder_id in (None, me) else holder_id
    except (RedisError, OSError) as exc:
        log.warning("redis unreachable at start: the stateful-gateway lease is not checked", error=str(exc))
        return None
    finally:
        client.close()


async def keep(settings: Settings) -> None:
    """Refresh the lease while this gateway runs (and take it again after Redis was away)."""
    import redis.asyncio as redis
    from redis.exceptions import RedisError

    me = identity(settings)
    client = redis.Redis.from_url(settings.redis_url or "", socket_timeout=1, socket_connect_timeout=1)
    try:
        while True:
            with contextlib.suppress(RedisError, OSError):
                holder = await client.get(LEASE_KEY)
                if holder in (None, me.encode()):
                    await client.set(LEASE_KEY, me, ex=LEASE_S)
            await asyncio.sleep(REFRESH_S)
    finally:
        with contextlib.suppress(RedisError, OSError):
            if await client.get(LEASE_KEY) == me.encode():
                await client.delete(LEASE_KEY)
        await client.aclose()


async def _elsewhere(request: web.Request) -> web.Response:
    raise APIError(
        503,
        "This gateway keeps no stored state (--no-stateful): responses, files and batches live on "
        "the deployment's designated gateway; send these routes there (the load balancer does).",
        "not_the_stateful_gateway",
    )


async def _lease(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(keep(app[SETTINGS]))
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def add_stateless_routes(app: web.Application) -> None:
    for prefix in STORED_PREFIXES:
        app.router.add_route("*", prefix, _elsewhere)
        app.router.add_route("*", prefix + "/{rest:.*}", _elsewhere)


def add_lease(app: web.Application) -> None:
    app.cleanup_ctx.append(_lease)
