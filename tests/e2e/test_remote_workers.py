"""Workers on another machine (here: loopback over tcp://), with CurveZMQ keys: a worker with the
accepted key registers and serves; one without keys, or with a key the gateway does not know, is
refused; one speaking another protocol version is refused with the reason. And eviction with
--max-loaded-models 1. The workers run the test engine, so no weights load."""

import os
import subprocess
import sys
import time

import httpx
import openai
import pytest
import zmq
import zmq.auth

from protocol import PROTOCOL_VERSION, Refused, Register, WorkerCodec
from protocol.curve import create
from tests.server import free_port, start_server, stop_server

MODELS = '[local]\nsource = "none"\nengine = "test"\n'


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys")
    create(keys)
    models = keys.parent / "models.toml"
    models.write_text(MODELS)
    address = f"tcp://127.0.0.1:{free_port()}"
    server = start_server(
        "--models", str(models), "--worker-bind", address, "--worker-keys", str(keys), "--allow-remote-models"
    )
    yield server, address, keys
    stop_server(server)


def worker(address, model, *keys):
    command = [sys.executable, "-m", "gateway", "worker", "--model", model, "--source", "none"]
    command += ["--engine", "test", "--connect", address, "--heartbeat-interval", "0.2", *keys]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def listed(server):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    return {m.id: m.state for m in client.models.list().data}


def wait_ready(server, model, process) -> None:
    deadline = time.monotonic() + 30
    while listed(server).get(model) != "ready":
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.2)


def answers(server, model, process) -> None:
    """The remote worker process answers a chat request through the gateway."""
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert reply.choices[0].message.content == " tok tok tok"
    assert server.status(model)["replicas"][0]["pid"] == process.pid


def test_a_worker_with_the_accepted_key_registers_and_serves(gateway):
    server, address, keys = gateway
    process = worker(
        address,
        "remote-one",
        "--curve-key",
        str(keys / "worker.key_secret"),
        "--curve-server-key",
        str(keys / "server.key"),
    )
    try:
        wait_ready(server, "remote-one", process)
        answers(server, "remote-one", process)
        available = httpx.get(f"{server.url}/models/available").json()["models"]
        remote = next(m for m in available if m["model_id"] == "remote-one")
        assert (remote["task"], remote["engine"], remote["loaded"]) == ("generate", "test", True)
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("credentials", ["none", "unknown key"])
def test_a_worker_without_an_accepted_key_is_refused(gateway, tmp_path, credentials):
    server, address, keys = gateway
    args = []
    if credentials == "unknown key":
        stranger = create(tmp_path / "stranger")  # a pair the gateway never accepted
        args = ["--curve-key", str(stranger[3]), "--curve-server-key", str(keys / "server.key")]
    process = worker(address, "intruder", *args)
    try:
        time.sleep(4)  # time enough to start and register, had it been let in
        assert process.poll() is None and "intruder" not in listed(server)
    finally:
        process.kill()
        process.wait()


def test_a_worker_speaking_another_protocol_version_is_refused_with_the_reason(gateway):
    server, address, keys = gateway
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.IDENTITY, b"old-worker")
    socket.curve_publickey, socket.curve_secretkey = zmq.auth.load_certificate(keys / "worker.key_secret")
    socket.curve_serverkey, _ = zmq.auth.load_certificate(keys / "server.key")
    socket.connect(address)
    codec = WorkerCodec()
    old = Register("old-worker", "old", "test", "none", ["chat"], 1, 16, PROTOCOL_VERSION - 1, os.getpid())
    try:
        socket.send(codec.encode(old))
        assert socket.poll(10_000), "no answer from the gateway"
        answer = codec.decode(socket.recv())
        assert isinstance(answer, Refused)
        assert (
            answer.reason
            == f"protocol version {PROTOCOL_VERSION - 1} differs from the gateway's {PROTOCOL_VERSION}"
        )
        assert "old" not in listed(server)
    finally:
        socket.close(linger=0)
        context.term()


def test_past_max_loaded_models_1_the_loaded_model_makes_room(tmp_path):
    models = tmp_path / "models.toml"
    models.write_text(MODELS + '\n[other]\nsource = "none"\nengine = "test"\npreload = false\n')
    server = start_server("--models", str(models), "--max-loaded-models", "1", timeout=60)
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        assert listed(server) == {"local": "ready", "other": "registered"}
        client.chat.completions.create(
            model="other", messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
        deadline = time.monotonic() + 30
        while listed(server) != {"local": "registered", "other": "ready"}:
            assert time.monotonic() < deadline, listed(server)
            time.sleep(0.1)
    finally:
        stop_server(server)


def test_a_remote_worker_registers_again_with_a_gateway_that_crashed_and_came_back(tmp_path):
    """The worker outlives its gateway; the one started in its place asks it to register (it
    knew nothing of it), and the stream the worker was generating for the dead one is cancelled."""
    models = tmp_path / "models.toml"
    models.write_text(MODELS)
    address = f"tcp://127.0.0.1:{free_port()}"
    arguments = ("--models", str(models), "--worker-bind", address, "--allow-remote-models")
    server = start_server(*arguments)
    process = worker(address, "remote-again")
    try:
        wait_ready(server, "remote-again", process)
        endless = {"model": "remote-again", "prompt": "hi", "max_tokens": 1_000_000, "stream": True}
        with httpx.stream("POST", f"{server.url}/v1/completions", json=endless, timeout=30) as answer:
            lines = answer.iter_lines()  # kept: an iterator let go of closes the connection
            assert answer.status_code == 200 and next(lines).startswith("data: ")
            assert server.status("remote-again")["in_flight"] == 1
            server.process.kill()  # no goodbye to the worker
            server.process.wait()
        server = start_server(*arguments)
        wait_ready(server, "remote-again", process)
        deadline = time.monotonic() + 10
        while server.status("remote-again")["replicas"][0]["running"] != 0:  # from its heartbeats
            assert time.monotonic() < deadline, "the dead gateway's stream is still generated"
            time.sleep(0.2)
        answers(server, "remote-again", process)
    finally:
        process.kill()
        process.wait()
        stop_server(server)
