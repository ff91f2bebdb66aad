"""Log-probabilities as the routes give them: each token's bytes, its log-probability and the most
likely alternatives at its position.

The values are the log-softmax of the model's logits over the whole vocabulary, before the
request's temperature, penalties, top-k/top-p/min-p truncation and grammar mask: what vLLM
returns by default (`raw_logprobs`) and what a teacher-forced likelihood (lm-eval) needs."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from protocol import TokenLogprob
from workers.tokenization import piece

if TYPE_CHECKING:  # tensors come from the engines that compute values; OpenVINO's only names pieces
    import torch


class Pieces:
    """Each token id's bytes, from the model's tokenizer, remembered."""

    def __init__(self, tokenizer: Any) -> None:
        self.of = lru_cache(maxsize=65536)(lambda token: piece(tokenizer, token))


def chosen(logprobs: torch.Tensor, token: int, top: int, pieces: Pieces) -> TokenLogprob:
    """The entry for `token` given its position's log-probabilities [vocab]."""
    alternatives: list[tuple[bytes, float]] = []
    if top:
        values, ids = logprobs.topk(top)
        alternatives = [(pieces.of(int(i)), float(v)) for v, i in zip(values, ids, strict=True)]
    return TokenLogprob(pieces.of(token), float(logprobs[token]), alternatives)


def of_logits(logits: torch.Tensor, token: int, top: int, pieces: Pieces) -> TokenLogprob:
    return chosen(logits.float().log_softmax(dim=-1), token, top, pieces)


def of_prompt(logits: torch.Tensor, prompt: list[int], top: int, pieces: Pieces) -> list[TokenLogprob]:
    """The prompt's entries from the logits of every prompt position but the last ([n - 1, vocab]):
    the first token has none (nothing predicts it)."""
    logprobs = logits.float().log_softmax(dim=-1)
    first = TokenLogprob(pieces.of(prompt[0]), None)
    return [first, *(chosen(logprobs[i], token, top, pieces) for i, token in enumerate(prompt[1:]))]


def prompt_pieces(prompt: list[int], pieces: Pieces) -> list[TokenLogprob]:
    """The prompt's tokens without values: what `echo` gives back when no log-probabilities
    were asked for."""
    return [TokenLogprob(pieces.of(token), None) for token in prompt]
