"""Token buckets: `rate` requests per minute refill, up to `burst` at once, one bucket per caller.

Buckets idle long enough to be full again are dropped, and the table has a hard size cap, so a
flood of distinct callers cannot grow memory without bound.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import structlog

log = structlog.get_logger()


@dataclass
class Decision:
    allowed: bool
    remaining: int
    reset_s: float  # until the bucket is full again
    retry_after_s: int  # until one request is allowed (0 when allowed)


class RateLimiter:
    def __init__(self, per_minute: float, burst: int, max_buckets: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self.max_buckets = max_buckets
        self._buckets: dict[str, tuple[float, float]] = {}  # caller → (tokens, last update)
        self._next_sweep = 0.0

    def check(self, caller: str, now: float | None = None) -> Decision:
        now = time.monotonic() if now is None else now
        self._sweep(now)
        tokens, last = self._buckets.get(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[caller] = (tokens, now)
        return Decision(
            allowed=allowed,
            remaining=int(tokens),
            reset_s=(self.burst - tokens) / self.rate,
            retry_after_s=0 if allowed else math.ceil((1.0 - tokens) / self.rate),
        )

    async def decide(self, caller: str) -> Decision:
        """As SharedRateLimiter decides: the limiter the middleware calls."""
        return self.check(caller)

    def __len__(self) -> int:
        return len(self._buckets)

    def _sweep(self, now: float) -> None:
        full_after = self.burst / self.rate  # an idle bucket is full again after this long
        if now < self._next_sweep and len(self._buckets) < self.max_buckets:
            return
        self._next_sweep = now + min(full_after, 60.0)
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
        if len(self._buckets) >= self.max_buckets:  # still full: keep the newer half
            newest = sorted(self._buckets.items(), key=lambda kv: kv[1][1])[len(self._buckets) // 2 :]
            self._buckets = dict(newest)


# One bucket in Redis, refilled and taken from atomically: KEYS[1] the bucket (a hash of tokens and
# the last update, in Redis's own clock so every gateway agrees), ARGV rate per second and burst.
# Returns {allowed, tokens * 1000}.
_TAKE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1e6
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or t
tokens = math.min(burst, tokens + (t - at) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(t))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, math.floor(tokens * 1000)}
"""


class SharedRateLimiter:
    """The same buckets for every gateway: in Redis (`--redis-url`), one per caller. When Redis
    cannot be reached the gateway goes on with its own buckets (fail-open, the default) or refuses
    with 503 (fail-closed), says so in the log and in `enginehouse_shared_limits_up`, and tries
    Redis again each second."""

    RETRY_S = 1.0

    def __init__(self, url: str, local: RateLimiter, fail_open: bool, timeout_s: float = 0.5) -> None:
        import redis.asyncio as redis

        self.rate, self.burst = local.rate, local.burst
        self.local, self.fail_open = local, fail_open
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.take = self.client.register_script(_TAKE)
        self.up = True
        self._retry_at = 0.0

    async def decide(self, caller: str) -> Decision:
        from redis.exceptions import RedisError

        now = time.monotonic()
        if self.up or now >= self._retry_at:
            try:
                allowed, milli = await self.take(
                    keys=[f"enginehouse:bucket:{caller}"], args=[self.rate, self.burst]
                )
            except (RedisError, OSError) as exc:
                if self.up:
                    log.warning("redis unreachable: rate limits are this gateway's own until it returns",
                                error=str(exc), fail_open=self.fail_open)  # fmt: skip
                self.up, self._retry_at = False, now + self.RETRY_S
            else:
                if not self.up:
                    log.info("redis is back: rate limits are shared again")
                self.up = True
                tokens = milli / 1000
                return Decision(
                    allowed=bool(allowed),
                    remaining=int(tokens),
                    reset_s=(self.burst - tokens) / self.rate,
                    retry_after_s=0 if allowed else math.ceil((1.0 - tokens) / self.rate),
                )
        if not self.fail_open:
            raise ConnectionError("the shared rate limits (Redis) cannot be reached")
        return self.local.check(caller)

    async def close(self) -> None:
        await self.client.aclose()
