"""The one interface every engine implements, shaped like a continuous-batching engine."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol import (
    Adapter,
    AdapterLoaded,
    Delta,
    Embed,
    Embeddings,
    Failed,
    Generate,
    Ranked,
    Rerank,
    Transcribe,
)


class RequestError(Exception):
    """A request the engine refuses; becomes a `Failed` message with this HTTP status."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param


@dataclass(frozen=True)
class Capabilities:
    engine: str
    device: str
    tasks: list[str]
    max_batch: int
    context_length: int
    embedding_dimension: int = 0  # engines with the embedding task


@dataclass
class EngineStats:
    running: int = 0
    waiting: int = 0
    tokens_generated: int = 0
    steps: int = 0


class Engine(ABC):
    capabilities: Capabilities
    stats: EngineStats
    tokenizer: Any  # the model's Hugging Face tokenizer (chat template, tokenize routes)
    # requests that failed inside a step (the worker sends and clears them after each step)
    failures: list[Failed]

    @abstractmethod
    def add(self, request: Generate | Transcribe) -> None:
        """Admit a request; it joins the running batch at the next step. Raises RequestError."""

    @abstractmethod
    def cancel(self, request_id: str) -> None:
        """Drop a request now and free what it holds; unknown ids are ignored."""

    @abstractmethod
    def step(self) -> list[Delta]:
        """Advance every running sequence by one token; one delta per sequence that advanced."""

    @abstractmethod
    def has_work(self) -> bool: ...

    def warm_up(self) -> None:  # noqa: B027 (most engines have nothing to do)
        """Work the first request would otherwise wait for, done once the worker has registered
        (requests that come meanwhile wait in the socket)."""

    def embed(
        self, requests: list[Embed], between: Callable[[], set[str]] = set
    ) -> list[Embeddings | Failed]:
        """Embed every input of these requests together, calling `between` after each bounded
        step of work (the worker heartbeats, and returns the requests cancelled meanwhile: they
        get no answer). Generation engines have no embeddings."""
        message = "this model does not compute embeddings"
        return [Failed(r.request_id, 400, "unsupported_task", message, "model") for r in requests]

    def rerank(self, requests: list[Rerank], between: Callable[[], set[str]] = set) -> list[Ranked | Failed]:
        """Score every document of these requests, bounded steps as `embed`. Only encoders rerank."""
        message = "this model does not rerank"
        return [Failed(r.request_id, 400, "unsupported_task", message, "model") for r in requests]

    def load_adapter(self, request_id: str, adapter: Adapter) -> AdapterLoaded:
        """Load a LoRA adapter (or set its scale); RequestError when it does not fit the model."""
        message = (
            f"LoRA adapters are served on the torch engine; this model runs on {self.capabilities.engine}"
        )
        raise RequestError(400, "unsupported_adapter", message, "model")

    def unload_adapter(self, name: str) -> None:  # noqa: B027 (engines without adapters have none)
        """Drop an adapter once no sequence uses it (unknown names are ignored)."""
