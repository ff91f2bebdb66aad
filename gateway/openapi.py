"""GET /openapi.json: the route families' documents, put together."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import anthropic, llamacpp, modellab, openai, responses, simple
from gateway.http.openapi import Route, document
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
_ANTHROPIC_ERROR = {
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}
_SERVER = [Route("/health", "Ready, or 503 while a model loads")]


def full_document(models: list[str]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": _ERROR, "Detail": _DETAIL, "AnthropicError": _ANTHROPIC_ERROR}
    for routes in (
        openai.ROUTES,
        responses.ROUTES,
        anthropic.ROUTES,
        llamacpp.ROUTES,
        simple.ROUTES,
        modellab.ROUTES,
        _SERVER,
    ):
        family_paths, family_schemas = document(routes, models)
        paths.update(family_paths)
        schemas.update(family_schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "enginehouse", "version": "1", "description": "OpenAI-compatible LLM serving"},
        "paths": paths,
        "components": {"schemas": schemas},
        "security": [{}, {"bearer": []}],
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(full_document(list(request.app[ROUTER].models)))
