"""A test engine, never the default: no model, every step emits one fixed piece per running request,
as fast as the worker's loop asks. Selected only by explicit configuration (`enginehouse serve
--test-engine` adds the model `test-engine`); it exists to measure what the gateway and the
ZeroMQ path cost per streamed token and per request, with no engine time in the figures."""

from __future__ import annotations

from protocol import Delta, Generate
from workers.engines.base import Capabilities, Engine, EngineStats, RequestError

PIECE = " tok"
CONTEXT = 1 << 20
DEFAULT_TOKENS = 16


class _Request:
    def __init__(self, request: Generate) -> None:
        self.id = request.request_id
        if request.prompt_ids is not None:
            self.prompt_tokens = len(request.prompt_ids)
        elif request.messages is not None:
            self.prompt_tokens = sum(len(m.content.split()) + 4 for m in request.messages)
        else:
            self.prompt_tokens = len((request.prompt or "").split())
        self.budget = request.params.max_tokens or DEFAULT_TOKENS
        self.generated = 0


class TestTokenEngine(Engine):
    __test__ = False  # not a pytest test class, whatever its name says

    def __init__(self, max_batch: int) -> None:
        self.tokenizer = None  # no model, no tokenizer: the tokenize routes fail clearly on it
        self.max_batch = max_batch
        self.running: list[_Request] = []
        self.waiting: list[_Request] = []
        self.stats = EngineStats()
        self.failures = []
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
        self.waiting.append(admitted)
        self._count()

    def cancel(self, request_id: str) -> None:
        self.running = [r for r in self.running if r.id != request_id]
        self.waiting = [r for r in self.waiting if r.id != request_id]
        self._count()

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    def step(self) -> list[Delta]:
        while self.waiting and len(self.running) < self.max_batch:
            self.running.append(self.waiting.pop(0))
        deltas = []
        for r in self.running:
            r.generated += 1
            if r.generated < r.budget:
                deltas.append(Delta(r.id, PIECE, 1))
            else:
                deltas.append(Delta(r.id, PIECE, 1, "length", r.prompt_tokens, r.generated))
        self.running = [r for r in self.running if r.generated < r.budget]
        self.stats.steps += 1
        self.stats.tokens_generated += len(deltas)
        self._count()
        return deltas

    def _count(self) -> None:
        self.stats.running, self.stats.waiting = len(self.running), len(self.waiting)
