"""A LoRA adapter on OpenVINO GenAI. Its continuous-batching pipeline takes adapters when it is built
and asserts that every request carries the same ones, so an adapter here is served by a worker of
its own: the base model with the adapter applied to every request (`--adapter`), sharing nothing
with the base's workers. OpenVINO GenAI finds the layers an adapter targets by their names in the
IR, so that IR is optimum-intel's export of the Hugging Face model (the one made from a GGUF's own
weights names none of its layers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openvino_genai as ov_genai

from workers.engines.openvino.convert import IR_FILE
from workers.peft_lora import WEIGHTS, PeftLora, check_fits, decoder_shapes, mismatch, read_peft


def checked(path: str, config: dict[str, Any]) -> PeftLora:
    """The adapter, refused with the reason unless it fits the model of this config.json."""
    lora = read_peft(path)
    check_fits(lora, decoder_shapes(config), str(config.get("model_type", "model")))
    return lora


def adapter_config(path: Path, scale: float, ir: Path, config: dict[str, Any]) -> ov_genai.AdapterConfig:
    """The pipeline's adapter: PEFT's scaling (lora_alpha / r) times the scale asked for."""
    lora = checked(str(path), config)
    graph = (ir / IR_FILE).read_text(errors="replace")
    if not any(layer in graph for layer in lora.pairs):
        raise mismatch(
            str(path),
            f"the OpenVINO IR {ir} does not name the layers it targets (an IR made from a GGUF's own "
            "weights names none); serve it from an optimum-intel export (--openvino-weight-format)",
        )
    adapter = ov_genai.Adapter(str(path / WEIGHTS))
    return ov_genai.AdapterConfig(adapter, lora.factor * scale, ov_genai.AdapterConfig.Mode.MODE_FUSE)
