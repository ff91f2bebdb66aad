"""The request path before a handler, outermost first: request context and log line, OpenAI-shaped
errors, CORS, API keys, rate limit. Each is a small function over what the app holds."""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from gateway.clients import Caller, client_address, fingerprint, presented_key
from gateway.errors import APIError, Style
from gateway.ratelimit import Decision, SharedRateLimiter
from gateway.state import CALLER, ERROR_STYLES, GUARDS, METRICS, ROUTER

log = structlog.get_logger()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# no key needed: the web pages and their files hold no data (what they show comes from the API)
OPEN_PATHS = {"/health", "/openapi.json", "/", "/status"}
STATIC_PREFIX = "/static/"
METRICS_PATHS = {"/metrics", "/v1/metrics"}  # need the key unless --metrics-need-key false
# what the operator watches (the status page polls it): an admin key once admin keys are set
OPERATOR_PATHS = {"/v1/models/status", *METRICS_PATHS}
# not rate limited: reads of the gateway's own state, which the status page polls each second
UNLIMITED_PATHS = {"/health", "/v1/models/status", *METRICS_PATHS}
# model management: an admin key when keys are set (an ordinary key gets 403)
ADMIN_PATHS = {
    "/v1/models/load",
    "/v1/models/unload",
    "/models/load",
    "/models/unload",
    "/v1/load_lora_adapter",
    "/v1/unload_lora_adapter",
    "/v1/lora/load",
    "/v1/lora/unload",
}
CONVERT_JOBS = "/api/convert/cross"  # starting and reading conversion jobs; not .../paths
LIMIT = web.RequestKey("rate_decision", Decision)  # the limiter's answer, for the response headers
CORS = web.RequestKey("cors", dict[str, str])  # CORS headers for the answer
# what the handler learned, for the request's log line: model, tokens, time to first token
LOG_FIELDS = web.RequestKey("log_fields", dict[str, object])


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request id on every log line of the request and on the response; one line at the end."""
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 499  # the client left before an answer
    request[LOG_FIELDS] = fields = {}
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
        return response
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"  # bounded label values
        model = fields.get("model")  # a label only when it is a served model: bounded values
        served = request.app.get(ROUTER)
        model = model if isinstance(model, str) and served is not None and model in served.models else ""
        request.app[METRICS].requests.labels(route, model, str(status)).inc()
        log.info(
            "request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
            **fields,
        )


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves in its route family's shape (OpenAI's unless the family has its own):
    ours, aiohttp's (404, 405, 413) and unexpected ones."""
    style = error_style(request)
    try:
        return await handler(request)
    except APIError as exc:
        return exc.response(style)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {
            404: f"Unknown route {request.method} {request.path}.",
            405: f"Method {request.method} is not allowed on {request.path}.",
            413: "The request body is too large.",
        }.get(exc.status, exc.reason)
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        code = exc.reason.lower().replace(" ", "_")
        return APIError(exc.status, message, code, headers=headers).response(style)
    except ConnectionResetError:  # the client left while we wrote (aiohttp cancels the handler after)
        log.info("client went away")
        return web.Response(status=499)  # for the request's log line and metrics: the client is gone
    except Exception:
        log.exception("unhandled error")
        return APIError(500, "The server failed on this request.", "internal_error").response(style)


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Browsers from the allowed origins may call; their preflight needs no key."""
    origins = request.app[GUARDS].cors_origins
    origin = request.headers.get("Origin")
    if not origins or origin is None or ("*" not in origins and origin not in origins):
        return await handler(request)
    allow = {"Access-Control-Allow-Origin": "*" if "*" in origins else origin, "Vary": "Origin"}
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return web.Response(
            status=204,
            headers={
                **allow,
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "*"),
                "Access-Control-Max-Age": "600",
            },
        )
    request[CORS] = allow
    return await handler(request)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    guards = request.app[GUARDS]
    address = request[LOG_FIELDS]["client"] = client_address(request, guards.trusted_proxies)
    request[CALLER] = Caller(address)
    if not guards.keys or _open(request.path) or _public_metrics(request):
        return await handler(request)
    key = presented_key(request)
    if not _matches(key, guards.keys):
        await _limit(request)  # a client without a valid key is limited by its address: 429 before 401
        raise APIError(
            401,
            "Incorrect or missing API key. Send it as `Authorization: Bearer KEY`.",
            "invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key_id = fingerprint(key)  # type: ignore[arg-type]  # key is set when it matched
    admin = _matches(key, guards.admin_keys)
    request[CALLER] = Caller(f"key:{key_id}", may_load=admin or guards.keys_may_load)
    request[LOG_FIELDS]["key"] = key_id
    if _model_management(request.path, request.method) and not admin:
        message = "Model management (loading, unloading, converting, adapters) needs an admin key."
        raise APIError(403, message, "permission_denied")
    if request.path in OPERATOR_PATHS and guards.admin_keys and not admin:
        raise APIError(403, "The server's status and metrics need an admin key.", "permission_denied")
    return await handler(request)


def _open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(STATIC_PREFIX)


def _model_management(path: str, method: str) -> bool:
    jobs = path == CONVERT_JOBS or (path.startswith(f"{CONVERT_JOBS}/") and path != f"{CONVERT_JOBS}/paths")
    scales = path == "/lora-adapters" and method == "POST"  # llama.cpp's: setting adapters' scales
    return path in ADMIN_PATHS or jobs or scales


def error_style(request: web.Request) -> Style:
    """The route family's error shape: by its path, or by a prefix ending in / (the /api/ routes)."""
    styles, path = request.app[ERROR_STYLES], request.path
    if path in styles:
        return styles[path]
    prefixes = [p for p in styles if p.endswith("/") and path.startswith(p)]
    return styles[max(prefixes, key=len)] if prefixes else "openai"


