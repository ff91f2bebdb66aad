"""Encoder models on ONNX Runtime: embeddings, and cross-encoder reranking. The encoder is exported
once to ONNX (dynamic batch and sequence axes, kept in the model cache) through torch.export and
torch.onnx's exporter, then run by an onnxruntime.InferenceSession. Pooling and normalization are
the shared Embedder's, scoring the CrossEncoder's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import structlog

from workers.engines.cross_encoder import CrossEncoder
from workers.engines.embedder import Embedder
from workers.engines.encoder_export import cache_location, export_encoder
from workers.engines.onnx.convert import require_convert_extra
from workers.model_cache import convert_apart, staged
from workers.model_files import load_tokenizer

log = structlog.get_logger()
ENCODER = "encoder.onnx"
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "dml": "DmlExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


def onnx_location(cache_dir: Path, model_dir: Path) -> Path:
    return cache_location(cache_dir / "onnx", model_dir)


def export_to_onnx(model_dir: Path, target: Path, classifier: bool = False) -> None:
    """Hugging Face encoder → target/encoder.onnx (written whole, then renamed)."""
    import torch

    require_convert_extra()
    log.info("exporting the encoder to ONNX", source=str(model_dir), target=str(target))
    program = export_encoder(model_dir, classifier)
    with staged(target, ENCODER) as staging:
        torch.onnx.export(program, f=str(staging.model / ENCODER), dynamo=True, external_data=False)


class _Session:
    """The exported encoder in an InferenceSession; called with the inputs it takes of a feed."""

    def __init__(self, model_dir: Path, provider: str, threads: int, cache_dir: Path) -> None:
        if provider not in PROVIDERS:
            raise ValueError(f"the onnx engine runs on {', '.join(PROVIDERS)}; not on {provider!r}")
        location = onnx_location(cache_dir, model_dir)
        if not (location / ENCODER).exists():
            convert_apart(model_dir, "onnx", cache_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(location / ENCODER), options, providers=[PROVIDERS[provider]])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.location = location

    def __call__(self, feed: dict[str, Any]) -> np.ndarray:
        return self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]


class OnnxEmbedder(Embedder):
    def __init__(self, model_dir: Path, provider: str, threads: int, cache_dir: Path) -> None:
        self.session = _Session(model_dir, provider, threads, cache_dir)
        dimension = int(self.session.session.get_outputs()[0].shape[-1])
        tokenizer = load_tokenizer(model_dir)
        super().__init__(model_dir, tokenizer, "onnx", provider, dimension)
        log.info(
            "onnx embedder ready", provider=provider, model=str(self.session.location), dimension=dimension
        )

    def hidden_states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session({"input_ids": input_ids, "attention_mask": attention_mask})


class OnnxCrossEncoder(CrossEncoder):
    def __init__(self, model_dir: Path, provider: str, threads: int, cache_dir: Path) -> None:
        self.session = _Session(model_dir, provider, threads, cache_dir)
        super().__init__(model_dir, load_tokenizer(model_dir), "onnx", provider)
        log.info("onnx cross-encoder ready", provider=provider, model=str(self.session.location))

    def logits(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session(feed)
