"""The OpenAI-compatible routes: each handler turns HTTP into a router call and back."""

from __future__ import annotations

import time

from aiohttp import web
from pydantic import Field

from gateway.errors import APIError
from gateway.http.body import StrictBody, read_body
from gateway.http.generation import serve_generation
from gateway.http.openapi import Route
from gateway.openai import audio, rerank, tokenize
from gateway.openai.embeddings import embeddings
from gateway.openai.generation import ChatShape, CompletionShape
from gateway.openai.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from gateway.registry import ModelState
from gateway.router import Router
from gateway.state import ROUTER, SETTINGS, SUPERVISOR

OWNER = "enginehouse"
_STARTED = int(time.time())


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, ChatCompletionRequest)
    requests = body.generates(*_token_limits(request))
    shape = ChatShape(body.model, body.include_usage, bool(body.logprobs))
    return await serve_generation(request, body.model, "chat", requests, shape, body.stream)


async def completions(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, CompletionRequest)
    requests = body.generates(*_token_limits(request))
    echo = [r.prompt for r in requests] if body.echo else None
    shape = CompletionShape(body.model, body.include_usage, body.logprobs is not None, echo)
    return await serve_generation(request, body.model, "completion", requests, shape, body.stream)


def _token_limits(request: web.Request) -> tuple[int, int | None]:
    settings = request.app[SETTINGS]
    return settings.default_max_tokens, settings.max_tokens_cap


def _model_object(state: ModelState, tasks: dict[str, str]) -> dict[str, object]:
    """OpenAI's model object, its state here (registered, loading, ready, draining, failed) and its
    task (generate, embedding, rerank, transcription: the served model's, or what a remote worker
    registered)."""
    registered = state.status()["tasks"]
    known = ("embedding", "rerank", "transcription")
    task = tasks.get(state.name) or next((t for t in known if t in registered), "generate")
    return {
        "id": state.name,
        "object": "model",
        "created": _STARTED,
        "owned_by": OWNER,
        "state": state.state,
        "task": task,
    }


def _tasks(request: web.Request) -> dict[str, str]:
    return {spec.id: spec.task for spec in request.app[SETTINGS].models()}


def _adapter_object(router: Router, name: str, tasks: dict[str, str]) -> dict[str, object]:
    """A LoRA adapter as vLLM lists one: its `parent` (the base model) and `root` (its directory)."""
    base, adapter, _ = router.adapters[name]
    model = _model_object(router.model(name), tasks)
    return {**model, "id": name, "parent": base, "root": adapter.path}


async def list_models(request: web.Request) -> web.Response:
    router, tasks = request.app[ROUTER], _tasks(request)
    models = [_model_object(m, tasks) for m in router.models.values() if m.name not in router.adapters]
    models += [_adapter_object(router, name, tasks) for name in router.adapters]
    return web.json_response({"object": "list", "data": models})


async def get_model(request: web.Request) -> web.Response:
    router, name = request.app[ROUTER], request.match_info["model"]
    if name in router.adapters:
        return web.json_response(_adapter_object(router, name, _tasks(request)))
    return web.json_response(_model_object(router.model(name), _tasks(request)))


async def models_status(request: web.Request) -> web.Response:
    """Per model: state, engine, device, replicas, and the counters that show batching and cancel."""
    models = request.app[ROUTER].models
    return web.json_response({"object": "list", "data": [m.status() for m in models.values()]})


class ModelName(StrictBody):
    """Which model: `name`, or `model` / `model_id` as other servers call it."""

    name: str | None = Field(None, min_length=1)
    model: str | None = Field(None, min_length=1)
    model_id: str | None = Field(None, min_length=1)

    def which(self, request: web.Request) -> str:
        given = self.name or self.model or self.model_id
        if given is None:
            raise APIError(
                400, "Name the model: `name` (or `model`, `model_id`).", "missing_required_parameter", "name"
            )
        request.app[ROUTER].model(given, param="name")
        return given


async def load_model(request: web.Request) -> web.Response:
    """Load the model and wait until it is ready (or its load fails, or the load timeout)."""
    model = (await read_body(request, ModelName)).which(request)
    await request.app[ROUTER].wait_ready(model)
    return web.json_response(request.app[ROUTER].models[model].status())


async def unload_model(request: web.Request) -> web.Response:
    """Let the model's requests finish, then stop its workers; it loads again on its next request."""
    model = (await read_body(request, ModelName)).which(request)
    await request.app[SUPERVISOR].unload(model)
    return web.json_response(request.app[ROUTER].models[model].status())


ROUTES = [
    Route("/v1/chat/completions", "Chat completion", ChatCompletionRequest, "required"),
    Route("/v1/completions", "Text completion", CompletionRequest, "required"),
    Route("/v1/embeddings", "Embeddings of texts or token ids", EmbeddingRequest, "required"),
    Route("/v1/tokenize", "A prompt's tokens (vLLM's shape)", tokenize.TokenizeRequest, "required"),
    Route("/v1/detokenize", "Tokens' text (vLLM's shape)", tokenize.DetokenizeRequest, "required"),
    Route("/v1/rerank", "Rerank documents for a query (Jina/Cohere shape)", rerank.RerankRequest, "required"),
    Route("/v1/models", "The models served"),
    Route("/v1/models/status", "Per-model state and counters"),
    Route("/v1/models/{model}", "One model", model="path"),
]


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/tokenize", tokenize.tokenize)
    app.router.add_post("/v1/detokenize", tokenize.detokenize)
    for path in rerank.PATHS:
        app.router.add_post(path, rerank.rerank)
    for path, handler in audio.PATHS.items():
        app.router.add_post(path, handler)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/status", models_status)
    app.router.add_post("/v1/models/load", load_model)
    app.router.add_post("/v1/models/unload", unload_model)
    app.router.add_get("/v1/models/{model}", get_model)
