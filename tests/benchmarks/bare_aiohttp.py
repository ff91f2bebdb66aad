"""The baseline of the gateway-overhead benchmark: a bare aiohttp handler on uvloop that streams
the bytes our gateway streams for the test engine (the same chunk JSON, one SSE event per token,
the usage chunk, [DONE]), with no router, worker or middleware behind it.

    python -m tests.benchmarks.bare_aiohttp PORT
"""

from __future__ import annotations

import sys
import time
import uuid

import uvloop
from aiohttp import web
from msgspec import json

PIECE = " tok"


async def chat(request: web.Request) -> web.StreamResponse:
    body = json.decode(await request.read())
    tokens = int(body.get("max_tokens") or 16)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": body["model"]}
    head |= {"object": "chat.completion.chunk", "usage": None}
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    start = {
        "index": 0,
        "delta": {"role": "assistant", "content": ""},
        "logprobs": None,
        "finish_reason": None,
    }
    await response.write(b"data: " + json.encode({**head, "choices": [start]}) + b"\n\n")
    for _ in range(tokens):
        piece = {"index": 0, "delta": {"content": PIECE}, "logprobs": None, "finish_reason": None}
        await response.write(b"data: " + json.encode({**head, "choices": [piece]}) + b"\n\n")
    end = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "length"}
    usage = {"prompt_tokens": 6, "completion_tokens": tokens, "total_tokens": 6 + tokens}
    await response.write(b"data: " + json.encode({**head, "choices": [end]}) + b"\n\n")
    await response.write(b"data: " + json.encode({**head, "choices": [], "usage": usage}) + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    return response


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), loop=uvloop.new_event_loop(), print=None)
