"""Starting and stopping the real server on a free loopback port (tests and benchmarks)."""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    key: str | None = None  # sent on the test helpers' own calls, when the server needs one

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def status(self, model: str = "smollm2-135m-instruct") -> dict:
        data = httpx.get(f"{self.url}/v1/models/status", headers=self.headers, timeout=5).json()["data"]
        return next(m for m in data if m["id"] == model)


def start_server(*args: str, timeout: float = 180, key: str | None = None) -> Server:
    port = free_port()
    # The suites send far more than 10 requests at once from one address: rate limiting is off
    # unless a test turns it on (the limiter has tests of its own).
    command = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--log-format", "json"]
    process = subprocess.Popen([*command, "--rate-limit", "0", *args])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return Server(url, process, key)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not become healthy in time")


def stop_server(server: Server) -> None:
    """SIGTERM; the gateway must exit 0 and leave no worker process behind."""
    workers = [
        r["pid"]
        for m in httpx.get(f"{server.url}/v1/models/status", headers=server.headers).json()["data"]
        for r in m["replicas"]
    ]
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    time.sleep(0.5)
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
