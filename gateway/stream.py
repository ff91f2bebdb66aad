"""One request's stream (or several prompts' sent together): what the router hands it, in order,
until each request has ended exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from gateway.errors import APIError
from protocol import (
    AdapterLoaded,
    Delta,
    Detokenize,
    Detokenized,
    Embed,
    Embeddings,
    Failed,
    Generate,
    LoadAdapter,
    Ranked,
    Rerank,
    Tokenize,
    Tokenized,
    Transcribe,
)

Request = Generate | Transcribe | Embed | Rerank | Tokenize | Detokenize | LoadAdapter
# the one reply of a request that does not stream
Answer = Embeddings | Ranked | Tokenized | Detokenized | AdapterLoaded


class Stream:
    """The deltas of one or more requests sent together (one per prompt), in arrival order; or the
    one answer of an embedding request."""

    def __init__(self, requests: Sequence[Request], first_token_timeout: float) -> None:
        self.index = {r.request_id: i for i, r in enumerate(requests)}
        self.open = set(self.index)
        self.queue: asyncio.Queue[Delta | Answer | Failed] = asyncio.Queue()
        self.first_token_timeout: float | None = first_token_timeout

    @property
    def before_first_token(self) -> bool:
        """Nothing has been taken from it yet (its handler is waiting for the first token)."""
        return self.first_token_timeout is not None

    def __aiter__(self) -> AsyncIterator[tuple[int, Delta | Answer]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[tuple[int, Delta | Answer]]:
        while self.open:
            item = await (self.queue.get() if self.first_token_timeout is None else self._first())
            if item.request_id not in self.open:
                continue
            if isinstance(item, Failed):
                self.open.discard(item.request_id)
                raise APIError(item.status, item.message, item.code, item.param)
            if not isinstance(item, Delta) or item.finish_reason is not None:
                self.open.discard(item.request_id)
            yield self.index[item.request_id], item

    async def _first(self) -> Delta | Answer | Failed:
        """The first item, within the first-token timeout (the later ones wait without a timer: the
        request's own deadline bounds them)."""
        try:
            item = await asyncio.wait_for(self.queue.get(), self.first_token_timeout)
        except TimeoutError:
            raise APIError(
                504,
                f"No answer came within {self.first_token_timeout:g} s; the request was cancelled.",
                "first_token_timeout",
            ) from None
        self.first_token_timeout = None
        return item
