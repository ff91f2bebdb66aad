"""Sentence embeddings, whatever runs the encoder: tokenize, check lengths, one forward pass over
every input of every waiting request, mean pooling over the real tokens, L2 normalization (as
sentence-transformers defines all-MiniLM-L6-v2). Each backend only supplies `hidden_states`.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from protocol import Delta, Embed, Embeddings, Failed, Generate
from workers.engines.base import Capabilities, Engine, EngineStats, RequestError

FORWARD_BATCH = 64  # inputs per forward pass; more requests' inputs are split into several


def max_input_tokens(model_dir: Path) -> int:
    """sentence-transformers' max_seq_length when the model has one, else its position limit."""
    st_config = model_dir / "sentence_bert_config.json"
    if st_config.exists():
        return int(json.loads(st_config.read_text())["max_seq_length"])
    return int(json.loads((model_dir / "config.json").read_text())["max_position_embeddings"])


class Embedder(Engine):
    def __init__(self, model_dir: Path, tokenizer: Any, engine: str, device: str, dimension: int) -> None:
        self.tokenizer = tokenizer
        # the special tokens the tokenizer puts around an empty text go around given token ids
        self._frame = list(tokenizer("", add_special_tokens=True)["input_ids"])
        self.max_tokens = max_input_tokens(model_dir)
        self.dimension = dimension
        self.failures: list[Failed] = []
        self.stats = EngineStats()
        self.capabilities = Capabilities(
            engine=engine,
            device=device,
            tasks=["embedding"],
            max_batch=FORWARD_BATCH,
            context_length=self.max_tokens,
            embedding_dimension=dimension,
        )

    @abstractmethod
    def hidden_states(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The encoder's last hidden states, (batch, tokens, dimension) float32."""

    # --- embeddings ----------------------------------------------------------------------

    def embed(
        self, requests: list[Embed], between: Callable[[], set[str]] = set
    ) -> list[Embeddings | Failed]:
        """Every request's inputs share the forward passes, FORWARD_BATCH inputs each, with
        `between` called after each (2,048 inputs of 256 tokens are minutes of work on a CPU: the
        worker must go on heartbeating); it returns the requests cancelled meanwhile, whose
        remaining inputs are dropped and which get no answer. A request with a bad input fails
        alone. Inputs are tokenized FORWARD_BATCH at a time, with `between` after each too."""
        results: list[Embeddings | Failed] = []
        accepted: list[tuple[Embed, list[list[int]]]] = []
        cancelled: set[str] = set()

        def still_wanted(request_id: str) -> bool:
            cancelled.update(between())
            return request_id not in cancelled

        for request in requests:
            try:
                accepted.append((request, self._inputs(request, partial(still_wanted, request.request_id))))
            except RequestError as exc:
                results.append(Failed(request.request_id, exc.status, exc.code, exc.message, exc.param))
        left = [(request.request_id, ids) for request, inputs in accepted for ids in inputs]
        vectors: dict[str, list[np.ndarray]] = {request.request_id: [] for request, _ in accepted}
        while left := [item for item in left if item[0] not in cancelled]:
            batch, left = left[:FORWARD_BATCH], left[FORWARD_BATCH:]
            for (request_id, _), vector in zip(batch, self._vectors([ids for _, ids in batch]), strict=True):
                vectors[request_id].append(vector)
            cancelled |= between()
        for request, inputs in accepted:
            if request.request_id not in cancelled:
                tokens = sum(len(ids) for ids in inputs)
                mine = vectors[request.request_id]
                results.append(Embeddings(request.request_id, [v.tobytes() for v in mine], tokens))
        self.stats.steps += 1
        return results

    def _inputs(self, request: Embed, wanted: Callable[[], bool]) -> list[list[int]]:
        """The request's inputs as token ids, checked; tokenized FORWARD_BATCH texts at a time,
        asking `wanted` after each (an empty list once the request is cancelled)."""
        if request.texts is not None:
            encoded = []
            for start in range(0, len(request.texts), FORWARD_BATCH):
                texts = list(request.texts[start : start + FORWARD_BATCH])
                encoded.extend(self.tokenizer(texts, add_special_tokens=True)["input_ids"])
                if not wanted():
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
        out = []
        for i, ids in enumerate(encoded):
            if len(ids) > self.max_tokens:
                if not request.truncate:
                    raise RequestError(
                        400,
                        "context_length_exceeded",
                        f"Input {i} has {len(ids)} tokens; this model embeds at most {self.max_tokens}. "
                        'Shorten it, or send "truncate": true to embed its first tokens.',
                        "input",
                    )
                ids = [*ids[: self.max_tokens - 1], ids[-1]]  # keep the closing special token
            out.append(list(ids))
        return out

    def _with_special_tokens(self, ids: list[int]) -> list[int]:
        """Token ids framed as the tokenizer frames a text ([CLS] ids [SEP] for BERT)."""
        return [*self._frame[:1], *ids, *self._frame[1:]]

    def _vectors(self, batch: list[list[int]]) -> list[np.ndarray]:
        if not batch:
            return []
        width = max(len(ids) for ids in batch)
        input_ids = np.full((len(batch), width), self.tokenizer.pad_token_id or 0, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        hidden = self.hidden_states(input_ids, mask).astype(np.float32)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return list((pooled / norms).astype("<f4"))

    # --- this engine does not generate ----------------------------------------------------

    def add(self, request: Generate) -> None:
        raise RequestError(400, "unsupported_task", "this model only computes embeddings", "model")

    def cancel(self, request_id: str) -> None:
        pass  # an embedding request is answered within the step that reads it

    def step(self) -> list[Delta]:
        return []

    def has_work(self) -> bool:
        return False
