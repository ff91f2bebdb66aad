"""Messages on the ZeroMQ sockets, one tagged union per direction.

Worker → gateway: Register, Heartbeat, StepOutput, Embeddings, Ranked, Tokenized, Detokenized,
AdapterLoaded, Failed.
Gateway → worker: Generate, Transcribe, Embed, Rerank, Tokenize, Detokenize, LoadAdapter,
UnloadAdapter, Cancel, Shutdown, Refused, RegisterAgain.

A transcription streams like a generation: each step's delta is the text of the audio's next
segment, with the segment's times in its details.

A StepOutput carries the deltas of every sequence that advanced in one engine step, so the
output path costs one message per step, not one per token per request.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# Bump on any change a peer of the previous version would misread.
PROTOCOL_VERSION = 7


class ToolCall(msgspec.Struct, frozen=True):
    """A call the assistant made: `arguments` is the JSON text of the arguments, as OpenAI keeps it."""

    id: str
    name: str
    arguments: str


class ChatMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    """One message of a chat: an assistant's may carry tool calls, a `tool` message answers one."""

    role: str
    content: str = ""
    tool_calls: list[ToolCall] = []
    tool_call_id: str | None = None  # role "tool": the call it answers
    name: str | None = None  # role "tool": the function's name, where the client gave it


