"""The one generation path every route family uses: open a stream on the router, then write each
delta as SSE events or collect them into one answer. It owns what is the same for every family:
the request deadline, the first delta before the headers (a refused prompt keeps its own status),
write batching, errors after the headers, cancel on leaving (the router's `open`), the metrics and
the request's log line. A family gives only its output `Shape`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from aiohttp import web
from msgspec import json

from gateway.clients import Caller
from gateway.errors import APIError
from gateway.http import sse
from gateway.metrics import Metrics
from gateway.middlewares import LOG_FIELDS
from gateway.state import CALLER, METRICS, ROUTER, SETTINGS
from protocol import Delta, Generate, Heard, Segment, TokenLogprob, ToolCall, Transcribe

log = structlog.get_logger()


@dataclass
class Choice:
    """One sequence's answer so far."""

    text: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)  # a transcription's
    heard: Heard | None = None  # a transcription's language and audio duration
    finish_reason: str | None = None
    last: Delta | None = None  # the delta that ended it (usage, stop word)

    def add(self, delta: Delta) -> None:
        self.text.append(delta.text)
        details = delta.details
        if details is not None:
            for part in details.tool_calls or ():
                if part.id is not None:
                    self.tool_calls.append(ToolCall(part.id, part.name or "", part.arguments))
                else:
                    call = self.tool_calls[part.index]
                    self.tool_calls[part.index] = ToolCall(
                        call.id, call.name, call.arguments + part.arguments
                    )
            self.logprobs.extend(details.logprobs or ())
            self.prompt_logprobs.extend(details.prompt_logprobs or ())
            if details.segment is not None:
                self.segments.append(details.segment)
            self.heard = details.heard or self.heard
        if delta.finish_reason is not None:
            self.finish_reason, self.last = delta.finish_reason, delta

    @property
    def content(self) -> str:
        return "".join(self.text)


@dataclass
class Result:
    """What came back so far for every choice, and the request's timings for the metrics."""

    choices: list[Choice]
    metrics: Metrics
    model: str
    log: dict[str, object]
    started: float = field(default_factory=time.perf_counter)
    first: float | None = None  # when the first delta came
    last: float | None = None  # when the latest one came
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __post_init__(self) -> None:
        self._itl = self.metrics.itl.labels(self.model)  # looked up once, observed per delta

    def add(self, index: int, delta: Delta) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
            self.metrics.ttft.labels(self.model).observe(now - self.started)
            self.log["ttft_ms"] = round((now - self.started) * 1000, 1)
        else:
            self._itl.observe(now - (self.last or now))
        self.last = now
        self.choices[index].add(delta)
        if delta.finish_reason is not None:
            self.prompt_tokens += delta.prompt_tokens
            self.completion_tokens += delta.completion_tokens
            self.log.update(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)

    @property
    def finished(self) -> bool:
        return all(c.finish_reason is not None for c in self.choices)

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def close(self) -> None:
        """The request is over, however it ended: its duration is observed once (and a finished
        transcription's audio seconds, and how many of them it did per second)."""
        took = time.perf_counter() - self.started
        self.metrics.e2e.labels(self.model).observe(took)
        heard = self.choices[0].heard
        if heard is not None and self.finished:
            self.metrics.audio_seconds.labels(self.model).inc(heard.duration)
            self.metrics.realtime_factor.labels(self.model).observe(heard.duration / max(took, 1e-9))


class Shape(Protocol):
    """A route family's output: its SSE events and its one-piece answer."""

    def opening(self, result: Result) -> bytes:
        """Events before the first delta's (OpenAI's role chunk); written with it."""
        ...

    def events(self, result: Result, index: int, delta: Delta) -> bytes:
        """The events of one delta, after the result took it."""
        ...

    def closing(self, result: Result) -> bytes:
        """The events after the last delta (usage, `[DONE]`)."""
        ...

    def body(self, result: Result) -> object:
        """The answer of a request that was not streamed: JSON, or a whole response (text)."""
        ...

    def error(self, exc: APIError | TimeoutError) -> APIError:
        """The family's status and message for an error (a timeout too)."""
        ...

    def error_event(self, error: APIError) -> bytes:
        """An error after the headers, as the family's stream says it (then the stream ends)."""
        ...


async def serve_generation(
    request: web.Request,
    model: str,
    task: str,
    requests: Sequence[Generate] | Sequence[Transcribe],
    shape: Shape,
    stream: bool,
) -> web.StreamResponse:
    settings, router = request.app[SETTINGS], request.app[ROUTER]
    result = Result([Choice() for _ in requests], request.app[METRICS], model, request[LOG_FIELDS])
    result.log["model"] = model
    deadline = asyncio.get_running_loop().time() + settings.request_timeout
    response: web.StreamResponse | None = None
    try:
        async with (
            asyncio.timeout_at(deadline),
            router.open(model, task, requests, request[CALLER]) as deltas,
        ):
            items = aiter(deltas)
            # The first delta comes before the headers, so that a request the worker refuses
            # (a prompt over the context, say) is answered with its own status, not a 200 stream.
            first = await anext(items, None)
            if first is not None:
                result.add(*first)
            if not stream:
                async for index, delta in items:
                    result.add(index, delta)
                answer = shape.body(result)
                if isinstance(answer, web.Response):
                    return answer
                return web.Response(body=json.encode(answer), content_type="application/json")
            response = await sse.open_stream(request)
            pending = [shape.opening(result)]
            if first is not None:
                pending.append(shape.events(result, *first))
            await response.write(b"".join(pending))
            pending.clear()
            async for index, delta in items:
                result.add(index, delta)
                pending.append(shape.events(result, index, delta))
                if deltas.queue.empty():  # what is ready leaves in one write, the rest as it comes
                    await response.write(b"".join(pending))
                    pending.clear()
            pending.append(shape.closing(result))
            await response.write(b"".join(pending))
            return response
    except (APIError, TimeoutError) as exc:
        error = shape.error(exc)
        if response is None:
            raise error from None
        log.warning("stream ended by an error", status=error.status, code=error.code)
        await response.write(shape.error_event(error))
        return response
    finally:
        result.close()


async def generate_detached(
    app: web.Application, caller: Caller, model: str, task: str, requests: Sequence[Generate]
) -> Result:
    """The same generation with no client waiting on it (a background response, a batch line): run
    to the end under the request timeout and return what came. Cancelling the task cancels the
    generation."""
    settings, router = app[SETTINGS], app[ROUTER]
    result = Result([Choice() for _ in requests], app[METRICS], model, {"model": model})
    try:
        async with (
            asyncio.timeout(settings.request_timeout),
            router.open(model, task, requests, caller) as deltas,
        ):
            async for index, delta in deltas:
                result.add(index, delta)
        return result
    finally:
        result.close()


def timeout_error(exc: APIError | TimeoutError) -> APIError:
    """The usual mapping: a timeout is a 504, an APIError stays itself."""
    if isinstance(exc, TimeoutError):
        return APIError(504, "The request took longer than the server allows.", "timeout")
    return exc
