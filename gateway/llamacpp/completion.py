"""POST /completion and GET /props as llama.cpp's server has them: its field names and defaults
(temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, n_predict -1), its answer (`content`, `stop`,
`stop_type`, `tokens_predicted`, `tokens_evaluated`, `timings`), and its stream: one `data:` event
per piece, the last with `stop: true` and the totals, no `[DONE]`."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated

from aiohttp import web
from pydantic import Field, field_validator

from gateway.errors import APIError
from gateway.middlewares import LOG_FIELDS
from gateway.openai import sse
from gateway.openai.body import read_body
from gateway.openai.schemas import INT32, StrictBody, TokenId
from gateway.state import ROUTER, SETTINGS
from protocol import Delta, Generate, SamplingParams

MAX_STOP = 16


class CompletionBody(StrictBody):
    prompt: Annotated[str, Field(min_length=1)] | Annotated[list[TokenId], Field(min_length=1)]
    n_predict: Annotated[int, Field(ge=-1)] = -1  # -1: until EOS or the context's end
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.8
    top_k: Annotated[int, Field(ge=0, le=INT32)] = 40
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 0.95
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    repeat_penalty: Annotated[float, Field(ge=0.01, le=10.0)] = 1.0
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    stop: list[Annotated[str, Field(min_length=1)]] = Field([], max_length=MAX_STOP)
    seed: Annotated[int, Field(ge=-1, le=2**64 - 1)] = -1  # -1: a random seed
    stream: bool = False
    ignore_eos: bool = False
    model: str | None = Field(None, min_length=1)

    @field_validator("n_predict")
    @classmethod
    def _n_predict(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (no limit) or at least 1")
        return value

    def generate(self, default_max_tokens: int, cap: int | None) -> Generate:
        max_tokens = default_max_tokens if self.n_predict == -1 else min(self.n_predict, INT32)
        params = SamplingParams(
            max_tokens=min(max_tokens, cap or max_tokens),
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            repetition_penalty=self.repeat_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            seed=None if self.seed == -1 else self.seed,
            stop=list(self.stop),
            ignore_eos=self.ignore_eos,
        )
        if isinstance(self.prompt, str):
            return Generate(uuid.uuid4().hex, params, prompt=self.prompt)
        return Generate(uuid.uuid4().hex, params, prompt_ids=list(self.prompt))


def _final(
    model: str, text: str, last: Delta, started: float, first: float, ended: float
) -> dict[str, object]:
    stop_type = "limit" if last.finish_reason == "length" else "word" if last.stop_word else "eos"
    prompt_ms, predicted_ms = (first - started) * 1000, (ended - first) * 1000
    n = last.completion_tokens
    return {
        "content": text,
        "id_slot": 0,
        "stop": True,
        "model": model,
        "tokens_predicted": n,
        "tokens_evaluated": last.prompt_tokens,
        "stop_type": stop_type,
        "stopping_word": last.stop_word or "",
        "truncated": False,
        "timings": {
            "prompt_n": last.prompt_tokens,
            "prompt_ms": round(prompt_ms, 3),
            "prompt_per_second": last.prompt_tokens / prompt_ms * 1000 if prompt_ms else None,
            "predicted_n": n,
            "predicted_ms": round(predicted_ms, 3),
            "predicted_per_token_ms": predicted_ms / n if n else None,
            "predicted_per_second": n / predicted_ms * 1000 if predicted_ms else None,
        },
    }


async def completion(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, CompletionBody)
    settings, router = request.app[SETTINGS], request.app[ROUTER]
    model = body.model or settings.default_model()
    request[LOG_FIELDS]["model"] = model
    generate = body.generate(settings.default_max_tokens, settings.max_tokens_cap)
    started = time.perf_counter()
    first: float | None = None
    pieces: list[str] = []
    response: web.StreamResponse | None = None
    deadline = asyncio.get_running_loop().time() + settings.request_timeout
    try:
        async with asyncio.timeout_at(deadline), router.open(model, "completion", [generate]) as stream:
            async for _, delta in stream:
                assert isinstance(delta, Delta)
                first = first or time.perf_counter()
                if delta.finish_reason is not None:
                    final = _final(
                        model, "".join([*pieces, delta.text]), delta, started, first, time.perf_counter()
                    )
                    request[LOG_FIELDS].update(
                        prompt_tokens=delta.prompt_tokens, completion_tokens=delta.completion_tokens
                    )
                    if not body.stream:
                        return web.json_response(final)
                    if response is None:
                        response = await sse.open_stream(request)
                    if delta.text:
                        await response.write(sse.event({"content": delta.text, "stop": False}))
                    await response.write(sse.event({**final, "content": ""}))
                    return response
                pieces.append(delta.text)
                if body.stream:
                    if response is None:  # after the first delta: a refused prompt keeps its status
                        response = await sse.open_stream(request)
                    if delta.text:
                        await response.write(sse.event({"content": delta.text, "stop": False}))
    except (APIError, TimeoutError) as exc:
        error = exc if isinstance(exc, APIError) else APIError(504, "The request took too long.", "timeout")
        if response is None:
            raise error from None
        await response.write(sse.event(error.body()))
        return response
    raise AssertionError("a generation stream ends with a finish reason or an error")


async def props(request: web.Request) -> web.Response:
    """The default model's context, slots and chat template, from what its worker registered."""
    router = request.app[ROUTER]
    model = request.query.get("model") or request.app[SETTINGS].default_model()
    workers = list(router.model(model).workers.values())
    if not workers:
        raise APIError(503, f"The model `{model}` is not loaded yet.", "model_not_ready")
    info = workers[0].info
    defaults = CompletionBody(prompt="-")
    params = defaults.model_dump(exclude={"prompt", "model", "stream"})
    return web.json_response(
        {
            "default_generation_settings": {"n_ctx": info.context_length, "params": params},
            "total_slots": sum(w.info.max_batch for w in workers),
            "model_path": model,
            "chat_template": info.chat_template,
            "modalities": {"vision": False, "audio": False},
            "build_info": f"enginehouse ({info.engine} on {info.device})",
        }
    )
