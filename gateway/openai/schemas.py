"""Request bodies of the OpenAI-compatible routes, validated with pydantic.

Absent and null fields take OpenAI's defaults. Unknown fields are ignored, as vLLM does; fields we
do not implement are refused when set to anything but their default, never silently dropped.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)

from gateway.errors import APIError
from protocol import ChatMessage, Embed, SamplingParams

MAX_STOP = 4
INT32 = 2**31 - 1  # integers that reach the worker fit the wire
# max_tokens and top_k past any model's reach are clamped (to the context, to the vocabulary)
Clamped = Annotated[int, Field(ge=1), AfterValidator(lambda v: min(v, INT32))]
TokenId = Annotated[StrictInt, Field(ge=0, le=INT32)]


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, strict=True)  # JSON types as sent


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
    n: Annotated[int, Field(ge=1)] | None = None
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
        if self.n not in (None, 1):
            raise APIError(400, "n > 1 is not supported yet; send n = 1.", "unsupported_parameter", "n")
        if self.logit_bias:
            raise APIError(400, "logit_bias is not supported.", "unsupported_parameter", "logit_bias")

    def sampling_params(self, default_max_tokens: int, max_tokens_cap: int | None) -> SamplingParams:
        """The wire's parameters; max_tokens gets the server's default and cap (the worker clamps
        it to the context), temperature and top_p are left to the model's defaults when absent."""
        self.refuse_unsupported()
        max_tokens = self.max_tokens or default_max_tokens
        return SamplingParams(
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

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class TextPart(StrictBody):
    type: Literal["text"]
    text: str


class Message(StrictBody):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def wire(self) -> ChatMessage:
        content = self.content
        if isinstance(content, list):
            content = "\n".join(part.text for part in content)
        # the model's template knows no "developer": it is OpenAI's newer name for "system"
        return ChatMessage("system" if self.role == "developer" else self.role, content or "")


class ChatCompletionRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: Clamped | None = None
    logprobs: bool | None = None
    tools: list[dict[str, object]] | None = None
    response_format: dict[str, object] | None = None

    @model_validator(mode="after")
    def _max_completion_tokens(self) -> ChatCompletionRequest:
        if self.max_completion_tokens is not None:
            self.max_tokens = self.max_completion_tokens
        return self

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.logprobs:
            raise APIError(400, "logprobs are not supported.", "unsupported_parameter", "logprobs")
        if self.tools:
            raise APIError(400, "tools are not supported by this model.", "unsupported_parameter", "tools")
        if self.response_format and self.response_format.get("type") not in (None, "text"):
            raise APIError(
                400,
                "only response_format type `text` is supported.",
                "unsupported_parameter",
                "response_format",
            )


class CompletionRequest(Sampling):
    prompt: str | list[str] | list[TokenId] | list[list[TokenId]] = Field(min_length=1)
    echo: bool = False
    logprobs: int | None = None
    suffix: str | None = None
    best_of: int | None = None

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        for name in ("echo", "logprobs", "suffix"):
            if getattr(self, name):
                raise APIError(400, f"{name} is not supported.", "unsupported_parameter", name)
        if self.best_of not in (None, 1):
            raise APIError(400, "best_of > 1 is not supported.", "unsupported_parameter", "best_of")

    def prompts(self) -> list[str | list[int]]:
        """One entry per choice: a text prompt or a prompt of token ids."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if all(isinstance(p, int) for p in prompt):
            return [prompt]  # type: ignore[list-item]  # one prompt of token ids
        return list(prompt)  # type: ignore[arg-type]


MAX_EMBEDDING_INPUTS = 2048  # OpenAI's limit per request


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
