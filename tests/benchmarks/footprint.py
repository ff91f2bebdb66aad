"""Start-up and memory of the default server, as `make run` serves it (issue 24, items 3 and 4).

Start-up: `enginehouse serve` to `/health` 200 (every preloaded model registered), cold (an empty
model cache: the GGUF's IR and the encoder's export made on the way) and warm (the same cache
again). Memory: the resident set (RSS) of the gateway and of each worker at rest, and the most each
reached while 8 chat streams of 256 tokens ran (2 rounds) beside embeddings requests.

`python -m tests.benchmarks.run --only footprint` (also part of `make bench`).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

from gateway.bench import BenchSettings, run
from tests.benchmarks import machine
from tests.benchmarks.soak import processes, pss_mb, rss_mb
from tests.server import Server, start_server, stop_server

HEADING = "## Start-up and memory of the default server"
LOAD = {"model": "smollm2-135m-instruct", "concurrency": 8, "num_requests": 16, "max_tokens": 256}


def timed_start(cache: Path) -> tuple[Server, float]:
    started = time.monotonic()
    server = start_server("--cache-dir", str(cache), timeout=1800)
    return server, time.monotonic() - started


Memory = dict[str, tuple[float, float]]  # process → (RSS, PSS) MB


def memory(pids: dict[str, int]) -> Memory:
    return {name: (rss_mb(pid), pss_mb(pid)) for name, pid in pids.items()}


def under_load(server: Server, pids: dict[str, int]) -> Memory:
    """The most RSS and PSS each process reached while the chat load ran, sampled every 0.5 s."""
    peak = memory(pids)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for name, now in memory(pids).items():
                peak[name] = (max(peak[name][0], now[0]), max(peak[name][1], now[1]))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        settings = [
            BenchSettings(url=server.url, progress=False, ignore_eos=True, **LOAD),
            BenchSettings(
                url=server.url,
                progress=False,
                endpoint="embeddings",
                model="all-minilm-l6-v2",
                concurrency=2,
                num_requests=64,
            ),
        ]

        async def both() -> None:
            await asyncio.gather(*(run(s, []) for s in settings))

        asyncio.run(both())
    finally:
        done.set()
        sampler.join()
    return peak


WARM_STARTS = 3  # the VM's speed drifts: the warm figure is their median


def measure() -> tuple[float, list[float], Memory, Memory]:
    with tempfile.TemporaryDirectory() as directory:
        cache = Path(directory)
        server, cold = timed_start(cache)
        warm: list[float] = []
        for _ in range(WARM_STARTS):
            stop_server(server)
            server, seconds = timed_start(cache)
            warm.append(seconds)
        try:
            time.sleep(10)  # settled
            pids = processes(server)
            rest = memory(pids)
            peak = under_load(server, pids)
        finally:
            stop_server(server)
    return cold, warm, rest, peak


def section(cold: float, warm: list[float], rest: Memory, peak: Memory, date: str) -> list[str]:
    lines = [
        HEADING,
        "",
        f"{machine.measured(date)} "
        "`enginehouse serve` with the packaged defaults (the chat model on OpenVINO, "
        "the embedding model on OpenVINO; whisper-base loads on first use) to `/health` 200, polled "
        "every 0.1 s: cold with an empty model cache (`--cache-dir` a new directory: the GGUF's IR "
        "with its exact Q4_1 minimums and the encoder's IR are made on the way), then warm on that cache "
        f"({WARM_STARTS} times, the median; each start's time in brackets). "
        "Warm, most of it is the chat worker's pipeline: OpenVINO GenAI's paged-attention transformation "
        "and the CPU plugin's compile of the IR's 5,711 operations (2.1-3.9 s in-process here as the "
        "VM's speed drifts, 0.4-1 s more in the server beside the embedding worker's compile and the "
        "gateway's imports on 2 cores; the gateway starts the workers 0.4-0.5 s after it was started, "
        "before it imports aiohttp and its routes, and each imports its Python for ~0.7-0.9 s). "
        "OpenVINO's compiled-model cache "
        "(`CACHE_DIR`) does not shorten it on the CPU: the plugin fails to import the blob of a model "
        "with PagedAttention (its nodes' k_head_size and num_k_heads are not in the blob) and compiles "
        "again, so the CPU worker does not set it; the IR already optimized offline (MOC) compiled no "
        "faster.",
        "",
        "| start | seconds to /health 200 |",
        "|---|---|",
        f"| cold (empty cache) | {cold:.1f} |",
        f"| warm | {statistics.median(warm):.1f} ({', '.join(f'{w:.1f}' for w in warm)}) |",
        "",
        "Resident memory per process: at rest 10 s after the warm start, and the most each reached "
        f"while {LOAD['concurrency']} chat streams of {LOAD['max_tokens']} tokens "
        f"({LOAD['num_requests']} requests) ran beside embeddings requests (2 in flight). The chat "
        "worker's paged KV cache (`--kv-cache-gb` 0.25) is allocated as it fills, and kept with prefix "
        "caching: docs/reliability.md follows it for 30 minutes. RSS counts every page a process "
        "has resident, so the pages of the libraries both workers load (OpenVINO's, Python's) are in "
        "both workers' figures; PSS (`/proc/PID/smaps_rollup`) divides a shared page among the "
        "processes that map it, and the sum of PSS is the memory the server holds. Issue 24's "
        "goal is on the sum of RSS.",
        "",
        "| process | RSS at rest MB | PSS at rest MB | RSS under load, most MB | PSS under load, most MB |",
        "|---|---|---|---|---|",
    ]
    for name in rest:
        (rss, pss), (rss_peak, pss_peak) = rest[name], peak[name]
        lines.append(f"| {name} | {rss:.0f} | {pss:.0f} | {rss_peak:.0f} | {pss_peak:.0f} |")
    (rss, pss), (rss_peak, pss_peak) = (tuple(map(sum, zip(*m.values(), strict=True))) for m in (rest, peak))
    lines += [
        f"| all | {rss:.0f} | {pss:.0f} | {rss_peak:.0f} | {pss_peak:.0f} |",
        "",
        "What the workers leave out: neither imports torch at rest (about 210 MB here), nor keeps "
        "what a conversion needed (a first start converts in a child process), and each runs with "
        "two malloc arenas (`MALLOC_ARENA_MAX=2`, set by the supervisor unless the environment has "
        "it; the chat worker 338 → 320 MB at rest, the same tokens/s). A worker on the CPU asks "
        "OpenVINO for that device alone: listing every device loaded the GPU plugin, ~28 MB a worker. "
        "The encoder's IR keeps its weights in float16 (45 MB; the CPU computes in float32 from them: "
        "23 MB less once compiled than with float32 weights, the same speed, vectors at cosine 0.999999), "
        "and the CPU plugin's kernels read them as they are, packed as float16, because the worker "
        "compiles the encoder as a model the plugin takes for an LLM (`with_float16_kernels` in "
        "workers/engines/openvino/encoder.py: a state variable beside its attention; the same vectors "
        "bit for bit); otherwise it widens them to float32 for each of its kernels' two layouts (the "
        "embedding worker 217 -> 178 MB at rest on an AVX2 CPU). "
        "The embedding worker pages out the weights file once compiled (`workers/memory.py`), and again "
        "after a throwaway inference of a few tokens and one of many once it has registered: the CPU "
        "plugin reads all of the file while compiling and again packing the weights for its kernels on "
        "a first inference (the packing is in its RSS at rest); what it reads in place "
        "afterwards, the token embeddings a text uses, comes back as used, a page at a time (no read-ahead: "
        "the chat worker's file came back +28 MB under a sustained load with it, +6 without). "
        "The chat worker runs one "
        "throwaway request once it has registered: "
        "OpenVINO's CPU plugin packs the weights again for its kernels on a first inference, reading "
        "the whole 114 MB IR, and the worker then pages the file out the same way (so the packing is "
        "in its RSS at rest, where before it came with the first request: 305 MB at rest without it, "
        "but 592 at the end of the load above, against 527 then). It packs them twice, and keeps "
        "both: oneDNN's matmul kernels for 7 to 80 rows (when the output's width is a multiple of 32, "
        "as every one of this model's is) read a narrower block of outputs than those for other row "
        "counts, so a decode step of up to 6 sequences and one of 7 to 80 rows take different layouts "
        "(measured on the IR run directly: compiled +85 MB, a first 1-row step +76, a first 7- or "
        "8-row step +53 more; the compiled part holds the output layer's own u8 copy of the Q8_0 "
        "token embeddings, 27 MB, beside the one the lookup reads in place). Widening the fused "
        "matmuls by 8 unused outputs, so their width is not a multiple of 32, kept one layout for "
        "them (33 MB less) but made one-row steps 3-7% slower (on AVX2): not done. The IR decompresses in "
        "float32 (`workers/engines/openvino/q4_1.py`): given float16 decompression constants, the "
        "plugin kept a float32 copy of them for the model's life (31 MB); float32 ones it reads from "
        "the file while packing and not after (the chat worker 426 -> 394 MB at rest, 526 -> 498 "
        "under load). A worker imports the GGUF reader and OpenVINO GenAI only to convert a GGUF (the "
        "embedding worker 197 -> 189 MB). Every worker hands "
        "back the heap its load freed (`malloc_trim`; the chat worker held 8-34 MB more without it). The "
        "workers read a model's tokenizer.json with the `tokenizers` library and render its chat "
        "template with jinja2 themselves (`workers/hf_tokenizer.py`, `workers/chat_template.py`): "
        "transformers' tokenizer class cost the chat worker 18 MB at rest and under load (390 -> 372, "
        "495 -> 477) and 0.6-0.8 s of CPU at start. The chat worker imports xgrammar, which imports "
        "transformers and torch, only when it first decodes under a grammar (a JSON schema or a "
        "required tool call), so the load above, unconstrained, leaves it out; a structured request "
        "adds it for the worker's life. The chat worker's pipeline gets OpenVINO GenAI's tokenizer with "
        "the IR's detokenizer alone (`_detokenizer_alone` in workers/engines/openvino/batching.py: "
        "structured output reads its vocabulary from it; the tokenizer model, compiled, held 8 MB). "
        "Modules no serving process uses are left out where libraries import them when installed "
        "(workers/__main__.py; ~5 MB and ~0.1 s of start-up each, measured): rich, which structlog "
        "imports (installed for the test tools), in the workers and the gateway, and OpenVINO's model "
        "converter, which `import openvino` imports (its TensorFlow frontend, telemetry, urllib), in "
        "the workers. What is left in each worker's Python: numpy (15 MB, OpenVINO's), "
        "pydantic-settings (9 MB), OpenVINO's libraries (the CPU plugin 27 MB resident, the runtime "
        "14 MB, GenAI 9 MB).",
        "",
        "`python -m tests.benchmarks.run --only footprint` (also part of `make bench`)",
    ]
    return lines
