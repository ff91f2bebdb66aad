"""Anthropic's Messages API output: the `message` object, and its streamed events: `message_start`,
`ping`, per content block `content_block_start` / `content_block_delta` (`text_delta`,
`input_json_delta`) / `content_block_stop`, then `message_delta` (stop_reason, usage) and
`message_stop`; an error after the headers is an `error` event. One choice (no `n`)."""

from __future__ import annotations

import json
import uuid

from gateway.errors import APIError
from gateway.http import sse
from gateway.http.generation import Choice, Result, timeout_error
from protocol import Delta


def stop_reason(choice: Choice) -> tuple[str | None, str | None]:
    """Anthropic's stop_reason and stop_sequence for how the answer ended."""
    stop_word = choice.last.stop_word if choice.last is not None else None
    if choice.finish_reason == "tool_calls":
        return "tool_use", None
    if choice.finish_reason == "length":
        return "max_tokens", None
    if stop_word:
        return "stop_sequence", stop_word
    return ("end_turn" if choice.finish_reason else None), None


def _input(arguments: str) -> object:
    try:
        return json.loads(arguments)
    except ValueError:
        return {}


class MessageShape:
    def __init__(self, model: str) -> None:
        self.id = f"msg_{uuid.uuid4().hex}"
        self.model = model
        self.blocks = 0  # content blocks opened so far
        self.open: str | None = None  # "text" or "tool_use": the block being streamed

    def message(self, result: Result | None) -> dict[str, object]:
        content: list[dict[str, object]] = []
        reason = sequence = None
        usage = {"input_tokens": 0, "output_tokens": 0}
        if result is not None:
            choice = result.choices[0]
            if choice.content:
                content.append({"type": "text", "text": choice.content})
            for call in choice.tool_calls:
                content.append(
                    {"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call.arguments)}
                )
            reason, sequence = stop_reason(choice)
            usage = {"input_tokens": result.prompt_tokens, "output_tokens": result.completion_tokens}
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": reason,
            "stop_sequence": sequence,
            "usage": usage,
        }

    @staticmethod
    def _event(kind: str, **fields: object) -> bytes:
        return sse.event({"type": kind, **fields}, kind)

    def opening(self, result: Result) -> bytes:
        return self._event("message_start", message=self.message(None)) + self._event("ping")

    def events(self, result: Result, index: int, delta: Delta) -> bytes:
        out = b""
        if delta.text:
            if self.open != "text":
                out += self._stop_block() + self._start_block({"type": "text", "text": ""}, "text")
            out += self._event(
                "content_block_delta", index=self.blocks - 1, delta={"type": "text_delta", "text": delta.text}
            )
        for part in (delta.details.tool_calls or []) if delta.details else []:
            if part.id is not None:
                block = {"type": "tool_use", "id": part.id, "name": part.name or "", "input": {}}
                out += self._stop_block() + self._start_block(block, "tool_use")
            if part.arguments:
                json_delta = {"type": "input_json_delta", "partial_json": part.arguments}
                out += self._event("content_block_delta", index=self.blocks - 1, delta=json_delta)
        if delta.finish_reason is not None:
            out += self._stop_block()
        return out

    def _start_block(self, block: dict[str, object], kind: str) -> bytes:
        self.blocks += 1
        self.open = kind
        return self._event("content_block_start", index=self.blocks - 1, content_block=block)

    def _stop_block(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return self._event("content_block_stop", index=self.blocks - 1)

    def closing(self, result: Result) -> bytes:
        reason, sequence = stop_reason(result.choices[0])
        usage = {"input_tokens": result.prompt_tokens, "output_tokens": result.completion_tokens}
        return self._event(
            "message_delta", delta={"stop_reason": reason, "stop_sequence": sequence}, usage=usage
        ) + self._event("message_stop")

    def body(self, result: Result) -> dict[str, object]:
        return self.message(result)

    def error(self, exc: APIError | TimeoutError) -> APIError:
        return timeout_error(exc)

    def error_event(self, error: APIError) -> bytes:
        return sse.event(error.anthropic_body(), "error")
