"""A request body as a validated pydantic model, or an OpenAI-shaped 400 that names the field."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.errors import APIError

Body = TypeVar("Body", bound=BaseModel)


async def read_body(request: web.Request, schema: type[Body]) -> Body:
    # Parsed as JSON whatever its Content-Type says, as vLLM and llama.cpp do: `curl -d` sends
    # application/x-www-form-urlencoded. A body that is not JSON gets a 400 that says so.
    raw = await request.read()
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        if error["type"] == "json_invalid":
            raise APIError(400, f"The body is not valid JSON: {error['msg']}", "invalid_json") from None
        if error["type"] == "model_type" and not error["loc"]:
            raise APIError(400, "The body must be a JSON object.", "invalid_body") from None
        param = _param(error["loc"])
        message = f"Invalid value for `{param}`: {error['msg']}" if param else error["msg"]
        code = "missing_required_parameter" if error["type"] == "missing" else "invalid_value"
        raise APIError(400, message, code, param or None) from None


def _param(loc: tuple[int | str, ...]) -> str:
    """('messages', 0, 'role') → 'messages[0].role'; union branch names are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not any(c in part for c in "[]()") and not part.startswith(("function-", "list[", "str")):
            out += f".{part}" if out else part
    return out
