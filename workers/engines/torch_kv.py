"""A KV cache for a batch whose rows join and leave between decode steps (continuous batching).

Rows are left-padded to a common length L: row i holds its `L - pad[i]` real positions at the
right end. Each layer keeps its keys and values in a preallocated buffer that grows by doubling, so
a decode step writes one column in place instead of concatenating the whole cache. A new sequence is
prefilled alone and copied in as a new row; a finished one is dropped at once, and columns that are
padding in every row are trimmed away.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class _BufferLayer(DynamicLayer):
    """One layer's [rows, heads, capacity, head_dim] buffers; `keys`/`values` view the filled part."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, length: int) -> None:
        super().__init__()
        self.buf_k, self.buf_v, self.length = k, v, length
        self.dtype, self.device = k.dtype, k.device
        self.is_initialized = True
        self._views()

    def _views(self) -> None:
        self.keys = self.buf_k[:, :, : self.length]
        self.values = self.buf_v[:, :, : self.length]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + key_states.shape[-2]
        if end > self.buf_k.shape[2]:
            self.buf_k, self.buf_v = (
                _regrow(b, self.length, max(end, 2 * b.shape[2])) for b in (self.buf_k, self.buf_v)
            )
        self.buf_k[:, :, self.length : end] = key_states
        self.buf_v[:, :, self.length : end] = value_states
        self.length = end
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length


def _regrow(buf: torch.Tensor, length: int, capacity: int) -> torch.Tensor:
    out = buf.new_zeros((buf.shape[0], buf.shape[1], capacity, buf.shape[3]))
    out[:, :, :length] = buf[:, :, :length]
    return out


class BatchKV:
    """The running batch's cache: rows, their left padding, and the `Cache` handed to the model."""

    def __init__(
        self, n_layers: int, n_kv_heads: int, head_dim: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        self._shape = (n_layers, n_kv_heads, head_dim)
        self._dtype, self._device = dtype, device
        self.pad = torch.zeros(0, dtype=torch.long, device=device)
        self.cache = self._build([(self._empty(0), self._empty(0)) for _ in range(n_layers)], 0)

    @property
    def rows(self) -> int:
        return int(self.pad.shape[0])

    @property
    def length(self) -> int:
        """Columns filled in every row (the model's forward advances it in each layer)."""
        return self._layers()[0].length

    def _empty(self, rows: int, capacity: int = 0) -> torch.Tensor:
        _, heads, dim = self._shape
        return torch.zeros((rows, heads, capacity, dim), dtype=self._dtype, device=self._device)

    def _build(self, kv: list[tuple[torch.Tensor, torch.Tensor]], length: int) -> Cache:
        return Cache(layers=[_BufferLayer(k, v, length) for k, v in kv])

    def add(self, prefix: Cache | None, n: int) -> None:
        """Append a row holding a sequence's first `n` positions (`prefix` is its own cache)."""
        new_len = max(self.length, n)
        shift = new_len - self.length
        capacity = max(new_len + 64, *(layer.buf_k.shape[2] for layer in self._layers()))
        kv = []
        for i, layer in enumerate(self._layers()):
            pair = []
            for old, new in ((layer.buf_k, _prefix(prefix, i, 0)), (layer.buf_v, _prefix(prefix, i, 1))):
                buf = self._empty(self.rows + 1, capacity)
                buf[:-1, :, shift:new_len] = old[:, :, : self.length]
                if n:
                    buf[-1, :, new_len - n : new_len] = new[0]
                pair.append(buf)
            kv.append((pair[0], pair[1]))
        self.pad = torch.cat([self.pad + shift, self.pad.new_tensor([new_len - n])])
        self.cache = self._build(kv, new_len)

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows, in this order, and trim columns that are padding in all of them."""
        index = torch.tensor(rows, dtype=torch.long, device=self._device)
        self.pad = self.pad.index_select(0, index)
        trim = int(self.pad.min()) if rows else self.length
        for layer in self._layers():
            layer.buf_k = layer.buf_k.index_select(0, index)[:, :, trim:]
            layer.buf_v = layer.buf_v.index_select(0, index)[:, :, trim:]
            layer.length -= trim
            layer._views()
        self.pad -= trim

    def next_inputs(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Attention mask and position ids for one more token in every row."""
        positions = (self.length - self.pad).unsqueeze(1)
        if not bool(self.pad.any()):
            return None, positions
        cols = torch.arange(self.length + 1, device=self._device)
        return (cols.unsqueeze(0) >= self.pad.unsqueeze(1)).long(), positions

    def _layers(self) -> list[_BufferLayer]:
        return self.cache.layers  # type: ignore[return-value]


def _prefix(prefix: Cache | None, layer: int, which: int) -> torch.Tensor:
    if prefix is None:
        return torch.empty(0)
    lay = prefix.layers[layer]
    return lay.keys if which == 0 else lay.values
