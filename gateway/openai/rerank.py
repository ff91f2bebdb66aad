"""Reranking, in the Jina/Cohere shape vLLM and llama.cpp's server accept: POST /v1/rerank (also
/rerank, /v2/rerank as Cohere's v2 client calls it, and llama.cpp's /reranking and /v1/reranking).

    {model, query, documents: [str | {text}], top_n, return_documents}
    → {id, model, results: [{index, relevance_score, document: {text}}], usage}

Results come most relevant first; `top_n` keeps that many. What a score is depends on the model: a
cross-encoder's relevance (its own convention, usually a probability), or an embedding model's
cosine similarity of query and document (a bi-encoder, -1 to 1).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from aiohttp import web
from pydantic import Field

from gateway.http.body import StrictBody, read_body
from gateway.middlewares import LOG_FIELDS
from gateway.state import CALLER, METRICS, ROUTER, SETTINGS
from protocol import Ranked, Rerank

MAX_DOCUMENTS = 1000  # Cohere's limit per request


class RerankDocument(StrictBody):
    text: str


class RerankRequest(StrictBody):
    model: str | None = Field(None, min_length=1)  # the server's first rerank model when left out
    query: str = Field(min_length=1)
    documents: list[str | RerankDocument] = Field(min_length=1, max_length=MAX_DOCUMENTS)
    top_n: Annotated[int, Field(ge=0)] | None = None  # None or 0: all
    return_documents: bool = True
    truncate: bool = False  # cut query and documents past the model's length instead of a 400

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


async def rerank(request: web.Request) -> web.Response:
    body = await read_body(request, RerankRequest)
    model = body.model or request.app[SETTINGS].default_model("rerank")
    request[LOG_FIELDS]["model"] = model
    texts = body.texts()
    message = Rerank(uuid.uuid4().hex, body.query, texts, body.truncate)
    answer = await request.app[ROUTER].ask(model, "rerank", message, request[CALLER])
    assert isinstance(answer, Ranked)
    request.app[METRICS].documents_reranked.labels(model).inc(len(texts))
    request[LOG_FIELDS]["prompt_tokens"] = answer.prompt_tokens
    order = sorted(range(len(texts)), key=lambda i: answer.scores[i], reverse=True)
    results = []
    for index in order[: body.top_n or None]:
        result: dict[str, object] = {"index": index, "relevance_score": answer.scores[index]}
        if body.return_documents:
            result["document"] = {"text": texts[index]}
        results.append(result)
    usage = {"prompt_tokens": answer.prompt_tokens, "total_tokens": answer.prompt_tokens}
    return web.json_response(
        {"id": f"rerank-{message.request_id}", "model": model, "results": results, "usage": usage}
    )


PATHS = ["/v1/rerank", "/rerank", "/v2/rerank", "/reranking", "/v1/reranking"]
