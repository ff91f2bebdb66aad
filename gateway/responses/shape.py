"""The Responses API's output: the `response` object, and its streamed events in the order clients
depend on. Text opens a `message` item (`output_item.added`, `content_part.added`, then
`output_text.delta`s); a tool call opens a `function_call` item (`output_item.added`, then
`function_call_arguments.delta`s); at the end each open item is closed (`output_text.done`,
`content_part.done`, `function_call_arguments.done`, `output_item.done`) and `response.completed`
(or `response.incomplete`) carries the whole response with its usage. Every event has a
`sequence_number`. One choice: the Responses API has no `n`."""

from __future__ import annotations

import time
import uuid

from gateway.errors import APIError
from gateway.http import sse
from gateway.http.generation import Result, timeout_error
from protocol import Delta, ToolCallDelta


class ResponseShape:
    def __init__(self, model: str, settings: dict[str, object], warnings: list[str]) -> None:
        self.id = f"resp_{uuid.uuid4().hex}"
        self.model, self.settings, self.warnings = model, settings, warnings
        self.created = int(time.time())
        self.sequence = 0
        self.message_id = f"msg_{uuid.uuid4().hex}"
        self.call_ids: dict[int, str] = {}  # each tool call's item id, by its index in the answer
        self.items: list[str] = []  # item ids in output order, as they opened
        self.open_text: str | None = None  # the message item being streamed, and its text so far
        self.open_calls: dict[int, tuple[ToolCallDelta, list[str]]] = {}  # first part, arguments
        self.final: dict[str, object] | None = None

    # --- the response object ----------------------------------------------------------------

    def response(self, status: str, result: Result | None = None) -> dict[str, object]:
        output: list[dict[str, object]] = []
        usage = None
        incomplete = None
        if result is not None:
            choice = result.choices[0]
            items: dict[str, dict[str, object]] = {}
            if choice.content:
                items[self.message_id] = self._message(choice.content, "completed")
            for index, call in enumerate(choice.tool_calls):
                item_id = self._call_id(index)
                items[item_id] = self._call(item_id, call.id, call.name, call.arguments, "completed")
            order = [*[i for i in self.items if i in items], *[i for i in items if i not in self.items]]
            output = [items[i] for i in order]  # as streamed, when it was
            usage = {
                "input_tokens": result.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": result.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": result.prompt_tokens + result.completion_tokens,
            }
            if choice.finish_reason == "length":
                status, incomplete = "incomplete", {"reason": "max_output_tokens"}
        body: dict[str, object] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "model": self.model,
            "output": output,
            "usage": usage,
            "error": None,
            "incomplete_details": incomplete,
            **self.settings,
        }
        if self.warnings:
            body["warnings"] = self.warnings
        return body

    def _message(self, text: str, status: str) -> dict[str, object]:
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        content = [part] if status == "completed" else []
        return {
            "id": self.message_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    @staticmethod
    def _call(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, object]:
        return {
            "id": item_id,
            "type": "function_call",
            "status": status,
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
        }

    def _call_id(self, index: int) -> str:
        return self.call_ids.setdefault(index, f"fc_{uuid.uuid4().hex}")

    # --- streamed events --------------------------------------------------------------------

    def _event(self, kind: str, **fields: object) -> bytes:
        self.sequence += 1
        return sse.event({"type": kind, "sequence_number": self.sequence - 1, **fields}, kind)

    def opening(self, result: Result) -> bytes:
        started = self.response("in_progress")
        return self._event("response.created", response=started) + self._event(
            "response.in_progress", response=started
        )

    def events(self, result: Result, index: int, delta: Delta) -> bytes:
        out = b""
        if delta.text:
            if self.open_text is None:
                out += self._open_message()
            self.open_text += delta.text
            out += self._event(
                "response.output_text.delta",
                item_id=self.message_id,
                output_index=self.items.index(self.message_id),
                content_index=0,
                delta=delta.text,
                logprobs=[],
            )
        for part in (delta.details.tool_calls or []) if delta.details else []:
            if part.id is not None:
                out += self._close_message()
                out += self._open_call(part)
            elif part.index in self.open_calls:
                self.open_calls[part.index][1].append(part.arguments)
                item_id = self._call_id(part.index)
                out += self._event(
                    "response.function_call_arguments.delta",
                    item_id=item_id,
                    output_index=self.items.index(item_id),
                    delta=part.arguments,
                )
        if delta.finish_reason is not None:
            out += self._close_message()
            for call_index in list(self.open_calls):
                out += self._close_call(call_index)
        return out

    def _open_message(self) -> bytes:
        self.open_text = ""
        self.items.append(self.message_id)
        where = {"item_id": self.message_id, "output_index": len(self.items) - 1}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return self._event(
            "response.output_item.added",
            output_index=len(self.items) - 1,
            item=self._message("", "in_progress"),
        ) + self._event("response.content_part.added", **where, content_index=0, part=part)

    def _close_message(self) -> bytes:
        if self.open_text is None:
            return b""
        text, self.open_text = self.open_text, None
        where = {"item_id": self.message_id, "output_index": self.items.index(self.message_id)}
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        return (
            self._event("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
            + self._event("response.content_part.done", **where, content_index=0, part=part)
            + self._event(
                "response.output_item.done",
                output_index=where["output_index"],
                item=self._message(text, "completed"),
            )
        )

    def _open_call(self, part: ToolCallDelta) -> bytes:
        item_id = self._call_id(part.index)
        self.items.append(item_id)
        self.open_calls[part.index] = (part, [part.arguments])
        output_index = len(self.items) - 1
        out = self._event(
            "response.output_item.added",
            output_index=output_index,
            item=self._call(item_id, part.id or "", part.name or "", "", "in_progress"),
        )
        if part.arguments:
            out += self._event(
                "response.function_call_arguments.delta",
                item_id=item_id,
                output_index=output_index,
                delta=part.arguments,
            )
        return out

    def _close_call(self, index: int) -> bytes:
        first, pieces = self.open_calls.pop(index)
        item_id, arguments = self._call_id(index), "".join(pieces)
        output_index = self.items.index(item_id)
        return self._event(
            "response.function_call_arguments.done",
            item_id=item_id,
            output_index=output_index,
            name=first.name,
            arguments=arguments,
        ) + self._event(
            "response.output_item.done",
            output_index=output_index,
            item=self._call(item_id, first.id or "", first.name or "", arguments, "completed"),
        )

    def closing(self, result: Result) -> bytes:
        self.final = self.response("completed", result)
        kind = "response.incomplete" if self.final["status"] == "incomplete" else "response.completed"
        return self._event(kind, response=self.final)

    def body(self, result: Result) -> dict[str, object]:
        self.final = self.response("completed", result)
        return self.final

    def error(self, exc: APIError | TimeoutError) -> APIError:
        return timeout_error(exc)

    def error_event(self, error: APIError) -> bytes:
        failed = self.response("failed")
        failed["error"] = {"code": error.code or "server_error", "message": error.message}
        return self._event("response.failed", response=failed)
