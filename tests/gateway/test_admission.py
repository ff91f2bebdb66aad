"""Admission on its own: a caller's share of a model, what waits for it, and the bounds."""

import pytest

from gateway.admission import Admission
from gateway.errors import APIError
from gateway.link import Peer
from gateway.registry import ModelState, Worker
from protocol import PROTOCOL_VERSION, Generate, Register, SamplingParams, Tokenize


def model(max_batch: int = 4) -> tuple[ModelState, Worker]:
    info = Register("m-1", "m", "test", "cpu", ["generate"], max_batch, 512, PROTOCOL_VERSION, 1)
    worker = Worker(Peer(False, b"m-1"), info)
    state = ModelState("m", workers={worker.peer: worker})
    return state, worker


def generations(prefix: str, n: int) -> list[Generate]:
    return [Generate(f"{prefix}{i}", SamplingParams(max_tokens=1), prompt="hi") for i in range(n)]


def admission(share: int = 0, max_queue: int = 8, max_waiting: int = 8) -> tuple[Admission, list[str]]:
    sent: list[str] = []
    return Admission(
        lambda placed: sent.append(placed.request.request_id), share, max_queue, max_waiting
    ), sent


def test_a_callers_sequences_past_its_share_wait_and_go_as_its_earlier_ones_end():
    state, worker = model(max_batch=4)
    gate, sent = admission()
    gate.admit(state, worker, "key:a", generations("a", 6))  # one request of 6 prompts
    assert sent == ["a0", "a1", "a2", "a3"] and state.held == 2
    gate.admit(state, worker, "key:b", generations("b", 1))
    assert sent[-1] == "b0"  # b's goes out beside a's, not behind a's waiting two
    gate.ended("a1")
    assert sent[-1] == "a4" and worker.in_flight == {"a0", "a2", "a3", "a4", "b0"}
    withdrawn = gate.ended("a5")  # its request closed before it went out: nothing to cancel
    assert withdrawn is not None and not withdrawn.sent and state.held == 0
    gate.ended("a0")
    assert sent[-1] == "a4" and len(sent) == 6


def test_a_set_share_and_the_waiting_bound_per_caller():
    state, worker = model(max_batch=8)
    gate, sent = admission(share=2, max_waiting=3)
    gate.admit(state, worker, "key:a", generations("a", 5))
    assert sent == ["a0", "a1"] and state.held == 3
    with pytest.raises(APIError) as error:
        gate.admit(state, worker, "key:a", generations("x", 1))  # a fourth would wait: refused
    assert error.value.status == 503 and error.value.code == "server_busy"
    gate.admit(state, worker, "key:b", generations("b", 2))  # another caller is not affected
    assert sent[-2:] == ["b0", "b1"]


def test_the_models_capacity_counts_what_is_at_the_workers():
    state, worker = model(max_batch=2)
    gate, _ = admission(max_queue=1)  # capacity 2 + 1
    gate.admit(state, worker, "key:a", generations("a", 2))
    gate.admit(state, worker, "key:b", generations("b", 1))
    with pytest.raises(APIError) as error:
        gate.admit(state, worker, "key:c", generations("c", 1))
    assert error.value.status == 503
    gate.admit(state, worker, "key:a", generations("w", 1))  # it only waits: no room taken
    assert state.held == 1


def test_tokenizing_takes_no_share():
    state, worker = model(max_batch=1)
    gate, sent = admission()
    gate.admit(state, worker, "key:a", generations("a", 1))
    gate.admit(state, worker, "key:a", [Tokenize("t", text="hi")])
    assert sent == ["a0", "t"]
    gate.ended("t")
    assert state.held == 0 and worker.in_flight == {"a0"}


def test_a_closed_request_withdraws_what_waits_before_its_sent_ones_end():
    state, worker = model(max_batch=2)
    gate, sent = admission()
    gate.admit(state, worker, "key:a", generations("a", 4))
    for request_id in sorted(["a0", "a1", "a2", "a3"], key=gate.sent):  # as the router closes one
        gate.ended(request_id)
    assert sent == ["a0", "a1"] and state.held == 0 and not worker.in_flight
