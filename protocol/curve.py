"""CurveZMQ keys for the link between the gateway and remote workers (`enginehouse keys DIR`):

    DIR/server.key, DIR/server.key_secret    the gateway's pair (`--worker-keys DIR`)
    DIR/workers/worker.key                   public keys of the workers the gateway accepts
    DIR/worker.key_secret                    a worker's pair: copy it, with server.key, to the
                                             worker's machine (`--curve-key`, `--curve-server-key`)

Both sides read them with pyzmq's own certificate format; neither imports the other."""

from __future__ import annotations

import sys
from pathlib import Path

import zmq.auth


def create(directory: Path) -> list[Path]:
    """A fresh gateway pair and one worker pair; the worker's public key is accepted."""
    workers = directory / "workers"
    workers.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    zmq.auth.create_certificates(directory, "server")
    public, secret = zmq.auth.create_certificates(directory, "worker")
    accepted = workers / "worker.key"
    Path(public).replace(accepted)
    for secret_file in (directory / "server.key_secret", Path(secret)):
        secret_file.chmod(0o600)
    return [directory / "server.key", directory / "server.key_secret", accepted, Path(secret)]


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print(
            "usage: enginehouse keys DIR   (writes a gateway key pair and a worker key pair)", file=sys.stderr
        )
        return 2
    for path in create(Path(argv[0])):
        print(path)
    return 0
