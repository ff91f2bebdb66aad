"""A test engine, never the default: no model, every step emits one fixed piece per running request,
as fast as the worker's loop asks. Selected only by explicit configuration (`enginehouse serve
--test-engine` adds the model `test-engine`); it exists to measure what the gateway and the
ZeroMQ path cost per streamed token and per request, with no engine time in the figures."""

from __future__ import annotations

from protocol import Delta, Generate
from workers.engines.base import Capabilities, RequestError
from workers.engines.interleaved import InterleavedEngine

PIECE = " tok"
CONTEXT = 1 << 20
DEFAULT_TOKENS = 16


class _Request:
    def __init__(self, request: Generate) -> None:
        self.request_id = request.request_id
        if request.prompt_ids is not None:
            self.prompt_tokens = len(request.prompt_ids)
        elif request.messages is not None:
            self.prompt_tokens = sum(len(m.content.split()) + 4 for m in request.messages)
        else:
            self.prompt_tokens = len((request.prompt or "").split())
        self.budget = request.params.max_tokens or DEFAULT_TOKENS
        self.generated = 0

    @property
    def done(self) -> bool:
        return self.generated >= self.budget


class TestTokenEngine(InterleavedEngine[_Request]):
    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(self, max_batch: int) -> None:
        super().__init__(max_batch)
        self.tokenizer = None  # no model, no tokenizer: the tokenize routes fail clearly on it
        self.capabilities = Capabilities(
            engine="test",
            device="none",
            tasks=["chat", "completion"],
            max_batch=max_batch,
            context_length=CONTEXT,
        )

    def add(self, request: Generate) -> None:
        admitted = _Request(request)
        if admitted.prompt_tokens == 0:
            raise RequestError(400, "invalid_prompt", "the prompt is empty", "prompt")
        self.admit(admitted)

    def advance(self, row: _Request) -> Delta:
        row.generated += 1
        if row.done:
            return Delta(row.request_id, PIECE, 1, "length", row.prompt_tokens, row.generated)
        return Delta(row.request_id, PIECE, 1)