def _matches(key: str | None, keys: list[str]) -> bool:
    """Compared against every key, whatever matches, so timing says nothing about which is close."""
    matches = [hmac.compare_digest(key.encode(), k.encode()) for k in keys] if key else []
    return any(matches)


def _public_metrics(request: web.Request) -> bool:
    return request.path in METRICS_PATHS and not request.app[GUARDS].metrics_need_key


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    await _limit(request)
    return await handler(request)


async def _limit(request: web.Request) -> None:
    """Take one request from the caller's bucket (its key's, else its address's); 429 when empty."""
    limiter = request.app[GUARDS].limiter
    skip = (
        request.path in UNLIMITED_PATHS
        or request.path.startswith(STATIC_PREFIX)
        or request.method == "OPTIONS"
        or LIMIT in request
    )
    if limiter is None or skip:
        return
    try:
        decision = await limiter.decide(request[CALLER].id)
    except ConnectionError as exc:  # shared limits, fail-closed, and Redis is away
        raise APIError(503, f"{exc}; try again shortly.", "rate_limits_unavailable") from None
    finally:
        if isinstance(limiter, SharedRateLimiter):
            request.app[METRICS].shared_limits_up.set(1 if limiter.up else 0)
    request[LIMIT] = decision
    if not decision.allowed:
        request.app[METRICS].rate_limited.inc()
        raise APIError(
            429,
            f"Rate limit reached: {limiter.burst} requests at once, then "
            f"{limiter.rate * 60:g} per minute. Retry after {decision.retry_after_s} s.",
            "rate_limit_exceeded",
            headers={"Retry-After": str(decision.retry_after_s), **rate_headers(request)},
        )


def rate_headers(request: web.Request) -> dict[str, str]:
    decision, limiter = request.get(LIMIT), request.app[GUARDS].limiter
    if decision is None or limiter is None:
        return {}
    return {
        "x-ratelimit-limit-requests": f"{limiter.rate * 60:g}",
        "x-ratelimit-remaining-requests": str(decision.remaining),
        "x-ratelimit-reset-requests": f"{decision.reset_s:.1f}s",
    }


async def add_response_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """on_response_prepare: headers every answer carries, streamed or not."""
    response.headers.update(rate_headers(request))  # type: ignore[arg-type]
    response.headers.update(request.get(CORS, {}))
