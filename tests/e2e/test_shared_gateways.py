"""Two gateways sharing one Redis (Debian's redis-server, started here) and one worker process that
registers with both (the test engine: the gateways' paths are what is tested), then the same behind
HAProxy with deploy/multi/haproxy.cfg: shared rate limits, the worker's max_batch never exceeded,
one gateway killed, Redis stopped (fail-open, and the metric says so), the designated gateway's
lease, cancel through the load balancer."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.server import free_port, start_server

REDIS = shutil.which("redis-server")
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
RECIPE = Path(__file__).parents[2] / "deploy" / "multi" / "haproxy.cfg"
pytestmark = pytest.mark.skipif(
    REDIS is None, reason="redis-server is not installed (make test installs it as root)"
)
MODEL = "shared"
MAX_BATCH = 4
LONG = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "go"}],
    "max_tokens": 1_000_000,
    "stream": True,
}


def wait(predicate, timeout=30.0, every=0.1):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(every)


def start_redis():
    port = free_port()
    process = subprocess.Popen(
        [REDIS, "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
    )
    wait(
        lambda: (
            subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip()
            == b"PONG"
        )
    )
    return process, f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Redis, gateway a (designated) and b (--no-stateful), one worker registered with both."""
    folder = tmp_path_factory.mktemp("shared")
    models = folder / "models.toml"
    models.write_text("")
    redis, url = start_redis()
    binds = [f"tcp://127.0.0.1:{free_port()}" for _ in range(2)]
    keys = [flag for key in ("k1", "k2", "k3", "k4", "k5") for flag in ("--api-key", key)]
    common = ["--models", str(models), "--allow-remote-models", "--redis-url", url, *keys]
    common += ["--rate-limit", "60", "--rate-burst", "10", "--key-share", "2"]
    a = start_server(*common, "--worker-bind", binds[0], "--state-dir", str(folder / "a"), key="k1")
    b = start_server(*common, "--worker-bind", binds[1], "--no-stateful", key="k1")
    command = [sys.executable, "-m", "gateway", "worker", "--model", MODEL, "--source", "none"]
    command += ["--engine", "test", "--max-batch", str(MAX_BATCH), "--heartbeat-interval", "0.2"]
    command += ["--connect", binds[0], "--connect", binds[1]]
    worker = subprocess.Popen(command)  # its log beside the gateways' in a failing test's output
    for gateway in (a, b):
        wait(lambda g=gateway: any(m["id"] == MODEL and m["replicas"] for m in status(g)))
    yield {"a": a, "b": b, "redis": redis, "url": url, "folder": folder, "common": common}
    worker.kill()
    for gateway in (a, b):
        if gateway.process.poll() is None:
            gateway.process.kill()
    redis.kill()


def status(gateway):
    return httpx.get(f"{gateway.url}/v1/models/status", headers=gateway.headers, timeout=10).json()["data"]


def chat(url, key, max_tokens=2, stream=False):
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
        "stream": stream,
    }
    return httpx.post(
        f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def test_one_keys_limit_holds_across_both_gateways_and_both_see_the_worker(deployment):
    a, b = deployment["a"], deployment["b"]
    for gateway in (a, b):
        (shared,) = [m for m in status(gateway) if m["id"] == MODEL]
        assert shared["state"] == "ready" and len(shared["replicas"]) == 1
    answers = [chat((a, b)[i % 2].url, "k1").status_code for i in range(12)]
    assert sorted(answers) == [200] * 10 + [429] * 2, answers
    assert answers[:10] == [200] * 10


def test_sixteen_streams_across_both_never_run_more_than_max_batch(deployment):
    a, b = deployment["a"], deployment["b"]
    seen = []

    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=120) as client:

            async def one(i):
                gateway = (a, b)[i % 2]
                body = {
                    "model": MODEL,
                    "messages": [{"role": "user", "content": "go"}],
                    "max_tokens": 10_000,  # long enough for the watcher to see the batch full
                    "stream": True,
                }
                headers = {"Authorization": f"Bearer {('k2', 'k3')[i // 8]}"}
                async with client.stream(
                    "POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers
                ) as r:
                    async for _ in r.aiter_lines():
                        pass
                    return r.status_code

            async def watch():
                while True:
                    for gateway in (a, b):
                        r = await client.get(f"{gateway.url}/v1/models/status", headers=gateway.headers)
                        seen.extend(m["running"] for m in r.json()["data"] if m["id"] == MODEL)
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch())
            codes = await asyncio.gather(*(one(i) for i in range(16)))
            watcher.cancel()
            return codes

    codes = asyncio.run(run())
    assert codes == [200] * 16
    assert seen and max(seen) <= MAX_BATCH and max(seen) == MAX_BATCH, max(seen)


