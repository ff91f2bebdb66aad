"""The bodies of POST /v1/messages and /v1/messages/count_tokens (Anthropic's Messages API),
validated with pydantic, and how they become the chat messages every engine reads: `text`
blocks, `tool_use` (an assistant's call: its `input` becomes the arguments' JSON) and
`tool_result` (a tool message answering its `tool_use_id`)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from gateway.errors import APIError
from gateway.http.body import INT32, StrictBody
from gateway.openai.schemas import MAX_STOP, FunctionName
from protocol import ChatMessage, Generate, SamplingParams, Tool, ToolCall


class TextBlock(StrictBody):
    type: Literal["text"]
    text: str


class ToolUseBlock(StrictBody):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


class ToolResultBlock(StrictBody):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[TextBlock] = ""
    is_error: bool = False

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(b.text for b in self.content)


Block = Annotated[TextBlock | ToolUseBlock | ToolResultBlock, Field(discriminator="type")]


class Message(StrictBody):
    role: Literal["user", "assistant"]
    content: str | list[Block]

    def wire(self) -> list[ChatMessage]:
        """A user turn may carry tool results (each a tool message) beside its text."""
        if isinstance(self.content, str):
            return [ChatMessage(self.role, self.content)]
        text = "".join(b.text for b in self.content if isinstance(b, TextBlock))
        if self.role == "assistant":
            calls = [
                ToolCall(b.id, b.name, json.dumps(b.input))
                for b in self.content
                if isinstance(b, ToolUseBlock)
            ]
            return [ChatMessage("assistant", text, calls)]
        results = [
            ChatMessage("tool", ("Error: " if b.is_error else "") + b.text(), tool_call_id=b.tool_use_id)
            for b in self.content
            if isinstance(b, ToolResultBlock)
        ]
        return [*results, *([ChatMessage("user", text)] if text or not results else [])]


class ToolSpec(StrictBody):
    name: FunctionName
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None


class ToolChoice(StrictBody):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class CountTokensRequest(StrictBody):
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[ToolSpec] | None = None

    def chat(self) -> list[ChatMessage]:
        system = self.system if isinstance(self.system, str) else "".join(b.text for b in self.system or ())
        head = [ChatMessage("system", system)] if system else []
        return [*head, *(m for message in self.messages for m in message.wire())]

    def wire_tools(self) -> list[Tool]:
        return [Tool(t.name, t.description or "", t.input_schema) for t in self.tools or ()]


class MessagesRequest(CountTokensRequest):
    max_tokens: Annotated[int, Field(ge=1, le=INT32)]  # required, as Anthropic has it
    tool_choice: ToolChoice | None = None
    stop_sequences: (
        Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=MAX_STOP)] | None
    ) = None
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0, le=INT32)] | None = None
    stream: bool = False
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _tool_choice(self) -> MessagesRequest:
        names = [t.name for t in self.tools or ()]
        choice = self.tool_choice
        if choice is not None and choice.type == "tool" and choice.name not in names:
            raise APIError(
                400, f"No tool named {choice.name!r} is in `tools`.", "invalid_value", "tool_choice"
            )
        if choice is not None and choice.type == "any" and not names:
            raise APIError(400, "`any` needs at least one tool in `tools`.", "invalid_value", "tool_choice")
        return self

    def generate(self, max_tokens_cap: int | None) -> Generate:
        tools = self.wire_tools()
        choice = self.tool_choice.type if self.tool_choice else ("auto" if tools else "none")
        wire_choice = {"auto": "auto", "any": "required", "tool": "function", "none": "none"}[choice]
        parallel = bool(self.tool_choice and self.tool_choice.disable_parallel_tool_use is False)
        return Generate(
            request_id=uuid.uuid4().hex,
            params=SamplingParams(
                max_tokens=min(self.max_tokens, max_tokens_cap or self.max_tokens),
                temperature=self.temperature,
                top_p=self.top_p,
                top_k=self.top_k or 0,
                stop=list(self.stop_sequences or ()),
            ),
            messages=self.chat(),
            tools=tools,
            tool_choice=wire_choice,  # type: ignore[arg-type]
            tool_name=self.tool_choice.name if choice == "tool" and self.tool_choice else None,
            parallel_tool_calls=parallel,
        )
