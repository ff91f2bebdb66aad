"""LoRA adapters on ONNX Runtime GenAI (`og.Adapters`, one active adapter per Generator).

ONNX Runtime GenAI's model builder, given a PEFT adapter, writes the LoRA branch of each targeted
layer into the graph (x A^T B^T, B pre-scaled) with the adapter's weights as constants. Built that
way once (fp32: int4 would quantize the LoRA weights too) and then changed here, those weights
become graph inputs whose defaults are zeros: with no adapter active the model is the base, and an
adapter file (`.onnx_adapter`, ONNX Runtime's format) of the same rank and target layers sets them
for the Generators it is made active on. So one model serves the base and any number of adapters
of that shape, each request its own.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime_genai as og

from protocol import Adapter
from workers.engines.base import RequestError
from workers.model_cache import entry
from workers.peft_lora import PeftLora, mismatch, read_peft

INPUTS = "lora_inputs.json"  # the LoRA inputs the built model takes: name → shape


def input_name(layer: str, half: str) -> str:
    """The builder's name for a layer's LoRA weight: model.layers.0.self_attn.q_proj →
    model.layers.0.attn.q_proj.lora_A.MatMul.weight."""
    return f"{layer.replace('.self_attn.', '.attn.')}.{half}.MatMul.weight"


def make_adapter_ready(model_dir: Path) -> None:
    """The built model's LoRA constants become inputs defaulting to zeros (the base), listed in
    lora_inputs.json. Needs the `onnx` package (the convert extra), as building does."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(model_dir / "model.onnx"))
    inputs = {}
    for initializer in model.graph.initializer:
        if ".lora_A.MatMul." in initializer.name or ".lora_B.MatMul." in initializer.name:
            weights = numpy_helper.to_array(initializer)
            initializer.CopyFrom(numpy_helper.from_array(np.zeros_like(weights), initializer.name))
            model.graph.input.append(
                helper.make_tensor_value_info(initializer.name, onnx.TensorProto.FLOAT, list(weights.shape))
            )
            inputs[initializer.name] = list(weights.shape)
    if not inputs:
        raise RuntimeError("the model builder wrote no LoRA weights into the model")
    for stale in model_dir.glob("model.onnx*"):
        stale.unlink()
    onnx.save(model, str(model_dir / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    (model_dir / INPUTS).write_text(json.dumps(inputs))


def shape_of(adapter_dir: Path) -> str:
    """What an adapter-ready model depends on: the rank and the targeted layers."""
    lora = read_peft(str(adapter_dir))
    return f"r{lora.rank}-" + "-".join(sorted(lora.pairs))


class OnnxAdapters:
    def __init__(self, cache_dir: Path, limit: int) -> None:
        self.cache, self.limit = cache_dir / "onnx-adapters", limit
        self.inputs: dict[str, list[int]] = {}
        self.adapters: Any = None  # og.Adapters, once bound to an adapter-ready model
        self.loaded: OrderedDict[str, tuple[str, float, PeftLora]] = OrderedDict()

    def bind(self, model: Any, model_dir: Path) -> OnnxAdapters:
        """To the model the engine serves (adapters only if it was built adapter-ready)."""
        path = model_dir / INPUTS
        if path.is_file():
            self.inputs = json.loads(path.read_text())
            self.adapters = og.Adapters(model)
        return self

    def get(self, adapter: Adapter, in_use: set[str]) -> PeftLora:
        """The adapter loaded (converted to ONNX Runtime's format once, into the cache)."""
        if self.adapters is None:
            raise RequestError(
                400,
                "unsupported_adapter",
                "this ONNX model was not built for LoRA adapters: give its worker --adapter-shape (a "
                "PEFT directory of the adapters' rank and layers; a models file does it for the "
                "adapters it declares)",
                "model",
            )
        found = self.loaded.get(adapter.name)
        if found is not None and found[:2] == (adapter.path, adapter.scale):
            self.loaded.move_to_end(adapter.name)
            return found[2]
        lora = read_peft(adapter.path)
        parameters = self._parameters(lora, adapter)
        weights = Path(adapter.path) / "adapter_model.safetensors"
        file = entry(self.cache, adapter.name, weights, extra=f"{adapter.scale}").with_suffix(".onnx_adapter")
        if not file.is_file():
            self._write(file, parameters)
        self.unload(adapter.name)
        while len(self.loaded) >= self.limit and (
            victim := next((n for n in self.loaded if n not in in_use), None)
        ):
            self.unload(victim)
        self.adapters.load(str(file), adapter.name)
        self.loaded[adapter.name] = (adapter.path, adapter.scale, lora)
        return lora

    def activate(self, generator: Any, name: str) -> None:
        generator.set_active_adapter(self.adapters, name)

    def unload(self, name: str) -> None:
        if self.loaded.pop(name, None) is not None and self.adapters is not None:
            self.adapters.unload(name)

    def _parameters(self, lora: PeftLora, adapter: Adapter) -> dict[str, np.ndarray]:
        out = {}
        built = sorted({name.split(".lora_")[0] for name in self.inputs})
        for layer, (a, b) in lora.pairs.items():
            for half, weights in (("lora_A", a.T), ("lora_B", b.T * (lora.factor * adapter.scale))):
                name = input_name(layer, half)
                if name not in self.inputs:
                    raise mismatch(
                        adapter.path,
                        f"`{layer}` is not a layer this ONNX model was built with LoRA on "
                        f"({', '.join(built[:2])}...)",
                    )
                if list(weights.shape) != self.inputs[name]:
                    raise mismatch(
                        adapter.path,
                        f"`{layer}` {half} is {list(weights.shape)}; this ONNX model was built for "
                        f"{self.inputs[name]} (another rank)",
                    )
                out[name] = np.ascontiguousarray(weights, dtype=np.float32)
        return out

    @staticmethod
    def _write(file: Path, parameters: dict[str, np.ndarray]) -> None:
        import onnxruntime as ort

        file.parent.mkdir(parents=True, exist_ok=True)
        adapter = ort.AdapterFormat()
        adapter.set_adapter_version(1)
        adapter.set_model_version(1)
        adapter.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in parameters.items()})
        staging = file.with_suffix(".partial")
        adapter.export_adapter(str(staging))
        staging.rename(file)
