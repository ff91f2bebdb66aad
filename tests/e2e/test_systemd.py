"""Running as a systemd service: the unit file verifies, and the gateway speaks the notify protocol
to a fake $NOTIFY_SOCKET: STATUS while loading, READY=1 once the models are ready, WATCHDOG=1
pings, STOPPING=1 on SIGTERM."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.server import free_port

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "enginehouse.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_unit_verifies(tmp_path):
    # as committed, and as `make install-service` installs it (pointing at this checkout)
    installed = tmp_path / "enginehouse.service"
    installed.write_text(UNIT.read_text().replace("/opt/enginehouse", str(ROOT)))
    for unit in (UNIT, installed):
        result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert result.returncode == 0 and result.stderr == "", result.stderr
    text = UNIT.read_text()
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "EnvironmentFile=/etc/enginehouse/",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "DeviceAllow=/dev/accel/accel0",
        "SupplementaryGroups=render",
    ]:
        assert line in text


def test_the_env_file_documents_every_setting():
    from gateway.config import Settings

    documented = (ROOT / "deploy" / "systemd" / "enginehouse.env").read_text()
    for name in Settings.model_fields:
        assert f"ENGINEHOUSE_{name.upper()}=" in documented, name


def test_the_gateway_notifies_systemd(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(1)
    env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"}
    port = free_port()
    command = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--log-format", "json"]
    process = subprocess.Popen(command, env=env)
    messages: list[str] = []

    def receive_until(wanted: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                messages.extend(sock.recv(4096).decode().splitlines())
            except TimeoutError:
                continue
            if wanted in messages:
                return
        raise AssertionError(f"no {wanted} within {timeout} s; got {messages}")

    try:
        receive_until("READY=1", 180)
        status = httpx.get(f"http://127.0.0.1:{port}/v1/models/status", timeout=5).json()["data"]
        preloaded = {"smollm2-135m-instruct", "all-minilm-l6-v2"}
        assert {m["id"]: m["state"] for m in status if m["id"] in preloaded} == dict.fromkeys(
            preloaded, "ready"
        )
        loading = [m for m in messages[: messages.index("READY=1")] if m.startswith("STATUS=Loading")]
        assert loading, messages
        assert any(m.startswith("STATUS=Serving") for m in messages)
        before = messages.count("WATCHDOG=1")
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                messages.extend(sock.recv(4096).decode().splitlines())
        assert messages.count("WATCHDOG=1") >= before + 2  # every half second while healthy
        process.send_signal(signal.SIGTERM)
        receive_until("STOPPING=1", 30)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        sock.close()
