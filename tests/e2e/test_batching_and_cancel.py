"""Continuous batching and cancel on disconnect, observed through the server's own counters
(/v1/models/status: running sequences, tokens generated, engine steps by batch size), not timing."""

import time

import httpx
import pytest

MODEL = "smollm2-135m-instruct"
STORY = [{"role": "user", "content": "Tell me a long story about a dragon."}]
LONG = {"ignore_eos": True}


def wait_idle(server, within: float) -> dict:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status = server.status()
        if status["running"] == 0 and status["waiting"] == 0 and status["in_flight"] == 0:
            return status
        time.sleep(0.05)
    raise AssertionError(f"still generating after {within} s: {server.status()}")


def assert_generation_stopped(server, within: float = 2.0) -> None:
    idle = wait_idle(server, within)
    time.sleep(0.5)
    assert server.status()["tokens_generated"] == idle["tokens_generated"]


def test_a_request_joins_a_running_stream_and_both_advance_in_the_same_steps(server, client):
    wait_idle(server, 30)
    before = server.status()["steps_by_batch_size"].get("2", 0)
    stream = client.chat.completions.create(
        model=MODEL, messages=STORY, max_tokens=400, temperature=0, stream=True, extra_body=LONG
    )
    chunks = iter(stream)
    for _ in range(3):
        next(chunks)
    assert server.status()["running"] == 1
    second = client.chat.completions.create(
        model=MODEL, messages=STORY, max_tokens=20, temperature=0, extra_body=LONG
    )
    during = server.status()
    stream.close()
    assert second.usage.completion_tokens == 20
    # every token of the second request came from a step that also advanced the first
    assert during["steps_by_batch_size"].get("2", 0) - before >= 20
    assert_generation_stopped(server)


def test_closing_a_stream_stops_generation(server, client):
    wait_idle(server, 30)
    stream = client.chat.completions.create(
        model=MODEL, messages=STORY, max_tokens=2000, stream=True, extra_body=LONG
    )
    chunks = iter(stream)
    for _ in range(5):
        next(chunks)
    assert server.status()["running"] == 1
    stream.close()
    assert_generation_stopped(server, within=2.0)


def test_a_client_leaving_a_non_streamed_request_stops_generation(server):
    wait_idle(server, 30)
    body = {"model": MODEL, "messages": STORY, "max_tokens": 2000, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=httpx.Timeout(30, read=2))
    assert_generation_stopped(server, within=2.0)


def test_the_server_keeps_serving_after_cancellations(client):
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=5
    )
    assert reply.choices[0].message.content
