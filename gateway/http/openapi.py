"""OpenAPI pieces built from the same pydantic models that validate the bodies: each route family
lists its routes (`Route`), `document` makes one family's paths and schemas, and gateway/openapi.py
puts the families' together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.errors import Style


@dataclass(frozen=True)
class Route:
    path: str
    summary: str
    body: type[BaseModel] | None = None  # a POST with this body; None: a GET
    model: Literal["required", "optional", "path"] | None = None  # how it names a served model
    errors: Style = "openai"  # the shape of its errors


def _answers(ok: str, errors: Style) -> dict[str, Any]:
    schema = {"openai": "Error", "detail": "Detail", "anthropic": "AnthropicError"}[errors]
    error = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}
    answers: dict[str, Any] = {"200": {"description": ok}}
    for status, what in [
        ("400", "invalid request"),
        ("401", "missing or wrong API key"),
        ("404", "unknown model"),
        ("413", "body too large"),
        ("429", "rate limited"),
        ("503", "model loading or busy"),
        ("504", "timed out"),
    ]:
        answers[status] = {"description": what, **error}
    return answers


def document(routes: list[Route], models: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The paths and schemas of these routes; `model` fields name the served models."""
    bodies = [r.body for r in routes if r.body is not None]
    _, defs = models_json_schema(
        [(b, "validation") for b in bodies], ref_template="#/components/schemas/{model}"
    )
    schemas = defs.get("$defs", {})
    served = {"type": "string", "enum": models}
    paths: dict[str, Any] = {}
    for route in routes:
        if route.body is None:
            operation: dict[str, Any] = {
                "summary": route.summary,
                "responses": _answers(route.summary, route.errors),
            }
            if route.model == "path":
                operation["parameters"] = [
                    {"name": "model", "in": "path", "required": True, "schema": served}
                ]
            paths[route.path] = {"get": operation}
            continue
        name = route.body.__name__
        if route.model is not None:
            optional = {"anyOf": [served, {"type": "null"}]}
            schemas[name]["properties"]["model"] = served if route.model == "required" else optional
        content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
        ok = "the answer, or server-sent events when `stream` is true"
        paths[route.path] = {
            "post": {
                "summary": route.summary,
                "requestBody": {"required": True, "content": content},
                "responses": _answers(ok, route.errors),
            }
        }
    return paths, schemas
