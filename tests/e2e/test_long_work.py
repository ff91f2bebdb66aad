"""Long synchronous work in a worker does not starve its heartbeats: a large embeddings request is
answered, and the gateway does not take the busy worker for dead and restart it."""

import time

import httpx
import pytest

from tests.server import start_server, stop_server

MODEL = "all-minilm-l6-v2"
# about 256 tokens each (the model's limit): 512 of them are about 30 s of CPU work here on OpenVINO
# (the default's engine; over 40 s on torch), past the heartbeat timeout below, which the worker
# must keep meeting between forward passes
# (2,048 took over 2 minutes: then the answer also outlasted the 120 s first-token timeout, which
# now bounds only generation; a one-answer request waits up to the request timeout)
TEXT = " ".join(["lighthouse keepers watched the storm"] * 50)


@pytest.fixture(scope="module")
def slow():
    server = start_server("--no-engine-variants", "--heartbeat-timeout", "20")
    yield server
    stop_server(server)


def test_a_cancelled_embeddings_request_stops_its_remaining_passes(slow):
    body = {"model": MODEL, "input": [TEXT] * 1024, "truncate": True}
    with pytest.raises(httpx.ReadTimeout):  # the client gives up after 3 s of a minute's work
        httpx.post(f"{slow.url}/v1/embeddings", json=body, timeout=3)
    started = time.monotonic()
    small = httpx.post(f"{slow.url}/v1/embeddings", json={"model": MODEL, "input": "hi"}, timeout=60)
    assert small.status_code == 200
    # not behind the rest of the cancelled request's passes (a minute or two here): at most the
    # pass under way when the cancel came, and its own
    assert time.monotonic() - started < 30


def test_a_large_embeddings_request_answers_without_a_restart(slow):
    before = slow.status(MODEL)
    body = {"model": MODEL, "input": [TEXT] * 512, "truncate": True}
    response = httpx.post(f"{slow.url}/v1/embeddings", json=body, timeout=900)
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 512
    after = slow.status(MODEL)
    assert after["restarts"] == before["restarts"] == 0
    assert [r["pid"] for r in after["replicas"]] == [r["pid"] for r in before["replicas"]]
