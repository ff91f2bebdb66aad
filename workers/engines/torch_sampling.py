"""Next-token choice for a batch whose rows each carry their own sampling parameters."""

from __future__ import annotations

import os
from collections import Counter

import torch

from protocol import SamplingParams


class RowSampler:
    """One sequence's sampling state: parameters, its random generator, the tokens it has seen."""

    def __init__(self, params: SamplingParams, prompt_ids: list[int]) -> None:
        self.p = params
        seed = params.seed if params.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
        self.generator = torch.Generator().manual_seed(seed)
        self.greedy = params.temperature == 0.0
        self.penalised = (
            params.repetition_penalty != 1.0
            or params.presence_penalty != 0.0
            or params.frequency_penalty != 0.0
        )
        self.seen = set(prompt_ids)  # for repetition_penalty: prompt and output
        self.counts: Counter[int] = Counter()  # for presence/frequency: output only

    def record(self, token: int) -> None:
        if self.penalised:
            self.seen.add(token)
            self.counts[token] += 1

    def choose(self, logits: torch.Tensor) -> int:
        if self.penalised:
            logits = self._penalise(logits.clone())
        if self.greedy:
            return int(logits.argmax())
        p = self.p
        logits = logits / p.temperature
        if 0 < p.top_k < logits.shape[0]:
            kth = torch.topk(logits, p.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if p.min_p > 0.0:
            probs = probs.masked_fill(probs < p.min_p * probs.max(), 0.0)
        if p.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            before = sorted_probs.cumsum(0) - sorted_probs  # mass strictly above each token
            sorted_probs = sorted_probs.masked_fill(before >= p.top_p, 0.0)
            return int(order[torch.multinomial(sorted_probs, 1, generator=self.generator)])
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def _penalise(self, logits: torch.Tensor) -> torch.Tensor:
        p = self.p
        if p.repetition_penalty != 1.0 and self.seen:
            idx = torch.tensor(list(self.seen), dtype=torch.long)
            picked = logits[idx]
            logits[idx] = torch.where(
                picked > 0, picked / p.repetition_penalty, picked * p.repetition_penalty
            )
        if self.counts and (p.presence_penalty or p.frequency_penalty):
            idx = torch.tensor(list(self.counts), dtype=torch.long)
            counts = torch.tensor(list(self.counts.values()), dtype=logits.dtype)
            logits[idx] -= counts * p.frequency_penalty + p.presence_penalty
        return logits


def choose_tokens(logits: torch.Tensor, samplers: list[RowSampler]) -> list[int]:
    """One token per row of `logits` [rows, vocab]."""
    if all(s.greedy and not s.penalised for s in samplers):
        return logits.argmax(dim=-1).tolist()
    return [s.choose(row) for s, row in zip(samplers, logits, strict=True)]
