"""The aiohttp application: middlewares, routes, and the router and workers it starts and stops."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import structlog
from aiohttp import web

from gateway.config import Settings
from gateway.errors import APIError
from gateway.openai.routes import add_routes
from gateway.router import Router
from gateway.state import ROUTER, SETTINGS, SUPERVISOR
from gateway.supervisor import Supervisor

log = structlog.get_logger()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request id on every log line of the request and on the response; one line at the end."""
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 499  # the client left before an answer
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
        return response
    except APIError as exc:
        status = exc.status
        raise
    finally:
        log.info(
            "request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves in OpenAI's shape: ours, aiohttp's (404, 405, 413) and unexpected ones."""
    try:
        return await handler(request)
    except APIError as exc:
        return exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {
            404: f"Unknown route {request.method} {request.path}.",
            405: f"Method {request.method} is not allowed on {request.path}.",
            413: "The request body is too large.",
        }.get(exc.status, exc.reason)
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return APIError(exc.status, message, exc.reason.lower().replace(" ", "_"), headers=headers).response()
    except Exception:
        log.exception("unhandled error")
        return APIError(500, "The server failed on this request.", "internal_error").response()


async def health(request: web.Request) -> web.Response:
    router, settings = request.app[ROUTER], request.app[SETTINGS]
    loading = [m.id for m in settings.models() if m.preload and not router.models[m.id].workers]
    if loading:
        raise APIError(503, "Loading model", "model_loading")
    return web.json_response({"status": "ok"})


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    runtime = settings.runtime_dir or Path(tempfile.mkdtemp(prefix="enginehouse-"))
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    router = Router(f"ipc://{runtime / 'router.sock'}", settings.heartbeat_timeout)
    supervisor = Supervisor(settings, router)
    router.on_silent = supervisor.kill
    app[ROUTER], app[SUPERVISOR] = router, supervisor
    await router.start()
    for spec in settings.models():
        router.expect(spec.id)
        if spec.preload:
            supervisor.start(spec)
    log.info(
        "gateway started",
        host=settings.host,
        port=settings.port,
        router=router.address,
        models=[m.id for m in settings.models()],
    )
    yield
    await supervisor.stop()
    await router.stop()
    if settings.runtime_dir is None:
        shutil.rmtree(runtime, ignore_errors=True)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[request_context, openai_errors], client_max_size=settings.max_body_bytes
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_get("/health", health)
    add_routes(app)
    return app
