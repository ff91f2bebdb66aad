"""What every encoder model (an embedder, a cross-encoder) shares: its tokenizer and length limit,
inputs checked against it, and bounded forward passes over the inputs of every waiting request,
with the worker's `between` after each (heartbeats; cancels of the requests at work). Encoders
do not generate: a generation request is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from protocol import Delta, Failed, Generate, Transcribe
from workers.engines.base import Capabilities, Engine, EngineStats, RequestError

FORWARD_BATCH = 64  # inputs per forward pass; more requests' inputs are split into several
In = TypeVar("In")
Out = TypeVar("Out")
Req = TypeVar("Req", bound=Any)
Answer = TypeVar("Answer")


def max_input_tokens(model_dir: Path) -> int:
    """sentence-transformers' max_seq_length when the model has one, else its position limit."""
    st_config = model_dir / "sentence_bert_config.json"
    if st_config.exists():
        return int(json.loads(st_config.read_text())["max_seq_length"])
    return int(json.loads((model_dir / "config.json").read_text())["max_position_embeddings"])


def in_passes(
    work: list[tuple[str, In]],
    forward: Callable[[list[In]], list[Out]],
    between: Callable[[], set[str]],
    cancelled: set[str],
) -> dict[str, list[Out]]:
    """Each (request id, input) through `forward`, FORWARD_BATCH inputs a pass, in order; after each
    pass `between` returns the requests cancelled meanwhile, whose inputs left are dropped (added to
    `cancelled`). Returns each request's outputs in its inputs' order."""
    out: dict[str, list[Out]] = {request_id: [] for request_id, _ in work}
    left = work
    while left := [item for item in left if item[0] not in cancelled]:
        batch, left = left[:FORWARD_BATCH], left[FORWARD_BATCH:]
        for (request_id, _), result in zip(batch, forward([x for _, x in batch]), strict=True):
            out[request_id].append(result)
        cancelled |= between()
    return out


class Encoder(Engine):
    def __init__(
        self, model_dir: Path, tokenizer: Any, engine: str, device: str, tasks: list[str], dimension: int = 0
    ) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_input_tokens(model_dir)
        self.failures = []
        self.stats = EngineStats()
        self.capabilities = Capabilities(
            engine=engine,
            device=device,
            tasks=tasks,
            max_batch=FORWARD_BATCH,
            context_length=self.max_tokens,
            embedding_dimension=dimension,
        )

    def answer_in_passes(
        self,
        requests: list[Req],
        inputs: Callable[[Req, set[str]], list[In]],
        forward: Callable[[list[In]], list[Out]],
        answer: Callable[[Req, list[In], list[Out]], Answer],
        between: Callable[[], set[str]],
    ) -> list[Answer | Failed]:
        """Each request's inputs (a RequestError fails that request alone; `inputs` may add to the
        cancelled set as it goes), all of them through `forward` in bounded passes, then each
        request's answer from its inputs and outputs; a request cancelled meanwhile gets none."""
        results: list[Answer | Failed] = []
        accepted: list[tuple[Req, list[In]]] = []
        cancelled: set[str] = set()
        for request in requests:
            try:
                accepted.append((request, inputs(request, cancelled)))
            except RequestError as exc:
                results.append(Failed(request.request_id, exc.status, exc.code, exc.message, exc.param))
        work = [(request.request_id, item) for request, items in accepted for item in items]
        outputs = in_passes(work, forward, between, cancelled)
        for request, items in accepted:
            if request.request_id not in cancelled:
                results.append(answer(request, items, outputs.get(request.request_id, [])))
        self.stats.steps += 1
        return results

    def fitted(self, ids: list[int], what: str, truncate: bool, param: str) -> list[int]:
        """Token ids (special tokens included) within the model's length: cut when `truncate`,
        else refused naming `what` ("Input 3")."""
        if len(ids) <= self.max_tokens:
            return list(ids)
        if not truncate:
            raise RequestError(
                400,
                "context_length_exceeded",
                f"{what} has {len(ids)} tokens; this model reads at most {self.max_tokens}. "
                'Shorten it, or send "truncate": true to use its first tokens.',
                param,
            )
        return [*ids[: self.max_tokens - 1], ids[-1]]  # keep the closing special token

    def feed(self, batch: list[list[int]], token_types: list[list[int]] | None = None) -> dict[str, Any]:
        """Token id lists as the padded arrays an encoder's forward takes."""
        import numpy as np

        width = max(len(ids) for ids in batch)
        input_ids = np.full((len(batch), width), self.tokenizer.pad_token_id or 0, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        types = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
            if token_types is not None:
                types[row, : len(ids)] = token_types[row]
        return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types}

    # --- encoders do not generate ---------------------------------------------------------

    def add(self, request: Generate | Transcribe) -> None:
        tasks = " and ".join(self.capabilities.tasks)
        raise RequestError(400, "unsupported_task", f"this model only serves {tasks}", "model")

    def cancel(self, request_id: str) -> None:
        pass  # an encoder's request is answered within the round that reads it

    def step(self) -> list[Delta]:
        return []

    def has_work(self) -> bool:
        return False
