"""`enginehouse serve` refuses to start on what it cannot use, in one line and exit status 2,
before it starts any worker: a port in use, an unreadable models or key file, a bad
--worker-bind address, a cache or state directory that cannot be written."""

import socket
import subprocess
import sys
import time

import pytest


def serve(*args, timeout=60):
    command = [sys.executable, "-m", "gateway", "serve", "--no-engine-variants", *args]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - started


def test_a_port_in_use_is_one_line_and_starts_nothing():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result, took = serve("--port", str(port))
    finally:
        taken.close()
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"enginehouse serve: port {port} on 127.0.0.1 is in use\n"
    assert took < 15  # no worker was started (one takes longer than that to start and stop)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--models", "/nonexistent/models.toml"], "cannot read it"),
        (["--api-key-file", "/nonexistent/keys"], "cannot read it"),
        (["--admin-api-key-file", "/etc"], "cannot read it"),
        (["--worker-bind", "udp://127.0.0.1:5555"], "tcp://HOST:PORT"),
        (["--worker-bind", "tcp://no-such-host.invalid:5555"], "--worker-bind"),
        (["--cache-dir", "/etc/hostname/cache"], "cannot be written"),
        (["--state-dir", "/proc/enginehouse"], "cannot be written"),
    ],
)
def test_what_the_server_cannot_use_is_one_line_before_anything_starts(args, says, free_port):
    result, took = serve("--port", str(free_port), *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert took < 15


@pytest.fixture
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
