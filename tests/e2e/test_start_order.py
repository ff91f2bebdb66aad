"""`enginehouse serve` starts the preloaded models' workers before it builds its HTTP app, so that
they import their engines and compile their models while the gateway imports its route families
(most of its own start-up) instead of after: the warm start (issue 24, item 4)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.server import free_port


def test_the_workers_start_before_the_gateway_builds_its_app(tmp_path):
    empty = tmp_path / "models.toml"
    empty.write_text("")
    port = free_port()
    command = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--log-format", "json"]
    command += ["--models", str(empty), "--allow-remote-models", "--test-engine", "--no-engine-variants"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)  # the log
    events = []
    watchdog = threading.Timer(60, process.kill)  # a server that never says "ready" ends the read
    watchdog.start()
    try:
        for line in process.stderr:
            if line.startswith("{"):
                events.append(json.loads(line).get("event"))
            if "ready" in events:
                break
        deadline = time.monotonic() + 30
        while httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        watchdog.cancel()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert "worker started" in events and "gateway started" in events, events
    assert events.index("worker started") < events.index("gateway started"), events


def test_what_runs_before_the_workers_start_imports_no_http_server():
    """aiohttp and the routes (~0.3 s of imports) come after the workers are started."""
    code = (
        "import sys; import gateway.cli, gateway.config, gateway.server, protocol.settings; "
        "print(sorted(m for m in ('aiohttp', 'prometheus_client', 'gateway.app') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sigterm_while_the_models_load_kills_the_loading_workers_and_exits_0():
    """SIGTERM while the gateway imports its routes and the workers load their models: a worker
    still loading holds no request and cannot hear a shutdown yet, so it is killed at once rather
    than waited for, and the gateway exits 0."""
    port = free_port()
    command = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--log-format", "json"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    events, workers = [], set()
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    try:
        for line in process.stderr:
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            events.append(f"{event.get('event')} {event.get('model', '')}".strip())
            if event.get("event") == "worker started":
                workers.add(event["pid"])
            if len(workers) == 2 and "sigterm" not in events:
                process.send_signal(signal.SIGTERM)
                events.append("sigterm")
        assert process.wait(timeout=30) == 0
    finally:
        watchdog.cancel()
    # the chat model's pipeline takes seconds to compile: it is killed long before it could register
    assert "worker registered smollm2-135m-instruct" not in events, events
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