def stream_through_both_pausing_b(deployment, tokens: int, pause_s: float | None) -> list[dict]:
    """A stream through each gateway (key k4): b's first, a's once b's has brought a token (on a
    busy machine b's request could otherwise reach the worker after a's had gone a long way, or
    ended); once a's has brought 100 events, b is stopped (SIGSTOP) for pause_s, or None: until a's
    stream has ended. Each answer: its text, finish reason and error event, if any."""
    a, b = deployment["a"], deployment["b"]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "max_tokens": tokens}
    body["stream"] = True

    async def run() -> list[dict]:
        async with httpx.AsyncClient(timeout=60, headers={"Authorization": "Bearer k4"}) as client:
            a_started, b_started, a_ended = asyncio.Event(), asyncio.Event(), asyncio.Event()

            async def one(gateway) -> dict:
                text, finish, error, events = [], None, None, 0
                async with client.stream("POST", f"{gateway.url}/v1/chat/completions", json=body) as r:
                    async for line in r.aiter_lines():
                        if not line.startswith("data: {"):
                            continue
                        event = json.loads(line[6:])
                        error = event.get("error", error)
                        for choice in event.get("choices", ()):
                            text.append(choice["delta"].get("content") or "")
                            finish = choice["finish_reason"] or finish
                        events += 1
                        if gateway is a and events == 100:
                            a_started.set()
                        if gateway is b and text and text[-1]:
                            b_started.set()
                if gateway is a:
                    a_ended.set()
                return {"text": "".join(text), "finish": finish, "error": error}

            async def pause() -> None:
                await a_started.wait()
                b.process.send_signal(signal.SIGSTOP)
                await (asyncio.sleep(pause_s) if pause_s is not None else a_ended.wait())
                b.process.send_signal(signal.SIGCONT)

            pausing = asyncio.create_task(pause())
            through_b = asyncio.create_task(one(b))
            b_token = asyncio.create_task(b_started.wait())
            await asyncio.wait([through_b, b_token], return_when=asyncio.FIRST_COMPLETED)
            through_a = await one(a)
            await pausing
            return [through_a, await through_b]

    try:
        return asyncio.run(run())
    finally:
        b.process.send_signal(signal.SIGCONT)


def test_a_gateway_that_pauses_loses_nothing_of_its_streams(deployment):
    """Gateway b stopped for 3 s mid-stream: the worker waits for it (both streams wait, as with
    one gateway) instead of dropping what b does not take, and both answers are whole."""
    whole = {"text": " tok" * 60_000, "finish": "length", "error": None}
    assert stream_through_both_pausing_b(deployment, 60_000, 3) == [whole, whole]


def test_a_gateway_stopped_past_the_stall_limit_costs_only_its_own_streams(deployment):
    """Gateway b stopped for longer than the worker waits (STALL_S, 10 s; b's buffers fill long
    before a's stream ends, so a's can end only after the worker gave up on b): a's answer is
    whole; b's, once b runs again, ends with an error event instead of hanging, and b serves the
    next request."""
    tokens = 200_000
    through_a, through_b = stream_through_both_pausing_b(deployment, tokens, None)
    assert through_a == {"text": " tok" * tokens, "finish": "length", "error": None}
    assert through_b["finish"] is None and " tok" * tokens > through_b["text"]
    assert through_b["error"]["code"] == "worker_gave_up", through_b["error"]
    assert chat(deployment["b"].url, "k4").status_code == 200


