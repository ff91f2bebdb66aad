"""Loading and unloading models by hand: POST /v1/models/load waits until the model serves,
POST /v1/models/unload lets its requests finish and stops its worker; both are idempotent, and an
unloaded model loads again on its next request."""

import os
import threading
import time

import httpx
import openai
import pytest

VARIANT = "smollm2-135m-instruct-torch"


def post(server, path, body):
    return httpx.post(f"{server.url}{path}", json=body, timeout=300)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_load_waits_until_ready_and_unload_drains_then_stops(server):
    loaded = post(server, "/v1/models/load", {"model_id": VARIANT})
    assert loaded.status_code == 200 and loaded.json()["state"] == "ready"
    assert post(server, "/v1/models/load", {"name": VARIANT}).json()["state"] == "ready"  # idempotent
    (replica,) = server.status(VARIANT)["replicas"]

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    finished = {}

    def stream_through_the_unload():
        stream = client.chat.completions.create(
            model=VARIANT,
            messages=[{"role": "user", "content": "Tell me a story."}],
            max_tokens=30,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        finished["reason"] = [c.choices[0].finish_reason for c in stream if c.choices][-1]

    thread = threading.Thread(target=stream_through_the_unload)
    thread.start()
    while server.status(VARIANT)["running"] == 0 and thread.is_alive():
        time.sleep(0.02)
    unloaded = post(server, "/v1/models/unload", {"model": VARIANT})
    thread.join(timeout=120)
    assert finished["reason"] == "length"  # the in-flight request was drained, not cut
    assert unloaded.status_code == 200 and unloaded.json()["state"] == "registered"
    assert unloaded.json()["replicas"] == [] and not alive(replica["pid"])
    assert post(server, "/v1/models/unload", {"model": VARIANT}).status_code == 200  # idempotent

    reply = client.chat.completions.create(
        model=VARIANT, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, timeout=300
    )
    assert reply.choices[0].message.content and server.status(VARIANT)["state"] == "ready"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [({}, 400, "missing_required_parameter"), ({"name": "nope"}, 404, "model_not_found")],
)
def test_load_and_unload_name_a_served_model(server, body, status, code):
    for path in ("/v1/models/load", "/v1/models/unload"):
        answer = post(server, path, body)
        assert answer.status_code == status and answer.json()["error"]["code"] == code
