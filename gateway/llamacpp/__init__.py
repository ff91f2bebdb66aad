"""Routes in llama.cpp server's shapes, for scripts written against it."""

from __future__ import annotations

from aiohttp import web

from gateway.llamacpp.completion import completion, props
from gateway.llamacpp.embedding import embedding
from gateway.llamacpp.tokenize import detokenize, tokenize


def add_routes(app: web.Application) -> None:
    app.router.add_post("/completion", completion)
    app.router.add_get("/props", props)
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/detokenize", detokenize)
    app.router.add_post("/embedding", embedding)
    app.router.add_post("/embeddings", embedding)
