"""A GGUF as a Hugging Face directory of float32 weights, made once into the model cache: for the
converters that read only that layout (ONNX Runtime GenAI's model builder, optimum-intel) and for the
torch engine, which reads it in about a second where transformers takes about 40 s to read the GGUF
itself (its tokenizer and weights converted on every load). The weights are the GGUF's, de-quantized
exactly as transformers does on load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from workers.model_cache import entry, staged


def as_hf_directory(source: Path, cache_dir: Path, say: Callable[[str], None]) -> Path:
    """The source as a Hugging Face directory: itself, or the GGUF's in the cache (made now if the
    cache does not have it yet)."""
    if source.suffix == ".gguf":
        target = entry(cache_dir / "hf", source.stem, source)
        if not (target / "config.json").is_file():
            say(f"turning {source.name} into a Hugging Face directory (float32) with transformers")
            with staged(target, "config.json") as staging:
                gguf_to_hf(source, staging.model)
        return target
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