def test_a_keys_share_counts_its_sequences_through_both_gateways(deployment):
    """--key-share 2: k5's three streams through a, then three through b; b sees a's two in Redis
    (exchanged each half second) and holds its own, so the worker runs two of k5's, not four."""
    a, b = deployment["a"], deployment["b"]
    seen = []

    async def run() -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            headers = {"Authorization": "Bearer k5"}

            async def one(gateway):
                async with client.stream(
                    "POST", f"{gateway.url}/v1/chat/completions", json=LONG, headers=headers
                ) as r:
                    async for _ in r.aiter_lines():
                        pass

            streams = [asyncio.create_task(one(a)) for _ in range(3)]
            await asyncio.sleep(1.5)  # a's counts reach Redis
            streams += [asyncio.create_task(one(b)) for _ in range(3)]
            for _ in range(30):
                await asyncio.sleep(0.1)
                r = await client.get(f"{b.url}/v1/models/status", headers=b.headers)
                seen.extend(m["running"] for m in r.json()["data"] if m["id"] == MODEL)
            for stream in streams:
                stream.cancel()
            await asyncio.gather(*streams, return_exceptions=True)

    asyncio.run(run())
    assert max(seen) == 2, seen


def test_a_second_designated_gateway_is_refused_at_start(deployment):
    command = [sys.executable, "-m", "gateway", "serve", "--port", str(free_port()), *deployment["common"],
               "--state-dir", str(deployment["folder"] / "c")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--no-stateful" in result.stderr and "another gateway" in result.stderr
    b = deployment["b"]
    elsewhere = httpx.get(f"{b.url}/v1/batches", headers=b.headers, timeout=10)
    assert elsewhere.status_code == 503 and elsewhere.json()["error"]["code"] == "not_the_stateful_gateway"


def test_behind_haproxy_streams_cancel_on_disconnect(deployment, tmp_path):
    if not os.path.exists(HAPROXY):
        pytest.skip("haproxy is not installed (make test installs it as root)")
    a, b = deployment["a"], deployment["b"]
    port = free_port()
    environment = {
        **os.environ,
        "EH_LISTEN": f"127.0.0.1:{port}",
        "EH_GATEWAY_A": a.url.removeprefix("http://"),
        "EH_GATEWAY_B": b.url.removeprefix("http://"),
    }
    proxy = subprocess.Popen([HAPROXY, "-db", "-f", str(RECIPE)], env=environment, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: _answers(url))
        assert chat(url, "k4").status_code == 200
        # the stored routes go to the designated gateway
        assert (
            httpx.get(f"{url}/v1/batches", headers={"Authorization": "Bearer k4"}, timeout=10).status_code
            == 200
        )
        cancelled = sum(m["cancelled"] for g in (a, b) for m in status(g) if m["id"] == MODEL)
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "go"}],
            "max_tokens": 1_000_000,
            "stream": True,
        }
        with httpx.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json=body,
            headers={"Authorization": "Bearer k4"},
            timeout=60,
        ) as r:
            for _ in zip(range(20), r.iter_lines(), strict=False):
                pass
        wait(
            lambda: sum(m["cancelled"] for g in (a, b) for m in status(g) if m["id"] == MODEL) > cancelled,
            timeout=5,
        )
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


def _answers(url):
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_one_gateway_killed_then_redis_stopped_the_other_serves_and_says_so(deployment):
    a, b = deployment["a"], deployment["b"]
    a.process.send_signal(signal.SIGKILL)
    a.process.wait(timeout=10)
    assert chat(b.url, "k4").status_code == 200
    deployment["redis"].terminate()
    deployment["redis"].wait(timeout=10)
    assert chat(b.url, "k4").status_code == 200  # fail-open: on its own buckets
    metrics = httpx.get(f"{b.url}/metrics", headers=b.headers, timeout=10).text
    assert "enginehouse_shared_limits_up 0.0" in metrics
    b.process.send_signal(signal.SIGTERM)  # the worker is remote: it is not this gateway's to stop
    assert b.process.wait(timeout=30) == 0
