"""The gateway's OpenAPI document, built from the same pydantic models that validate the bodies."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic.json_schema import models_json_schema

from gateway.llamacpp.completion import CompletionBody
from gateway.llamacpp.embedding import EmbeddingBody
from gateway.llamacpp.tokenize import DetokenizeBody, TokenizeBody
from gateway.openai.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from gateway.openai.tokenize import DetokenizeRequest, TokenizeRequest
from gateway.simple.generate import BatchBody, ChatBody, GenerateBody
from gateway.state import ROUTER

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_DETAIL = {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}


def _answers(ok: str, error_schema: str = "Error") -> dict[str, Any]:
    """`error_schema`: Error (OpenAI's shape) or Detail (the simple routes' `{"detail"}`)."""
    error = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{error_schema}"}}}}
    answers: dict[str, Any] = {"200": {"description": ok}}
    for status, what in [
        ("400", "invalid request"),
        ("401", "missing or wrong API key"),
        ("404", "unknown model"),
        ("413", "body too large"),
        ("429", "rate limited"),
        ("503", "model loading or busy"),
        ("504", "timed out"),
    ]:
        answers[status] = {"description": what, **error}
    return answers


def _post(schema: str, summary: str, error_schema: str = "Error") -> dict[str, Any]:
    body = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": body},
            "responses": _answers("a completion, or server-sent events when `stream` is true", error_schema),
        }
    }


def _get(
    summary: str, parameters: list[dict[str, Any]] | None = None, error_schema: str = "Error"
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": _answers(summary, error_schema)}
    if parameters:
        operation["parameters"] = parameters
    return {"get": operation}


_BODIES = (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    TokenizeRequest,
    DetokenizeRequest,
    TokenizeBody,
    DetokenizeBody,
    CompletionBody,
    EmbeddingBody,
    GenerateBody,
    ChatBody,
    BatchBody,
)


def document(models: list[str]) -> dict[str, Any]:
    """The document for this server: `model` fields name the models it serves."""
    _, defs = models_json_schema(
        [(m, "validation") for m in _BODIES],
        ref_template="#/components/schemas/{model}",
    )
    served = {"type": "string", "enum": models}
    for name in (
        "ChatCompletionRequest",
        "CompletionRequest",
        "EmbeddingRequest",
        "TokenizeRequest",
        "DetokenizeRequest",
    ):
        defs["$defs"][name]["properties"]["model"] = served
    for name in ("EmbeddingBody", "GenerateBody", "ChatBody", "BatchBody"):  # model optional here
        defs["$defs"][name]["properties"]["model"] = {"anyOf": [served, {"type": "null"}]}
    model = [{"name": "model", "in": "path", "required": True, "schema": served}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "enginehouse", "version": "1", "description": "OpenAI-compatible LLM serving"},
        "paths": {
            "/v1/chat/completions": _post("ChatCompletionRequest", "Chat completion"),
            "/v1/completions": _post("CompletionRequest", "Text completion"),
            "/v1/embeddings": _post("EmbeddingRequest", "Embeddings of texts or token ids"),
            "/v1/tokenize": _post("TokenizeRequest", "A prompt's tokens (vLLM's shape)"),
            "/v1/detokenize": _post("DetokenizeRequest", "Tokens' text (vLLM's shape)"),
            "/completion": _post("CompletionBody", "Text completion (llama.cpp's shape)"),
            "/props": _get("The default model's context, slots and chat template (llama.cpp's shape)"),
            "/tokenize": _post("TokenizeBody", "A text's tokens (llama.cpp's shape)"),
            "/detokenize": _post("DetokenizeBody", "Tokens' text (llama.cpp's shape)"),
            "/embedding": _post("EmbeddingBody", "Embeddings (llama.cpp's shape)"),
            "/embeddings": _post("EmbeddingBody", "Embeddings (llama.cpp's shape)"),
            "/generate": _post("GenerateBody", "Text generation (simple REST)", "Detail"),
            "/chat": _post("ChatBody", "Chat (simple REST)", "Detail"),
            "/generate/batch": _post("BatchBody", "Prompts generated together (simple REST)", "Detail"),
            "/models/current": _get("The default model and the loaded ones (simple REST)", None, "Detail"),
            "/models/available": _get("Every model and its state (simple REST)", None, "Detail"),
            "/system/info": _get("CPU, memory, devices, loaded models (simple REST)", None, "Detail"),
            "/v1/models": _get("The models served"),
            "/v1/models/status": _get("Per-model state and counters"),
            "/v1/models/{model}": _get("One model", model),
            "/health": _get("Ready, or 503 while a model loads"),
        },
        "components": {"schemas": {**defs["$defs"], "Error": _ERROR, "Detail": _DETAIL}},
        "security": [{}, {"bearer": []}],
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document(list(request.app[ROUTER].models)))
