"""Embeddings on torch: the encoder (a transformers AutoModel) from a Hugging Face directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import structlog
import torch
from transformers import AutoModel

from workers.engines.embedder import Embedder
from workers.model_files import load_tokenizer

log = structlog.get_logger()


class TorchEmbedder(Embedder):
    def __init__(self, model_dir: Path, device: str, threads: int) -> None:
        torch.set_num_threads(threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).to(self.device).eval()
        dimension = int(self.model.config.hidden_size)
        super().__init__(model_dir, load_tokenizer(model_dir), "torch", self.device.type, dimension)
        log.info("torch embedder ready", device=self.device.type, dimension=dimension, threads=threads)

    @torch.inference_mode()
    def hidden_states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        out = self.model(
            input_ids=torch.from_numpy(input_ids).to(self.device),
            attention_mask=torch.from_numpy(attention_mask).to(self.device),
        )
        return out.last_hidden_state.float().cpu().numpy()
