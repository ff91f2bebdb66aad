"""Embeddings on OpenVINO: the encoder converted once to OpenVINO IR (kept in the model cache),
then run by the OpenVINO runtime. Pooling and normalization are the shared Embedder's.

The conversion goes through torch.export (dynamic batch and sequence axes) and
openvino.convert_model: converting the torch module directly fails on transformers 5's masking
code, the exported program does not.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import numpy as np
import openvino as ov
import structlog

from workers.engines.embedder import Embedder
from workers.model_files import load_tokenizer

log = structlog.get_logger()


def ir_location(cache_dir: Path, model_dir: Path) -> Path:
    """Where the IR of this model lives in the cache: named by the source's path and weights."""
    weights = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))
    stamp = "|".join(f"{p.resolve()}:{p.stat().st_size}" for p in weights)
    return cache_dir / "openvino" / f"{model_dir.name}-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}"


def convert_encoder(model_dir: Path, target: Path) -> None:
    """Hugging Face encoder → OpenVINO IR at target/encoder.xml (written whole, then renamed)."""
    import torch
    from transformers import AutoModel

    log.info("converting the encoder to OpenVINO IR", source=str(model_dir), target=str(target))
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids, mask = torch.ones((2, 16), dtype=torch.long), torch.ones((2, 16), dtype=torch.long)
    batch, tokens = (
        torch.export.Dim("batch"),
        torch.export.Dim("tokens", max=model.config.max_position_embeddings),
    )
    axes = {0: batch, 1: tokens}
    program = torch.export.export(
        model,
        (),
        {"input_ids": ids, "attention_mask": mask},  # tensor twice: export would tie the inputs
        dynamic_shapes={"input_ids": axes, "attention_mask": axes},
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
    try:
        ov.save_model(ov.convert_model(program), staging / "encoder.xml", compress_to_fp16=False)
        staging.rename(target)
    except OSError:
        if not (target / "encoder.xml").exists():  # another worker may have finished first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class OpenVINOEmbedder(Embedder):
    def __init__(self, model_dir: Path, device: str, threads: int, cache_dir: Path) -> None:
        ir = ir_location(cache_dir, model_dir)
        if not (ir / "encoder.xml").exists():
            convert_encoder(model_dir, ir)
        properties = {"INFERENCE_NUM_THREADS": threads} if device == "CPU" else {}
        self.model = ov.Core().compile_model(ir / "encoder.xml", device, properties)
        dimension = int(self.model.output(0).get_partial_shape()[2].get_length())
        super().__init__(model_dir, load_tokenizer(model_dir), "openvino", device.lower(), dimension)
        log.info("openvino embedder ready", device=device, ir=str(ir), dimension=dimension)

    def hidden_states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.model({"input_ids": input_ids, "attention_mask": attention_mask})[0]
