"""Token buckets: `rate` requests per minute refill, up to `burst` at once, one bucket per caller.

Buckets idle long enough to be full again are dropped, and the table has a hard size cap, so a
flood of distinct callers cannot grow memory without bound.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


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
