"""Side by side with llama.cpp (issue 24, item 2): llama.cpp's C++ `llama-server` on the same GGUF
(8 slots, continuous batching, 2 threads) and our chat ids, through HTTP with the same client, in
alternating rounds (this machine's speed drifts by a third within minutes, so one run of each,
one after the other, compares the drift), the median of the rounds.

llama-server comes from `make llama-server` (built from the llama.cpp sources llama-cpp-python's
sdist carries), or the binary $LLAMA_SERVER names; without it the section says so.

`python -m tests.benchmarks.run --only llamacpp` (also part of `make bench`).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.benchmarks import machine
from tests.server import Server, free_port

HEADING = "## Side by side with llama.cpp's server"
ROUNDS = 3
STREAMS = (1, 8)
TOKENS = 128
TEMPERATURE = 0.0  # greedy, as issue 24 measures: neither server's sampler in the figure
BUILT = Path(".venv-llama/build/bin/llama-server")
LLAMA = "llama.cpp llama-server"


def llama_server() -> Path | None:
    named = os.environ.get("LLAMA_SERVER")
    binary = Path(named) if named else BUILT
    return binary if binary.is_file() else None


def start_llama(binary: Path, gguf: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [str(binary), "-m", str(gguf), "-np", "8", "-cb", "-t", "2", "-c", "16384"]
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("llama-server did not become healthy")


def measure(
    server: Server, bench: Callable[..., object], gguf: Path, ids: dict[str, str]
) -> dict[str, dict[int, list[float]]]:
    """Output tok/s per target and stream count, one figure a round; {} without llama-server."""
    binary = llama_server()
    if binary is None:
        return {}
    process, llama_url = start_llama(binary, gguf)
    try:
        targets = {LLAMA: (llama_url, "llama"), **{name: (server.url, model) for name, model in ids.items()}}
        for url, model in targets.values():
            bench(url, None, model=model, max_tokens=4)  # loads and warms each
        rates: dict[str, dict[int, list[float]]] = {name: {n: [] for n in STREAMS} for name in targets}
        for _ in range(ROUNDS):
            for name, (url, model) in targets.items():
                for n in STREAMS:
                    report = bench(
                        url,
                        None,
                        model=model,
                        concurrency=n,
                        num_requests=max(n, 3),
                        max_tokens=TOKENS,
                        temperature=TEMPERATURE,
                    )
                    rates[name][n].append(report.output_tok_s)  # type: ignore[attr-defined]
                    print(f"{name} {n} streams: {rates[name][n][-1]:.1f} tok/s")
        return rates
    finally:
        process.terminate()
        process.wait(timeout=30)


def section(rates: dict[str, dict[int, list[float]]], notes: dict[str, str], date: str) -> list[str]:
    lines = [HEADING, ""]
    if not rates:
        return [
            *lines,
            "Not measured in this run: no llama-server (`make llama-server` builds it, or set "
            "LLAMA_SERVER to a binary).",
        ]
    llama = {n: statistics.median(rates[LLAMA][n]) for n in STREAMS}
    lines += [
        f"{machine.measured(date)} The same client (`enginehouse bench --concurrency N "
        f"--num-requests max(N,3) --max-tokens {TOKENS} --temperature 0`, streamed, `ignore_eos`, "
        "the built-in prompts of about 40 tokens, greedy as the issue measures) against llama.cpp's "
        "`llama-server -m GGUF -np 8 -cb -t 2 -c 16384` "
        "(`make llama-server`: native, without ggml's AMX kernels, which die with SIGILL on the Xeon "
        "VMs here) on the packaged GGUF and against our ids, in alternating rounds; the median of "
        f"{ROUNDS} rounds, and its ratio to llama-server's in the same rounds.",
        "",
        "| server / model id | weights | "
        + " | ".join(f"{n} stream{'s' if n > 1 else ''} tok/s" for n in STREAMS)
        + " |",
        "|---|---|" + "---|" * len(STREAMS),
    ]
    for name, by_streams in rates.items():
        cells = []
        for n in STREAMS:
            median = statistics.median(by_streams[n])
            cells.append(f"{median:.1f}" if name == LLAMA else f"{median:.1f} ({median / llama[n]:.2f}x)")
        lines.append(f"| {name} | {notes.get(name, 'the GGUF itself')} | " + " | ".join(cells) + " |")
    lines += ["", "`python -m tests.benchmarks.run --only llamacpp` (also part of `make bench`)"]
    return lines
