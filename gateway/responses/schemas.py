"""The body of POST /v1/responses (OpenAI's Responses API), validated with pydantic, and how its
input items become the chat messages every engine reads.

Input: a string (one user message) or a list of items: messages (with or without `"type":
"message"`; content a string or `input_text` / `output_text` parts), `function_call` and
`function_call_output`. Function tools only: other tool types are skipped, with a warning in the
response. Unknown fields are ignored, as elsewhere."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from gateway.errors import APIError
from gateway.http.body import StrictBody
from gateway.openai.schemas import Clamped, FunctionName
from protocol import ChatMessage, Generate, ResponseFormat, SamplingParams, Tool, ToolCall

MAX_TOOLS = 128


class TextPart(StrictBody):
    type: Literal["input_text", "output_text", "text"]
    text: str


class MessageItem(StrictBody):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[TextPart]
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class FunctionCallItem(StrictBody):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(StrictBody):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[TextPart]
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        return self.output if isinstance(self.output, str) else "".join(p.text for p in self.output)


Item = MessageItem | FunctionCallItem | FunctionCallOutputItem


class FunctionTool(StrictBody):
    type: Literal["function"]
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class OtherTool(StrictBody):
    """A tool type this server does not run (web_search, file_search, ...): skipped, with a warning."""

    type: str

    @model_validator(mode="after")
    def _not_a_function(self) -> OtherTool:
        if self.type == "function":  # a function tool that did not validate: say why, not skip it
            raise ValueError("a function tool needs a valid `name` (letters, digits, _.:-, up to 64)")
        return self


class NamedFunction(StrictBody):
    type: Literal["function"]
    name: FunctionName


class Format(StrictBody):
    type: Literal["text", "json_object", "json_schema"]
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema(self) -> Format:
        if self.type == "json_schema" and (self.schema_ is None or self.name is None):
            raise ValueError("a json_schema format needs `name` and `schema`")
        return self


class Text(StrictBody):
    format: Format | None = None


class ResponseRequest(StrictBody):
    model: str = Field(min_length=1)
    input: Annotated[str, Field(min_length=1)] | Annotated[list[Item], Field(min_length=1)]
    instructions: str | None = None
    tools: Annotated[list[FunctionTool | OtherTool], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedFunction | None = None
    parallel_tool_calls: bool | None = None
    text: Text | None = None
    max_output_tokens: Clamped | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    stream: bool = False
    store: bool = True
    background: bool = False
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None

    @model_validator(mode="after")
    def _fields_together(self) -> ResponseRequest:
        names = [t.name for t in self.functions()]
        if isinstance(self.tool_choice, NamedFunction) and self.tool_choice.name not in names:
            message = f"No function tool named {self.tool_choice.name!r} is in `tools`."
            raise APIError(400, message, "invalid_value", "tool_choice")
        if self.tool_choice == "required" and not names:
            raise APIError(
                400, "`required` needs a function tool in `tools`.", "invalid_value", "tool_choice"
            )
        if self.background and not self.store:
            raise APIError(400, "`background` needs `store` to be true.", "invalid_value", "background")
        return self

    def functions(self) -> list[FunctionTool]:
        return [t for t in self.tools or () if isinstance(t, FunctionTool)]

    def skipped_tools(self) -> list[str]:
        return [t.type for t in self.tools or () if not isinstance(t, FunctionTool)]

    def messages(self) -> list[ChatMessage]:
        """The input items as chat messages: calls join the assistant message before them."""
        if isinstance(self.input, str):
            return [ChatMessage("user", self.input)]
        out: list[ChatMessage] = []
        for item in self.input:
            if isinstance(item, MessageItem):
                role = "system" if item.role == "developer" else item.role
                out.append(ChatMessage(role, item.text()))
            elif isinstance(item, FunctionCallItem):
                call = ToolCall(item.call_id, item.name, item.arguments)
                if out and out[-1].role == "assistant":
                    last = out.pop()
                    out.append(ChatMessage("assistant", last.content, [*last.tool_calls, call]))
                else:
                    out.append(ChatMessage("assistant", "", [call]))
            else:
                out.append(ChatMessage("tool", item.text(), tool_call_id=item.call_id))
        return out

    def generate(
        self, history: list[ChatMessage], default_max_tokens: int, max_tokens_cap: int | None
    ) -> Generate:
        """One Generate: the instructions, what came before (previous_response_id), the input."""
        system = [ChatMessage("system", self.instructions)] if self.instructions else []
        tools = [Tool(t.name, t.description or "", t.parameters or {}) for t in self.functions()]
        choice = self.tool_choice or ("auto" if tools else "none")
        named = isinstance(choice, NamedFunction)
        max_tokens = self.max_output_tokens or default_max_tokens
        fmt = self.text.format if self.text else None
        return Generate(
            request_id=uuid.uuid4().hex,
            params=SamplingParams(
                max_tokens=min(max_tokens, max_tokens_cap or max_tokens),
                temperature=self.temperature,
                top_p=self.top_p,
            ),
            messages=[*system, *history, *self.messages()],
            tools=tools,
            tool_choice="function" if named else choice,  # type: ignore[arg-type]
            tool_name=choice.name if named else None,  # type: ignore[union-attr]
            parallel_tool_calls=bool(self.parallel_tool_calls),  # off unless asked, as on chat
            response_format=None
            if fmt is None or fmt.type == "text"
            else ResponseFormat(fmt.type, fmt.schema_ or {}),
        )

    def echo(self) -> dict[str, object]:
        """The request's settings, as a response object repeats them."""
        fmt = self.text.format if self.text and self.text.format else Format(type="text")
        choice = self.tool_choice or "auto"
        return {
            "instructions": self.instructions,
            "tools": [t.model_dump(exclude_none=True) for t in self.functions()],
            "tool_choice": choice if isinstance(choice, str) else choice.model_dump(),
            "parallel_tool_calls": bool(self.parallel_tool_calls),
            "text": {"format": fmt.model_dump(exclude_none=True, by_alias=True)},
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_output_tokens": self.max_output_tokens,
            "previous_response_id": self.previous_response_id,
            "store": self.store,
            "background": self.background,
            "metadata": self.metadata or {},
            "user": self.user,
        }
