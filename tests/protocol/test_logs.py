"""Log lines as the journal gets them: the gateway and its workers write into one stderr."""

from __future__ import annotations

import json
import subprocess
import sys

import structlog

from protocol.logs import configure_logging


class _Writes:
    """A non-terminal stderr that keeps each write call apart."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_each_json_line_is_written_whole_in_one_write(monkeypatch):
    """Processes sharing a pipe interleave only between writes: a line and its newline written
    apart let another worker's line in between them (seen in CI: two JSON objects on one line)."""
    stderr = _Writes()
    monkeypatch.setattr(sys, "stderr", stderr)
    configure_logging("auto", "info", worker_id="w-1")
    try:
        log = structlog.get_logger()
        log.info("openvino device chosen", device="CPU", available=["CPU"])
        log.warning("second", n=2)
    finally:
        structlog.reset_defaults()
    assert len(stderr.calls) == 2
    for call in stderr.calls:
        assert call.endswith("\n") and call.count("\n") == 1
        assert json.loads(call)["worker_id"] == "w-1"


def test_two_processes_logging_into_one_pipe_leave_every_line_whole():
    """What the journal sees from a gateway and its workers: many lines from two processes at
    once through one pipe, each line one JSON object."""
    child = (
        "import structlog\n"
        "from protocol.logs import configure_logging\n"
        "configure_logging('json', 'info')\n"
        "log = structlog.get_logger()\n"
        "for i in range(2000): log.info('line', i=i, pad='x' * 150)\n"
    )
    writers = (
        "import subprocess, sys\n"
        + "".join(f"p{k} = subprocess.Popen([sys.executable, '-c', {child!r}])\n" for k in range(2))
        + "p0.wait(); p1.wait()\n"
    )
    done = subprocess.run([sys.executable, "-c", writers], capture_output=True, text=True, timeout=120)
    lines = done.stderr.splitlines()
    assert len(lines) == 4000
    assert all(json.loads(line)["event"] == "line" for line in lines)
