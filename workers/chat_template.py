"""A model's Hugging Face chat template rendered as transformers' apply_chat_template renders it,
for every tokenizer an engine holds: jinja2's immutable sandbox (templates come from model files,
untrusted), trim_blocks and lstrip_blocks, loop controls, and the names templates use beside
jinja's own — `tojson` (no HTML escaping, keeps non-ASCII), `raise_exception`, `strftime_now`,
`dict`, a `namespace` that refuses underscore names, and the `{% generation %}` block (rendered
as its body). The template sees the messages (keys whose value is None left out), the tools,
`add_generation_prompt` and the tokenizer's named special tokens (`bos_token`, `eos_token`, ...).
The text is then tokenized without special tokens, as transformers does."""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateError(ValueError):
    """The template cannot render these messages (its own raise_exception, or a fault in it)."""


def render(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    """The prompt text for `messages` (and `tools`), ending with the assistant's turn opened."""
    template = _pick(tokenizer.chat_template, tools)
    try:
        return _compile(template).render(
            messages=[{k: v for k, v in m.items() if v is not None} for m in messages],
            tools=tools or None,
            documents=None,
            add_generation_prompt=True,
            **tokenizer.special_tokens_map,
        )
    except Exception as exc:  # raise_exception, or the template's own fault on these messages
        raise TemplateError(str(exc) or type(exc).__name__) from exc


def _pick(template: str | dict[str, str] | None, tools: list[dict[str, Any]] | None) -> str:
    """A model with named templates: `tool_use` when tools are offered, else `default`."""
    if isinstance(template, dict):
        template = template.get("tool_use") if tools and "tool_use" in template else template.get("default")
    if not template:
        raise TemplateError("this model has no chat template; send a prompt instead of messages")
    return template


@lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    return _environment().from_string(template)


class _Generation(Extension):
    """`{% generation %}...{% endgeneration %}` marks the assistant's tokens for training masks;
    rendered as its body."""

    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Any) -> str:
        return str(caller())


class _Namespace(jinja2.utils.Namespace):
    """jinja's namespace, refusing the underscore names that reach Python's internals."""

    def __init__(*args: Any, **kwargs: Any) -> None:
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(f"a namespace cannot hold the name {name!r}")


class _Dict:
    """`dict(...)` and `dict.fromkeys(...)` in a template, and nothing else of the type."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args, **kwargs)


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals.update(
        raise_exception=_raise_exception, strftime_now=_strftime_now, dict=_Dict(), namespace=_Namespace
    )
    return env
