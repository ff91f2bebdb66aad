"""The worker link as a hostile peer sees it: frames of the wrong shape, garbage, an oversized
frame, a stolen worker identity and an invented model change nothing, and requests go on."""

import os
import threading
import time

import httpx
import msgspec
import pytest
import zmq

from protocol import PROTOCOL_VERSION, Register
from tests.server import free_port, start_server, stop_server


@pytest.fixture(scope="module")
def linked():
    address = f"tcp://127.0.0.1:{free_port()}"
    server = start_server("--test-engine", "--no-engine-variants", "--worker-bind", address)
    yield server, address
    stop_server(server)


def register(worker_id: str, model: str) -> bytes:
    info = Register(worker_id, model, "test", "none", ["chat"], 8, 1024, PROTOCOL_VERSION, os.getpid())
    return msgspec.msgpack.encode(info)


def chat_answered_within(server, seconds: float) -> None:
    started = time.monotonic()
    body = {"model": "test-engine", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    reply = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=seconds)
    assert reply.status_code == 200 and time.monotonic() - started < seconds


def test_a_hostile_peer_changes_nothing(linked):
    server, address = linked
    local = server.status("test-engine")["replicas"][0]["worker_id"]
    context = zmq.Context()
    try:
        peer = context.socket(zmq.DEALER)
        peer.setsockopt(zmq.LINGER, 0)
        peer.connect(address)
        peer.send_multipart([b"two", b"frames"])
        peer.send(b"\x80\x04 not msgpack at all")
        peer.send(msgspec.msgpack.encode({"type": "StepOutput", "deltas": "nope"}))
        peer.send(b"x" * (64 * 1024 * 1024))  # past the frame limit: the peer is cut off
        thief = context.socket(zmq.DEALER)  # a remote peer claiming the local worker's identity
        thief.setsockopt(zmq.IDENTITY, local.encode())
        thief.setsockopt(zmq.LINGER, 0)
        thief.connect(address)
        thief.send(register(local, "test-engine"))
        inventor = context.socket(zmq.DEALER)  # a model this gateway does not serve
        inventor.setsockopt(zmq.IDENTITY, b"inventor")
        inventor.setsockopt(zmq.LINGER, 0)
        inventor.connect(address)
        inventor.send(register("inventor", "invented-model"))
        assert inventor.poll(5000), "the gateway answers a refused registration"
        assert b"Refused" in inventor.recv()
        assert thief.poll(5000) and b"Refused" in thief.recv()
        chat_answered_within(server, 5.0)
        models = [m["id"] for m in httpx.get(f"{server.url}/v1/models").json()["data"]]
        assert "invented-model" not in models
        replicas = server.status("test-engine")["replicas"]
        assert [r["worker_id"] for r in replicas] == [local]
    finally:
        context.destroy(linger=0)


def test_a_worker_that_cannot_be_reached_is_dropped_at_once_not_left_running_unseen():
    address = f"tcp://127.0.0.1:{free_port()}"
    server = start_server(
        "--test-engine", "--no-engine-variants", "--worker-bind", address, "--allow-remote-models"
    )
    context = zmq.Context()
    try:
        worker = context.socket(zmq.DEALER)
        worker.setsockopt(zmq.IDENTITY, b"far-1")
        worker.setsockopt(zmq.LINGER, 0)
        worker.connect(address)
        worker.send(register("far-1", "far-model"))
        deadline = time.monotonic() + 10
        while server.status("far-model")["state"] != "ready":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        body = {"model": "far-model", "messages": [{"role": "user", "content": "hi"}]}
        timeouts = []

        def ask() -> None:  # a client that gives up after 2 s
            try:
                httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=2)
            except httpx.ReadTimeout:
                timeouts.append(True)

        client = threading.Thread(target=ask)
        client.start()
        assert worker.poll(5000) and b"Generate" in worker.recv()  # it has the request...
        worker.close()  # ...and is gone before answering
        client.join()
        assert timeouts
        # the client left: the Cancel finds no peer, so the worker is dropped now, not after
        # --heartbeat-timeout (60 s) with its sequence presumed running
        deadline = time.monotonic() + 3
        while server.status("far-model")["replicas"]:
            assert time.monotonic() < deadline, "the unreachable worker is still registered"
            time.sleep(0.05)
        assert server.status("far-model")["in_flight"] == 0
        chat_answered_within(server, 5.0)
    finally:
        context.destroy(linger=0)
        stop_server(server)
