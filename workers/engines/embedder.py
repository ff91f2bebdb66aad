"""Sentence embeddings, whatever runs the encoder: tokenize, check lengths, forward passes over
every input of every waiting request, mean pooling over the real tokens, L2 normalization (as
sentence-transformers defines all-MiniLM-L6-v2). Each backend only supplies `hidden_states`.

The same vectors rerank, as a bi-encoder: a document's score is the cosine similarity of its
vector and the query's (a cross-encoder, which reads query and document together, is
cross_encoder.py).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from protocol import Embed, Embeddings, Failed, Ranked, Rerank
from workers.engines.base import RequestError
from workers.engines.encoder import FORWARD_BATCH, Encoder


class Embedder(Encoder):
    def __init__(self, model_dir: Path, tokenizer: Any, engine: str, device: str, dimension: int) -> None:
        super().__init__(model_dir, tokenizer, engine, device, ["embedding", "rerank"], dimension)
        self.dimension = dimension
        # the special tokens the tokenizer puts around an empty text go around given token ids
        self._frame = list(tokenizer("", add_special_tokens=True)["input_ids"])

    @abstractmethod
    def hidden_states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The encoder's last hidden states, (batch, tokens, dimension) float32."""

    # --- embeddings ----------------------------------------------------------------------

    def embed(
        self, requests: list[Embed], between: Callable[[], set[str]] = set
    ) -> list[Embeddings | Failed]:
        """Every request's inputs share the forward passes (2,048 inputs of 256 tokens are minutes
        of work on a CPU: the worker goes on heartbeating between them); a request cancelled
        meanwhile gets no answer, one with a bad input fails alone. Inputs are tokenized
        FORWARD_BATCH at a time, with `between` after each too."""

        def answer(request: Embed, inputs: list[list[int]], vectors: list[np.ndarray]) -> Embeddings:
            tokens = sum(len(ids) for ids in inputs)
            return Embeddings(request.request_id, [v.tobytes() for v in vectors], tokens)

        def inputs(request: Embed, cancelled: set[str]) -> list[list[int]]:
            return self._inputs(request, between, cancelled)

        return self.answer_in_passes(requests, inputs, self._vectors, answer, between)

    def _inputs(
        self, request: Embed, between: Callable[[], set[str]], cancelled: set[str]
    ) -> list[list[int]]:
        """The request's inputs as token ids, checked; tokenized FORWARD_BATCH texts at a time,
        with `between` after each (an empty list once the request is cancelled)."""
        if request.texts is not None:
            encoded = []
            for start in range(0, len(request.texts), FORWARD_BATCH):
                texts = list(request.texts[start : start + FORWARD_BATCH])
                encoded.extend(self.tokenizer(texts, add_special_tokens=True)["input_ids"])
                cancelled |= between()
                if request.request_id in cancelled:
                    return []
        else:
            vocab = len(self.tokenizer)
            for ids in request.token_ids or []:
                bad = next((t for t in ids if not 0 <= t < vocab), None)
                if bad is not None:
                    raise RequestError(
                        400,
                        "invalid_input",
                        f"token id {bad} is outside the vocabulary (0..{vocab - 1})",
                        "input",
                    )
            encoded = [self._with_special_tokens(ids) for ids in request.token_ids or []]
        if not encoded:
            raise RequestError(400, "invalid_input", "there is nothing to embed", "input")
        return [self.fitted(ids, f"Input {i}", request.truncate, "input") for i, ids in enumerate(encoded)]

    def _with_special_tokens(self, ids: list[int]) -> list[int]:
        """Token ids framed as the tokenizer frames a text ([CLS] ids [SEP] for BERT)."""
        return [*self._frame[:1], *ids, *self._frame[1:]]

    def _vectors(self, batch: list[list[int]]) -> list[np.ndarray]:
        feed = self.feed(batch)
        mask = feed["attention_mask"]
        hidden = self.hidden_states(feed["input_ids"], mask).astype(np.float32)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return list((pooled / norms).astype("<f4"))

    # --- reranking, as a bi-encoder ----------------------------------------------------------

    def rerank(self, requests: list[Rerank], between: Callable[[], set[str]] = set) -> list[Ranked | Failed]:
        """Query and documents embedded in the same passes; a score is a cosine similarity."""

        def inputs(request: Rerank, cancelled: set[str]) -> list[list[int]]:
            query, *documents = self.tokenizer([request.query, *request.documents])["input_ids"]
            fitted = [self.fitted(query, "The query", request.truncate, "query")]
            for i, ids in enumerate(documents):
                fitted.append(self.fitted(ids, f"Document {i}", request.truncate, "documents"))
            return fitted

        def answer(request: Rerank, inputs: list[list[int]], vectors: list[np.ndarray]) -> Ranked:
            query, *documents = vectors
            scores = [float(np.dot(query, document)) for document in documents]
            return Ranked(request.request_id, scores, sum(len(ids) for ids in inputs))

        return self.answer_in_passes(requests, inputs, self._vectors, answer, between)
