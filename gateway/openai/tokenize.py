"""POST /v1/tokenize and /v1/detokenize in vLLM's shapes: a model, a prompt or tokens."""

from __future__ import annotations

import uuid

from aiohttp import web
from pydantic import Field

from gateway.http.body import StrictBody, TokenId, read_body
from gateway.state import CALLER, ROUTER
from protocol import Detokenize, Detokenized, Tokenize, Tokenized


class TokenizeRequest(StrictBody):
    model: str = Field(min_length=1)
    prompt: str
    add_special_tokens: bool = True
    return_token_strs: bool = False


class DetokenizeRequest(StrictBody):
    model: str = Field(min_length=1)
    tokens: list[TokenId]


async def tokenize(request: web.Request) -> web.Response:
    body = await read_body(request, TokenizeRequest)
    router = request.app[ROUTER]
    ask = Tokenize(uuid.uuid4().hex, body.prompt, body.add_special_tokens, body.return_token_strs)
    result = await router.ask(body.model, None, ask, request[CALLER])
    assert isinstance(result, Tokenized)
    strs = None
    if result.pieces is not None:
        strs = [piece.decode("utf-8", errors="replace") for piece in result.pieces]
    workers = list(router.models[body.model].workers.values())
    return web.json_response(
        {
            "count": len(result.tokens),
            "max_model_len": workers[0].info.context_length if workers else None,
            "tokens": result.tokens,
            "token_strs": strs,
        }
    )


async def detokenize(request: web.Request) -> web.Response:
    body = await read_body(request, DetokenizeRequest)
    result = await request.app[ROUTER].ask(
        body.model, None, Detokenize(uuid.uuid4().hex, list(body.tokens)), request[CALLER]
    )
    assert isinstance(result, Detokenized)
    return web.json_response({"prompt": result.text})
