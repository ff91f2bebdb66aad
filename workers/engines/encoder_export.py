"""An embedding model's encoder as a torch.export program (dynamic batch and sequence axes), which
both OpenVINO (convert_model) and ONNX (torch.onnx.export) convert: converting the torch module
directly fails on transformers 5's masking code, the exported program does not. And where those
conversions live in the model cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.model_cache import entry


def cache_location(engine_cache: Path, model_dir: Path) -> Path:
    """This model's directory under an engine's cache: named by the source's path and weights."""
    weights = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))
    return entry(engine_cache, model_dir.name, *weights)


def export_encoder(model_dir: Path) -> Any:
    """The Hugging Face encoder in model_dir as an ExportedProgram taking input_ids and
    attention_mask of any batch size and length up to the model's positions."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids, mask = torch.ones((2, 16), dtype=torch.long), torch.ones((2, 16), dtype=torch.long)
    batch = torch.export.Dim("batch")
    tokens = torch.export.Dim("tokens", max=model.config.max_position_embeddings)
    axes = {0: batch, 1: tokens}
    return torch.export.export(
        model,
        (),
        {"input_ids": ids, "attention_mask": mask},  # one tensor twice: export would tie the inputs
        dynamic_shapes={"input_ids": axes, "attention_mask": axes},
    )
