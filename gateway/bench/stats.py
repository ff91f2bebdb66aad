"""The report of a benchmark run, computed from its samples alone (no clock read here): counts,
throughput, TTFT, TPOT, ITL and end-to-end latency (mean, median, p90, p99), goodput under SLOs,
and output tokens per second over the run, for the plot."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from gateway.bench.requests import Sample


@dataclass
class Spread:
    mean: float = 0.0
    median: float = 0.0
    p90: float = 0.0
    p99: float = 0.0

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if not values:
            return cls()
        ordered = sorted(values)
        return cls(
            statistics.fmean(ordered), statistics.median(ordered), _pct(ordered, 90), _pct(ordered, 99)
        )

    def text(self) -> str:
        return f"mean {self.mean:.1f}, median {self.median:.1f}, p90 {self.p90:.1f}, p99 {self.p99:.1f}"


def _pct(ordered: list[float], p: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


@dataclass
class Report:
    concurrency: int
    completed: int
    failed: int
    rate_limited: int
    duration_s: float
    request_per_s: float
    prompt_tokens: int
    output_tokens: int
    output_tok_s: float
    total_tok_s: float
    ttft_ms: Spread
    tpot_ms: Spread
    itl_ms: Spread
    e2el_ms: Spread
    errors: dict[str, int] = field(default_factory=dict)
    unit: str = ""  # rerank: documents; transcriptions: audio seconds (per second: real-time factor)
    units_per_s: float = 0.0
    goodput_req_s: float | None = None  # with SLOs: requests per second that met them all
    timeline_tok_s: list[float] = field(default_factory=list)  # output tokens in each second

    def text(self) -> str:
        lines = [
            f"requests: {self.completed} completed, {self.failed} failed, {self.rate_limited} rate-limited "
            f"(concurrency {self.concurrency}) in {self.duration_s:.2f} s",
            f"throughput: {self.request_per_s:.2f} req/s, {self.output_tok_s:.1f} output tok/s, "
            f"{self.total_tok_s:.1f} total tok/s "
            f"({self.output_tokens} output, {self.prompt_tokens} prompt tokens)",
            f"TTFT ms: {self.ttft_ms.text()}",
            f"TPOT ms: {self.tpot_ms.text()}",
            f"ITL ms: {self.itl_ms.text()}",
            f"E2E latency ms: {self.e2el_ms.text()}",
        ]
        if self.unit:
            lines.insert(2, f"throughput: {self.units_per_s:.2f} {self.unit}/s")
        if self.goodput_req_s is not None:
            lines.append(f"goodput: {self.goodput_req_s:.2f} req/s")
        if self.errors:
            lines.append("errors: " + ", ".join(f"{kind} x{n}" for kind, n in sorted(self.errors.items())))
        return "\n".join(lines)


def ttft_ms(ok: list[Sample]) -> list[float]:
    return [x.ttft * 1000 for x in ok if x.ttft is not None]


def itl_ms(ok: list[Sample]) -> list[float]:
    """Every gap between two content events of a request."""
    return [(b - a) * 1000 for x in ok for a, b in zip(x.arrivals, x.arrivals[1:], strict=False)]


def _tpot(x: Sample) -> float | None:
    """Time per output token after the first (ms); None for one-token answers."""
    if not x.arrivals or x.output_tokens < 2:
        return None
    return (x.ended - x.arrivals[0]) * 1000 / (x.output_tokens - 1)


def report(
    samples: list[Sample], duration: float, concurrency: int, slos: dict[str, float], unit: str = ""
) -> Report:
    ok = [x for x in samples if x.ok]
    tpot = [t for x in ok if (t := _tpot(x)) is not None]
    e2el = [(x.ended - x.started) * 1000 for x in ok]
    prompt_tokens = sum(x.prompt_tokens for x in ok)
    output_tokens = sum(x.output_tokens for x in ok)
    good = None
    if slos:
        met = [x for x in ok if _meets(x, slos)]
        good = len(met) / duration if duration else 0.0
    return Report(
        concurrency=concurrency,
        completed=len(ok),
        failed=sum(1 for x in samples if not x.ok and not x.rate_limited),
        rate_limited=sum(1 for x in samples if x.rate_limited),
        duration_s=duration,
        request_per_s=len(ok) / duration if duration else 0.0,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        output_tok_s=output_tokens / duration if duration else 0.0,
        total_tok_s=(prompt_tokens + output_tokens) / duration if duration else 0.0,
        ttft_ms=Spread.of(ttft_ms(ok)),
        tpot_ms=Spread.of(tpot),
        itl_ms=Spread.of(itl_ms(ok)),
        e2el_ms=Spread.of(e2el),
        errors=dict(Counter(x.error for x in samples if x.error and not x.rate_limited)),
        unit=unit,
        units_per_s=sum(x.units for x in ok) / duration if duration else 0.0,
        goodput_req_s=good,
        timeline_tok_s=_timeline(ok),
    )


def _meets(x: Sample, slos: dict[str, float]) -> bool:
    measured = {
        "ttft": x.ttft * 1000 if x.ttft is not None else None,
        "tpot": _tpot(x),
        "e2el": (x.ended - x.started) * 1000,
    }
    return all(measured[name] is None or measured[name] <= limit for name, limit in slos.items())  # type: ignore[operator]


def _timeline(ok: list[Sample]) -> list[float]:
    """Output tokens per one-second bucket from the first request's start: each request's tokens
    spread over its content events (an event may carry more than one token)."""
    if not ok:
        return []
    start = min(x.started for x in ok)
    buckets: Counter[int] = Counter()
    for x in ok:
        if x.arrivals and x.output_tokens:
            share = x.output_tokens / len(x.arrivals)
            for t in x.arrivals:
                buckets[int(t - start)] += share  # type: ignore[assignment]
    return [buckets.get(i, 0.0) for i in range(max(buckets, default=-1) + 1)]
