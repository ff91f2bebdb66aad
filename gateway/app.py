"""The aiohttp application: middlewares, routes, and the router and workers it starts and stops."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway import anthropic, batches, designation, lora, modellab, responses
from gateway import web as pages
from gateway.config import Settings
from gateway.errors import APIError
from gateway.llamacpp import add_routes as llamacpp_routes
from gateway.metrics import Metrics
from gateway.middlewares import (
    add_response_headers,
    authenticate,
    cors,
    openai_errors,
    rate_limit,
    request_context,
)
from gateway.openai import add_routes
from gateway.openapi import openapi_json
from gateway.ratelimit import SharedRateLimiter
from gateway.router import Router
from gateway.shared_share import share_across_gateways
from gateway.simple import add_routes as simple_routes
from gateway.state import (
    ERROR_STYLES,
    GUARDS,
    METRICS,
    NOTIFIER,
    ROUTER,
    SETTINGS,
    SUPERVISOR,
    WORKFORCE,
    Guards,
)
from gateway.systemd import Notifier
from gateway.workforce import Workforce

log = structlog.get_logger()


async def health(request: web.Request) -> web.Response:
    router, settings = request.app[ROUTER], request.app[SETTINGS]
    # a preloaded model still loading (or restarting), or failing; one unloaded for idleness is fine
    states = {router.models[m.id].state for m in settings.models() if m.preload}
    if "failed" in states:
        raise APIError(503, "A model fails to start: see /v1/models/status", "model_failed")
    if "loading" in states:
        raise APIError(503, "Loading model", "model_loading")
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def metrics_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[METRICS].as_json())


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    settings, workforce = app[SETTINGS], app[WORKFORCE]
    router, supervisor = workforce.router, workforce.supervisor
    if not app[GUARDS].keys:
        log.warning(
            "no API key is set: anyone who can reach the port can use it",
            host=settings.host,
            loopback_only=_is_loopback(settings.host),
        )
    log.info(
        "gateway started",
        host=settings.host,
        port=settings.port,
        router=router.address,
        models=[m.id for m in settings.models()],
    )
    notifier = app[NOTIFIER]
    preloaded = [m.id for m in settings.models() if m.preload]
    tasks = [
        asyncio.create_task(_announce_ready(notifier, router, preloaded, settings)),
        asyncio.create_task(notifier.watchdog(router.healthy)),
        asyncio.create_task(supervisor.reap_idle()),
    ]
    if settings.redis_url:  # callers' shares count their sequences through every gateway
        tasks.append(
            asyncio.create_task(share_across_gateways(settings.redis_url, router.admission, router.models))
        )
    yield
    for task in tasks:
        task.cancel()
    await workforce.stop()


async def _announce_ready(notifier: Notifier, router: Router, models: list[str], settings: Settings) -> None:
    """STATUS= while the preloaded models load, then READY=1 (systemd's Type=notify)."""
    for done, model in enumerate(models):
        notifier.send(f"STATUS=Loading models: {done} of {len(models)} ready, waiting for {model}")
        await router.models[model].ready.wait()
    notifier.send("READY=1", f"STATUS=Serving {len(models)} models on {settings.host}:{settings.port}")
    log.info("ready", models=models)


async def _stopping(app: web.Application) -> None:
    app[NOTIFIER].send("STOPPING=1", "STATUS=Draining in-flight requests")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def guard(app: web.Application, settings: Settings) -> None:
    """The request path in front of every handler: context, errors, CORS, keys, rate limit."""
    app.middlewares.extend([request_context, openai_errors, cors, authenticate, rate_limit])
    app[SETTINGS] = settings
    app[GUARDS] = Guards.from_settings(settings)
    app.on_cleanup.append(_close_limiter)
    app[ERROR_STYLES] = {}  # route families with errors of their own shape add their paths
    app[METRICS] = Metrics()
    app.on_response_prepare.append(add_response_headers)


async def _close_limiter(app: web.Application) -> None:
    limiter = app[GUARDS].limiter
    if isinstance(limiter, SharedRateLimiter):
        await limiter.close()


def create_app(settings: Settings, workforce: Workforce) -> web.Application:
    """The app around a started workforce (`start_workforce`), which it stops on cleanup."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    guard(app, settings)
    app[WORKFORCE] = workforce
    app[ROUTER], app[SUPERVISOR] = workforce.router, workforce.supervisor
    app[METRICS].watch(workforce.router)
    app[NOTIFIER] = Notifier()
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_stopping)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/metrics", metrics_json)
    app.router.add_get("/openapi.json", openapi_json)
    add_routes(app)
    if settings.stateful:
        responses.add_routes(app)
        batches.add_routes(app)
        if settings.redis_url:
            designation.add_lease(app)
    else:
        designation.add_stateless_routes(app)
    anthropic.add_routes(app)
    lora.add_routes(app)
    llamacpp_routes(app)
    simple_routes(app)
    modellab.add_routes(app)
    if settings.web:
        pages.add_routes(app)
    return app
