"""A request's prompt as token ids, with the model's own chat template, and its token budget."""

from __future__ import annotations

from typing import Any

from protocol import Generate
from workers.chat_template import TemplateError, render
from workers.engines.base import RequestError
from workers.tool_calls import chat_messages, template_renders_tools


def prompt_ids(tokenizer: Any, request: Generate, vocab_size: int) -> list[int]:
    """Token ids for a chat (through the model's chat template, with the tools offered), a text
    prompt or given ids."""
    if request.messages is not None:
        native = template_renders_tools(getattr(tokenizer, "chat_template", None))
        messages, tools = chat_messages(request, native)
        try:
            text = render(tokenizer, messages, tools)
        except TemplateError as exc:
            raise RequestError(
                400, "invalid_messages", f"chat template rejected the messages: {exc}", "messages"
            ) from exc
        return list(tokenizer.encode(text, add_special_tokens=False))
    if request.prompt_ids is not None:
        bad = next((t for t in request.prompt_ids if not 0 <= t < vocab_size), None)
        if bad is not None:
            raise RequestError(
                400,
                "invalid_prompt",
                f"token id {bad} is outside the vocabulary (0..{vocab_size - 1})",
                "prompt",
            )
        return list(request.prompt_ids)
    return list(tokenizer.encode(request.prompt or "", add_special_tokens=True))


def token_budget(n_prompt: int, max_tokens: int | None, context_length: int) -> int:
    """How many tokens may be generated: max_tokens, clamped to what the context has left."""
    room = context_length - n_prompt
    if n_prompt == 0:
        raise RequestError(400, "invalid_prompt", "the prompt is empty", "prompt")
    if room <= 0:
        raise RequestError(
            400,
            "context_length_exceeded",
            f"This model's maximum context length is {context_length} tokens, "
            f"but the prompt has {n_prompt} tokens.",
            "messages",
        )
    return room if max_tokens is None else min(max_tokens, room)
