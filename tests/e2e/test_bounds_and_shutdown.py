"""A server with one batch slot and one waiting slot: the queue bound, then a graceful SIGTERM."""

import os
import signal
import threading
import time

import httpx
import openai
import pytest

from tests.server import start_server, stop_server

MODEL = "smollm2-135m-instruct"
STORY = [{"role": "user", "content": "Tell me a long story."}]


@pytest.fixture(scope="module")
def tight():
    # one caller (this test's address): its share is the one slot, and one more may wait for it
    server = start_server("--max-batch", "1", "--key-waiting", "1", "--drain-timeout", "60")
    yield server
    if server.process.poll() is None:
        stop_server(server)


def wait_for(predicate, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_requests_beyond_batch_and_queue_are_refused_with_retry_after(tight):
    client = openai.OpenAI(base_url=f"{tight.url}/v1", api_key="unused", max_retries=0)
    running = client.chat.completions.create(
        model=MODEL, messages=STORY, max_tokens=300, stream=True, extra_body={"ignore_eos": True}
    )
    chunks = iter(running)
    next(chunks)
    queued: list = []
    thread = threading.Thread(
        target=lambda: queued.append(
            client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=5)
        )
    )
    thread.start()
    wait_for(lambda: tight.status()["in_flight"] == 2, "the second request to be queued")
    refused = httpx.post(
        f"{tight.url}/v1/chat/completions",
        timeout=30,
        json={"model": MODEL, "messages": STORY, "max_tokens": 5},
    )
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "server_busy" and refused.headers["Retry-After"] == "1"
    running.close()  # frees the slot: the queued request runs
    thread.join(timeout=60)
    assert queued and queued[0].choices[0].finish_reason in ("stop", "length")


def test_sigterm_lets_a_running_stream_finish_then_exits_0(tight):
    body = {"model": MODEL, "messages": STORY, "max_tokens": 40, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{tight.url}/v1/chat/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        workers = [r["pid"] for r in tight.status()["replicas"]]
        tight.process.send_signal(signal.SIGTERM)
        rest = [line for line in lines if line]
    assert rest[-1] == "data: [DONE]"
    assert '"finish_reason":"length"' in rest[-2]
    assert tight.process.wait(timeout=30) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{tight.url}/health", timeout=2)
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
