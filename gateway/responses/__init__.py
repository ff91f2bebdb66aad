"""OpenAI's Responses API: POST /v1/responses (streamed or not, or in the background), and the
stored responses: GET and DELETE /v1/responses/{id}, POST /v1/responses/{id}/cancel. A route
family like the others: its schemas and shapes on the one generation path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from gateway.errors import APIError
from gateway.http.body import read_body
from gateway.http.generation import generate_detached, serve_generation
from gateway.http.openapi import Route
from gateway.responses.schemas import ResponseRequest
from gateway.responses.shape import ResponseShape
from gateway.responses.store import ResponseStore
from gateway.state import CALLER, SETTINGS
from protocol import ChatMessage, Generate, ToolCall

log = structlog.get_logger()
STORE = web.AppKey("response_store", ResponseStore)
BACKGROUND = web.AppKey("background_responses", dict[str, asyncio.Task[None]])

ROUTES = [Route("/v1/responses", "A model response (OpenAI's Responses API)", ResponseRequest, "required")]


async def create(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, ResponseRequest)
    store, caller = request.app[STORE], request[CALLER].id
    history: list[ChatMessage] = []
    if body.previous_response_id is not None:
        found = store.get(caller, body.previous_response_id)
        if found is None:
            raise _not_found(body.previous_response_id, "previous_response_id")
        history = found[1]
    settings = request.app[SETTINGS]
    generate = body.generate(history, settings.default_max_tokens, settings.max_tokens_cap)
    warnings = [f"Tools of type `{kind}` are not supported here; skipped." for kind in body.skipped_tools()]
    shape = ResponseShape(body.model, body.echo(), warnings)
    conversation = [*history, *body.messages()]
    if body.background:
        return _in_background(request, body, generate, shape, conversation)
    response = await serve_generation(request, body.model, "chat", [generate], shape, body.stream)
    if body.store and shape.final is not None:
        store.put(caller, shape.final, [*conversation, _answer(shape.final)])
    return response


def _in_background(
    request: web.Request,
    body: ResponseRequest,
    generate: Generate,
    shape: ResponseShape,
    conversation: list[ChatMessage],
) -> web.Response:
    store, caller, running = request.app[STORE], request[CALLER].id, request.app[BACKGROUND]
    queued = shape.response("queued")
    store.put(caller, queued, conversation)

    async def run() -> None:
        try:
            result = await generate_detached(request.app, request[CALLER], body.model, "chat", [generate])
            final = shape.response("completed", result)
            store.put(caller, final, [*conversation, _answer(final)])
        except asyncio.CancelledError:
            store.put(caller, shape.response("cancelled"), conversation)
        except (APIError, TimeoutError) as exc:
            failed = shape.response("failed")
            error = shape.error(exc)
            failed["error"] = {"code": error.code or "server_error", "message": error.message}
            store.put(caller, failed, conversation)
        finally:
            running.pop(shape.id, None)

    running[shape.id] = asyncio.create_task(run())
    return web.json_response(queued)


def _answer(response: dict[str, object]) -> ChatMessage:
    """The response's output as the assistant message a continuation reads."""
    text, calls = "", []
    for item in response["output"]:  # type: ignore[attr-defined]
        if item["type"] == "message":
            text += "".join(part["text"] for part in item["content"])
        elif item["type"] == "function_call":
            calls.append(ToolCall(item["call_id"], item["name"], item["arguments"]))
    return ChatMessage("assistant", text, calls)


def _not_found(response_id: str, param: str | None = None) -> APIError:
    return APIError(404, f"No response with id `{response_id}` was found.", "response_not_found", param)


async def get(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    found = request.app[STORE].get(request[CALLER].id, response_id)
    if found is None:
        raise _not_found(response_id)
    return web.json_response(found[0])


async def delete(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    if not request.app[STORE].delete(request[CALLER].id, response_id):
        raise _not_found(response_id)
    return web.json_response({"id": response_id, "object": "response", "deleted": True})


async def cancel(request: web.Request) -> web.Response:
    """Stop a background response; one that is not running is answered as it stands."""
    response_id = request.match_info["response_id"]
    store, caller = request.app[STORE], request[CALLER].id
    if store.get(caller, response_id) is None:
        raise _not_found(response_id)
    task = request.app[BACKGROUND].get(response_id)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    found = store.get(caller, response_id)
    assert found is not None
    return web.json_response(found[0])


async def _store(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[STORE] = ResponseStore(settings.state_dir / "responses.sqlite3", settings.responses_keep)
    app[BACKGROUND] = {}
    yield
    for task in list(app[BACKGROUND].values()):
        task.cancel()
    await asyncio.gather(*app[BACKGROUND].values(), return_exceptions=True)
    app[STORE].close()


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_store)
    app.router.add_post("/v1/responses", create)
    app.router.add_get("/v1/responses/{response_id}", get)
    app.router.add_delete("/v1/responses/{response_id}", delete)
    app.router.add_post("/v1/responses/{response_id}/cancel", cancel)
