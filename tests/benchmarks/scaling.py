"""`make scaling`: one gateway against two in front of the same worker (the test engine, so the
gateway's own cost is what is measured), and what a Redis round trip costs a request. Written to
docs/scaling.md with the commands. Needs redis-server (make test-packages installs it)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from gateway.bench import BenchSettings, Report, run
from gateway.ratelimit import RateLimiter, SharedRateLimiter
from tests.server import free_port, start_server

MODEL = "shared"
STREAMS, REQUESTS, TOKENS = 64, 128, 512
SHORT = dict(concurrency=16, num_requests=2000, max_tokens=1)


def bench(url: str, **options: object) -> Report:
    return asyncio.run(run(BenchSettings(url=url, model=MODEL, progress=False, **options), []))


async def both(urls: list[str], **options: object) -> list[Report]:
    return await asyncio.gather(
        *(run(BenchSettings(url=url, model=MODEL, progress=False, **options), []) for url in urls)
    )


def redis_round_trip(url: str, calls: int = 5000) -> tuple[float, float]:
    """Mean µs of one decision: the local bucket, and the shared one in Redis."""

    async def measure() -> tuple[float, float]:
        local = RateLimiter(1e9, 1_000_000)
        shared = SharedRateLimiter(url, RateLimiter(1e9, 1_000_000), fail_open=False)
        timings = []
        for limiter in (local, shared):
            started = time.perf_counter()
            for i in range(calls):
                await limiter.decide(f"caller-{i % 100}")
            timings.append((time.perf_counter() - started) / calls * 1e6)
        await shared.close()
        return timings[0], timings[1]

    return asyncio.run(measure())


def _registered(url: str) -> bool:
    data = httpx.get(f"{url}/v1/models/status", timeout=5).json()["data"]
    return any(m["id"] == MODEL and m["replicas"] for m in data)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/scaling.md")
    out = Path(parser.parse_args().out)
    redis_port = free_port()
    redis = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(redis_port), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{redis_port}/0"
    gateways, worker = [], None
    with tempfile.TemporaryDirectory() as folder:
        models = Path(folder) / "models.toml"
        models.write_text("")
        binds = [f"tcp://127.0.0.1:{free_port()}" for _ in range(2)]
        try:
            for i, bind in enumerate(binds):
                extra = [] if i == 0 else ["--no-stateful"]
                gateways.append(
                    start_server(
                        "--models",
                        str(models),
                        "--allow-remote-models",
                        "--worker-bind",
                        bind,
                        "--redis-url",
                        url,
                        "--rate-limit",
                        "1000000",
                        "--rate-burst",
                        "1000000",
                        "--state-dir",
                        str(Path(folder) / f"state-{i}"),
                        *extra,
                    )
                )
            command = [sys.executable, "-m", "gateway", "worker", "--model", MODEL, "--source", "none"]
            command += ["--engine", "test", "--max-batch", "64", "--connect", binds[0], "--connect", binds[1]]
            worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for gateway in gateways:
                deadline = time.monotonic() + 60
                while not _registered(gateway.url):
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            load = dict(concurrency=STREAMS, num_requests=REQUESTS, max_tokens=TOKENS)
            bench(gateways[0].url, concurrency=4, num_requests=8, max_tokens=16)  # warm up
            one = bench(gateways[0].url, **load)
            half = dict(concurrency=STREAMS // 2, num_requests=REQUESTS // 2, max_tokens=TOKENS)
            two = asyncio.run(both([g.url for g in gateways], **half))
            shared_short = bench(gateways[0].url, **SHORT)
            local_us, shared_us = redis_round_trip(url)
        finally:
            if worker is not None:
                worker.kill()
            for gateway in gateways:
                gateway.process.terminate()
                gateway.process.wait(timeout=30)
            redis.kill()
    total_two = sum(r.output_tok_s for r in two)
    lines = [
        "# Scaling: several gateways, one pool of workers",
        "",
        f"Made by `make scaling` (`python -m tests.benchmarks.scaling`) on {datetime.date.today()}: "
        f"{platform.machine()}, {os.cpu_count()} cores. Redis, two gateways sharing it "
        "(deploy/multi/README.md), one worker of the test engine (no model: tokens as fast as the "
        f"path carries them, max_batch 64) registered with both, and the load client "
        "(`enginehouse bench`), all on this one machine.",
        "",
        "## One gateway or two in front of the same worker",
        "",
        f"{STREAMS} streams, {REQUESTS} requests of {TOKENS} tokens: all through gateway a, or half "
        "through each gateway at once.",
        "",
        "| gateways | output tok/s | TTFT median ms |",
        "|---|---|---|",
        f"| 1 | {one.output_tok_s:.0f} | {one.ttft_ms.median:.1f} |",
        f"| 2 | {total_two:.0f} | {max(r.ttft_ms.median for r in two):.1f} |",
        "",
        f"Two gateways carry {total_two / one.output_tok_s:.2f}x one. On this machine the gateways, "
        "the worker and the load client share two cores, so a second gateway adds HTTP capacity "
        "only as far as there is CPU left; on separate hosts each gateway brings its own.",
        "",
        "## A Redis round trip per request",
        "",
        "Each request takes one decision from its caller's bucket. Measured in-process, 5,000 "
        "decisions in a row from 100 callers:",
        "",
        "| buckets | µs per decision |",
        "|---|---|",
        f"| the gateway's own (no --redis-url) | {local_us:.1f} |",
        f"| shared in Redis (a Lua script, loopback) | {shared_us:.1f} |",
        "",
        f"So sharing the limits costs about {shared_us - local_us:.0f} µs a request on loopback (plus "
        "the network's round trip between hosts). Through HTTP, 2,000 one-token requests at 16 at "
        f"once with the Redis buckets: {shared_short.request_per_s:.0f} requests/s, "
        f"end-to-end median {shared_short.e2el_ms.median:.1f} ms.",
    ]
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
