"""Server-sent events: the response headers proxies need, and the event framing."""

from __future__ import annotations

from aiohttp import web
from msgspec import json

HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx and ngrok: do not buffer the stream
    "Connection": "keep-alive",
}
DONE = b"data: [DONE]\n\n"


async def open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers=HEADERS)
    await response.prepare(request)
    return response


def event(payload: object, name: str | None = None) -> bytes:
    """One event; with a `name`, an `event:` line before its data (the Responses and Messages APIs)."""
    data = b"data: " + json.encode(payload) + b"\n\n"
    return data if name is None else b"event: " + name.encode() + b"\n" + data
