"""Faithfulness to the GGUF: how closely each engine's weights reproduce the model the GGUF holds.

The measure (issue 24): a fixed text of about 2,000 tokens (faithfulness.txt, shipped beside this
file), teacher-forced: at every position the log-probability the model gives the text's next
token, and the token it ranks first there. The reference is transformers in float32 on the GGUF
de-quantized exactly (transformers' own reading of the Q4_1 blocks, the cached Hugging Face
directory the torch engine serves). For each engine and export, the mean log-likelihood
(nats/token; the reference's is the target, lower is worse), its distance from the reference's,
and the top-1 agreement: the share of positions where the engine's first choice is the
reference's.

torch and ONNX are read through the engine as its worker runs it: a completion of the text's
token ids with `echo` and `logprobs: 1` (the prompt's log-probabilities, prefilled through the LM
head). OpenVINO GenAI gives no log-probabilities, so the same IR the OpenVINO worker serves is run
directly with OpenVINO (stateful, in the worker's prefill chunks of 512 tokens, so the later chunks
read the KV cache as the CPU plugin keeps it, u8).

`python -m tests.benchmarks.run --only faithfulness` (also part of `make bench`).
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protocol import Generate, SamplingParams
from tests.benchmarks import machine
from workers.engines import load_engine
from workers.settings import WorkerSettings
from workers.sources import resolve

HEADING = "## Faithfulness to the GGUF"
TEXT = Path(__file__).with_name("faithfulness.txt")
CHUNK = 512  # the worker's default prefill chunk


@dataclass(frozen=True)
class Scores:
    """Per position 1..n-1 of the text: the log-probability of its token and the first choice."""

    logprobs: list[float]
    first: list[bytes]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.logprobs)


@dataclass(frozen=True)
class Row:
    name: str
    weights: str
    mean: float
    delta: float
    agreement: float
    drift: float  # mean |log-probability - the reference's| per token

    @classmethod
    def of(cls, name: str, weights: str, scores: Scores, reference: Scores) -> Row:
        pairs = list(zip(scores.logprobs, reference.logprobs, strict=True))
        agree = sum(a == b for a, b in zip(scores.first, reference.first, strict=True))
        return cls(
            name,
            weights,
            scores.mean,
            scores.mean - reference.mean,
            agree / len(reference.first),
            statistics.fmean(abs(a - b) for a, b in pairs),
        )


def text_ids(tokenizer: object) -> list[int]:
    return list(tokenizer.encode(TEXT.read_text(), add_special_tokens=False))  # type: ignore[attr-defined]


@functools.cache  # the OpenVINO and ONNX engine tests both measure against it
def reference(source: str) -> tuple[Scores, list[int], object]:
    """transformers, float32, the GGUF de-quantized: the text's scores, its ids, the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workers.gguf_to_hf import as_hf_directory
    from workers.logprobs import Pieces
    from workers.settings import DEFAULT_CACHE_DIR

    directory = as_hf_directory(resolve(source), DEFAULT_CACHE_DIR, print)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    ids = text_ids(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0, :-1].float()
    return _scores(logits.numpy(), ids, Pieces(tokenizer)), ids, tokenizer


def _scores(logits: np.ndarray, ids: list[int], pieces: object) -> Scores:
    """From the logits of positions 0..n-2 ([n - 1, vocab])."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logprobs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    chosen = logprobs[np.arange(len(ids) - 1), ids[1:]]
    first = logprobs.argmax(axis=-1)
    return Scores([float(v) for v in chosen], [pieces.of(int(t)) for t in first])  # type: ignore[attr-defined]


def through_engine(source: str, engine_name: str, ids: list[int], **options: object) -> Scores:
    """The engine as its worker runs it: the text's ids as a completion prompt, echo, logprobs 1."""
    settings = WorkerSettings(model="faithfulness", source=source, connect="", engine=engine_name, **options)
    engine = load_engine(settings)
    params = SamplingParams(max_tokens=1, temperature=0.0)
    engine.add(Generate("faithfulness", params, prompt_ids=ids, logprobs=1, echo=True))
    prompt = None
    while engine.has_work():
        for delta in engine.step():
            if delta.details is not None and delta.details.prompt_logprobs is not None:
                prompt = delta.details.prompt_logprobs
    if prompt is None:
        raise RuntimeError(f"{engine_name} gave no prompt log-probabilities")
    entries = prompt[1:]  # the first token has none
    return Scores([float(e.logprob) for e in entries], [e.top[0][0] for e in entries])


def through_openvino(source: str, ids: list[int], pieces: object, **options: object) -> Scores:
    """The IR the OpenVINO worker serves, run directly (OpenVINO GenAI gives no log-probabilities)."""
    import openvino as ov

    from workers.engines.openvino import ir_to_serve
    from workers.engines.openvino.convert import IR_FILE
    from workers.engines.openvino.device import compile_properties

    settings = WorkerSettings(model="faithfulness", source=source, connect="", engine="openvino", **options)
    directory = ir_to_serve(resolve(source), settings, npu=False)
    properties = compile_properties("CPU", settings)
    compiled = ov.Core().compile_model(str(directory / IR_FILE), "CPU", properties)
    request = compiled.create_infer_request()
    request.reset_state()
    logits = []
    for start in range(0, len(ids) - 1, CHUNK):
        chunk = ids[start : min(start + CHUNK, len(ids) - 1)]
        outputs = request.infer(stateful_feed(chunk, start))
        logits.append(np.array(outputs["logits"][0], dtype=np.float32))
    return _scores(np.concatenate(logits), ids, pieces)


