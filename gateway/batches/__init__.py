"""OpenAI's Files and Batches APIs: /v1/files (upload, list, read, content, delete) and /v1/batches
(create, read, list, cancel). Files and batches belong to the caller that made them (another key
gets 404); a batch's lines run through the same generation path as live requests, at low priority,
and survive restarts (store.py, runner.py). A batch counts once against the rate limit."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from aiohttp import BodyPartReader, web
from pydantic import Field

from gateway.batches.runner import ENDPOINTS, WINDOW_S, Runner, check_lines
from gateway.batches.store import Store
from gateway.errors import APIError
from gateway.http.body import StrictBody, read_body
from gateway.http.openapi import Route
from gateway.state import CALLER, SETTINGS

STORE = web.AppKey("batch_store", Store)
RUNNER = web.AppKey("batch_runner", Runner)
PURPOSES = ("batch", "batch_output", "user_data")
CHUNK = 1 << 16


class BatchBody(StrictBody):
    input_file_id: str = Field(min_length=1)
    endpoint: str
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = None


ROUTES = [
    Route("/v1/batches", "Create a batch from an uploaded JSONL file", BatchBody),
]


def _not_found(what: str, ident: str, param: str) -> APIError:
    return APIError(404, f"No {what} with id {ident!r}.", "not_found", param)


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def _page(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    shown = items[:limit]
    return {
        "object": "list",
        "data": shown,
        "first_id": shown[0]["id"] if shown else None,
        "last_id": shown[-1]["id"] if shown else None,
        "has_more": len(items) > limit,
    }


def _limit(request: web.Request, default: int) -> int:
    try:
        limit = int(request.query.get("limit", default))
    except ValueError:
        raise APIError(400, "`limit` must be an integer.", "invalid_value", "limit") from None
    if not 1 <= limit <= 10000:
        raise APIError(400, "`limit` must be from 1 to 10000.", "invalid_value", "limit")
    return limit


# --- files ------------------------------------------------------------------------------


async def upload(request: web.Request) -> web.Response:
    """Multipart `file` and `purpose`; the file streams to disk, never whole in memory."""
    store, settings = request.app[STORE], request.app[SETTINGS]
    if not request.content_type.startswith("multipart/"):
        raise APIError(
            400, "Upload a file as multipart/form-data with `file` and `purpose`.", "invalid_request", "file"
        )
    reader = await request.multipart()
    purpose, file_id, filename, size = None, None, None, 0
    try:
        while (part := await reader.next()) is not None:
            assert isinstance(part, BodyPartReader)
            if part.name == "purpose":
                purpose = (await part.text()).strip()
            elif part.name == "file" and file_id is None:
                file_id, filename = store.new_file_id(), part.filename or "upload.jsonl"
                partial = store.path(file_id).with_suffix(".part")
                with partial.open("wb") as out:
                    while chunk := await part.read_chunk(CHUNK):
                        size += len(chunk)
                        if size > settings.max_file_bytes:
                            raise APIError(
                                413,
                                f"Files are at most {settings.max_file_bytes} bytes.",
                                "file_too_large",
                                "file",
                            )
                        out.write(chunk)
        if file_id is None:
            raise APIError(
                400, "Send the file as the multipart field `file`.", "missing_required_parameter", "file"
            )
        if purpose not in PURPOSES:
            raise APIError(
                400, f"`purpose` must be one of {', '.join(PURPOSES)}.", "invalid_value", "purpose"
            )
        store.path(file_id).with_suffix(".part").rename(store.path(file_id))
    except BaseException:
        if file_id is not None:
            store.path(file_id).with_suffix(".part").unlink(missing_ok=True)
        raise
    created = store.add_file(file_id, request[CALLER].id, filename or "upload.jsonl", purpose, size)
    return web.json_response(created)


def _file(request: web.Request) -> dict[str, Any]:
    file_id = request.match_info["file_id"]
    found = request.app[STORE].file(file_id, request[CALLER].id)
    if found is None:
        raise _not_found("file", file_id, "file_id")
    return found


async def list_files(request: web.Request) -> web.Response:
    limit = _limit(request, 10000)
    found = request.app[STORE].files(
        request[CALLER].id, request.query.get("purpose"), limit + 1, request.query.get("after")
    )
    return web.json_response(_page(found, limit))


async def get_file(request: web.Request) -> web.Response:
    return web.json_response(_file(request))


async def file_content(request: web.Request) -> web.FileResponse:
    found = _file(request)
    return web.FileResponse(
        request.app[STORE].path(str(found["id"])), headers={"Content-Type": "application/jsonl"}
    )


async def delete_file(request: web.Request) -> web.Response:
    found = _file(request)
    request.app[STORE].delete_file(str(found["id"]), request[CALLER].id)
    return web.json_response({"id": found["id"], "object": "file", "deleted": True})


# --- batches ----------------------------------------------------------------------------


async def create_batch(request: web.Request) -> web.Response:
    body = await read_body(request, BatchBody)
    store, settings, caller = request.app[STORE], request.app[SETTINGS], request[CALLER]
    if body.endpoint not in ENDPOINTS:
        raise APIError(400, f"`endpoint` must be one of {', '.join(ENDPOINTS)}.", "invalid_value", "endpoint")
    found = store.file(body.input_file_id, caller.id)
    if found is None:
        raise _not_found("file", body.input_file_id, "input_file_id")
    if found["purpose"] != "batch":
        raise APIError(400, "The input file's purpose must be `batch`.", "invalid_value", "input_file_id")
    text = store.path(body.input_file_id).read_text(errors="replace")
    lines, errors = check_lines(text, body.endpoint)
    queued = store.queued_lines(caller.id)
    if not errors and queued + len(lines) > settings.batch_key_lines:
        raise APIError(
            429,
            f"This key has {queued} batch lines queued; {len(lines)} more would pass its "
            f"{settings.batch_key_lines}.",
            "batch_quota_exceeded",
        )
    now = int(time.time())
    batch: dict[str, Any] = {
        "id": f"batch_{uuid.uuid4().hex}",
        "object": "batch",
        "endpoint": body.endpoint,
        "errors": None,
        "input_file_id": body.input_file_id,
        "completion_window": body.completion_window,
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": now,
        "in_progress_at": None,
        "expires_at": now + WINDOW_S,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
        "metadata": body.metadata,
        "_may_load": caller.may_load,
    }
    if errors:  # as OpenAI: the batch is made, and fails its validation, naming the lines
        batch.update(status="failed", failed_at=now, errors={"object": "list", "data": errors[:100]})
        batch["request_counts"]["total"] = 0
        store.add_batch(caller.id, batch, [])
    else:
        store.add_batch(caller.id, batch, lines)
        request.app[RUNNER].start(batch["id"], type(caller)(f"batch:{caller.id}", caller.may_load))
    return web.json_response(_public(batch))


def _batch(request: web.Request) -> dict[str, Any]:
    batch_id = request.match_info["batch_id"]
    found = request.app[STORE].batch(batch_id, request[CALLER].id)
    if found is None:
        raise _not_found("batch", batch_id, "batch_id")
    return found


async def get_batch(request: web.Request) -> web.Response:
    return web.json_response(_public(_batch(request)))


async def list_batches(request: web.Request) -> web.Response:
    limit = _limit(request, 20)
    found = request.app[STORE].batches(request[CALLER].id, limit + 1, request.query.get("after"))
    return web.json_response(_page([_public(b) for b in found], limit))


async def cancel_batch(request: web.Request) -> web.Response:
    """In-flight lines finish; no new one starts; the output holds what completed."""
    batch = _batch(request)
    if batch["status"] in ("validating", "in_progress"):
        batch.update(status="cancelling", cancelling_at=int(time.time()))
        request.app[STORE].put_batch(batch)
    elif batch["status"] not in ("cancelling", "cancelled"):
        raise APIError(400, f"A batch that is {batch['status']} cannot be cancelled.", "invalid_value")
    return web.json_response(_public(batch))


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[STORE] = Store(settings.state_dir, settings.files_dir or settings.state_dir / "files")
    app[RUNNER] = Runner(app, app[STORE])
    app[RUNNER].resume()
    yield
    await app[RUNNER].close()
    app[STORE].close()


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_post("/v1/files", upload)
    app.router.add_get("/v1/files", list_files)
    app.router.add_get("/v1/files/{file_id}", get_file)
    app.router.add_delete("/v1/files/{file_id}", delete_file)
    app.router.add_get("/v1/files/{file_id}/content", file_content)
    app.router.add_post("/v1/batches", create_batch)
    app.router.add_get("/v1/batches", list_batches)
    app.router.add_get("/v1/batches/{batch_id}", get_batch)
    app.router.add_post("/v1/batches/{batch_id}/cancel", cancel_batch)
