"""The gateway's own cost (issue 24, item 6): the test engine (no model) through gateway + ZeroMQ,
against a bare aiohttp handler streaming the same bytes, in the same run. The two take turns,
shape by shape, for ROUNDS rounds, and each row is the round of median tokens/s: on two shared
cores one run of either swings by a third from one minute to the next. Then where the CPU time of a
request goes: each process sampled by py-spy while one stream of short answers runs through each
path (PROFILED), its samples grouped by the code they were in.

`python -m tests.benchmarks.run --only overhead` (also part of `make bench`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
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
PROFILED = (1, 400, 16)  # streams, requests, tokens each: the short answers' shape, profiled
SAMPLES_PER_S = 250
Bench = Callable[..., Report]
# py-spy's frames name the file each Python frame ran in; a sample goes to the group of its innermost
# frame that one of these patterns matches (the standard library's frames to the code that called
# them). A sample whose innermost frame is the loop's run call (run_app) was in uvloop's own C code:
# polling, reading and writing sockets, calling back.
GROUPS = (
    ("the event loop: uvloop's polling, socket reads and writes, asyncio's tasks", r"^run_app |asyncio/"),
    ("aiohttp: HTTP parsing, the handler chain, the response's writes", r"aiohttp/|multidict/|yarl/"),
    ("the worker's wait for work (ZeroMQ poll)", r"^Poller\.poll "),
    ("ZeroMQ: frames to and from the other process (pyzmq)", r"zmq/"),
    ("messages (msgspec, protocol/)", r"protocol/|msgspec"),
    ("request bodies checked (pydantic)", r"pydantic"),
    ("logs and metrics (structlog, prometheus-client)", r"structlog/|prometheus_client/|logging/"),
    ("the gateway's own code (gateway/)", r"gateway/"),
    ("the worker's loop and the test engine (workers/)", r"workers/"),
    ("the handler's own code (bare_aiohttp.py)", r"bare_aiohttp"),
)
OTHER = "the rest"


@dataclass
class Costs:
    reports: dict[str, list[Report]]  # per path, one report per shape
    cpu: dict[str, dict[str, float]]  # process -> group -> CPU ms a request; empty if not profiled
    profiler: str  # why there is no profile, when there is none


def measure(server: Server, bench: Bench, plots: Path | None) -> Costs:
    """Per path, one report per shape: the median of ROUNDS alternating runs; then each process's
    CPU time a request (profile)."""
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
        reports = {
            path: [
                sorted(runs[path, i], key=lambda r: r.output_tok_s)[ROUNDS // 2] for i in range(len(SHAPES))
            ]
            for path in PATHS
        }
        sampled = {
            PATHS[0]: {
                "gateway": server.process.pid,
                "test-engine worker": int(server.status("test-engine")["replicas"][0]["pid"]),
            },
            PATHS[1]: {"bare aiohttp handler": bare.pid},
        }
        try:
            cpu = {
                name: ms for path, pids in sampled.items() for name, ms in profile(bench, urls[path], pids)
            }
        except ProfileError as exc:
            return Costs(reports, {}, str(exc))
        return Costs(reports, cpu, "")
    finally:
        bare.terminate()
        bare.wait()


class ProfileError(Exception):
    """py-spy is missing or may not read the processes (ptrace)."""


def thread_cpu_ms(pid: int) -> dict[str, float]:
    """CPU ms (user + system) each thread of a process has used, by its name; the main thread's
    under "main"."""
    ticks = 1000 / os.sysconf("SC_CLK_TCK")
    used: Counter[str] = Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        name = "main" if task.name == str(pid) else (task / "comm").read_text().strip()
        fields = (task / "stat").read_text().rpartition(")")[2].split()
        used[name] += (int(fields[11]) + int(fields[12])) * ticks  # utime, stime
    return dict(used)


def profile(bench: Bench, url: str, pids: dict[str, int]) -> list[tuple[str, dict[str, float]]]:
    """Per process, CPU ms a request while one stream of PROFILED ran through `url`: its threads'
    CPU time from /proc, the main thread's split into GROUPS by py-spy's samples of it."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise ProfileError("py-spy is not installed (the bench extra has it)")
    n, requests, tokens = PROFILED
    with tempfile.TemporaryDirectory() as directory:
        raw = {name: Path(directory) / f"{pid}.txt" for name, pid in pids.items()}
        spies = {
            name: subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(SAMPLES_PER_S),
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--output",
                    str(raw[name]),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name, pid in pids.items()
        }
        try:
            time.sleep(1)  # attached
            for name, spy in spies.items():
                if spy.poll() is not None:
                    raise ProfileError(f"py-spy could not sample the {name}: {spy.communicate()[1].strip()}")
            before = {name: thread_cpu_ms(pid) for name, pid in pids.items()}
            bench(url, model="test-engine", concurrency=n, num_requests=requests, max_tokens=tokens)
            after = {name: thread_cpu_ms(pid) for name, pid in pids.items()}
        finally:
            for spy in spies.values():
                spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled and exits
                spy.wait(timeout=60)
        result = []
        for name in pids:
            used = {
                thread: (after[name][thread] - before[name].get(thread, 0.0)) / requests
                for thread in after[name]
            }
            if not raw[name].is_file():
                raise ProfileError(f"py-spy wrote no samples of the {name}")
            main = grouped(raw[name].read_text())
            costs = {group: used["main"] * share for group, share in main.items()}
            others = {thread: ms for thread, ms in used.items() if thread != "main" and ms > 0}
            if others:  # ZeroMQ's I/O threads (ZMQbg/IO/0) in the gateway and the worker
                costs[f"its other threads ({', '.join(sorted(others))})"] = sum(others.values())
            result.append((name, costs))
        return result


