"""The contract between the gateway and the workers: typed messages and their codec.

Imports nothing from gateway/ or workers/; both import it.
"""

from protocol.codec import GatewayCodec, WorkerCodec
from protocol.messages import (
    PROTOCOL_VERSION,
    Cancel,
    ChatMessage,
    Delta,
    Detokenize,
    Detokenized,
    Embed,
    Embeddings,
    Failed,
    Generate,
    Heartbeat,
    Refused,
    Register,
    SamplingParams,
    Shutdown,
    StepOutput,
    ToGateway,
    Tokenize,
    Tokenized,
    ToWorker,
)

__all__ = [
    "PROTOCOL_VERSION",
    "Cancel",
    "ChatMessage",
    "Delta",
    "Detokenize",
    "Detokenized",
    "Embed",
    "Embeddings",
    "Failed",
    "GatewayCodec",
    "Generate",
    "Heartbeat",
    "Refused",
    "Register",
    "SamplingParams",
    "Shutdown",
    "StepOutput",
    "ToGateway",
    "ToWorker",
    "Tokenize",
    "Tokenized",
    "WorkerCodec",
]
