"""The loop of engines that run one request at a time but advance every running request by one
token per step (ONNX Runtime GenAI's Generators, the test engine): up to max_batch run, the rest
wait in arrival order, a cancelled or finished request leaves at once."""

from __future__ import annotations

from abc import abstractmethod
from typing import Generic, Protocol, TypeVar

from protocol import Delta
from workers.engines.base import Engine, EngineStats


class Row(Protocol):
    @property
    def request_id(self) -> str: ...

    @property
    def done(self) -> bool: ...


R = TypeVar("R", bound=Row)


class InterleavedEngine(Engine, Generic[R]):
    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self.running: list[R] = []
        self.waiting: list[R] = []
        self.stats = EngineStats()
        self.failures = []  # these engines refuse in add(), never inside a step

    @abstractmethod
    def advance(self, row: R) -> Delta:
        """One more token of this request, as its delta."""

    def admit(self, row: R) -> None:
        self.waiting.append(row)
        self._count()

    def cancel(self, request_id: str) -> None:
        self.waiting = [r for r in self.waiting if r.request_id != request_id]
        self.running = [r for r in self.running if r.request_id != request_id]
        self._count()

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    def step(self) -> list[Delta]:
        while self.waiting and len(self.running) < self.max_batch:
            self.running.append(self.waiting.pop(0))
        deltas = [self.advance(row) for row in self.running]
        self.running = [r for r in self.running if not r.done]
        self.stats.steps += 1
        self.stats.tokens_generated += len(deltas)
        self._count()
        return deltas

    def _count(self) -> None:
        self.stats.running, self.stats.waiting = len(self.running), len(self.waiting)
