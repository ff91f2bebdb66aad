"""Encoder models on torch, from a Hugging Face directory: embeddings (transformers' AutoModel)
and cross-encoder reranking (its *ForSequenceClassification)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from workers.engines.cross_encoder import CrossEncoder
from workers.engines.embedder import Embedder
from workers.engines.encoder_export import load_encoder
from workers.model_files import load_tokenizer

log = structlog.get_logger()


def _device(device: str, threads: int) -> torch.device:
    torch.set_num_threads(threads)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


@torch.inference_mode()
def _forward(model: Any, device: torch.device, feed: dict[str, np.ndarray]) -> Any:
    return model(**{name: torch.from_numpy(array).to(device) for name, array in feed.items()})


class TorchEmbedder(Embedder):
    def __init__(self, model_dir: Path, device: str, threads: int) -> None:
        self.device = _device(device, threads)
        self.model = load_encoder(model_dir, classifier=False).to(self.device)
        dimension = int(self.model.config.hidden_size)
        tokenizer = load_tokenizer(model_dir)
        super().__init__(model_dir, tokenizer, "torch", self.device.type, dimension)
        log.info("torch embedder ready", device=self.device.type, dimension=dimension, threads=threads)

    def hidden_states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        return _forward(self.model, self.device, feed).last_hidden_state.float().cpu().numpy()


class TorchCrossEncoder(CrossEncoder):
    def __init__(self, model_dir: Path, device: str, threads: int) -> None:
        self.device = _device(device, threads)
        self.model = load_encoder(model_dir, classifier=True).to(self.device)
        self.inputs = set(inspect.signature(self.model.forward).parameters)
        super().__init__(model_dir, load_tokenizer(model_dir), "torch", self.device.type)
        log.info("torch cross-encoder ready", device=self.device.type, scores=self.convention)

    def logits(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        feed = {name: array for name, array in feed.items() if name in self.inputs}
        return _forward(self.model, self.device, feed).logits.float().cpu().numpy()
