"""Run the gateway: uvloop, handler cancellation so a client that leaves cancels its request, and a
graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop
import zmq

from gateway.config import Settings
from gateway.models_file import ModelsFileError
from gateway.workforce import Workforce, start_workforce
from protocol.logs import configure_logging

if TYPE_CHECKING:
    from aiohttp import web


class StartError(Exception):
    """Something the server needs before it starts anything; said in one line, exit status 2."""


def serve(settings: Settings) -> None:
    try:
        settings.models()  # a models file is read and checked before anything starts
        for directory in (settings.cache_dir, settings.state_dir):
            writable(directory)
        if settings.worker_bind:
            check_worker_bind(settings.worker_bind)
        if settings.redis_url and settings.stateful:
            from gateway.designation import claim

            if holder := claim(settings):
                raise StartError(
                    f"another gateway ({holder}) keeps the stored responses, files and batches of "
                    "this deployment (its lease in Redis); start this one with --no-stateful"
                )
        listener = listen(settings.host, settings.port)  # bound first: a port in use starts nothing
    except (ModelsFileError, StartError) as exc:
        for line in str(exc).splitlines():
            print(f"enginehouse serve: {line}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_format, settings.log_level)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = _start(loop, settings)
    if app is None:
        return
    from aiohttp import web

    web.run_app(
        app,
        sock=listener,
        loop=loop,
        access_log=None,
        handler_cancellation=True,
        print=None,
        # SIGTERM/SIGINT: stop accepting, let in-flight requests finish up to the drain timeout,
        # cancel the rest (their cleanup cancels them at the workers), then stop the workers
        shutdown_timeout=settings.drain_timeout,
    )


def _start(loop: asyncio.AbstractEventLoop, settings: Settings) -> web.Application | None:
    """The workers first, before the gateway imports aiohttp and its routes (most of its import
    time): they import their engines and load their models meanwhile. SIGTERM or SIGINT meanwhile
    is kept until the imports are done (a signal's exception raised inside an import can be lost),
    then the workers are stopped (one still loading is killed) and None returned: the gateway exits
    0. run_app's own handlers replace these."""
    stop: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.append, signum)
    app, workforce = loop.run_until_complete(_app(settings))
    loop.run_until_complete(asyncio.sleep(0.01))  # a signal that came during the imports is read now
    if not stop:
        return app
    loop.run_until_complete(workforce.stop())
    loop.close()
    return None


async def _app(settings: Settings) -> tuple[web.Application, Workforce]:
    workforce = await start_workforce(settings)
    try:
        from gateway.app import create_app  # here: most of the gateway's import time

        return create_app(settings, workforce), workforce
    except BaseException:
        await workforce.stop()
        raise


def listen(host: str, port: int) -> socket.socket:
    """The HTTP socket, bound and listening, before any worker starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartError(f"cannot listen on {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen(1024)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartError(f"port {port} on {host} is in use") from None
        raise StartError(f"cannot listen on port {port} on {host}: {exc.strerror}") from None
    listener.setblocking(False)
    return listener


def writable(directory: Path) -> None:
    """The cache and state directories are made if missing and must take files."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".enginehouse-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartError(f"{directory} cannot be written: {exc.strerror}") from None


def check_worker_bind(address: str) -> None:
    """--worker-bind is bound once here, so a bad or taken address is said before anything starts."""
    if not address.startswith("tcp://"):
        raise StartError(f"--worker-bind {address!r}: give tcp://HOST:PORT")
    context = zmq.Context()
    probe = context.socket(zmq.ROUTER)
    probe.setsockopt(zmq.LINGER, 0)
    try:
        probe.bind(address)
    except zmq.ZMQError as exc:
        raise StartError(f"--worker-bind {address}: {exc.strerror}") from None
    finally:
        probe.close(linger=0)
        context.term()
