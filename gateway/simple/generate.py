"""POST /generate, /chat and /generate/batch: the simple REST shapes. Their own defaults apply to
absent fields (max_length 8192, temperature 0.7, top_p 0.9, top_k 80, repetition_penalty 1.15,
do_sample true); the answer is `{"response", "usage"}` (`{"responses", "usage"}` for a batch), the
stream one `data: {"response": piece}` event per piece (with `"index"` in a batch), then one with
`finish_reason` and `usage`, then `data: [DONE]`. A batch's prompts go to the worker together and
share its steps."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Literal

from aiohttp import web
from pydantic import Field

from gateway.errors import APIError
from gateway.middlewares import LOG_FIELDS
from gateway.openai import sse
from gateway.openai.body import read_body
from gateway.openai.generation import Result
from gateway.openai.schemas import INT32, StrictBody
from gateway.state import METRICS, ROUTER, SETTINGS
from protocol import ChatMessage, Delta, Generate, SamplingParams

MAX_BATCH_PROMPTS = 64


class Options(StrictBody):
    model: str | None = Field(None, min_length=1)
    max_length: Annotated[int, Field(ge=1, le=INT32)] = 8192  # new tokens, capped by the context
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.7  # 0: greedy
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    top_k: Annotated[int, Field(ge=0, le=INT32)] = 80
    repetition_penalty: Annotated[float, Field(ge=0.01, le=10.0)] = 1.15
    do_sample: bool = True  # false: greedy, the sampling fields do not apply
    stream: bool = False

    def params(self, cap: int | None) -> SamplingParams:
        return SamplingParams(
            max_tokens=min(self.max_length, cap or self.max_length),
            temperature=self.temperature if self.do_sample else 0.0,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
        )


class GenerateBody(Options):
    prompt: str = Field(min_length=1)


class Message(StrictBody):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatBody(Options):
    messages: list[Message] = Field(min_length=1)


class BatchBody(Options):
    prompts: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)


async def generate(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, GenerateBody)
    params = body.params(request.app[SETTINGS].max_tokens_cap)
    return await _answer(
        request, body, "completion", [Generate(uuid.uuid4().hex, params, prompt=body.prompt)]
    )


async def chat(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, ChatBody)
    params = body.params(request.app[SETTINGS].max_tokens_cap)
    messages = [ChatMessage(m.role, m.content) for m in body.messages]
    return await _answer(request, body, "chat", [Generate(uuid.uuid4().hex, params, messages=messages)])


async def generate_batch(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, BatchBody)
    if len(body.prompts) > MAX_BATCH_PROMPTS:
        raise APIError(
            413, f"At most {MAX_BATCH_PROMPTS} prompts per batch; this one has {len(body.prompts)}."
        )
    params = body.params(request.app[SETTINGS].max_tokens_cap)
    requests = [Generate(uuid.uuid4().hex, params, prompt=prompt) for prompt in body.prompts]
    return await _answer(request, body, "completion", requests, batch=True)


async def _answer(
    request: web.Request, body: Options, task: str, requests: list[Generate], batch: bool = False
) -> web.StreamResponse:
    settings, router = request.app[SETTINGS], request.app[ROUTER]
    model = body.model or settings.default_model()
    result = Result(
        texts=[[] for _ in requests],
        finish=[None] * len(requests),
        metrics=request.app[METRICS],
        model=model,
        log=request[LOG_FIELDS],
        started=time.perf_counter(),
    )
    result.log["model"] = model
    response: web.StreamResponse | None = None
    deadline = asyncio.get_running_loop().time() + settings.request_timeout
    try:
        async with asyncio.timeout_at(deadline), router.open(model, task, requests) as stream:
            async for index, delta in stream:
                assert isinstance(delta, Delta)
                result.add(index, delta)
                if not body.stream:
                    continue
                if response is None:  # after the first delta: a refused prompt keeps its status
                    response = await sse.open_stream(request)
                where = {"index": index} if batch else {}
                if delta.text:
                    await response.write(sse.event({**where, "response": delta.text}))
                if delta.finish_reason is not None:
                    usage = {"usage": result.usage()} if None not in result.finish else {}
                    await response.write(sse.event({**where, "finish_reason": delta.finish_reason, **usage}))
    except (APIError, TimeoutError) as exc:
        error = _simple_error(exc)
        if response is None:
            raise error from None
        await response.write(sse.event({"detail": error.message}))
        await response.write(sse.DONE)
        return response
    if response is not None:
        await response.write(sse.DONE)
        return response
    texts = ["".join(pieces) for pieces in result.texts]
    answer = {"responses": texts} if batch else {"response": texts[0]}
    return web.json_response({**answer, "usage": result.usage()})


def _simple_error(exc: APIError | TimeoutError) -> APIError:
    """The simple server's statuses: a prompt past the model's context is 413, a timeout 500."""
    if isinstance(exc, TimeoutError):
        return APIError(500, "The request took longer than the server allows.", "timeout")
    if exc.code == "context_length_exceeded":
        return APIError(413, exc.message, exc.code, exc.param)
    return exc
