"""The worker link: the ZeroMQ ROUTER sockets workers connect to, and its safety rules.

Two sockets: `ipc://` for the supervisor's local workers and, when asked, a `tcp://` one for
workers on other machines (CurveZMQ when a key directory is given: only workers whose public key
is in keys/workers/ get in). What arrives is checked here and nowhere else:
- a frame larger than MAX_FRAME_BYTES disconnects its peer (ZMQ_MAXMSGSIZE);
- a message of any other shape than [identity, one frame], or a frame that is not a valid
  message, is logged and dropped: it changes nothing;
- the two sockets are separate identity spaces: a peer is (link, identity), so a remote peer can
  never speak for a local worker, whatever identity it picks.
Sending never waits: a send that fails (the peer is gone, its queue is full) returns False and the
caller decides what that request's failure means.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import structlog
import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator

from protocol import GatewayCodec, ToGateway, ToWorker
from protocol.codec import DecodeError

log = structlog.get_logger()

YIELD_EVERY_S = 0.0005  # the longest the receive loop reads before the handlers run
# the largest frame a worker may send (a peer that sends more is disconnected): an embeddings
# answer of 2,048 vectors of 1,024 floats is 8 MiB
MAX_FRAME_BYTES = 32 * 1024 * 1024
QUEUE_MESSAGES = 100_000  # per peer, each way (ZeroMQ high-water marks)


@dataclass(frozen=True)
class Peer:
    """A worker as the link knows it: which socket, and the identity it connected with."""

    remote: bool
    identity: bytes

    def __str__(self) -> str:
        return ("remote:" if self.remote else "") + self.identity.decode(errors="replace")


class WorkerLink:
    def __init__(self, address: str, remote: str | None = None, keys: Path | None = None) -> None:
        self.address, self.remote_address, self._keys = address, remote, keys
        self.codec = GatewayCodec()
        self._context = zmq.asyncio.Context()
        self.local = self._socket()
        self.remote = self._socket() if remote else None
        # the same sockets without futures, to read frames already queued (see `messages`)
        self._plain_local = zmq.Socket.shadow(self.local.underlying)
        self._plain_remote = None if self.remote is None else zmq.Socket.shadow(self.remote.underlying)
        self._authenticator: AsyncioAuthenticator | None = None
        self._yielded = 0.0

    def _socket(self) -> zmq.asyncio.Socket:
        socket = self._context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a gone peer raises, not drops
        socket.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        socket.setsockopt(zmq.RCVHWM, QUEUE_MESSAGES)
        socket.setsockopt(zmq.SNDHWM, QUEUE_MESSAGES)
        return socket

    def sockets(self) -> list[zmq.asyncio.Socket]:
        return [self.local] if self.remote is None else [self.local, self.remote]

    def bind(self) -> None:
        self.local.bind(self.address)
        if self.remote is None or self.remote_address is None:
            return
        if self._keys is not None:
            self._authenticator = AsyncioAuthenticator(self._context)
            self._authenticator.start()
            self._authenticator.configure_curve(domain="*", location=str(self._keys / "workers"))
            public, secret = zmq.auth.load_certificate(self._keys / "server.key_secret")
            self.remote.curve_server = True
            self.remote.curve_publickey, self.remote.curve_secretkey = public, secret
        self.remote.bind(self.remote_address)
        if self._keys is None:
            log.warning(
                "remote workers may connect WITHOUT keys: anyone reaching it can", address=self.remote_address
            )
        else:
            log.info("remote workers with an accepted key may connect", address=self.remote_address)

    def close(self) -> None:
        for socket in self.sockets():
            socket.close(linger=0)
        if self._authenticator is not None:
            self._authenticator.stop()
        self._context.term()

    async def messages(self, socket: zmq.asyncio.Socket) -> AsyncIterator[tuple[Peer, ToGateway]]:
        """Every well-formed message that arrives on the socket, with its peer; the rest dropped.

        Frames already queued are read straight off the socket, without a trip through the event
        loop: the asyncio socket's own receive costs a future, a poller registration and an option
        read per frame (py-spy: 43% of the gateway's time on one stream of the test engine), so it
        is awaited only when nothing is queued. A worker sending faster than we read would then keep
        the handlers from writing anything until its burst ended: every YIELD_EVERY_S they get their
        turn (call `yield_now` after a first token to give it at once)."""
        remote = socket is self.remote
        plain = self._plain_remote if remote else self._plain_local
        assert plain is not None
        while True:
            try:
                frames = plain.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:  # nothing queued: wait on the event loop (a future per wait, not per frame)
                frames = await socket.recv_multipart()
            if len(frames) == 2:  # a worker sends one frame; ROUTER puts its identity in front
                try:
                    yield Peer(remote, frames[0]), self.codec.decode(frames[1])
                except DecodeError as exc:
                    log.error("malformed message from a worker peer, dropped", error=str(exc), remote=remote)
            else:
                log.error("message of the wrong shape from a worker peer, dropped", frames=len(frames))
            if time.perf_counter() - self._yielded > YIELD_EVERY_S:
                await asyncio.sleep(0)
                self._yielded = time.perf_counter()

    def yield_now(self) -> None:
        """Let the handlers run before the next frame is read (a first token is written at once)."""
        self._yielded = 0.0

    def send(self, peer: Peer, message: ToWorker) -> bool:
        """Send now without waiting; False when the peer is gone or its queue is full. (An asyncio
        socket reports a failed send in the future it returns, never as a raise: it is read here,
        where a non-blocking send has always resolved. It goes through the asyncio socket, not the
        plain one: a send can take the socket's wake-up signal, and the asyncio socket then looks
        for frames its waiting receive would otherwise never see.)"""
        socket = self.remote if peer.remote else self.local
        if socket is None:
            return False
        sent = socket.send_multipart([peer.identity, self.codec.encode(message)], flags=zmq.NOBLOCK)
        error = sent.exception() if sent.done() else zmq.ZMQError(zmq.EAGAIN, "the send is pending")
        if error is not None:
            sent.cancel()
            reason = error.strerror if isinstance(error, zmq.ZMQError) else repr(error)
            log.warning("a message to a worker could not be sent", peer=str(peer), error=reason)
            return False
        return True
