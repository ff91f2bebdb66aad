"""POST /completion and GET /props as llama.cpp's server has them: its field names and defaults
(temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, n_predict -1), its answer (`content`, `stop`,
`stop_type`, `tokens_predicted`, `tokens_evaluated`, `timings`), and its stream: one `data:` event
per piece, the last with `stop: true` and the totals, no `[DONE]`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, field_validator

from gateway.errors import APIError
from gateway.http import sse
from gateway.http.body import INT32, StrictBody, TokenId, read_body
from gateway.http.generation import Result, serve_generation, timeout_error
from gateway.state import ROUTER, SETTINGS
from protocol import Delta, Generate, ResponseFormat, SamplingParams

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
    json_schema: dict[str, Any] | None = None  # constrain the answer to JSON valid for it

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
        text = self.prompt if isinstance(self.prompt, str) else None
        ids = None if isinstance(self.prompt, str) else list(self.prompt)
        schema = None if self.json_schema is None else ResponseFormat("json_schema", self.json_schema)
        return Generate(uuid.uuid4().hex, params, prompt=text, prompt_ids=ids, response_format=schema)


def _final(model: str, text: str, result: Result) -> dict[str, object]:
    last = result.choices[0].last
    assert last is not None and result.first is not None and result.last is not None
    stop_type = "limit" if last.finish_reason == "length" else "word" if last.stop_word else "eos"
    prompt_ms = (result.first - result.started) * 1000
    predicted_ms = (result.last - result.first) * 1000
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


class LlamaShape:
    """One `{"content", "stop": false}` event per piece, the last with `stop: true` and the totals;
    no `[DONE]`. Errors in OpenAI's shape."""

    def __init__(self, model: str) -> None:
        self.model = model

    def opening(self, result: Result) -> bytes:
        return b""

    def events(self, result: Result, index: int, delta: Delta) -> bytes:
        events = sse.event({"content": delta.text, "stop": False}) if delta.text else b""
        if delta.finish_reason is not None:
            events += sse.event(_final(self.model, "", result))
        return events

    def closing(self, result: Result) -> bytes:
        return b""

    def body(self, result: Result) -> dict[str, object]:
        return _final(self.model, result.choices[0].content, result)

    def error(self, exc: APIError | TimeoutError) -> APIError:
        return timeout_error(exc)

    def error_event(self, error: APIError) -> bytes:
        return sse.event(error.body())


async def completion(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, CompletionBody)
    settings = request.app[SETTINGS]
    model = body.model or settings.default_model()
    generate = body.generate(settings.default_max_tokens, settings.max_tokens_cap)
    return await serve_generation(request, model, "completion", [generate], LlamaShape(model), body.stream)


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
