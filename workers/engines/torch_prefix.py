"""The torch engine's prefix cache: the KV of a prompt's prefill, kept after its sequence joins the
batch, so that a later prompt that starts the same way (a system prompt, the earlier turns of a
conversation) prefills only what is new. Bounded by the tokens it holds, least recently used out
first. Keyed by adapter too: a LoRA adapter changes the keys and values."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers.cache_utils import Cache, DynamicCache

MIN_REUSE = 32  # tokens: a shorter common start is prefilled again


@dataclass(eq=False)  # entries are told apart by identity
class _Entry:
    adapter: str | None
    ids: np.ndarray
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # [1, kv heads, len(ids), head dim] each


class PrefixCache:
    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._entries: list[_Entry] = []  # least recently used first
        self.reused = 0  # prompt tokens not prefilled again, in all

    @property
    def tokens(self) -> int:
        return sum(len(e.ids) for e in self._entries)

    def keep(self, ids: list[int], adapter: str | None, cache: Cache) -> None:
        """Keep the cache of these prompt positions (the cache is not used again by its owner)."""
        if not MIN_REUSE <= len(ids) <= self.max_tokens:
            return
        key = np.asarray(ids, dtype=np.int64)
        for entry in self._entries:
            if entry.adapter == adapter and np.array_equal(entry.ids, key):
                self._touch(entry)
                return
        layers = [(layer.keys.contiguous(), layer.values.contiguous()) for layer in cache.layers]
        self._entries.append(_Entry(adapter, key, layers))
        while self.tokens > self.max_tokens:
            self._entries.pop(0)

    def longest(self, ids: list[int], adapter: str | None) -> DynamicCache | None:
        """A cache of the most positions of `ids` a kept prompt covers, to prefill on from (its own
        tensors: prefilling on makes new ones, the kept ones stay as they are); None if too few."""
        key = np.asarray(ids, dtype=np.int64)
        best, found = 0, None
        for entry in self._entries:
            if entry.adapter != adapter:
                continue
            n = min(len(key), len(entry.ids))
            differ = np.flatnonzero(entry.ids[:n] != key[:n])
            common = int(differ[0]) if differ.size else n
            if common > best:
                best, found = common, entry
        if found is None or best < MIN_REUSE:
            return None
        self._touch(found)
        self.reused += best
        return DynamicCache([(k[:, :, :best], v[:, :, :best]) for k, v in found.layers])

    def forget(self, adapter: str) -> None:
        """An adapter unloaded: what was kept under its name goes (the name may come back as another)."""
        self._entries = [e for e in self._entries if e.adapter != adapter]

    def _touch(self, entry: _Entry) -> None:
        self._entries.remove(entry)
        self._entries.append(entry)
