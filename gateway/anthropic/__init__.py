"""Anthropic's Messages API: POST /v1/messages (streamed or not) and /v1/messages/count_tokens,
for the `anthropic` SDK and Claude Code. Errors in Anthropic's shape; the key may come as
`x-api-key` (as Anthropic's clients send it) or as a Bearer token."""

from __future__ import annotations

import uuid

from aiohttp import web

from gateway.anthropic.schemas import CountTokensRequest, MessagesRequest
from gateway.anthropic.shape import MessageShape
from gateway.http.body import read_body
from gateway.http.generation import serve_generation
from gateway.http.openapi import Route
from gateway.state import CALLER, ERROR_STYLES, ROUTER, SETTINGS
from protocol import Tokenize, Tokenized

ROUTES = [
    Route("/v1/messages", "A message (Anthropic's Messages API)", MessagesRequest, "required", "anthropic"),
    Route(
        "/v1/messages/count_tokens",
        "The input tokens of a message request (Anthropic's Messages API)",
        CountTokensRequest,
        "required",
        "anthropic",
    ),
]


async def messages(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, MessagesRequest)
    generate = body.generate(request.app[SETTINGS].max_tokens_cap)
    shape = MessageShape(body.model)
    return await serve_generation(request, body.model, "chat", [generate], shape, body.stream)


async def count_tokens(request: web.Request) -> web.Response:
    """The prompt the messages (and tools) become through the model's chat template, counted."""
    body = await read_body(request, CountTokensRequest)
    ask = Tokenize(uuid.uuid4().hex, "", messages=body.chat(), tools=body.wire_tools())
    result = await request.app[ROUTER].ask(body.model, "chat", ask, request[CALLER])
    assert isinstance(result, Tokenized)
    return web.json_response({"input_tokens": len(result.tokens)})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    app[ERROR_STYLES].update((route.path, route.errors) for route in ROUTES)
