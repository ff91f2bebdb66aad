"""Chaos: the chat worker is killed with SIGKILL three times, at random moments, under 8 streams.
Every request ends (a complete answer or an error event) within 5 s of its worker's death, none
hangs, the model is ready again after each kill, and the status counts the restarts."""

import json
import os
import random
import signal
import threading
import time

import httpx
import pytest

from tests.server import start_server, stop_server

MODEL = "smollm2-135m-instruct"
STREAMS = 8
KILLS = 3


@pytest.fixture(scope="module")
def chaotic():
    server = start_server("--no-engine-variants", "--restart-backoff-max", "0.5")
    yield server
    stop_server(server)


class Stream(threading.Thread):
    """One streamed chat request: how it ended, and when."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.started, self.outcome, self.ended = url, threading.Event(), "", 0.0

    def run(self) -> None:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Tell me a long story."}],
            "max_tokens": 1000,
            "ignore_eos": True,
            "stream": True,
        }
        try:
            with httpx.stream("POST", f"{self.url}/v1/chat/completions", json=body, timeout=60) as reply:
                if reply.status_code != 200:
                    self.outcome = f"status {reply.status_code}"
                    return
                for line in reply.iter_lines():
                    self.started.set()
                    if not line.startswith("data: "):
                        continue
                    if line == "data: [DONE]":
                        self.outcome = self.outcome or "unfinished"
                        return
                    event = json.loads(line[6:])
                    if "error" in event:
                        self.outcome = "error event"
                    elif event["choices"] and event["choices"][0]["finish_reason"]:
                        self.outcome = "complete"
                self.outcome = self.outcome or "cut off"
        except httpx.HTTPError as exc:
            self.outcome = f"transport error {type(exc).__name__}"
        finally:
            self.ended = time.monotonic()
            self.started.set()


def wait_ready(server, within: float = 90.0) -> dict:
    deadline = time.monotonic() + within
    while (status := server.status(MODEL))["state"] != "ready":
        assert time.monotonic() < deadline, f"the model is not ready again: {status['state']}"
        time.sleep(0.2)
    return status


def test_killed_three_times_under_load_every_request_ends_and_the_model_comes_back(chaotic):
    rng = random.Random(7)
    restarts = wait_ready(chaotic)["restarts"]
    for kill in range(KILLS):
        pid = wait_ready(chaotic)["replicas"][0]["pid"]
        streams = [Stream(chaotic.url) for _ in range(STREAMS)]
        for stream in streams:
            stream.start()
        for stream in streams:
            assert stream.started.wait(60), "a stream never started"
        time.sleep(rng.uniform(0.1, 2.0))
        os.kill(pid, signal.SIGKILL)
        died = time.monotonic()
        for stream in streams:
            stream.join(timeout=10)
            assert not stream.is_alive(), f"kill {kill + 1}: a request hangs"
            assert stream.ended - died < 5, (
                f"kill {kill + 1}: a request ended {stream.ended - died:.1f} s after"
            )
            assert stream.outcome in ("complete", "error event"), f"kill {kill + 1}: {stream.outcome}"
        assert any(s.outcome == "error event" for s in streams)  # they were running when it died
        status = wait_ready(chaotic)
        assert status["replicas"][0]["pid"] != pid
        assert status["restarts"] == restarts + kill + 1
    reply = httpx.post(
        f"{chaotic.url}/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
        timeout=60,
    )
    assert reply.status_code == 200