class Tool(msgspec.Struct, frozen=True, omit_defaults=True):
    """A function the model may call; `parameters` is its arguments' JSON schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = {}


class ResponseFormat(msgspec.Struct, frozen=True, omit_defaults=True):
    """Constrained decoding of the whole answer: any JSON object, or JSON valid for `schema`."""

    type: Literal["json_object", "json_schema"]
    schema: dict[str, Any] | None = None


GREEDY_BELOW = 1e-5  # a temperature below this picks the most likely token: greedy decoding


class SamplingParams(msgspec.Struct, frozen=True, omit_defaults=True):
    """What the client asked for; the worker fills what is left: the model's default temperature
    and top_p, and max_tokens from the context."""

    max_tokens: int | None = None
    temperature: float | None = None  # None: the model's default; 0 means greedy
    top_p: float | None = None  # None: the model's default
    top_k: int = 0  # 0 means off
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: list[str] = []
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature is not None and self.temperature < GREEDY_BELOW


# --- gateway → worker -------------------------------------------------------------------


ToolChoice = Literal["none", "auto", "required", "function"]


class Adapter(msgspec.Struct, array_like=True, frozen=True):
    """A LoRA adapter: its model id, its PEFT directory (on the worker's machine), its scale."""

    name: str
    path: str
    scale: float = 1.0


class Generate(msgspec.Struct, tag=True, frozen=True, omit_defaults=True):
    """Generate text for a chat (messages) or a raw prompt (text or token ids).

    With tools and tool_choice `required` or `function` (the one named `tool_name`), or with a
    response format, the engine decodes under a grammar; with `auto` the worker parses the answer
    for tool calls. `logprobs`: None for none, else how many alternatives beside each chosen token
    (0 to 20); `echo`: the prompt tokens' log-probabilities too."""

    request_id: str
    params: SamplingParams
    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    prompt_ids: list[int] | None = None
    tools: list[Tool] = []
    tool_choice: ToolChoice = "auto"
    tool_name: str | None = None
    parallel_tool_calls: bool = False
    response_format: ResponseFormat | None = None
    logprobs: int | None = None
    echo: bool = False
    adapter: Adapter | None = None  # decode with this LoRA adapter on the base (loaded if need be)


class Transcribe(msgspec.Struct, tag=True, frozen=True, omit_defaults=True):
    """Speech to text: `audio` is the file as the client sent it (wav, mp3, ogg, flac, webm,
    m4a...); the worker decodes it. `translate`: into English. `words`: word timestamps too."""

    request_id: str
    audio: bytes
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    translate: bool = False
    words: bool = False


class Rerank(msgspec.Struct, tag=True, frozen=True):
    """Score each document's relevance to the query (higher: more relevant), in order."""

    request_id: str
    query: str
    documents: list[str]
    truncate: bool = False  # cut query and documents past the model's length instead of refusing


class Embed(msgspec.Struct, tag=True, frozen=True):
    """Embed each input: texts, or token ids (the model's special tokens are added around them)."""

    request_id: str
    texts: list[str] | None = None
    token_ids: list[list[int]] | None = None
    truncate: bool = False  # cut inputs past the model's length instead of refusing them


class Tokenize(msgspec.Struct, tag=True, frozen=True):
    """A text's tokens; or, with `messages`, the prompt a chat with these messages (and tools)
    becomes through the model's chat template, as generation would read it (`text` unused)."""

    request_id: str
    text: str
    add_special: bool = False  # the model's BOS/CLS... as when it reads a prompt
    with_pieces: bool = False  # each token's text too
    messages: list[ChatMessage] | None = None
    tools: list[Tool] = []


class Detokenize(msgspec.Struct, tag=True, frozen=True):
    request_id: str
    tokens: list[int]


class LoadAdapter(msgspec.Struct, tag=True, frozen=True):
    """Load (and check) an adapter now, or set the scale of a loaded one: AdapterLoaded or Failed."""

    request_id: str
    adapter: Adapter


class UnloadAdapter(msgspec.Struct, tag=True, frozen=True):
    """Drop an adapter once no running sequence uses it; no answer."""

    name: str


class Cancel(msgspec.Struct, tag=True, frozen=True):
    request_id: str


class Shutdown(msgspec.Struct, tag=True, frozen=True):
    drain: bool = False


class Refused(msgspec.Struct, tag=True, frozen=True):
    """Answer to a Register the gateway will not accept; the worker exits."""

    reason: str


class RegisterAgain(msgspec.Struct, tag=True, frozen=True):
    """To a remote worker whose messages come to a gateway that does not know it (restarted since
    the worker registered, or dropped it as silent): what that gateway had sent it is gone; the
    worker registers again."""


ToWorker = (
    Generate
    | Transcribe
    | Embed
    | Rerank
    | Tokenize
    | Detokenize
    | LoadAdapter
    | UnloadAdapter
    | Cancel
    | Shutdown
    | Refused
    | RegisterAgain
)


# --- worker → gateway -------------------------------------------------------------------


class Register(msgspec.Struct, tag=True, frozen=True):
    worker_id: str
    model: str
    engine: str
    device: str
    tasks: list[str]
    max_batch: int
    context_length: int
    protocol_version: int
    pid: int
    embedding_dimension: int = 0  # models with the embedding task
    chat_template: str = ""  # the model's, as its tokenizer has it (GET /props shows it)


class Heartbeat(msgspec.Struct, tag=True, frozen=True):
    running: int  # sequences in the batch
    waiting: int  # admitted, not yet in the batch
    tokens_generated: int  # since the worker started
    steps: int  # engine steps since the worker started


class TokenLogprob(msgspec.Struct, array_like=True, frozen=True):
    """A token (its bytes), its log-probability (None for a prompt's first token, which nothing
    predicts) and the most likely alternatives at its position."""

    token: bytes
    logprob: float | None
    top: list[tuple[bytes, float]] = []


class ToolCallDelta(msgspec.Struct, array_like=True, frozen=True):
    """Part of the `index`-th tool call of an answer: its first part has the id and name, the
    others fragments of its arguments' JSON text."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


class Word(msgspec.Struct, array_like=True, frozen=True):
    word: str
    start: float  # seconds from the audio's start
    end: float
    probability: float


class Segment(msgspec.Struct, array_like=True, frozen=True):
    """A stretch of transcribed audio (Whisper's segment), with what verbose_json shows of it."""

    id: int
    seek: int
    start: float  # seconds from the audio's start
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] | None = None


class Heard(msgspec.Struct, array_like=True, frozen=True):
    """What a transcription found out about its audio (on its first delta)."""

    language: str
    duration: float  # seconds of audio


class Details(msgspec.Struct, array_like=True, frozen=True):
    """What a delta carries beyond text, only when there is some (the common delta stays small)."""

    tool_calls: list[ToolCallDelta] | None = None
    logprobs: list[TokenLogprob] | None = None  # one per token of this step, when asked for
    prompt_logprobs: list[TokenLogprob] | None = None  # with echo, on the first delta
    segment: Segment | None = None  # a transcription's: the segment this delta's text is
    heard: Heard | None = None  # a transcription's first delta


class Delta(msgspec.Struct, array_like=True, frozen=True):
    """What one sequence produced in one step. Usage figures are set on the last delta only."""

    request_id: str
    text: str
    tokens: int
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_word: str | None = None  # the stop string that ended it, if one did
    details: Details | None = None  # tool calls, log-probabilities


class StepOutput(msgspec.Struct, tag=True, frozen=True):
    deltas: list[Delta]
    running: int  # sequences still in the batch after this step
    waiting: int


class Embeddings(msgspec.Struct, tag=True, frozen=True):
    """One vector per input, in order: float32 little-endian bytes (cheap on the wire, and ready
    for base64)."""

    request_id: str
    vectors: list[bytes]
    prompt_tokens: int


class Ranked(msgspec.Struct, tag=True, frozen=True):
    """One relevance score per document, in the documents' order."""

    request_id: str
    scores: list[float]
    prompt_tokens: int


class Tokenized(msgspec.Struct, tag=True, frozen=True):
    """Token ids; with pieces, each token's bytes (its text, in UTF-8 when it is whole)."""

    request_id: str
    tokens: list[int]
    pieces: list[bytes] | None = None


class Detokenized(msgspec.Struct, tag=True, frozen=True):
    request_id: str
    text: str


class AdapterLoaded(msgspec.Struct, tag=True, frozen=True):
    request_id: str
    name: str
    rank: int
    targets: list[str]  # the base's module names it changes (q_proj, v_proj...)


class Failed(msgspec.Struct, tag=True, frozen=True):
    """A request the worker could not serve. `status` is the HTTP status the gateway answers."""

    request_id: str
    status: int
    code: str
    message: str
    param: str | None = None


ToGateway = (
    Register | Heartbeat | StepOutput | Embeddings | Ranked | Tokenized | Detokenized | AdapterLoaded | Failed
)
