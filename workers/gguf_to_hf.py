"""A GGUF as a Hugging Face directory, for the converters that read only that layout (ONNX Runtime
GenAI's model builder, optimum-intel)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def as_hf_directory(source: Path, scratch: Path, say: Callable[[str], None]) -> Path:
    """The source as a Hugging Face directory: itself, or a GGUF turned into one under `scratch`."""
    if source.suffix == ".gguf":
        say(f"turning {source.name} into a Hugging Face directory (float32) with transformers")
        gguf_to_hf(source, scratch / "hf")
        return scratch / "hf"
    if not (source / "config.json").is_file():
        raise ValueError(f"{source} is neither a GGUF file nor a Hugging Face directory")
    return source


def gguf_to_hf(gguf: Path, target: Path) -> None:
    """transformers de-quantizes a GGUF on load but will not save a model it calls quantized, so the
    weights move into a plain float32 model of the same config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(target)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(target)
