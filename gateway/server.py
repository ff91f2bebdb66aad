"""Run the gateway: uvloop, handler cancellation so a client that leaves cancels its request, and a
graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import sys

import uvloop
from aiohttp import web

from gateway.app import create_app
from gateway.config import Settings
from gateway.models_file import ModelsFileError
from protocol.logs import configure_logging


def serve(settings: Settings) -> None:
    try:
        settings.models()  # a models file is read and checked before anything starts
    except ModelsFileError as exc:
        for line in str(exc).splitlines():
            print(f"enginehouse serve: {line}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_format, settings.log_level)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=None,
        handler_cancellation=True,
        print=None,
        # SIGTERM/SIGINT: stop accepting, let in-flight requests finish up to the drain timeout,
        # cancel the rest (their cleanup cancels them at the workers), then stop the workers
        shutdown_timeout=settings.drain_timeout,
    )
