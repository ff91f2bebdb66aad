"""Routes in llama.cpp server's shapes, for scripts written against it."""

from __future__ import annotations

from aiohttp import web

from gateway.http.openapi import Route
from gateway.llamacpp.completion import CompletionBody, completion, props
from gateway.llamacpp.embedding import EmbeddingBody, embedding
from gateway.llamacpp.tokenize import DetokenizeBody, TokenizeBody, detokenize, tokenize

ROUTES = [
    Route("/completion", "Text completion (llama.cpp's shape)", CompletionBody, "optional"),
    Route("/props", "The default model's context, slots and chat template (llama.cpp's shape)"),
    Route("/tokenize", "A text's tokens (llama.cpp's shape)", TokenizeBody),
    Route("/detokenize", "Tokens' text (llama.cpp's shape)", DetokenizeBody),
    Route("/embedding", "Embeddings (llama.cpp's shape)", EmbeddingBody, "optional"),
    Route("/embeddings", "Embeddings (llama.cpp's shape)", EmbeddingBody, "optional"),
]


def add_routes(app: web.Application) -> None:
    app.router.add_post("/completion", completion)
    app.router.add_get("/props", props)
    app.router.add_post("/tokenize", tokenize)
    app.router.add_post("/detokenize", detokenize)
    app.router.add_post("/embedding", embedding)
    app.router.add_post("/embeddings", embedding)
