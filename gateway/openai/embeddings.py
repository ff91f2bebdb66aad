"""POST /v1/embeddings: the inputs go to a worker of the model in one Embed message; the vectors
come back as float32 bytes, sent as JSON numbers or, with `encoding_format: base64`, as is."""

from __future__ import annotations

import array
import base64
import uuid

from aiohttp import web

from gateway.clients import Caller
from gateway.errors import APIError
from gateway.http.body import read_body
from gateway.middlewares import LOG_FIELDS
from gateway.openai.schemas import EmbeddingRequest
from gateway.state import CALLER, ROUTER
from protocol import Embeddings


async def embeddings(request: web.Request) -> web.Response:
    body = await read_body(request, EmbeddingRequest)
    request[LOG_FIELDS]["model"] = body.model
    answer = await embed(request.app, request[CALLER], body)
    request[LOG_FIELDS]["prompt_tokens"] = answer["usage"]["prompt_tokens"]
    return web.json_response(answer)


async def embed(app: web.Application, caller: Caller, body: EmbeddingRequest) -> dict[str, object]:
    """The answer to an embeddings request (a live one, or a batch line)."""
    result = await app[ROUTER].ask(body.model, "embedding", body.wire(uuid.uuid4().hex), caller)
    assert isinstance(result, Embeddings)
    dimension = len(result.vectors[0]) // 4
    if body.dimensions is not None and body.dimensions != dimension:
        raise APIError(
            400,
            f"The model `{body.model}` makes {dimension}-dimensional embeddings and was not trained "
            "to be truncated; leave `dimensions` out or set it to "
            f"{dimension}.",
            "unsupported_parameter",
            "dimensions",
        )
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(vector, body.encoding_format)}
        for i, vector in enumerate(result.vectors)
    ]
    usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
    return {"object": "list", "data": data, "model": body.model, "usage": usage}


def _encode(vector: bytes, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector).decode()
    floats = array.array("f")
    floats.frombytes(vector)  # little-endian float32: this gateway runs on x86 and ARM alike
    return floats.tolist()
