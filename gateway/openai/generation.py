"""Chat and text completions share one path: open a stream on the router, then either write each
delta as an SSE chunk or collect them into one response. Only the shapes of the JSON differ."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import structlog
from aiohttp import web
from msgspec import json

from gateway.errors import APIError
from gateway.metrics import Metrics
from gateway.middlewares import LOG_FIELDS
from gateway.openai import sse
from gateway.openai.schemas import Sampling
from gateway.router import Router
from gateway.state import METRICS, ROUTER, SETTINGS
from protocol import Delta, Generate

log = structlog.get_logger()


class ChatShape:
    prefix, object, chunk_object = "chatcmpl", "chat.completion", "chat.completion.chunk"

    @staticmethod
    def start(index: int) -> dict[str, object]:
        return {
            "index": index,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }

    @staticmethod
    def piece(index: int, text: str, finish: str | None) -> dict[str, object]:
        delta = {"content": text} if text else {}
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    @staticmethod
    def choice(index: int, text: str, finish: str | None) -> dict[str, object]:
        return {
            "index": index,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": finish,
        }


class CompletionShape:
    prefix, object, chunk_object = "cmpl", "text_completion", "text_completion"

    @staticmethod
    def start(index: int) -> None:
        return None

    @staticmethod
    def piece(index: int, text: str, finish: str | None) -> dict[str, object]:
        return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}

    choice = piece


Shape = type[ChatShape] | type[CompletionShape]


@dataclass
class Result:
    """What came back so far, and the request's timings for the metrics."""

    texts: list[list[str]]
    finish: list[str | None]
    metrics: Metrics
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    header: dict[str, object] = field(default_factory=dict)
    log: dict[str, object] = field(default_factory=dict)  # the request's log line
    started: float = field(default_factory=time.perf_counter)
    last: float | None = None

    def __post_init__(self) -> None:
        self._itl = self.metrics.itl.labels(self.model)  # looked up once, observed per delta

    def add(self, index: int, delta: Delta) -> None:
        now = time.perf_counter()
        if self.last is None:
            self.metrics.ttft.labels(self.model).observe(now - self.started)
            self.log["ttft_ms"] = round((now - self.started) * 1000, 1)
        else:
            self._itl.observe(now - self.last)
        self.last = now
        self.texts[index].append(delta.text)
        if delta.finish_reason is not None:
            self.finish[index] = delta.finish_reason
            self.prompt_tokens += delta.prompt_tokens
            self.completion_tokens += delta.completion_tokens
            self.log.update(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)
            if None not in self.finish:
                self.metrics.e2e.labels(self.model).observe(now - self.started)

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


async def respond(
    request: web.Request, body: Sampling, task: str, requests: list[Generate], shape: Shape
) -> web.StreamResponse:
    settings, router = request.app[SETTINGS], request.app[ROUTER]
    result = Result(
        texts=[[] for _ in requests],
        finish=[None] * len(requests),
        metrics=request.app[METRICS],
        model=body.model,
        header={"id": f"{shape.prefix}-{uuid.uuid4().hex}", "created": int(time.time()), "model": body.model},
        log=request[LOG_FIELDS],
    )
    result.log["model"] = body.model
    deadline = asyncio.get_running_loop().time() + settings.request_timeout
    if body.stream:
        return await _stream(request, router, body, task, requests, shape, result, deadline)
    try:
        async with (
            asyncio.timeout_at(deadline),
            router.open(body.model, task, requests) as stream,
        ):
            async for index, delta in stream:
                result.add(index, delta)
    except TimeoutError:
        raise APIError(504, "The request took longer than the server allows.", "timeout") from None
    choices = [
        shape.choice(i, "".join(texts), finish)
        for i, (texts, finish) in enumerate(zip(result.texts, result.finish, strict=True))
    ]
    payload = {**result.header, "object": shape.object, "choices": choices, "usage": result.usage()}
    return web.Response(body=json.encode(payload), content_type="application/json")


async def _stream(
    request: web.Request,
    router: Router,
    body: Sampling,
    task: str,
    requests: list[Generate],
    shape: Shape,
    result: Result,
    deadline: float,
) -> web.StreamResponse:
    head = {**result.header, "object": shape.chunk_object}
    if body.include_usage:
        head["usage"] = None
    response: web.StreamResponse | None = None
    try:
        async with (
            asyncio.timeout_at(deadline),
            router.open(body.model, task, requests) as stream,
        ):
            deltas = aiter(stream)
            # The first delta comes before the headers, so that a request the worker refuses
            # (a prompt over the context, say) is answered with its own status, not a 200 stream.
            first = await anext(deltas, None)
            response = await sse.open_stream(request)
            starts = (shape.start(index) for index in range(len(requests)))
            pending = [sse.event({**head, "choices": [start]}) for start in starts if start is not None]
            if first is not None:
                pending.append(_events(head, shape, result, *first))
            await response.write(b"".join(pending))
            pending.clear()
            async for index, delta in deltas:
                pending.append(_events(head, shape, result, index, delta))
                if stream.queue.empty():  # what is ready leaves in one write, the rest as it comes
                    await response.write(b"".join(pending))
                    pending.clear()
            if pending:
                await response.write(b"".join(pending))
    except (APIError, TimeoutError) as exc:
        error = exc if isinstance(exc, APIError) else APIError(504, "The request took too long.", "timeout")
        if response is None:
            raise error from None
        log.warning("stream ended by an error", status=error.status, code=error.code)
        await response.write(sse.event(error.body()))
        await response.write(sse.DONE)
        return response
    if body.include_usage:
        await response.write(sse.event({**head, "choices": [], "usage": result.usage()}))
    await response.write(sse.DONE)
    return response


def _events(head: dict[str, object], shape: Shape, result: Result, index: int, delta: Delta) -> bytes:
    """The SSE events of one delta: its text, and its finish reason when it is the last."""
    result.add(index, delta)
    events = b""
    if delta.text:
        events += sse.event({**head, "choices": [shape.piece(index, delta.text, None)]})
    if delta.finish_reason is not None:
        events += sse.event({**head, "choices": [shape.piece(index, "", delta.finish_reason)]})
    return events
