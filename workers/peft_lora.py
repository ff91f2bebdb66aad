"""A PEFT LoRA directory (adapter_config.json + adapter_model.safetensors) read without PEFT: its
rank, its scaling (lora_alpha / r, or / sqrt(r) with rsLoRA) and, for each linear layer it
targets, the pair A (r x in) and B (out x r) as numpy arrays, keyed by the layer's name in the base
model (`model.layers.0.self_attn.q_proj`). What an engine does with them is its own."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workers.engines.base import RequestError

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"


@dataclass
class PeftLora:
    path: str
    rank: int
    factor: float  # PEFT's scaling: multiplies B A x
    pairs: dict[str, tuple[np.ndarray, np.ndarray]]  # layer → (A, B)

    @property
    def targets(self) -> list[str]:
        return sorted({name.rsplit(".", 1)[-1] for name in self.pairs})


def mismatch(path: str, reason: str) -> RequestError:
    message = f"The adapter at {path} does not fit this model: {reason}"
    return RequestError(400, "adapter_mismatch", message, "lora_path")


def read_peft(path: str) -> PeftLora:
    from safetensors.numpy import load_file

    directory = Path(path)
    if not (directory / CONFIG).is_file() or not (directory / WEIGHTS).is_file():
        message = f"{path} is not a PEFT LoRA directory ({CONFIG} and {WEIGHTS})"
        raise RequestError(400, "invalid_adapter", message, "lora_path")
    config = json.loads((directory / CONFIG).read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise mismatch(path, f"it is a {config.get('peft_type')} adapter, not LoRA")
    for option in ("use_dora", "fan_in_fan_out"):
        if config.get(option):
            raise mismatch(path, f"`{option}` adapters are not served here")
    rank = int(config["r"])
    alpha = float(config.get("lora_alpha", rank))
    factor = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    halves: dict[str, dict[str, np.ndarray]] = {}
    for key, tensor in load_file(str(directory / WEIGHTS)).items():
        half = "lora_A" if ".lora_A." in key else "lora_B" if ".lora_B." in key else None
        if half is None:
            raise mismatch(path, f"it holds {key!r}, which is not a LoRA weight this server applies")
        layer = key.split(f".{half}.")[0].removeprefix("base_model.model.")
        halves.setdefault(layer, {})[half] = tensor
    pairs = {}
    for layer, both in halves.items():
        a, b = both.get("lora_A"), both.get("lora_B")
        if a is None or b is None:
            raise mismatch(path, f"`{layer}` lacks its lora_A or lora_B weight")
        if a.shape[0] != rank or b.shape[1] != rank:
            raise mismatch(path, f"`{layer}`'s A {a.shape} and B {b.shape} are not of rank {rank}")
        pairs[layer] = (a, b)
    if not pairs:
        raise mismatch(path, "it holds no LoRA weights")
    return PeftLora(path, rank, factor, pairs)


def check_fits(lora: PeftLora, shapes: dict[str, tuple[int, int]], model: str) -> None:
    """Refuse an adapter that targets a linear layer `shapes` (layer → (in, out)) lacks, or whose
    A and B do not fit that layer's shape."""
    for layer, (a, b) in lora.pairs.items():
        if layer not in shapes:
            raise mismatch(lora.path, f"it targets `{layer}`, a linear layer this {model} lacks")
        fan_in, fan_out = shapes[layer]
        if a.shape != (lora.rank, fan_in) or b.shape != (fan_out, lora.rank):
            raise mismatch(
                lora.path,
                f"`{layer}` is {fan_in} -> {fan_out} here, the adapter's A {tuple(a.shape)} and "
                f"B {tuple(b.shape)} with rank {lora.rank} do not fit it",
            )


def decoder_shapes(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """The linear layers (in, out) of a Llama-style decoder (Llama, Mistral, Qwen2, SmolLM...) from its
    config.json, named as in the Hugging Face model: for an engine whose model keeps no such names."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head = config.get("head_dim") or hidden // heads
    kv = config.get("num_key_value_heads") or heads
    inner = config["intermediate_size"]
    layer = {
        "self_attn.q_proj": (hidden, heads * head),
        "self_attn.k_proj": (hidden, kv * head),
        "self_attn.v_proj": (hidden, kv * head),
        "self_attn.o_proj": (heads * head, hidden),
        "mlp.gate_proj": (hidden, inner),
        "mlp.up_proj": (hidden, inner),
        "mlp.down_proj": (inner, hidden),
    }
    return {
        f"model.layers.{i}.{name}": shape
        for i in range(config["num_hidden_layers"])
        for name, shape in layer.items()
    }
