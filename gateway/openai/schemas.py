"""Request bodies of the OpenAI-compatible routes, validated with pydantic.

Absent and null fields take OpenAI's defaults. Unknown fields are ignored, as vLLM does; fields we
do not implement are refused when set to anything but their default, never silently dropped.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from pydantic import AfterValidator, Field, StrictInt, field_validator, model_validator

from gateway.errors import APIError
from gateway.http.body import INT32, MAX_EMBEDDING_INPUTS, StrictBody, TokenId
from protocol import ChatMessage, Embed, Generate, ResponseFormat, SamplingParams, Tool, ToolCall

MAX_STOP = 4
MAX_CHOICES = 16  # n: choices of one request, each a sequence of its own
MAX_SEQUENCES = 64  # prompts x n of one completions request (as /generate/batch's 64 prompts)
MAX_TOP_LOGPROBS = 20  # chat's top_logprobs, as OpenAI allows
MAX_COMPLETION_LOGPROBS = 5  # completions' logprobs, as OpenAI allows
# max_tokens and top_k past any model's reach are clamped (to the context, to the vocabulary)
Clamped = Annotated[int, Field(ge=1), AfterValidator(lambda v: min(v, INT32))]


class StreamOptions(StrictBody):
    include_usage: bool = False


class Sampling(StrictBody):
    """Fields shared by chat and completions: the model, the stream switch and sampling."""

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Clamped | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=-1), AfterValidator(lambda v: min(v, INT32))] | None = None
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    repetition_penalty: Annotated[float, Field(ge=0.01, le=10.0)] | None = None  # / 0.01: still finite
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    seed: Annotated[StrictInt, Field(ge=-(2**63), le=2**64 - 1)] | None = None
    stop: str | list[str] | None = Field(None, validate_default=True)
    ignore_eos: bool = False
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences are allowed")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    def refuse_unsupported(self) -> None:
        if self.logit_bias:
            raise APIError(400, "logit_bias is not supported.", "unsupported_parameter", "logit_bias")

    def sampling_params(self, default_max_tokens: int, max_tokens_cap: int | None) -> list[SamplingParams]:
        """The wire's parameters, one per choice (n); max_tokens gets the server's default and cap
        (the worker clamps it to the context), temperature and top_p are left to the model's
        defaults when absent. With a seed, choice i draws with seed + i: n different answers that
        the same request gives again."""
        self.refuse_unsupported()
        max_tokens = self.max_tokens or default_max_tokens
        params = SamplingParams(
            max_tokens=min(max_tokens, max_tokens_cap or max_tokens),
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=max(0, self.top_k or 0),
            min_p=self.min_p or 0.0,
            repetition_penalty=1.0 if self.repetition_penalty is None else self.repetition_penalty,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            seed=self.seed,
            stop=self.stop,  # type: ignore[arg-type]  # the validator made it a list
            ignore_eos=self.ignore_eos,
        )
        seeds = [None if self.seed is None else (self.seed + i) % 2**64 for i in range(self.n or 1)]
        return [params if seed == self.seed else msgspec.structs.replace(params, seed=seed) for seed in seeds]

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class TextPart(StrictBody):
    type: Literal["text"]
    text: str


class CalledFunction(StrictBody):
    name: str = Field(min_length=1)
    arguments: str


class AssistantToolCall(StrictBody):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: CalledFunction


class Message(StrictBody):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[AssistantToolCall] | None = None  # an assistant's
    tool_call_id: str | None = None  # a tool result's: the call it answers
    name: str | None = None

    @model_validator(mode="after")
    def _roles(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a `tool` message needs the `tool_call_id` of the call it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only an `assistant` message carries `tool_calls`")
        return self

    def wire(self) -> ChatMessage:
        content = self.content
        if isinstance(content, list):
            content = "\n".join(part.text for part in content)
        calls = [ToolCall(c.id, c.function.name, c.function.arguments) for c in self.tool_calls or ()]
        # the model's template knows no "developer": it is OpenAI's newer name for "system"
        role = "system" if self.role == "developer" else self.role
        return ChatMessage(role, content or "", calls, self.tool_call_id, self.name)


FunctionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class FunctionDefinition(StrictBody):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionTool(StrictBody):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(StrictBody):
    name: FunctionName


class NamedToolChoice(StrictBody):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaSpec(StrictBody):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class TextFormat(StrictBody):
    type: Literal["text"]


class JsonObjectFormat(StrictBody):
    type: Literal["json_object"]


class JsonSchemaFormat(StrictBody):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


Format = Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")]


def response_format(given: TextFormat | JsonObjectFormat | JsonSchemaFormat | None) -> ResponseFormat | None:
    """The wire's constraint for a response format (also the completions' extension)."""
    if isinstance(given, JsonObjectFormat):
        return ResponseFormat("json_object")
    if isinstance(given, JsonSchemaFormat):
        return ResponseFormat("json_schema", given.json_schema.schema_)
    return None


class ChatCompletionRequest(Sampling):
    messages: list[Message] | None = Field(None, min_length=1)
    prompt: str | None = Field(None, min_length=1)  # the engine-style chat endpoint's raw text, no template
    max_completion_tokens: Clamped | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: Format | None = None

    @model_validator(mode="after")
    def _fields_together(self) -> ChatCompletionRequest:
        if (self.messages is None) == (self.prompt is None):
            both = self.messages is not None
            message = (
                "Give either `messages` or `prompt`, not both."
                if both
                else "Either messages or prompt must be provided."
            )
            raise APIError(
                400, message, "invalid_value" if both else "missing_required_parameter", "messages"
            )
        if self.prompt is not None and self.tools:
            message = "`tools` need `messages`: a raw `prompt` goes to the model without the chat template."
            raise APIError(400, message, "invalid_value", "tools")
        if self.max_completion_tokens is not None:
            self.max_tokens = self.max_completion_tokens
        # APIError passes through pydantic: the 400 names the field
        if self.top_logprobs is not None and not self.logprobs:
            raise APIError(
                400, "`top_logprobs` needs `logprobs` set to true.", "invalid_value", "top_logprobs"
            )
        names = [t.function.name for t in self.tools or ()]
        if isinstance(self.tool_choice, NamedToolChoice) and self.tool_choice.function.name not in names:
            message = f"No tool named {self.tool_choice.function.name!r} is in `tools`."
            raise APIError(400, message, "invalid_value", "tool_choice")
        if self.tool_choice == "required" and not names:
            raise APIError(
                400, "`required` needs at least one tool in `tools`.", "invalid_value", "tool_choice"
            )
        return self

    def generates(self, default_max_tokens: int, max_tokens_cap: int | None) -> list[Generate]:
        """One Generate per choice (n). A raw `prompt` goes to the model as text, without the chat
        template (as the engine-style chat endpoint has it)."""
        messages = None if self.messages is None else [m.wire() for m in self.messages]
        tools = [
            Tool(t.function.name, t.function.description or "", t.function.parameters or {})
            for t in self.tools or ()
        ]
        choice = self.tool_choice or ("auto" if tools else "none")
        named = isinstance(choice, NamedToolChoice)
        return [
            Generate(
                request_id=uuid.uuid4().hex,
                params=params,
                messages=messages,
                prompt=self.prompt,
                tools=tools,
                tool_choice="function" if named else choice,  # type: ignore[arg-type]
                tool_name=choice.function.name if named else None,  # type: ignore[union-attr]
                parallel_tool_calls=bool(self.parallel_tool_calls),  # off unless asked, as llama.cpp has it
                response_format=response_format(self.response_format),
                logprobs=(self.top_logprobs or 0) if self.logprobs else None,
            )
            for params in self.sampling_params(default_max_tokens, max_tokens_cap)
        ]


class CompletionRequest(Sampling):
    prompt: str | list[str] | list[TokenId] | list[list[TokenId]] = Field(min_length=1)
    echo: bool = False
    logprobs: Annotated[int, Field(ge=0, le=MAX_COMPLETION_LOGPROBS)] | None = None
    suffix: str | None = None
    best_of: int | None = None
    response_format: Format | None = None  # our extension, as vLLM has it

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.suffix:
            raise APIError(400, "suffix is not supported.", "unsupported_parameter", "suffix")
        if self.best_of not in (None, 1, self.n):
            raise APIError(400, "best_of > n is not supported.", "unsupported_parameter", "best_of")

    def prompts(self) -> list[str | list[int]]:
        """Each prompt: a text or token ids."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if all(isinstance(p, int) for p in prompt):
            return [prompt]  # type: ignore[list-item]  # one prompt of token ids
        return list(prompt)  # type: ignore[arg-type]

    def generates(self, default_max_tokens: int, max_tokens_cap: int | None) -> list[Generate]:
        """Choices in OpenAI's order: for each prompt, its n choices. One request may not take a
        model's whole batch and queue: at most MAX_SEQUENCES sequences."""
        choices = self.sampling_params(default_max_tokens, max_tokens_cap)
        prompts = self.prompts()
        if len(prompts) * len(choices) > MAX_SEQUENCES:
            raise APIError(
                400,
                f"At most {MAX_SEQUENCES} sequences a request (prompts x n); this one asks for "
                f"{len(prompts) * len(choices)}.",
                "too_many_sequences",
                "prompt",
            )
        return [
            Generate(
                request_id=uuid.uuid4().hex,
                params=params,
                prompt=prompt if isinstance(prompt, str) else None,
                prompt_ids=None if isinstance(prompt, str) else prompt,
                response_format=response_format(self.response_format),
                logprobs=self.logprobs,
                echo=self.echo,
            )
            for prompt in prompts
            for params in choices
        ]


class EmbeddingRequest(StrictBody):
    model: str = Field(min_length=1)
    input: (
        Annotated[str, Field(min_length=1)]
        | Annotated[
            list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)
        ]
        | Annotated[list[TokenId], Field(min_length=1)]
        | Annotated[
            list[Annotated[list[TokenId], Field(min_length=1)]],
            Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS),
        ]
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None
    # not OpenAI's: embed the first tokens of an input past the model's length instead of a 400
    truncate: bool = False

    def wire(self, request_id: str) -> Embed:
        given = self.input
        if isinstance(given, str):
            return Embed(request_id, texts=[given], truncate=self.truncate)
        if all(isinstance(item, str) for item in given):
            return Embed(request_id, texts=list(given), truncate=self.truncate)  # type: ignore[arg-type]
        if all(isinstance(item, int) for item in given):
            return Embed(request_id, token_ids=[list(given)], truncate=self.truncate)  # type: ignore[arg-type]
        return Embed(request_id, token_ids=[list(ids) for ids in given], truncate=self.truncate)  # type: ignore[union-attr]
