"""systemd's notify protocol, spoken over $NOTIFY_SOCKET (a few lines, no dependency): STATUS=
while the preloaded models load, READY=1 when they are ready, WATCHDOG=1 from the event loop
while it is healthy, STOPPING=1 on drain. Without $NOTIFY_SOCKET (not under systemd) it is silent.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

import structlog

log = structlog.get_logger()


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # an abstract socket is written with a leading @ and addressed with a leading NUL
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:  # systemd gone or the socket unwritable: keep serving
            log.warning("systemd notify failed", error=str(exc))

    async def watchdog(self, healthy: Callable[[], bool]) -> None:
        """Ping at half the watchdog interval, only while `healthy()`: a stuck loop or a broken
        router stops the pings and systemd restarts the service."""
        if self.watchdog_interval is None:
            return
        while True:
            if healthy():
                self.send("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval)
