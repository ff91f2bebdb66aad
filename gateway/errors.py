"""Errors in OpenAI's shape, {"error": {"message", "type", "param", "code"}}; or, on the routes of
other families, the simple REST server's `{"detail": message}` or Anthropic's
`{"type": "error", "error": {"type", "message"}}`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from msgspec import json

if TYPE_CHECKING:  # aiohttp is imported after the workers are started (gateway/server.py)
    from aiohttp import web

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
    504: "timeout_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}
Style = Literal["openai", "detail", "anthropic"]


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        kind = _TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def anthropic_body(self) -> dict[str, object]:
        kind = _ANTHROPIC_TYPES.get(
            self.status, "api_error" if self.status >= 500 else "invalid_request_error"
        )
        return {"type": "error", "error": {"type": kind, "message": self.message}}

    def response(self, style: Style = "openai") -> web.Response:
        """In the route family's shape: OpenAI's, the FastAPI-style `{"detail"}`, or Anthropic's."""
        from aiohttp import web

        body = {
            "openai": self.body,
            "detail": lambda: {"detail": self.message},
            "anthropic": self.anthropic_body,
        }
        return web.Response(
            status=self.status,
            body=json.encode(body[style]()),
            content_type="application/json",
            headers=self.headers,
        )
