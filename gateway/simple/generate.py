"""POST /generate, /chat and /generate/batch: the simple REST shapes. Their own defaults apply to
absent fields (max_length 8192, temperature 0.7, top_p 0.9, top_k 80, repetition_penalty 1.15,
do_sample true); a model is named by `model_id` (or `model`). The answer is `{"response", "usage"}`
for /generate, `{"responses", "usage"}` for a batch and `{"choices": [{"index", "message": {"role",
"content"}, "finish_reason"}], "usage"}` for /chat, as that server documents them; a stream is one
`data: {"response": piece}` event per piece (with `"index"` in a batch), then one with
`finish_reason` and `usage`, then `data: [DONE]`. A batch's prompts go to the worker together and
share its steps."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from aiohttp import web
from pydantic import Field

from gateway.errors import APIError
from gateway.http import sse
from gateway.http.body import INT32, StrictBody, read_body
from gateway.http.generation import Result, serve_generation
from gateway.state import SETTINGS
from protocol import ChatMessage, Delta, Generate, SamplingParams

MAX_BATCH_PROMPTS = 64


class Options(StrictBody):
    model_id: str | None = Field(None, min_length=1)  # the simple server's name for it
    model: str | None = Field(None, min_length=1)  # an alias, as the OpenAI routes name it
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

    def named_model(self) -> str | None:
        if self.model_id and self.model and self.model_id != self.model:
            raise APIError(
                400, "`model_id` and `model` name different models; give one.", "invalid_value", "model_id"
            )
        return self.model_id or self.model


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
    requests = [Generate(uuid.uuid4().hex, params, prompt=body.prompt)]
    return await _answer(request, body, "completion", requests, SimpleShape())


async def chat(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, ChatBody)
    params = body.params(request.app[SETTINGS].max_tokens_cap)
    messages = [ChatMessage(m.role, m.content) for m in body.messages]
    requests = [Generate(uuid.uuid4().hex, params, messages=messages)]
    return await _answer(request, body, "chat", requests, SimpleShape(chat=True))


async def generate_batch(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, BatchBody)
    if len(body.prompts) > MAX_BATCH_PROMPTS:
        raise APIError(
            413, f"At most {MAX_BATCH_PROMPTS} prompts per batch; this one has {len(body.prompts)}."
        )
    params = body.params(request.app[SETTINGS].max_tokens_cap)
    requests = [Generate(uuid.uuid4().hex, params, prompt=prompt) for prompt in body.prompts]
    return await _answer(request, body, "completion", requests, SimpleShape(batch=True))


async def _answer(
    request: web.Request, body: Options, task: str, requests: list[Generate], shape: SimpleShape
) -> web.StreamResponse:
    model = body.named_model() or request.app[SETTINGS].default_model()
    return await serve_generation(request, model, task, requests, shape, body.stream)


class SimpleShape:
    """`{"response"}` pieces (with the prompt's `index` in a batch), a `finish_reason` event (with
    the usage once every prompt is done), `[DONE]`; errors are `{"detail"}`."""

    def __init__(self, batch: bool = False, chat: bool = False) -> None:
        self.batch, self.chat = batch, chat

    def opening(self, result: Result) -> bytes:
        return b""

    def events(self, result: Result, index: int, delta: Delta) -> bytes:
        where = {"index": index} if self.batch else {}
        events = sse.event({**where, "response": delta.text}) if delta.text else b""
        if delta.finish_reason is not None:
            usage = {"usage": result.usage()} if result.finished else {}
            events += sse.event({**where, "finish_reason": delta.finish_reason, **usage})
        return events

    def closing(self, result: Result) -> bytes:
        return sse.DONE

    def body(self, result: Result) -> dict[str, object]:
        if self.chat:
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": c.content},
                    "finish_reason": c.finish_reason,
                }
                for i, c in enumerate(result.choices)
            ]
            return {"choices": choices, "usage": result.usage()}
        texts = [choice.content for choice in result.choices]
        answer = {"responses": texts} if self.batch else {"response": texts[0]}
        return {**answer, "usage": result.usage()}

    def error(self, exc: APIError | TimeoutError) -> APIError:
        """The simple server's statuses: a prompt past the model's context is 413, a timeout 500."""
        if isinstance(exc, TimeoutError):
            return APIError(500, "The request took longer than the server allows.", "timeout")
        if exc.code == "context_length_exceeded":
            return APIError(413, exc.message, exc.code, exc.param)
        return exc

    def error_event(self, error: APIError) -> bytes:
        return sse.event({"detail": error.message}) + sse.DONE
