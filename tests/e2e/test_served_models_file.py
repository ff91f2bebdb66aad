"""A models file served for real: replicas with least-loaded dispatch, idle unload (keep_alive) and
least-recently-used eviction past --max-loaded-models. The models run the test engine (no model
weights), so what is measured is the gateway's lifecycle, not an engine."""

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.server import start_server, stop_server

MODELS = """
[fast]
source = "none"
engine = "test"
replicas = 2

[a]
source = "none"
engine = "test"
preload = false

[b]
source = "none"
engine = "test"
preload = false

[brief]
source = "none"
engine = "test"
preload = false
keep_alive = "1s"

[patient]
source = "none"
engine = "test"
preload = false
keep_alive = "2s"

[solo]
source = "none"
engine = "test"

[lazy]
source = "none"
engine = "test"
preload = false

[broken]
source = "/no/such/model"
engine = "onnx"
preload = false
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "models.toml"
    path.write_text(MODELS)
    server = start_server(
        "--models", str(path), "--max-loaded-models", "5", "--restart-backoff-max", "0.2", timeout=60
    )
    yield server, openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    stop_server(server)


def state(server, model):
    return server.status(model)["state"]


def wait_for(predicate, within=10.0):
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


def test_the_file_is_what_is_served(served):
    client = served[1]
    listed = client.models.list().data
    assert [m.id for m in listed] == ["fast", "a", "b", "brief", "patient", "solo", "lazy", "broken"]
    assert [m.state for m in listed] == ["ready"] + ["registered"] * 4 + ["ready"] + ["registered"] * 2


def test_five_first_requests_at_once_start_one_load(served):
    server, client = served
    assert state(server, "lazy") == "registered"
    replies = []

    def ask():
        reply = client.chat.completions.create(
            model="lazy", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        replies.append(reply.usage.completion_tokens)

    threads = [threading.Thread(target=ask) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert replies == [2] * 5
    status = server.status("lazy")
    assert len(status["replicas"]) == 1 and status["restarts"] == 0  # one worker was started


def test_a_killed_worker_fails_its_stream_fast_and_the_next_request_is_served(served):
    server, client = served
    stream = client.chat.completions.create(
        model="solo", messages=[{"role": "user", "content": "go"}], max_tokens=10_000_000, stream=True
    )
    chunks = iter(stream)
    next(chunks)
    os.kill(server.status("solo")["replicas"][0]["pid"], signal.SIGKILL)
    killed = time.monotonic()
    with pytest.raises(openai.APIError) as error:
        for _ in chunks:
            pass
    assert time.monotonic() - killed < 2.0 and "worker" in str(error.value)
    wait_for(lambda: state(server, "solo") == "ready", within=30)
    reply = client.chat.completions.create(
        model="solo", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert reply.usage.completion_tokens == 2 and server.status("solo")["restarts"] == 1


def test_replicas_take_requests_least_loaded_first(served):
    server, client = served
    replicas = server.status("fast")["replicas"]
    assert len(replicas) == 2 and replicas[0]["pid"] != replicas[1]["pid"]
    streams = [
        client.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "go"}], max_tokens=10_000_000, stream=True
        )
        for _ in range(2)
    ]
    for stream in streams:
        next(iter(stream))
    assert [r["in_flight"] for r in server.status("fast")["replicas"]] == [1, 1]
    for stream in streams:
        stream.close()
    wait_for(lambda: server.status("fast")["in_flight"] == 0)


def test_an_idle_model_is_unloaded_after_its_keep_alive(served):
    server, client = served
    reply = client.chat.completions.create(
        model="brief", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert reply.choices[0].message.content == " tok tok tok"
    wait_for(lambda: state(server, "brief") == "registered", within=10)
    assert httpx.get(f"{server.url}/health").status_code == 200  # unloaded for idleness is no fault
    again = client.chat.completions.create(
        model="brief", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert again.usage.completion_tokens == 2  # it loads again on its next request


def test_keep_alive_counts_from_the_load_and_a_second_unload_waits_for_the_first(served):
    server = served[0]
    time.sleep(2.5)  # the gateway has run longer than patient's keep_alive
    assert httpx.post(f"{server.url}/v1/models/load", json={"name": "patient"}, timeout=30).status_code == 200
    time.sleep(1)
    assert state(server, "patient") == "ready"  # not unloaded as if idle since the gateway started

    def unload():
        return httpx.post(f"{server.url}/v1/models/unload", json={"name": "patient"}, timeout=30)

    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda _: unload(), range(2)))
    assert [r.json()["state"] for r in replies] == ["registered", "registered"]


def test_past_max_loaded_models_the_least_recently_used_goes(served):
    server, client = served

    def ask(model):
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )

    wait_for(lambda: state(server, "brief") == "registered")
    ask("lazy")  # fast, solo, lazy
    ask("a")  # fast, solo, lazy, a
    ask("b")  # fast, solo, lazy, a, b: the limit
    for model in ("a", "fast", "solo", "lazy"):
        ask(model)  # b is now the least recently used
    ask("brief")  # a sixth: b goes
    wait_for(lambda: state(server, "b") == "registered")
    assert [state(server, m) for m in ("fast", "a", "solo", "lazy")] == ["ready"] * 4  # (brief: 1 s)


def test_a_model_whose_worker_keeps_dying_is_marked_failed_with_its_error(served):
    server, client = served
    with pytest.raises(openai.APIStatusError) as error:
        client.chat.completions.create(
            model="broken", messages=[{"role": "user", "content": "hi"}], timeout=60
        )
    assert error.value.status_code == 503 and error.value.body["code"] == "model_failed"
    status = server.status("broken")
    assert status["state"] == "failed" and "exit code 1" in status["last_error"]
    assert status["restarts"] >= 2
    # the others are untouched, and the server is healthy: the broken model is not preloaded
    assert state(server, "fast") == "ready" and httpx.get(f"{server.url}/health").status_code == 200
    httpx.post(f"{server.url}/v1/models/unload", json={"name": "broken"}, timeout=30)
    assert state(server, "broken") == "registered"  # unloading stops the retries
