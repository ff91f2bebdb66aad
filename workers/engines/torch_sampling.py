"""Next-token choice for a batch whose rows each carry their own sampling parameters."""

from __future__ import annotations

import os
from collections import Counter

import msgspec
import torch

from protocol import SamplingParams


class RowSampler:
    """One sequence's sampling state: parameters, its random generator, the tokens it has seen."""

    def __init__(self, params: SamplingParams, prompt_ids: list[int]) -> None:
        if params.temperature is None or params.top_p is None:  # the worker fills the model's own
            params = msgspec.structs.replace(
                params,
                temperature=1.0 if params.temperature is None else params.temperature,
                top_p=params.top_p or 1.0,
            )
        self.p = params
        seed = params.seed if params.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
        self.generator = torch.Generator().manual_seed(seed % 2**64)  # OpenAI seeds may be negative
        # below this, logits / temperature overflows to inf and the draw is the argmax anyway
        self.greedy = params.greedy
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

    def choose(self, logits: torch.Tensor, penalised: bool = False) -> int:
        """The full-vocabulary path: every rule applied over all tokens."""
        if self.penalised and not penalised:
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
            cut = before >= p.top_p
            cut[0] = False  # the most likely token always stays (a top_p of 5e-324 is 0 in float32)
            sorted_probs = sorted_probs.masked_fill(cut, 0.0)
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


# Sampling draws from the most likely tokens only when the truncation (top_k, min_p, top_p) is
# certain to fall among them; their probabilities are normalised over the whole vocabulary first,
# so the draw is exactly the full-vocabulary one. Other rows take the full path.
CANDIDATES = 64


def choose_tokens(logits: torch.Tensor, samplers: list[RowSampler]) -> list[int]:
    """One token per row of `logits` [rows, vocab]."""
    if all(s.greedy and not s.penalised for s in samplers):
        return logits.argmax(dim=-1).tolist()
    rows = [s._penalise(logits[i].clone()) if s.penalised else logits[i] for i, s in enumerate(samplers)]
    tokens = [int(row.argmax()) if s.greedy else -1 for s, row in zip(samplers, rows, strict=True)]
    sampled = [i for i, s in enumerate(samplers) if not s.greedy]
    if not sampled:
        return tokens
    k = min(CANDIDATES, logits.shape[1])
    params = [samplers[i].p for i in sampled]
    scaled = torch.stack([rows[i] for i in sampled]) / torch.tensor([[p.temperature] for p in params])
    values, candidates = scaled.topk(k, dim=-1)
    probs = (values - torch.logsumexp(scaled, dim=-1, keepdim=True)).exp()
    column = torch.arange(k).unsqueeze(0)
    top_k = torch.tensor([[p.top_k if p.top_k > 0 else k] for p in params])
    min_p = torch.tensor([[p.min_p] for p in params])
    top_p = torch.tensor([[p.top_p] for p in params])
    before = probs.cumsum(-1) - probs
    keep = (column < top_k) & (probs >= min_p * probs[:, :1]) & (before < top_p)
    keep[:, 0] = True  # the most likely token always stays, however small top_p is
    # exact within the candidates if some rule already cut inside them
    exact = (top_k[:, 0] <= k) | ~keep[:, -1] | (before[:, -1] + probs[:, -1] >= top_p[:, 0])
    kept = probs * keep
    for row, i in enumerate(sampled):
        sampler = samplers[i]
        if exact[row]:
            pick = torch.multinomial(kept[row], 1, generator=sampler.generator)
            tokens[i] = int(candidates[row, pick])
        else:
            tokens[i] = sampler.choose(rows[i], penalised=True)
    return tokens
