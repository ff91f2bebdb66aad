"""Encoder models on OpenVINO: embeddings, and cross-encoder reranking. The encoder is converted
once to OpenVINO IR (kept in the model cache), then run by the OpenVINO runtime. Pooling and
normalization are the shared Embedder's, scoring the CrossEncoder's.

The conversion goes through torch.export (dynamic batch and sequence axes) and
openvino.convert_model: converting the torch module directly fails on transformers 5's masking
code, the exported program does not. The IR keeps the weights in float16 and the CPU computes in
float32 from them: measured on all-MiniLM-L6-v2, the worker 23 MB smaller once compiled, and about
10 MB smaller after inputs of every part of the vocabulary (when the plugin widened them to float32
for its kernels, as it does unless `with_float16_kernels`), the same speed (64 x 28, 1 x 12 and
8 x 128 tokens within 8%), mean-pooled vectors at cosine 0.999999 to float32 weights; the IR on disk
45 MB instead of 91.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import structlog
from openvino import opset13 as ops
from openvino.op.util import Variable, VariableInfo

from workers.engines.cross_encoder import CrossEncoder
from workers.engines.embedder import Embedder
from workers.engines.encoder_export import cache_location, export_encoder
from workers.memory import page_out
from workers.model_cache import convert_apart, staged
from workers.model_files import load_tokenizer

log = structlog.get_logger()
WEIGHTS = "encoder.bin"
# (inputs, tokens): a few tokens' kernels, and many tokens'; no larger than a short text, as the
# plugin keeps the buffers of the largest input it ran (2 x 64 measured 30 MB more than 1 x 32).
# 1 x 2 too: on an AVX2-only CPU (AMD EPYC, no AVX-512) the plugin read the 23 MB token-embedding
# table whole once more on the first input after 1 x 8 and 1 x 32, whatever its shape, and not
# after 1 x 2 (measured over 13 shapes, 1 x 1 to 64 x 60 and 1 x 512)
WARM_UP_SHAPES = ((1, 2), (1, 8), (1, 32))


def ir_location(cache_dir: Path, model_dir: Path) -> Path:
    """Where the IR of this model lives in the cache: named by the source's path and weights (and
    the float16 format, so an IR of float32 weights an older version wrote is not taken)."""
    return cache_location(cache_dir / "openvino", model_dir, extra="f16")


def convert_encoder(model_dir: Path, target: Path, classifier: bool = False) -> None:
    """Hugging Face encoder → OpenVINO IR at target/encoder.xml (written whole, then renamed)."""
    log.info("converting the encoder to OpenVINO IR", source=str(model_dir), target=str(target))
    program = export_encoder(model_dir, classifier)
    with staged(target, "encoder.xml") as staging:
        ov.save_model(ov.convert_model(program), staging.model / "encoder.xml", compress_to_fp16=True)


def with_float16_kernels(model: ov.Model) -> ov.Model:
    """The encoder made one the CPU plugin multiplies with its float16 weights as they are.

    The plugin's matmul kernels read float16 weights directly (and pack them as float16) only in a
    model it takes for an LLM: one with attention (ScaledDotProductAttention, which the encoder has)
    and a state variable (OpenVINO 2026.4's CPU plugin, its model type). Any other model's float16
    weights are widened to float32 and packed so, once for the kernels of 7 to 80 rows and once for
    the others. So the encoder gets a one-element state variable, zero, added to its first output
    (which keeps its names): the vectors are the same bit for bit. Measured on all-MiniLM-L6-v2, an
    AVX2 EPYC: compiled and run at 1 x 8 and 8 x 128 tokens, 114 MB more than before it was compiled
    instead of 153; the embedding worker at rest 217 -> 178 MB (`--only footprint`); one text of
    10 tokens 10-16% faster, 8 x 24 tokens as fast, 64 x 24 4-5% slower (the kernels widen each
    weight as they read it). If a later OpenVINO decides otherwise, only the memory goes.
    """
    info = VariableInfo()
    info.data_shape, info.data_type, info.variable_id = ov.PartialShape([1]), ov.Type.f32, "float16_kernels"
    state = Variable(info)
    zero = ops.read_value(ops.constant(np.zeros(1, np.float32)), state)
    output = model.get_results()[0].input(0)
    source = output.get_source_output()
    added = ops.add(source, zero)
    names = source.get_names()
    source.get_tensor().set_names(set())
    added.output(0).get_tensor().set_names(names)
    output.replace_source_output(added.output(0))
    model.add_variables([state])
    model.add_sinks([ops.assign(zero, state)])
    model.validate_nodes_and_infer_types()
    return model


class _Compiled:
    """The converted encoder compiled for a device; called with the inputs it takes of a feed."""

    def __init__(self, model_dir: Path, device: str, properties: dict[str, Any], cache_dir: Path) -> None:
        self.ir = ir_location(cache_dir, model_dir)
        if not (self.ir / "encoder.xml").exists():
            convert_apart(model_dir, "openvino", cache_dir)
        core = ov.Core()
        model = core.read_model(self.ir / "encoder.xml")
        if device == "CPU":
            model = with_float16_kernels(model)
        self.model = core.compile_model(model, device, properties)
        del model
        # all read to compile, most copied: resident for nothing (the warm-up reads it all again)
        page_out(self.ir / WEIGHTS, read_again=True)
        self.inputs = {name for port in self.model.inputs for name in port.get_names()}

    def __call__(self, feed: dict[str, Any]) -> np.ndarray:
        return self.model({k: v for k, v in feed.items() if k in self.inputs})[0]

    def warm_up(self, max_tokens: int) -> None:
        """The CPU plugin packs the weights for its kernels on a first inference (a few tokens' and
        many tokens' kernels each their own way), reading the weights file again, whose pages then
        stayed resident: run both once and hand the pages back; what it reads in place afterwards
        (the token embeddings a text uses) comes back as used. Measured (all-MiniLM-L6-v2, float16
        IR, its weights then packed as float32): 20 MB less after serving, the packing (~55 MB on an
        AVX-512 CPU) now in the worker from the start."""
        for rows, length in WARM_UP_SHAPES:
            ids = np.zeros((rows, min(length, max_tokens)), dtype=np.int64)
            self({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": ids})
        page_out(self.ir / WEIGHTS)


class OpenVINOEmbedder(Embedder):
    def __init__(self, model_dir: Path, device: str, properties: dict[str, Any], cache_dir: Path) -> None:
        self.compiled = _Compiled(model_dir, device, properties, cache_dir)
        dimension = int(self.compiled.model.output(0).get_partial_shape()[2].get_length())
        tokenizer = load_tokenizer(model_dir)
        super().__init__(model_dir, tokenizer, "openvino", device.lower(), dimension)
        log.info("openvino embedder ready", device=device, ir=str(self.compiled.ir), dimension=dimension)

    def warm_up(self) -> None:
        self.compiled.warm_up(self.max_tokens)

    def hidden_states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.compiled({"input_ids": input_ids, "attention_mask": attention_mask})


class OpenVINOCrossEncoder(CrossEncoder):
    def __init__(self, model_dir: Path, device: str, properties: dict[str, Any], cache_dir: Path) -> None:
        self.compiled = _Compiled(model_dir, device, properties, cache_dir)
        super().__init__(model_dir, load_tokenizer(model_dir), "openvino", device.lower())
        log.info("openvino cross-encoder ready", device=device, ir=str(self.compiled.ir))

    def warm_up(self) -> None:
        self.compiled.warm_up(self.max_tokens)

    def logits(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.compiled(feed)
