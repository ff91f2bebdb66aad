"""The shapes of chat and text completions, streamed and not: the JSON of each event and of the
answer. The request's path itself is gateway.http.generation's, the same for every family."""

from __future__ import annotations

import time
import uuid

from gateway.errors import APIError
from gateway.http import sse
from gateway.http.generation import Choice, Result, timeout_error
from protocol import Delta, Details, TokenLogprob, ToolCallDelta

_NONE = Details()


def _text(token: bytes) -> str:
    return token.decode("utf-8", errors="replace")


class _OpenAIShape:
    prefix = object_ = chunk_object = ""

    def __init__(self, model: str, include_usage: bool, logprobs: bool) -> None:
        self.header = {"id": f"{self.prefix}-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}
        self.head: dict[str, object] = {**self.header, "object": self.chunk_object}
        if include_usage:
            self.head["usage"] = None
        self.include_usage, self.logprobs = include_usage, logprobs

    def chunk(self, choice: dict[str, object]) -> bytes:
        return sse.event({**self.head, "choices": [choice]})

    def closing(self, result: Result) -> bytes:
        usage = (
            sse.event({**self.head, "choices": [], "usage": result.usage()}) if self.include_usage else b""
        )
        return usage + sse.DONE

    def error(self, exc: APIError | TimeoutError) -> APIError:
        return timeout_error(exc)

    def error_event(self, error: APIError) -> bytes:
        return sse.event(error.body()) + sse.DONE

    def answer(self, result: Result, choices: list[dict[str, object]]) -> dict[str, object]:
        return {**self.header, "object": self.object_, "choices": choices, "usage": result.usage()}


class ChatShape(_OpenAIShape):
    prefix, object_, chunk_object = "chatcmpl", "chat.completion", "chat.completion.chunk"

    def opening(self, result: Result) -> bytes:
        return b"".join(
            self.chunk({"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                        "finish_reason": None})
            for i in range(len(result.choices))
        )  # fmt: skip

    def events(self, result: Result, index: int, delta: Delta) -> bytes:
        events = b""
        details = delta.details or _NONE
        if delta.text or details.logprobs:
            logprobs = self._logprobs(details.logprobs or [])
            content = {"content": delta.text} if delta.text else {}
            events += self.chunk(
                {"index": index, "delta": content, "logprobs": logprobs, "finish_reason": None}
            )
        if details.tool_calls:
            calls = [_call_delta(part) for part in details.tool_calls]
            events += self.chunk(
                {"index": index, "delta": {"tool_calls": calls}, "logprobs": None, "finish_reason": None}
            )
        if delta.finish_reason is not None:
            events += self.chunk(
                {"index": index, "delta": {}, "logprobs": None, "finish_reason": delta.finish_reason}
            )
        return events

    def body(self, result: Result) -> dict[str, object]:
        return self.answer(result, [self._choice(i, c) for i, c in enumerate(result.choices)])

    def _choice(self, index: int, choice: Choice) -> dict[str, object]:
        message: dict[str, object] = {"role": "assistant", "content": choice.content}
        if choice.tool_calls:
            message["content"] = choice.content or None
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in choice.tool_calls
            ]
        logprobs = self._logprobs(choice.logprobs)
        return {
            "index": index,
            "message": message,
            "logprobs": logprobs,
            "finish_reason": choice.finish_reason,
        }

    def _logprobs(self, tokens: list[TokenLogprob]) -> dict[str, object] | None:
        if not self.logprobs:
            return None
        return {"content": [_chat_logprob(t) for t in tokens], "refusal": None}


def _call_delta(part: ToolCallDelta) -> dict[str, object]:
    if part.id is None:
        return {"index": part.index, "function": {"arguments": part.arguments}}
    function = {"name": part.name, "arguments": part.arguments}
    return {"index": part.index, "id": part.id, "type": "function", "function": function}


def _chat_logprob(token: TokenLogprob) -> dict[str, object]:
    return {
        "token": _text(token.token),
        "logprob": token.logprob,
        "bytes": list(token.token),
        "top_logprobs": [
            {"token": _text(alt), "logprob": logprob, "bytes": list(alt)} for alt, logprob in token.top
        ],
    }


class CompletionShape(_OpenAIShape):
    """Text completions; with `echo`, each choice's text starts with its prompt (`prompts[i]`, or
    the prompt tokens the worker sent back when the prompt was token ids)."""

    prefix, object_, chunk_object = "cmpl", "text_completion", "text_completion"

    def __init__(
        self, model: str, include_usage: bool, logprobs: bool, echo: list[str | None] | None = None
    ) -> None:
        super().__init__(model, include_usage, logprobs)
        self.echo = echo
        self.sent: dict[int, int] = {}  # characters of each choice's text streamed so far

    def opening(self, result: Result) -> bytes:
        return b""

    def events(self, result: Result, index: int, delta: Delta) -> bytes:
        details = delta.details or _NONE
        text, tokens = delta.text, list(details.logprobs or [])
        if details.prompt_logprobs is not None and self.echo is not None:
            text = self._prompt_text(index, details.prompt_logprobs) + text
            tokens = [*details.prompt_logprobs, *tokens]
        if not text and not tokens and delta.finish_reason is None:
            return b""
        logprobs = self._logprobs(tokens, self.sent.get(index, 0))
        self.sent[index] = self.sent.get(index, 0) + len(text)
        return self.chunk(
            {"index": index, "text": text, "logprobs": logprobs, "finish_reason": delta.finish_reason}
        )

    def body(self, result: Result) -> dict[str, object]:
        choices = []
        for index, choice in enumerate(result.choices):
            text, tokens = choice.content, choice.logprobs
            if self.echo is not None:
                text = self._prompt_text(index, choice.prompt_logprobs) + text
                tokens = [*choice.prompt_logprobs, *tokens]
            logprobs = self._logprobs(tokens, 0)
            choices.append(
                {"index": index, "text": text, "logprobs": logprobs, "finish_reason": choice.finish_reason}
            )
        return self.answer(result, choices)

    def _prompt_text(self, index: int, prompt: list[TokenLogprob]) -> str:
        given = self.echo[index] if self.echo is not None else None
        return given if given is not None else b"".join(t.token for t in prompt).decode(errors="replace")

    def _logprobs(self, tokens: list[TokenLogprob], offset: int) -> dict[str, object] | None:
        """OpenAI's legacy shape; `text_offset` counts from the start of the choice's text."""
        if not self.logprobs:
            return None
        texts = [_text(t.token) for t in tokens]
        offsets = []
        for piece in texts:
            offsets.append(offset)
            offset += len(piece)
        return {
            "tokens": texts,
            "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [{_text(alt): lp for alt, lp in t.top} if t.logprob is not None else None
                             for t in tokens],
            "text_offset": offsets,
        }  # fmt: skip
