"""Constrained decoding: the JSON schema a request is decoded under (its response format, or the
tool call it must make) and its grammar, compiled by xgrammar.

xgrammar is the structured-decoding library inside OpenVINO GenAI, so the torch engine masks its
logits with the same compiler OpenVINO uses, and both accept and refuse the same schemas. It also
compiles the schema before OpenVINO sees it: a schema that fails inside OpenVINO's step takes the
whole pipeline down with it, so it must be refused (a 400 naming what was wrong) at admission, and
OpenVINO gets the grammar we made of it rather than the schema. The grammar fixes the answer's
layout, so a sampled answer cannot wander off into an endless run of spaces and newlines, as
OpenVINO's own schema conversion lets it (measured: a required tool call at temperature 0 ran out of
100 tokens in newlines). The layout is the one SmolLM2 writes JSON in unprompted: a schema's
object one property a line, indented by two spaces (xgrammar keeps the any-object of `json_object`
on one line). Compact JSON on one line, the layout before, left the model off its own path, and
more answers looped inside a string until their tokens ran out: of the structured-output test's
request at temperature 0.8 (8 in flight, through the server, on an AVX2 CPU), OpenVINO 6 of seeds
0-299 compact vs 0 indented, torch 1 of seeds 0-99 vs 0, ONNX 0 vs 1. Tool calls' arguments are
written out again (workers/tool_calls.py), so only a `response_format` answer shows the layout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protocol import Generate
from workers.engines.base import RequestError
from workers.hf_tokenizer import HfTokenizer
from workers.tool_calls import tool_call_schema

if TYPE_CHECKING:
    import torch
    import xgrammar as xgr


def _xgrammar() -> Any:
    """xgrammar, imported when a worker first decodes under a grammar: it imports torch (about
    210 MB of a worker's memory), which an OpenVINO worker otherwise does without."""
    import xgrammar

    return xgrammar


@dataclass(frozen=True)
class Constraint:
    schema: dict[str, Any]
    param: str  # the request field it came from, for errors

    @property
    def text(self) -> str:
        return json.dumps(self.schema)


def constraint(request: Generate) -> Constraint | None:
    """What the request must be decoded under: the call a `required` or named tool choice must
    make, else its response format (json_object: any JSON object), else nothing."""
    tools = tool_call_schema(request)
    param = "tools" if tools is not None else "response_format"
    given = request.response_format
    if tools is None and given is None:
        return None
    if tools is None and given is not None and given.type == "json_object":
        return Constraint({"type": "object"}, param)
    schema = tools if tools is not None else (given.schema if given is not None else None) or {}
    try:
        return Constraint(closed(schema), param)
    except RecursionError:
        raise RequestError(400, "invalid_schema", "The JSON schema is nested too deeply.", param) from None
    except ValueError as exc:
        raise RequestError(400, "invalid_schema", str(exc), param) from None


LAYOUT = {"any_whitespace": False, "indent": 2}  # xgrammar's JSON layout (above)
SAFE_INTEGER = 2**53 - 1  # I-JSON (RFC 7493): integers past it do not survive a JSON parser
# xgrammar spells a length or count bound out: maxLength 100,000 took 2.6 s to compile, in the
# worker's loop; past this bound a schema is refused rather than left to stall every request
MAX_REPEAT = 16384
_REPEATS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")


def closed(schema: Any) -> Any:
    """The schema as every engine decodes it, so that a sampled answer ends: each object that
    lists its properties closed to others unless it says otherwise (xgrammar's strict mode, written
    out for ONNX Runtime GenAI's llguidance, where SmolLM2 added properties until its tokens ran
    out), and each integer without bounds held to I-JSON's range (at temperature 0.8 one wrote
    digits until its 200 tokens ran out)."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: closed(value) for key, value in schema.items()}
    for key in _REPEATS:
        if isinstance(out.get(key), int | float) and out[key] > MAX_REPEAT:
            raise ValueError(f"`{key}` {out[key]} is past what this server decodes under ({MAX_REPEAT}).")
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if out.get("type") == "integer" and not {
        "minimum",
        "exclusiveMinimum",
        "maximum",
        "exclusiveMaximum",
    } & set(out):
        out.update(minimum=-SAFE_INTEGER, maximum=SAFE_INTEGER)
    return out


class Grammars:
    """xgrammar's compiler for one model's tokenizer; xgrammar caches what it compiled."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: Collection[int]) -> None:
        self._tokenizer, self._vocab_size, self._stop_ids = tokenizer, vocab_size, sorted(stop_ids)
        self._compiler: xgr.GrammarCompiler | None = None

    @property
    def compiler(self) -> xgr.GrammarCompiler:
        if self._compiler is None:  # 0.2 s; only models that get a constrained request pay it
            xgr = _xgrammar()  # imports transformers itself
            tokenizer = self._tokenizer
            hf = tokenizer.for_transformers() if isinstance(tokenizer, HfTokenizer) else tokenizer
            info = xgr.TokenizerInfo.from_huggingface(
                hf, vocab_size=self._vocab_size, stop_token_ids=self._stop_ids
            )
            self._compiler = xgr.GrammarCompiler(info, max_threads=1)
        return self._compiler

    def compile(self, constraint: Constraint) -> xgr.CompiledGrammar:
        """Raises RequestError (400) when xgrammar cannot compile the schema, with its reason."""
        try:
            return self.compiler.compile_json_schema(constraint.text, **LAYOUT)
        except (RuntimeError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            reason = reason.split(": ", 1)[-1] if reason.startswith("[") else reason
            raise RequestError(
                400,
                "invalid_schema",
                f"The JSON schema cannot be used for decoding: {reason}",
                constraint.param,
            ) from exc

    def grammar_text(self, constraint: Constraint) -> str:
        """The schema as the EBNF grammar xgrammar makes of it (compiled first, so a bad schema is
        a 400), for engines that take a grammar (OpenVINO's StructuredOutputConfig.grammar). The
        xgrammar inside OpenVINO 2026.4 is older and reads no `{n, -1}` repetition: written as
        `*`, `+` and `{n,}`."""
        self.compile(constraint)
        text = str(_xgrammar().Grammar.from_json_schema(constraint.text, **LAYOUT))
        return _UNBOUNDED.sub(lambda m: {"0": "*", "1": "+"}.get(m[1], f"{{{m[1]},}}"), text)

    def matcher(self, constraint: Constraint) -> xgr.GrammarMatcher:
        return _xgrammar().GrammarMatcher(self.compile(constraint))


_UNBOUNDED = re.compile(r"\{(\d+), -1\}")


def mask_logits(logits: torch.Tensor, matchers: list[tuple[int, xgr.GrammarMatcher]]) -> None:
    """Set the logits of tokens each row's grammar forbids to -inf (rows [index, vocab], in place)."""
    xgr = _xgrammar()
    bitmask = xgr.allocate_token_bitmask(logits.shape[0], logits.shape[1])
    for row, matcher in matchers:
        matcher.fill_next_token_bitmask(bitmask, row)
    xgr.apply_token_bitmask_inplace(logits, bitmask, indices=[row for row, _ in matchers])
