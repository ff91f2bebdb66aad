"""LoRA adapters on the torch engine, several on one base model in one batch.

An adapter is a PEFT directory (adapter_config.json + adapter_model.safetensors), read here without
PEFT: for each targeted linear layer a low-rank pair A (r x in) and B (out x r), and a scale
(lora_alpha / r, or / sqrt(r) with rsLoRA, times the scale it is served with). The targeted layers
of the base model are wrapped once; a wrapped layer adds, to the rows of the batch that use an
adapter, that adapter's update x A^T B^T * scale, as multi-LoRA servers (and PEFT's mixed-batch
inference) do. Rows with no adapter, and layers an adapter does not target, are the base alone.
Before each forward the engine says which adapter each row uses (`route`).

Adapters are loaded once and kept, the least recently used one dropped past `limit` (one a running
sequence uses is never dropped). One that does not fit the base (another architecture, a target
module the base lacks, shapes that differ, a rank that is not its config's) is refused with the
reason.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from workers.peft_lora import mismatch, read_peft


@dataclass
class _Pair:
    a: torch.Tensor  # r x in
    b: torch.Tensor  # out x r
    scale: float


@dataclass
class LoadedAdapter:
    name: str
    path: str
    rank: int
    targets: list[str]
    pairs: dict[str, _Pair]  # module name in the base → its low-rank pair
    factor: float  # PEFT's lora_alpha / r
    scale: float  # what it is served with (each pair's scale: factor x scale)


class _Routing:
    """Which rows of the current forward use which adapter: (adapter name, row index tensor)."""

    def __init__(self) -> None:
        self.groups: list[tuple[str, torch.Tensor]] = []


class LoRALinear(nn.Module):
    """A base nn.Linear plus the low-rank updates of the adapters that target it, per row."""

    def __init__(self, base: nn.Linear, name: str, routing: _Routing) -> None:
        super().__init__()
        self.base, self.name, self.routing = base, name, routing
        self.pairs: dict[str, _Pair] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        for adapter, rows in self.routing.groups:
            pair = self.pairs.get(adapter)
            if pair is not None:
                part = x.index_select(0, rows)
                out.index_add_(0, rows, (part @ pair.a.T) @ pair.b.T * pair.scale)
        return out


class Adapters:
    def __init__(self, model: nn.Module, limit: int) -> None:
        self.model, self.limit = model, limit
        self.routing = _Routing()
        self.loaded: OrderedDict[str, LoadedAdapter] = OrderedDict()
        self.wrapped: dict[str, LoRALinear] = {}
        self.model_type = str(getattr(model.config, "model_type", ""))

    def get(self, name: str, path: str, scale: float, in_use: set[str]) -> LoadedAdapter:
        """The adapter, loaded from `path` if it is not (or was loaded from another path)."""
        found = self.loaded.get(name)
        if found is not None and found.path == path:
            self.loaded.move_to_end(name)
            if found.scale != scale:
                self._scale(found, scale)
            return found
        adapter = self._read(name, path, scale)
        self.unload(name)
        self._evict(in_use | {name})
        for module_name, pair in adapter.pairs.items():
            self._wrap(module_name).pairs[name] = pair
        self.loaded[name] = adapter
        return adapter

    def _scale(self, adapter: LoadedAdapter, scale: float) -> None:
        for pair in adapter.pairs.values():
            pair.scale = pair.scale / adapter.scale * scale if adapter.scale else adapter.factor * scale
        adapter.scale = scale

    def unload(self, name: str) -> None:
        if self.loaded.pop(name, None) is not None:
            for wrapper in self.wrapped.values():
                wrapper.pairs.pop(name, None)

    def route(self, rows: list[str | None]) -> None:
        """Set before a forward: row i of its batch uses adapter rows[i] (None: the base alone)."""
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(rows):
            if name is not None:
                groups.setdefault(name, []).append(i)
        device = next(self.model.parameters()).device
        self.routing.groups = [(n, torch.tensor(ix, device=device)) for n, ix in groups.items()]

    def _evict(self, keep: set[str]) -> None:
        while len(self.loaded) >= self.limit:
            victim = next((n for n in self.loaded if n not in keep), None)
            if victim is None:
                return  # every loaded one is in use: one more for now
            self.unload(victim)

    def _wrap(self, module_name: str) -> LoRALinear:
        if module_name in self.wrapped:
            return self.wrapped[module_name]
        parent_name, _, child = module_name.rpartition(".")
        parent = self.model.get_submodule(parent_name)
        wrapper = LoRALinear(getattr(parent, child), module_name, self.routing)
        setattr(parent, child, wrapper)
        self.wrapped[module_name] = wrapper
        return wrapper

    def _read(self, name: str, path: str, scale: float) -> LoadedAdapter:
        lora = read_peft(path)
        modules = dict(self.model.named_modules())
        parameter = next(self.model.parameters())
        pairs = {}
        for layer, (a, b) in lora.pairs.items():
            target = modules.get(layer)
            if isinstance(target, LoRALinear):
                target = target.base
            if not isinstance(target, nn.Linear):
                raise mismatch(path, f"it targets `{layer}`, a linear layer this {self.model_type} lacks")
            if a.shape != (lora.rank, target.in_features) or b.shape != (target.out_features, lora.rank):
                raise mismatch(
                    path,
                    f"`{layer}` is {target.in_features} -> {target.out_features} here, the adapter's "
                    f"A {tuple(a.shape)} and B {tuple(b.shape)} with rank {lora.rank} do not fit it",
                )
            pair = (torch.from_numpy(t.copy()).to(parameter.device, parameter.dtype) for t in (a, b))
            pairs[layer] = _Pair(*pair, lora.factor * scale)
        return LoadedAdapter(name, path, lora.rank, lora.targets, pairs, lora.factor, scale)
