"""POST /tokenize and /detokenize as llama.cpp's server has them. llama.cpp serves one model, so
`model` is optional here: without it, the first chat model this server serves."""

from __future__ import annotations

import uuid

from aiohttp import web
from pydantic import Field

from gateway.http.body import StrictBody, TokenId, read_body
from gateway.state import CALLER, ROUTER, SETTINGS
from protocol import Detokenize, Detokenized, Tokenize, Tokenized


class TokenizeBody(StrictBody):
    content: str
    add_special: bool = False
    with_pieces: bool = False
    model: str | None = Field(None, min_length=1)


class DetokenizeBody(StrictBody):
    tokens: list[TokenId]
    model: str | None = Field(None, min_length=1)


async def tokenize(request: web.Request) -> web.Response:
    body = await read_body(request, TokenizeBody)
    ask = Tokenize(uuid.uuid4().hex, body.content, body.add_special, body.with_pieces)
    result = await request.app[ROUTER].ask(
        body.model or request.app[SETTINGS].default_model(), None, ask, request[CALLER]
    )
    assert isinstance(result, Tokenized)
    if result.pieces is None:
        return web.json_response({"tokens": result.tokens})
    tokens = [
        {"id": i, "piece": _text_or_bytes(piece)}
        for i, piece in zip(result.tokens, result.pieces, strict=True)
    ]
    return web.json_response({"tokens": tokens})


def _text_or_bytes(piece: bytes) -> str | list[int]:
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return list(piece)


async def detokenize(request: web.Request) -> web.Response:
    body = await read_body(request, DetokenizeBody)
    ask = Detokenize(uuid.uuid4().hex, list(body.tokens))
    result = await request.app[ROUTER].ask(
        body.model or request.app[SETTINGS].default_model(), None, ask, request[CALLER]
    )
    assert isinstance(result, Detokenized)
    return web.json_response({"content": result.text})
