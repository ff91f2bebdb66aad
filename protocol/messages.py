"""Messages on the ZeroMQ sockets, one tagged union per direction.

Worker → gateway: Register, Heartbeat, StepOutput, Embeddings, Tokenized, Detokenized, Failed.
Gateway → worker: Generate, Embed, Tokenize, Detokenize, Cancel, Shutdown, Refused.

A StepOutput carries the deltas of every sequence that advanced in one engine step, so the
output path costs one message per step, not one per token per request.
"""

from __future__ import annotations

import msgspec

# Bump on any change a peer of the previous version would misread.
PROTOCOL_VERSION = 2


class ChatMessage(msgspec.Struct, array_like=True, frozen=True):
    role: str
    content: str


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


class Generate(msgspec.Struct, tag=True, frozen=True):
    """Generate text for a chat (messages) or a raw prompt (text or token ids)."""

    request_id: str
    params: SamplingParams
    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    prompt_ids: list[int] | None = None


class Embed(msgspec.Struct, tag=True, frozen=True):
    """Embed each input: texts, or token ids (the model's special tokens are added around them)."""

    request_id: str
    texts: list[str] | None = None
    token_ids: list[list[int]] | None = None
    truncate: bool = False  # cut inputs past the model's length instead of refusing them


class Tokenize(msgspec.Struct, tag=True, frozen=True):
    request_id: str
    text: str
    add_special: bool = False  # the model's BOS/CLS... as when it reads a prompt
    with_pieces: bool = False  # each token's text too


class Detokenize(msgspec.Struct, tag=True, frozen=True):
    request_id: str
    tokens: list[int]


class Cancel(msgspec.Struct, tag=True, frozen=True):
    request_id: str


class Shutdown(msgspec.Struct, tag=True, frozen=True):
    drain: bool = False


class Refused(msgspec.Struct, tag=True, frozen=True):
    """Answer to a Register the gateway will not accept; the worker exits."""

    reason: str


ToWorker = Generate | Embed | Tokenize | Detokenize | Cancel | Shutdown | Refused


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


class Delta(msgspec.Struct, array_like=True, frozen=True):
    """What one sequence produced in one step. Usage figures are set on the last delta only."""

    request_id: str
    text: str
    tokens: int
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_word: str | None = None  # the stop string that ended it, if one did


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


class Tokenized(msgspec.Struct, tag=True, frozen=True):
    """Token ids; with pieces, each token's bytes (its text, in UTF-8 when it is whole)."""

    request_id: str
    tokens: list[int]
    pieces: list[bytes] | None = None


class Detokenized(msgspec.Struct, tag=True, frozen=True):
    request_id: str
    text: str


class Failed(msgspec.Struct, tag=True, frozen=True):
    """A request the worker could not serve. `status` is the HTTP status the gateway answers."""

    request_id: str
    status: int
    code: str
    message: str
    param: str | None = None


ToGateway = Register | Heartbeat | StepOutput | Embeddings | Tokenized | Detokenized | Failed
