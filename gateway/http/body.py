"""A request body as a validated pydantic model, or a 400 that names the field; the strict base
every family's bodies derive from, and the field types they share."""

from __future__ import annotations

from typing import Annotated, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from gateway.errors import APIError

INT32 = 2**31 - 1  # integers that reach the worker fit the wire
TokenId = Annotated[StrictInt, Field(ge=0, le=INT32)]
MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit per request, llama.cpp's routes too


class StrictBody(BaseModel):
    """JSON types as sent; unknown fields ignored (as vLLM does); no NaN or infinity."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, strict=True)


Body = TypeVar("Body", bound=BaseModel)


async def read_body(request: web.Request, schema: type[Body]) -> Body:
    # Parsed as JSON whatever its Content-Type says, as vLLM and llama.cpp do: `curl -d` sends
    # application/x-www-form-urlencoded. A body that is not JSON gets a 400 that says so.
    return parse_body(await request.read(), schema)


def parse_body(raw: bytes, schema: type[Body]) -> Body:
    """JSON bytes as the schema, or the 400 that names the field (a request's body, a batch line's)."""
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # of a union's failed branches, the one that got furthest says what is wrong, and a bad
        # value says more than a value of the wrong type
        error = max(errors, key=lambda e: (len(e["loc"]), not e["type"].endswith("_type")))
        if error["type"] == "json_invalid":
            raise APIError(400, f"The body is not valid JSON: {error['msg']}", "invalid_json") from None
        if error["type"] == "model_type" and not error["loc"]:
            raise APIError(400, "The body must be a JSON object.", "invalid_body") from None
        param = _param(error["loc"])
        reason = error["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's own
        message = f"Invalid value for `{param}`: {reason}" if param else reason
        code = "missing_required_parameter" if error["type"] == "missing" else "invalid_value"
        raise APIError(400, message, code, param or None) from None


_BRANCHES = {"str", "int", "float", "bool", "none", "dict"}


def _param(loc: tuple[int | str, ...]) -> str:
    """('messages', 0, 'content', 'list[TextPart]', 0, 'type') → 'messages[0].content[0].type':
    the names pydantic gives union branches (str, constrained-str, list[...], CamelCase classes)
    are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif (
            part not in _BRANCHES
            and "[" not in part
            and not part[:1].isupper()
            and not part.startswith("constrained-")
        ):
            out += f".{part}" if out else part
    return out
