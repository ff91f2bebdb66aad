"""Schemathesis fuzzes the running server from its own /openapi.json: no input may get a 5xx.

The server is capped at 2 generated tokens a request so that the many valid requests the fuzzer
makes stay quick, and serves the default models without their engine variants (which would each
load a worker); everything else is the default server. The seed is fixed so CI is reproducible."""

import subprocess
import sys
from pathlib import Path

import httpx

from tests.server import start_server, stop_server

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


def test_no_generated_request_gets_a_server_error(tmp_path):
    server = start_server("--max-tokens-cap", "2", "--no-engine-variants")
    try:
        document = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
        assert document["openapi"].startswith("3.1")
        assert "/v1/chat/completions" in document["paths"]
        run = subprocess.run(
            [
                SCHEMATHESIS,
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "20",
                "--seed",
                "20261122",
                "--request-timeout",
                "120",
                "--report-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=480,
            cwd=tmp_path,  # schemathesis keeps a cache in its working directory
        )
        assert run.returncode == 0, run.stdout[-4000:]
        generated = server.status()["tokens_generated"]
        assert generated > 0  # valid requests reached the model, not only the validators
    finally:
        stop_server(server)
