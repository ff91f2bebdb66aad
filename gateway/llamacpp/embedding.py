"""POST /embedding and /embeddings as llama.cpp's server has them: `content` (or `input`) as a string,
a list of strings or token ids; the answer a list of `{"index", "embedding": [[...]]}` (one pooled
vector per input). `embd_normalize` is llama.cpp's: 2 Euclidean (the default), 1 taxicab, 0 max
absolute scaled to int16, above 2 a p-norm. The model's vectors come L2-normalized, and every one of
those norms is a rescaling of it; -1 (none) cannot be given back and is a 400."""

from __future__ import annotations

import array
import uuid
from typing import Annotated

from aiohttp import web
from pydantic import Field, model_validator

from gateway.http.body import MAX_EMBEDDING_INPUTS as MAX_INPUTS
from gateway.http.body import StrictBody, TokenId, read_body
from gateway.middlewares import LOG_FIELDS
from gateway.state import CALLER, ROUTER, SETTINGS
from protocol import Embed, Embeddings

Input = (
    Annotated[str, Field(min_length=1)]
    | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=MAX_INPUTS)]
    | Annotated[list[TokenId], Field(min_length=1)]
)


class EmbeddingBody(StrictBody):
    content: Input | None = None
    input: Input | None = None  # what newer llama.cpp also takes
    embd_normalize: Annotated[int, Field(ge=-1, le=64)] = 2
    model: str | None = Field(None, min_length=1)
    truncate: bool = False

    @model_validator(mode="after")
    def _one_input(self) -> EmbeddingBody:
        if (self.content is None) == (self.input is None):
            raise ValueError("send the text to embed as `content` (or `input`), one of them")
        if self.embd_normalize == -1:
            raise ValueError(
                "embd_normalize -1 (no normalization) is not available: this model's vectors are "
                "L2-normalized as it defines them; use 0, 1, 2 or a p above 2"
            )
        return self

    def wire(self, request_id: str) -> Embed:
        given = self.content if self.content is not None else self.input
        if isinstance(given, str):
            return Embed(request_id, texts=[given], truncate=self.truncate)
        if given and isinstance(given[0], int):
            return Embed(request_id, token_ids=[list(given)], truncate=self.truncate)  # type: ignore[arg-type]
        return Embed(request_id, texts=list(given or []), truncate=self.truncate)  # type: ignore[arg-type]


def _normalize(vector: bytes, norm: int) -> list[float]:
    floats = array.array("f")
    floats.frombytes(vector)
    values = floats.tolist()
    if norm == 2:
        return values
    if norm == 0:
        scale = 32760.0 / (max(abs(v) for v in values) or 1.0)
    else:
        scale = 1.0 / (sum(abs(v) ** norm for v in values) ** (1.0 / norm) or 1.0)
    return [v * scale for v in values]


async def embedding(request: web.Request) -> web.Response:
    body = await read_body(request, EmbeddingBody)
    model = body.model or request.app[SETTINGS].default_model("embedding")
    request[LOG_FIELDS]["model"] = model
    result = await request.app[ROUTER].ask(model, "embedding", body.wire(uuid.uuid4().hex), request[CALLER])
    assert isinstance(result, Embeddings)
    request[LOG_FIELDS]["prompt_tokens"] = result.prompt_tokens
    answer = [
        {"index": i, "embedding": [_normalize(vector, body.embd_normalize)]}
        for i, vector in enumerate(result.vectors)
    ]
    return web.json_response(answer)
