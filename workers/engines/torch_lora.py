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

from workers.peft_lora import check_fits, read_peft


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
    """The adapter of each row of the current forward (None: the base alone); `version` changes
    whenever that or an adapter's weights or scale do, so each layer rebuilds its per-row stack."""

    def __init__(self) -> None:
        self.rows: tuple[str | None, ...] = ()
        self.version = 0


class LoRALinear(nn.Module):
    """A base nn.Linear plus the low-rank updates of the adapters that target it, per row: one
    adapter for every row is two matmuls; a mixed batch is two batched matmuls over per-row stacks
    of A and B (zeros for a row without an update here), rebuilt only when the rows change."""

    def __init__(self, base: nn.Linear, name: str, routing: _Routing) -> None:
        super().__init__()
        self.base, self.name, self.routing = base, name, routing
        self.pairs: dict[str, _Pair] = {}
        self._stack: tuple[int, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        rows = self.routing.rows
        used = {name for name in rows if name is not None and name in self.pairs}
        if not used:
            return out
        if len(set(rows)) == 1:  # every row the same adapter: PEFT's own order of operations
            pair = self.pairs[rows[0]]  # type: ignore[index]
            return out + (x @ pair.a.T) @ pair.b.T * pair.scale
        _, a, b, scales = self._stacked(x)
        return out + torch.bmm(torch.bmm(x, a), b) * scales

    def _stacked(self, x: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._stack is None or self._stack[0] != self.routing.version:
            rows = self.routing.rows
            rank = max(self.pairs[n].a.shape[0] for n in rows if n is not None and n in self.pairs)
            a = x.new_zeros((len(rows), self.base.in_features, rank))
            b = x.new_zeros((len(rows), rank, self.base.out_features))
            scales = x.new_zeros((len(rows), 1, 1))
            for i, name in enumerate(rows):
                pair = self.pairs.get(name) if name is not None else None
                if pair is not None:
                    r = pair.a.shape[0]
                    a[i, :, :r], b[i, :r, :], scales[i] = pair.a.T, pair.b.T, pair.scale
            self._stack = (self.routing.version, a, b, scales)
        return self._stack


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
        self.routing.version += 1
        return adapter

    def _scale(self, adapter: LoadedAdapter, scale: float) -> None:
        self.routing.version += 1
        for pair in adapter.pairs.values():
            pair.scale = pair.scale / adapter.scale * scale if adapter.scale else adapter.factor * scale
        adapter.scale = scale

    def unload(self, name: str) -> None:
        self.routing.version += 1
        if self.loaded.pop(name, None) is not None:
            for wrapper in self.wrapped.values():
                wrapper.pairs.pop(name, None)

    def route(self, rows: list[str | None]) -> None:
        """Set before a forward: row i of its batch uses adapter rows[i] (None: the base alone)."""
        if tuple(rows) != self.routing.rows:
            self.routing.rows = tuple(rows)
            self.routing.version += 1

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
        linears = {
            layer: module.base if isinstance(module, LoRALinear) else module
            for layer, module in self.model.named_modules()
            if isinstance(module, nn.Linear | LoRALinear)
        }
        shapes = {layer: (linear.in_features, linear.out_features) for layer, linear in linears.items()}
        check_fits(lora, shapes, self.model_type)
        parameter = next(self.model.parameters())
        pairs = {}
        for layer, (a, b) in lora.pairs.items():
            pair = (torch.from_numpy(t.copy()).to(parameter.device, parameter.dtype) for t in (a, b))
            pairs[layer] = _Pair(*pair, lora.factor * scale)
        return LoadedAdapter(name, path, lora.rank, lora.targets, pairs, lora.factor, scale)
