"""Tool calling for models whatever their chat template knows: the messages as the template takes
them, the grammar that makes a required call parse, and the parser that finds calls in an answer.

A template that renders `tools` itself gets them, and the messages' tool calls and results as
they are. For one that does not (SmolLM2's), the worker writes the tools into the system message
and asks for calls as one JSON object, `{"tool_calls": [{"name", "arguments"}]}`, the way
llama.cpp's generic handler does; past calls are written back the same way, and tool results as
`tool` messages of their content alone (wrapped in JSON, SmolLM2 echoed the JSON back rather than
answering from it). `required` and a named function are decoded under a JSON schema of that
object, so they always parse; with `auto` the answer is parsed, and what does not parse stays text.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from protocol import ChatMessage, Generate, Tool, ToolCall, ToolCallDelta

_INSTRUCTIONS = (
    "You can call these tools (JSON schemas of their arguments):\n{tools}\n"
    'To call a tool, answer with only a JSON object with the key "tool_calls": a list of calls{parallel}, '
    'each with the tool\'s "name" and the "arguments" taken from the conversation, for example '
    '{{"tool_calls": [{{"name": "{example}", "arguments": {{...}}}}]}}\n'
    "Otherwise answer the user normally."
)


def template_renders_tools(template: str | dict[str, str] | None) -> bool:
    """Whether the template the tools would be rendered with (a model's `tool_use` one, where it
    has named templates) reads them."""
    if isinstance(template, dict):
        template = template.get("tool_use") or template.get("default")
    return bool(template) and "tools" in (template or "")


def chat_messages(request: Generate, native_tools: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The request's messages as the template takes them, and the tools to pass it (empty when
    the tools went into the system message, or when tool_choice is `none`)."""
    messages = request.messages or []
    offered = _offered(request)
    if native_tools:
        tools = [{"type": "function", "function": _tool_dict(t)} for t in offered]
        return [_native(m) for m in messages], tools
    out = [_generic(m) for m in messages]
    if offered:
        parallel = "" if request.parallel_tool_calls else " (one call at a time)"
        listed = "\n".join(json.dumps(_tool_dict(t)) for t in offered)
        text = _INSTRUCTIONS.format(tools=listed, parallel=parallel, example=offered[0].name)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{text}"}
        else:
            out.insert(0, {"role": "system", "content": text})
    return out, []


def _offered(request: Generate) -> list[Tool]:
    if request.tool_choice == "none":
        return []
    if request.tool_choice == "function":
        return [t for t in request.tools if t.name == request.tool_name]
    return list(request.tools)


def _tool_dict(tool: Tool) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "parameters": tool.parameters}


def _native(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _loads(c.arguments)}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


def _generic(message: ChatMessage) -> dict[str, str]:
    if message.tool_calls:
        calls = [{"name": c.name, "arguments": _loads(c.arguments)} for c in message.tool_calls]
        text = json.dumps({"tool_calls": calls})
        return {"role": "assistant", "content": f"{message.content}\n{text}" if message.content else text}
    return {"role": message.role, "content": message.content}


def _loads(arguments: str) -> object:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def tool_call_schema(request: Generate) -> dict[str, Any] | None:
    """The JSON schema an answer is decoded under when it must call a tool; None when it need not."""
    if request.tool_choice not in ("required", "function"):
        return None
    calls = [
        {
            "type": "object",
            "properties": {
                "name": {"const": tool.name},
                "arguments": tool.parameters or {"type": "object"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for tool in _offered(request)
    ]
    one = request.tool_choice == "function" or not request.parallel_tool_calls
    array: dict[str, Any] = {"type": "array", "items": {"anyOf": calls}, "minItems": 1}
    if one:
        array["maxItems"] = 1
    return {
        "type": "object",
        "properties": {"tool_calls": array},
        "required": ["tool_calls"],
        "additionalProperties": False,
    }


def parse_tool_calls(text: str, names: set[str]) -> list[ToolCall] | None:
    """The calls in an answer, or None when it is not (only) calls of these tools. Takes our JSON
    object, a list of calls, one call, and Hermes-style `<tool_call>...</tool_call>` blocks."""
    text = text.strip()
    if text.startswith("<tool_call>"):
        blocks = [b.split("</tool_call>")[0] for b in text.split("<tool_call>")[1:]]
        found = [_json(b) for b in blocks]
    else:
        found = [_json(text)]
    calls: list[Any] = []
    for item in found:
        if isinstance(item, dict) and "tool_calls" in item:
            item = item["tool_calls"]
        calls.extend(item if isinstance(item, list) else [item])
    out = []
    for call in calls:
        if not isinstance(call, dict) or call.get("name") not in names:
            return None
        arguments = call.get("arguments", call.get("parameters", {}))
        if isinstance(arguments, str):
            arguments = _json(arguments)
        if not isinstance(arguments, dict):
            return None
        out.append(ToolCall(f"call_{secrets.token_hex(12)}", call["name"], json.dumps(arguments)))
    return out or None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


class ToolCallOutput:
    """Between the detokenizer and the wire: with tools offered, an answer that may be calls is
    held until it ends, then sent as calls (or, if it does not parse, as the text it was)."""

    def __init__(self, request: Generate) -> None:
        self.names = {t.name for t in _offered(request)}
        self.holding = request.tool_choice in ("required", "function")  # decoded as calls: held whole
        self.deciding = bool(self.names) and not self.holding  # auto: until the first character
        self.held = ""

    @property
    def active(self) -> bool:
        return bool(self.names)

    def push(self, text: str) -> str:
        """Text that may be sent now."""
        if self.deciding:
            self.held += text
            start = self.held.lstrip()
            if not start:
                return ""
            self.deciding = False
            self.holding = start[0] in "{[<"
            if not self.holding:
                text, self.held = self.held, ""
                return text
            return ""
        if self.holding:
            self.held += text
            return ""
        return text

    def finish(self) -> tuple[str, list[ToolCallDelta]]:
        """At the end: the text still to send, and the calls (each as its first delta, then its
        arguments), if the held answer was calls."""
        held, self.held = self.held, ""
        calls = parse_tool_calls(held, self.names) if self.holding or self.deciding else None
        if not calls:
            return held, []
        deltas = []
        for index, call in enumerate(calls):
            deltas.append(ToolCallDelta(index, "", call.id, call.name))
            deltas.append(ToolCallDelta(index, call.arguments))
        return "", deltas
