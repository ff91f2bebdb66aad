"""An encoder (an embedding model's, or a cross-encoder with its classifier head) as a
torch.export program (dynamic batch and sequence axes), which
both OpenVINO (convert_model) and ONNX (torch.onnx.export) convert: converting the torch module
directly fails on transformers 5's masking code, the exported program does not. And where those
conversions live in the model cache. A serving worker runs the conversion in a child process
(model_cache.convert_apart), so that torch, which only the export needs, does not stay in its memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workers.model_cache import entry


def cache_location(engine_cache: Path, model_dir: Path, extra: str = "") -> Path:
    """This model's directory under an engine's cache: named by the source's path and weights (and
    `extra`, what else decides the export)."""
    weights = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))
    return entry(engine_cache, model_dir.name, *weights, extra=extra)


def load_encoder(model_dir: Path, classifier: bool) -> Any:
    """The torch module: the bare encoder (hidden states out), or with its classifier (logits)."""
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification

    kind = AutoModelForSequenceClassification if classifier else AutoModel
    return kind.from_pretrained(model_dir, dtype=torch.float32).eval()


def export_encoder(model_dir: Path, classifier: bool = False) -> Any:
    """The Hugging Face encoder in model_dir as an ExportedProgram taking input_ids and
    attention_mask (and a classifier token_type_ids) of any batch size and length up to the
    model's positions; its first output is the hidden states, or a classifier's logits."""
    import inspect

    import torch

    model = load_encoder(model_dir, classifier)
    types = classifier and "token_type_ids" in inspect.signature(model.forward).parameters
    names = ["input_ids", "attention_mask", *(["token_type_ids"] if types else [])]
    # a tensor each: one tensor twice and export would tie the inputs
    inputs = {name: torch.ones((2, 16), dtype=torch.long) for name in names}
    if types:
        inputs["token_type_ids"] = torch.zeros((2, 16), dtype=torch.long)
    batch = torch.export.Dim("batch")
    tokens = torch.export.Dim("tokens", max=model.config.max_position_embeddings)
    axes = {0: batch, 1: tokens}
    return torch.export.export(model, (), inputs, dynamic_shapes={name: axes for name in names})
