"""The gateway's own cost (issue 24, item 6): the test engine (no model) through gateway + ZeroMQ,
against a bare aiohttp handler streaming the same bytes, in the same run. The two take turns,
shape by shape, for ROUNDS rounds, and each row is the round of median tokens/s: on two shared
cores one run of either swings by a third from one minute to the next.

`python -m tests.benchmarks.run --only overhead` (also part of `make bench`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from gateway.bench import Report
from tests.benchmarks import machine
from tests.server import Server, free_port

HEADING = "## Gateway overhead: the test engine against a bare aiohttp handler"
# streams, requests, tokens each: short answers for the first token's latency (long ones keep the
# worker, the gateway and the client busy on 2 cores, and the client's reading is late), long ones
# for tokens/s
SHAPES = ((1, 50, 16), (1, 3, 4096), (64, 64, 512))
ROUNDS = 3
PATHS = ("gateway + ZeroMQ + test engine", "bare aiohttp")
Bench = Callable[..., Report]


def measure(server: Server, bench: Bench, plots: Path | None) -> dict[str, list[Report]]:
    """Per path, one report per shape: the median of ROUNDS alternating runs."""
    port = free_port()
    bare = subprocess.Popen([sys.executable, "-m", "tests.benchmarks.bare_aiohttp", str(port)])
    urls = dict(zip(PATHS, (server.url, f"http://127.0.0.1:{port}"), strict=True))
    try:
        for _ in range(100):
            try:
                httpx.get(f"{urls[PATHS[1]]}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        for url in urls.values():  # connections, code paths and the worker warmed once
            bench(url, model="test-engine", max_tokens=64)
        runs: dict[tuple[str, int], list[Report]] = {}
        for _ in range(ROUNDS):
            for i, (n, requests, tokens) in enumerate(SHAPES):
                for path, url in urls.items():
                    plot = plots / f"overhead-{n}.png" if plots and n > 1 and path == PATHS[0] else None
                    options = {"concurrency": n, "num_requests": requests, "max_tokens": tokens}
                    report = bench(url, plot, model="test-engine", **options)
                    runs.setdefault((path, i), []).append(report)
                    print(f"overhead {path} {n} streams x {tokens}: {report.output_tok_s:.0f} tok/s")
    finally:
        bare.terminate()
        bare.wait()
    return {
        path: [sorted(runs[path, i], key=lambda r: r.output_tok_s)[ROUNDS // 2] for i in range(len(SHAPES))]
        for path in PATHS
    }


def section(reports: dict[str, list[Report]], today: str) -> list[str]:
    lines = [
        HEADING,
        "",
        f"{machine.measured(today)} `enginehouse serve --test-engine` adds `test-engine`, a worker with no "
        "model that emits one token per request per step as fast as its loop runs: what remains is "
        "the cost of the path, worker loop + msgspec + ZeroMQ + router + handler + SSE. The baseline "
        "(`tests/benchmarks/bare_aiohttp.py`) is one aiohttp handler on uvloop writing the same "
        "chunk JSON, one event per token (so do we). Same client, same run, taking turns, the median "
        f"of {ROUNDS} rounds: `enginehouse bench --model test-engine --concurrency N --num-requests R "
        "--max-tokens T` (`python -m tests.benchmarks.run --only overhead`). Goal (issue 24): the "
        "path at 60% of the bare handler's tokens/s on one stream, the first token within 0.5 ms.",
        "",
        "| path | streams | requests x tokens | tok/s | TTFT median / p99 ms | ITL p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for path in PATHS:
        for (n, requests, tokens), r in zip(SHAPES, reports[path], strict=True):
            lines.append(
                f"| {path} | {n} | {requests} x {tokens} | {r.output_tok_s:.0f} "
                f"| {r.ttft_ms.median:.1f} / {r.ttft_ms.p99:.1f} | {r.itl_ms.p99:.2f} |"
            )
    for (n, requests, tokens), ours, base in zip(SHAPES, *reports.values(), strict=True):
        lines += [
            "",
            f"{n} stream(s), {requests} x {tokens} tokens: the full path carries "
            f"{ours.output_tok_s / base.output_tok_s:.0%} of the bare handler's tokens/s, "
            f"{1e6 / ours.output_tok_s - 1e6 / base.output_tok_s:.0f} µs more per token in all; "
            f"first token {ours.ttft_ms.median - base.ttft_ms.median:.1f} ms later (median).",
        ]
    return lines
