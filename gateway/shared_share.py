"""The per-caller share of a model (admission.py) across several gateways: each gateway writes
its callers' sequences at the workers to Redis every half second (a hash that expires when the
gateway stops writing), and reads the others', so a caller's share counts what it runs through
every gateway. Redis away: each gateway counts its own only (its share is then per gateway)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid

import structlog

from gateway.admission import Admission
from gateway.registry import ModelState

log = structlog.get_logger()
PREFIX = "enginehouse:share:"
EVERY_S = 0.5
EXPIRES_S = 3


async def share_across_gateways(url: str, admission: Admission, states: dict[str, ModelState]) -> None:
    import redis.asyncio as redis
    from redis.exceptions import RedisError

    me = f"{PREFIX}{uuid.uuid4().hex}"
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        while True:
            try:
                mine = {json.dumps(k): n for k, n in admission.counts().items()}
                async with client.pipeline(transaction=True) as pipe:
                    pipe.delete(me)
                    if mine:
                        pipe.hset(me, mapping=mine)
                    pipe.expire(me, EXPIRES_S)
                    await pipe.execute()
                elsewhere: dict[tuple[str, str], int] = {}
                async for key in client.scan_iter(match=f"{PREFIX}*", count=100):
                    if key.decode() == me:
                        continue
                    for field, value in (await client.hgetall(key)).items():
                        model, caller = json.loads(field)
                        elsewhere[(model, caller)] = elsewhere.get((model, caller), 0) + int(value)
            except (RedisError, OSError):
                elsewhere = {}  # fail-open: this gateway's own counts only
            if elsewhere != admission.elsewhere:
                admission.elsewhere = elsewhere
                admission.release_all(states)
            await asyncio.sleep(EVERY_S)
    finally:
        with contextlib.suppress(RedisError, OSError):
            await client.delete(me)
        await client.aclose()
