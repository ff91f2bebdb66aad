"""`python -m workers`: one worker process. Its settings, its logging, the engine loaded, a DEALER
socket to each gateway, then the loop (workers/loop.py) until it exits."""
# ruff: noqa: E402 (the modules left out below must be left out before the imports that follow)

import os
import signal
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader draws a progress bar on stderr
# Modules a serving worker never uses, which libraries import where they are installed, left out
# (each ~5 MB and ~0.1 s of start-up, measured): structlog formats exceptions with rich (installed
# for the test tools; a worker writes JSON lines or plain tracebacks; the gateway's `serve` leaves
# it out too), and `import openvino` imports its model converter, ovc (the TensorFlow frontend,
# telemetry, urllib), inside a try that takes the ImportError; a worker converts in a child process
# of its own (workers/model_cache.py).
for _unused in ("rich", "openvino.tools.ovc"):
    sys.modules.setdefault(_unused, None)

import structlog
import zmq
import zmq.auth

from protocol.logs import configure_logging
from protocol.settings import parse_settings
from workers.engines import load_engine
from workers.loop import SEND_WAIT_MS, Worker
from workers.memory import trim_heap
from workers.settings import WorkerSettings

log = structlog.get_logger()


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(WorkerSettings, sys.argv[1:] if argv is None else argv)
    if not settings.connect:
        print("enginehouse worker: --connect: give the gateway's address (tcp://HOST:PORT)", file=sys.stderr)
        return 2
    if (settings.curve_key is None) != (settings.curve_server_key is None):
        print("enginehouse worker: give both --curve-key and --curve-server-key, or neither", file=sys.stderr)
        return 2
    configure_logging(
        settings.log_format, settings.log_level, model=settings.model, worker_id=settings.worker_id
    )
    if settings.parent_pid:  # Ctrl-C reaches the whole process group: the gateway stops us itself
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    log.info("loading model", engine=settings.engine, source=settings.source, device=settings.device)
    started = time.monotonic()
    engine = load_engine(settings)
    context = zmq.Context()
    sockets = [_connect(context, settings, address) for address in settings.connect]
    worker = Worker(settings, engine, sockets)
    worker.register()
    log.info("registered", load_seconds=round(time.monotonic() - started, 1), **vars(engine.capabilities))
    try:
        engine.warm_up()
        trim_heap()  # what loading and the warm-up freed
        code = worker.run()
    except Exception:  # the engine is in an unknown state: exit, the gateway restarts us
        log.exception("engine failed")
        code = 1
    for socket in sockets:
        socket.close(linger=0)
    context.term()
    return code


def _connect(context: zmq.Context, settings: WorkerSettings, address: str) -> zmq.Socket:
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.IDENTITY, settings.worker_id.encode())
    socket.setsockopt(zmq.LINGER, 1000)
    socket.setsockopt(zmq.SNDTIMEO, SEND_WAIT_MS)
    if settings.curve_key is not None and settings.curve_server_key is not None:
        socket.curve_publickey, socket.curve_secretkey = zmq.auth.load_certificate(settings.curve_key)
        socket.curve_serverkey, _ = zmq.auth.load_certificate(settings.curve_server_key)
    socket.connect(address)
    return socket


if __name__ == "__main__":
    sys.exit(main())
