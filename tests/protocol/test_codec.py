import msgspec
import pytest

from protocol import (
    PROTOCOL_VERSION,
    Cancel,
    ChatMessage,
    Delta,
    Failed,
    GatewayCodec,
    Generate,
    Register,
    SamplingParams,
    StepOutput,
    WorkerCodec,
)
from protocol.codec import DecodeError


def test_every_message_crosses_the_wire_unchanged():
    gateway, worker = GatewayCodec(), WorkerCodec()
    generate = Generate(
        "r1",
        SamplingParams(max_tokens=5, temperature=0.0, stop=["\n"], seed=3),
        messages=[ChatMessage("user", "héllo")],
    )
    assert worker.decode(gateway.encode(generate)) == generate
    assert worker.decode(gateway.encode(Cancel("r1"))) == Cancel("r1")
    step = StepOutput([Delta("r1", "a", 1), Delta("r2", "b", 1, "stop", 4, 9)], running=1, waiting=0)
    assert gateway.decode(worker.encode(step)) == step
    register = Register("w", "m", "torch", "cpu", ["chat"], 8, 8192, PROTOCOL_VERSION, 1)
    assert gateway.decode(worker.encode(register)) == register
    failed = Failed("r1", 400, "context_length_exceeded", "too long", "messages")
    assert gateway.decode(worker.encode(failed)) == failed


def test_a_worker_message_is_not_accepted_by_a_worker_and_garbage_is_rejected():
    gateway, worker = GatewayCodec(), WorkerCodec()
    with pytest.raises(DecodeError):  # each end decodes only its own direction's union
        worker.decode(worker.encode(StepOutput([], 0, 0)))
    with pytest.raises(DecodeError):
        gateway.decode(b"\x80\x04not msgpack at all")
    with pytest.raises(DecodeError):  # right tag, wrong field types
        gateway.decode(msgspec.msgpack.encode({"type": "Failed", "request_id": 1, "status": "x"}))


def test_step_output_is_compact():
    # one step of 8 sequences: the per-token output path must stay cheap
    step = StepOutput([Delta(f"{i:032x}", " word", 1) for i in range(8)], running=8, waiting=0)
    payload = 8 * (32 + len(" word"))  # ids and text: what cannot be saved
    assert len(WorkerCodec().encode(step)) - payload < 8 * 12 + 40  # framing per delta and per step