def grouped(samples: str) -> dict[str, float]:
    """py-spy's raw samples (one stack a line, innermost frame last, then its count): each GROUP's
    share of them."""
    counts: Counter[str] = Counter()
    for line in samples.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        group = next(
            (
                name
                for frame in reversed(stack.split(";"))
                for name, pattern in GROUPS
                if re.search(pattern, frame)
            ),
            OTHER,
        )
        counts[group] += int(count)
    total = sum(counts.values()) or 1
    return {group: count / total for group, count in counts.most_common()}


def section(costs: Costs, today: str) -> list[str]:
    reports = costs.reports
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
    n, requests, tokens = PROFILED
    lines += [
        "",
        f"Where a request's CPU time goes: one stream of {requests} requests of {tokens} tokens through "
        "each path",
    ]
    if not costs.cpu:
        lines[-1] += f" was not profiled here: {costs.profiler}."
        return lines
    lines[-1] += (
        ", each process's CPU time (user + system, /proc) a request, its main thread's split by where "
        f"py-spy's samples of it ({SAMPLES_PER_S} a second) found it: the innermost Python frame in our "
        "code or a named library (the standard library's go to their caller; uvloop's C code is under "
        "its run call, msgspec's and ZeroMQ's under their Python calls)."
    )
    lines += ["", "| process | where | CPU ms a request |", "|---|---|---|"]
    for process, groups in costs.cpu.items():
        lines += [f"| {process} | {group} | {ms:.3f} |" for group, ms in groups.items()]
        lines.append(f"| {process} | **all** | **{sum(groups.values()):.3f}** |")
    *ours, bare = costs.cpu.values()

    def ms(*words: str) -> float:
        return sum(v for groups in ours for group, v in groups.items() if any(w in group for w in words))

    lines += [
        "",
        f"The path's processes use {sum(sum(g.values()) for g in ours):.2f} ms of CPU a request of "
        f"{tokens} tokens, the bare handler {sum(bare.values()):.2f} ms, with the client (the bench) "
        f"beside them on the same {os.cpu_count()} cores. Of the path's: HTTP (aiohttp and the event "
        f"loop) {ms('aiohttp', 'event loop'):.2f} ms, ZeroMQ in both processes (their I/O threads and "
        f"the worker's poll included) {ms('ZeroMQ', 'ZMQ'):.2f}, the gateway's own code "
        f"{ms('gateway/'):.2f}, logs and metrics {ms('logs'):.2f}, the worker's loop and messages "
        f"{ms('workers/', 'messages'):.2f}.",
    ]
    return lines