def stateful_feed(ids: list[int], start: int, rows: int = 1) -> dict[str, np.ndarray]:
    """The inputs of a stateful OpenVINO LLM IR for `ids` following `start` tokens in its KV state,
    in each of `rows` sequences."""
    return {
        "input_ids": np.tile(np.array(ids, dtype=np.int64), (rows, 1)),
        "attention_mask": np.ones((rows, start + len(ids)), dtype=np.int64),
        "position_ids": np.tile(np.arange(start, start + len(ids), dtype=np.int64), (rows, 1)),
        "beam_idx": np.arange(rows, dtype=np.int32),
    }


# what is measured: name, the weights in words, the engine, its worker options
ENGINES: list[tuple[str, str, str, dict[str, object]]] = [
    ("torch", "float32, the GGUF de-quantized (transformers)", "torch", {}),
    (
        "openvino (the default)",
        "the GGUF's own Q4_1 blocks, each minimum exact (an integer zero point and the residual, "
        "q4_1.py), int8 activations",
        "openvino",
        {},
    ),
    (
        "openvino, f32 activations",
        "as the default, the activations in float32 (`--no-dynamic-quantization`)",
        "openvino",
        {"dynamic_quantization": False},
    ),
    (
        "openvino, bf16",
        "as the default, computed as OpenVINO's own CPU defaults do on AVX-512 BF16/VNNI: bf16 math "
        "(`--inference-precision bf16`; OpenVINO's int8 activations do not apply to bf16 math)",
        "openvino",
        {"inference_precision": "bf16"},
    ),
    (
        "openvino-int8",
        "int8 per channel, optimum-intel from the de-quantized GGUF",
        "openvino",
        {"openvino_weight_format": "int8"},
    ),
    (
        "onnx",
        "the GGUF's own Q4_1 and Q8_0 blocks in the builder's graph (gguf_weights.py), int8 activations",
        "onnx",
        {},
    ),
    (
        "onnx int4",
        "int4, ONNX Runtime GenAI's model builder from the de-quantized GGUF",
        "onnx",
        {"onnx_precision": "int4"},
    ),
]


def measure(source: str) -> tuple[list[Row], int]:
    from workers.logprobs import Pieces

    ref, ids, tokenizer = reference(source)
    rows = [Row("reference: transformers", "float32, the GGUF de-quantized", ref.mean, 0.0, 1.0, 0.0)]
    pieces = Pieces(tokenizer)
    for name, weights, engine_name, options in ENGINES:
        if engine_name == "openvino":  # no log-probabilities from OpenVINO GenAI: the IR directly
            scores = through_openvino(source, ids, pieces, **options)
        else:
            scores = through_engine(source, engine_name, ids, **options)
        rows.append(Row.of(name, weights, scores, ref))
        print(f"faithfulness {name}: {rows[-1]}")
    return rows, len(ids)


def section(rows: list[Row], tokens: int, date: str) -> list[str]:
    lines = [
        HEADING,
        "",
        f"{machine.measured(date)} The text in `tests/benchmarks/faithfulness.txt` "
        f"({tokens} tokens), "
        "teacher-forced: at every position the log-probability each engine gives the text's next "
        "token, and its first choice there. The reference is transformers in float32 on the GGUF "
        "de-quantized exactly. Mean log-likelihood in nats per token (higher is better; the "
        "reference's is the model the GGUF holds), its difference from the reference's, the mean "
        "absolute difference per token, and top-1 agreement (the share of positions where the engine's "
        "first choice is the reference's). torch and ONNX are read through the engine as the worker "
        "runs it (a completion of the text's ids with `echo` and `logprobs: 1`); OpenVINO GenAI gives "
        "no log-probabilities, so the IR the OpenVINO worker serves is run directly with OpenVINO, "
        f"in the worker's prefill chunks of {CHUNK} tokens. OpenVINO GenAI's own GGUF reader rounds "
        "each Q4_1 block's minimum to a 4-bit zero point; the default adds back what the rounding "
        "left out (workers/engines/openvino/q4_1.py) and, as llama.cpp does for these blocks, "
        "multiplies them with int8 activations (OpenVINO's dynamic quantization, groups of 32). "
        "Measured on 2026-11-30 before the minimums were kept, the IR as the "
        "reader wrote it: -3.4057 nats/token (-0.2087 from the reference), mean absolute difference "
        "0.5603, top-1 agreement 70.7%.",
        "",
        "| engine | weights | log-likelihood nats/token | vs reference | mean abs. difference "
        "| top-1 agreement |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.weights} | {row.mean:.4f} | {row.delta:+.4f} | {row.drift:.4f} | "
            f"{row.agreement:.1%} |"
        )
    perplexity = ", ".join(f"{row.name.split(':')[0]} {math.exp(-row.mean):.2f}" for row in rows)
    lines += [
        "",
        f"Perplexity: {perplexity}.",
        "",
        "`python -m tests.benchmarks.run --only faithfulness` (also part of `make bench`)",
    ]
    return lines
