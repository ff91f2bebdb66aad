"""Reranking with a cross-encoder: a Hugging Face `*ForSequenceClassification` model that reads the
query and one document together and gives a relevance logit. Pairs of every waiting request share
the forward passes; each backend only supplies `logits`.

How a logit becomes a score is the model's own convention, read from its config.json:
sentence-transformers' `activation_fn` when it saved one (Sigmoid, Identity, Softmax), else one label:
the sigmoid of its logit (what sentence-transformers' CrossEncoder does); two labels: the
probability of the second. More labels are not a relevance model, and refused at load.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from protocol import Failed, Ranked, Rerank
from workers.engines.encoder import Encoder


def is_cross_encoder(model_dir: Path) -> bool:
    config = model_dir / "config.json"
    if not config.is_file():
        return False
    architectures = json.loads(config.read_text()).get("architectures") or []
    return any(name.endswith("ForSequenceClassification") for name in architectures)


def score_convention(config: dict[str, Any]) -> str:
    """sigmoid, identity or softmax (the last label's probability), from the model's config."""
    labels = int(config.get("num_labels") or len(config.get("id2label") or {0: ""}))
    saved = (config.get("sentence_transformers") or {}).get("activation_fn") or config.get(
        "sbert_ce_default_activation_function"
    )
    if saved:
        name = saved.rsplit(".", 1)[-1].lower()
        if name in ("sigmoid", "identity", "softmax"):
            return name
        raise ValueError(f"the cross-encoder's activation {saved!r} is not one this server knows")
    if labels == 1:
        return "sigmoid"
    if labels == 2:
        return "softmax"
    raise ValueError(f"a reranker gives one relevance score; this classifier has {labels} labels")


class CrossEncoder(Encoder):
    def __init__(self, model_dir: Path, tokenizer: Any, engine: str, device: str) -> None:
        super().__init__(model_dir, tokenizer, engine, device, ["rerank"])
        self.convention = score_convention(json.loads((model_dir / "config.json").read_text()))

    @abstractmethod
    def logits(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """The classifier's logits, (batch, labels) float32, for input_ids, attention_mask and
        token_type_ids."""

    def rerank(self, requests: list[Rerank], between: Callable[[], set[str]] = set) -> list[Ranked | Failed]:
        def inputs(request: Rerank, cancelled: set[str]) -> list[tuple[list[int], list[int]]]:
            return [self._pair(request, i) for i in range(len(request.documents))]

        def answer(request: Rerank, pairs: list[tuple[list[int], list[int]]], scores: list[float]) -> Ranked:
            return Ranked(request.request_id, scores, sum(len(ids) for ids, _ in pairs))

        return self.answer_in_passes(requests, inputs, self._scores, answer, between)

    def _pair(self, request: Rerank, index: int) -> tuple[list[int], list[int]]:
        """The query and one document as the model reads them: ids and token types."""
        query, document = request.query, request.documents[index]
        encoded = self.tokenizer(query, document)
        if len(encoded["input_ids"]) > self.max_tokens:
            if not request.truncate:
                self.fitted(encoded["input_ids"], f"Document {index} with the query", False, "documents")
            encoded = self.tokenizer(query, document, truncation="longest_first", max_length=self.max_tokens)
        ids = list(encoded["input_ids"])
        return ids, list(encoded.get("token_type_ids") or [0] * len(ids))

    def _scores(self, batch: list[tuple[list[int], list[int]]]) -> list[float]:
        feed = self.feed([ids for ids, _ in batch], [types for _, types in batch])
        logits = self.logits(feed).astype(np.float64)
        if self.convention == "sigmoid":
            scores = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        elif self.convention == "identity":
            scores = logits[:, 0]
        else:
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            scores = (shifted / shifted.sum(axis=1, keepdims=True))[:, -1]
        return [float(s) for s in scores]
