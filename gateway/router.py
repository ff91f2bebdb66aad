"""The router: the ZeroMQ ROUTER sockets between the gateway and its workers.

Workers connect and `Register` what they serve; the registry (registry.py) holds nothing else. A
request is sent to the least-loaded ready worker of its model, and the deltas of each `StepOutput`
are handed to the streams (stream.py) they belong to. A stream ends exactly once: finished,
failed, or closed by its handler (which sends `Cancel` to the worker if the work was not done).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
import zmq
import zmq.asyncio
import zmq.auth
from zmq.auth.asyncio import AsyncioAuthenticator

from gateway.errors import APIError
from gateway.registry import ModelState, Worker
from gateway.stream import Answer, Request, Stream
from protocol import (
    PROTOCOL_VERSION,
    Cancel,
    Delta,
    Detokenize,
    Detokenized,
    Embed,
    Embeddings,
    Failed,
    GatewayCodec,
    Generate,
    Heartbeat,
    Refused,
    Register,
    Shutdown,
    StepOutput,
    Tokenize,
    Tokenized,
)
from protocol.codec import DecodeError

log = structlog.get_logger()

YIELD_EVERY_S = 0.0005  # the longest the socket loop reads before the handlers run
# the largest frame a worker may send (ZMQ_MAXMSGSIZE: a peer that sends more is disconnected):
# an embeddings answer of 2,048 vectors of 1,024 floats is 8 MiB
MAX_FRAME_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Bounds:
    load_timeout: float  # a request waits this long for its model's first worker
    first_token_timeout: float  # and this long for its first token
    max_queue: int  # requests per model beyond what its workers' batches hold
    heartbeat_timeout: float  # a worker silent this long is presumed dead
    answer_timeout: float  # a one-answer request (embeddings, tokens) waits this long for it


class Router:
    def __init__(
        self,
        address: str,
        bounds: Bounds,
        remote: str | None = None,
        keys: Path | None = None,
        allow_remote_models: bool = False,
    ) -> None:
        """`address`: the ipc:// socket of the supervisor's local workers. `remote`: a tcp://
        address for workers on other machines, with CurveZMQ when `keys` (a directory made by
        `enginehouse keys`) is given: only workers whose public key is in keys/workers/ get in."""
        self.address, self.remote = address, remote
        self.bounds = bounds
        self.codec = GatewayCodec()
        self.models: dict[str, ModelState] = {}
        self.workers: dict[bytes, Worker] = {}  # by ZeroMQ identity (the worker id)
        self.streams: dict[str, Stream] = {}
        self._context = zmq.asyncio.Context()
        self._socket = self._router_socket()
        self._remote = self._router_socket() if remote else None
        self._keys, self._authenticator = keys, None
        self._socket_of: dict[bytes, zmq.asyncio.Socket] = {}  # remote workers' socket
        self._tasks: list[asyncio.Task[None]] = []
        self.on_silent: Callable[[str], None] = lambda worker_id: None  # the supervisor kills it
        self.on_demand: Callable[[str], None] = lambda model: None  # the supervisor starts one
        self.allow_remote_models = allow_remote_models

    def expect(self, model: str) -> None:
        """Declare a model the gateway serves; requests for it wait for its worker to register."""
        self.models.setdefault(model, ModelState(model))

    def model(self, name: str, param: str = "model") -> ModelState:
        """The model's state; a 404 naming the request's field when no such model is served."""
        state = self.models.get(name)
        if state is None:
            raise APIError(404, f"The model `{name}` does not exist.", "model_not_found", param)
        return state

    def load(self, model: str) -> None:
        """Ask for a worker of the model (once: later requests wait for the same load)."""
        state = self.models[model]
        if not state.loading and not state.remote:  # a remote-only model loads by its worker coming
            state.loading = True
            self.on_demand(model)

    def healthy(self) -> bool:
        """The socket loops are running (the systemd watchdog pings only then)."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    async def wait_ready(self, model: str) -> None:
        """Load the model if it is not loaded, and wait for its first worker, bounded; a model in
        a crash loop is refused at once, with the reason, rather than waited for."""
        state = self.models[model]
        self.load(model)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.bounds.load_timeout
        while not state.workers:
            if state.failed:
                raise APIError(
                    503,
                    f"The model `{model}` fails to start ({state.last_error}); the server keeps retrying.",
                    "model_failed",
                    headers={"Retry-After": "30"},
                )
            if loop.time() >= deadline:
                reason = f": {state.last_error}" if state.last_error else ""
                raise APIError(
                    503,
                    f"The model `{model}` is not loaded yet{reason}",
                    "model_not_ready",
                    headers={"Retry-After": "5"},
                )
            with contextlib.suppress(TimeoutError):  # a look at `failed` each second
                await asyncio.wait_for(state.ready.wait(), min(1.0, deadline - loop.time()))

    def unloaded(self, model: str) -> None:
        """Its workers are gone on purpose: the next request loads it again."""
        state = self.models[model]
        state.loading, state.last_error, state.draining, state.failed = False, None, False, False

    def _router_socket(self) -> zmq.asyncio.Socket:
        socket = self._context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a gone worker raises, not drops
        socket.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
        return socket

    async def start(self) -> None:
        self._socket.bind(self.address)
        self._tasks = [asyncio.create_task(self._receive(self._socket)), asyncio.create_task(self._watch())]
        if self._remote is not None and self.remote is not None:
            if self._keys is not None:
                self._authenticator = AsyncioAuthenticator(self._context)
                self._authenticator.start()
                self._authenticator.configure_curve(domain="*", location=str(self._keys / "workers"))
                public, secret = zmq.auth.load_certificate(self._keys / "server.key_secret")
                self._remote.curve_server = True
                self._remote.curve_publickey, self._remote.curve_secretkey = public, secret
            self._remote.bind(self.remote)
            self._tasks.append(asyncio.create_task(self._receive(self._remote)))
            if self._keys is None:
                log.warning(
                    "remote workers may connect WITHOUT keys: anyone reaching it can", address=self.remote
                )
            else:
                log.info("remote workers with an accepted key may connect", address=self.remote)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for socket in (self._socket, self._remote):
            if socket is not None:
                socket.close(linger=0)
        if self._authenticator is not None:
            self._authenticator.stop()
        self._context.term()

    # --- requests -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def open(self, model: str, task: str | None, requests: Sequence[Request]) -> AsyncIterator[Stream]:
        """Send the requests to one worker of `model`; on leaving, cancel whatever is unfinished."""
        state = self.model(model)
        state.last_used = time.monotonic()
        if not state.workers:
            await self.wait_ready(model)
        worker = min(state.workers.values(), key=lambda w: len(w.in_flight))
        if task is not None and task not in worker.info.tasks:
            raise APIError(
                400,
                f"The model `{model}` does not support {task}; it serves: {', '.join(worker.info.tasks)}.",
                "unsupported_task",
                "model",
            )
        workers = state.workers.values()
        capacity = sum(w.info.max_batch for w in workers) + self.bounds.max_queue
        if sum(len(w.in_flight) for w in workers) + len(requests) > capacity:
            raise APIError(
                503,
                f"The model `{model}` has {capacity} requests running or queued, its limit; retry shortly.",
                "server_busy",
                headers={"Retry-After": "1"},
            )
        # a generation's first token comes after its prefill; a large embedding's one answer may
        # take minutes of forward passes (its worker heartbeats meanwhile)
        generating = isinstance(requests[0], Generate)
        stream = Stream(
            requests, self.bounds.first_token_timeout if generating else self.bounds.answer_timeout
        )
        for request in requests:
            self.streams[request.request_id] = stream
            worker.in_flight.add(request.request_id)
        try:
            for request in requests:
                self._send(worker.identity, self.codec.encode(request))
            yield stream
        finally:  # also on cancellation (client gone): no await here, the Cancel leaves at once
            state.last_used = time.monotonic()
            for request_id in stream.index:
                self.streams.pop(request_id, None)
                worker.in_flight.discard(request_id)
            state.cancelled += len(stream.open)
            for request_id in stream.open:
                self._send(worker.identity, self.codec.encode(Cancel(request_id)))

    async def ask(self, model: str, task: str | None, request: Embed | Tokenize | Detokenize) -> Answer:
        """One request, one answer (embeddings, tokens, text); `task` None: any model will do."""
        async with self.open(model, task, [request]) as stream:
            async for _, item in stream:
                assert not isinstance(item, Delta)
                if isinstance(item, Embeddings):
                    self.models[model].prompt_tokens += item.prompt_tokens
                return item
        raise AssertionError("a one-answer stream ends with its answer or an error")

    def _send(self, identity: bytes, payload: bytes) -> None:
        """Send now without waiting: a ROUTER socket only refuses when the peer is gone."""
        socket = self._socket_of.get(identity, self._socket)
        with contextlib.suppress(zmq.ZMQError):  # the worker is gone; its exit fails its requests
            socket.send_multipart([identity, payload], flags=zmq.NOBLOCK)

    # --- workers ------------------------------------------------------------------------

    def shutdown_workers(self, drain: bool, model: str | None = None) -> None:
        """Ask the workers (of one model, or all) to stop; with drain, after what they hold."""
        for state in self.models.values():
            if model is not None and state.name != model:
                continue
            state.draining = drain and model is not None  # an unload, not the gateway stopping
            for worker in state.workers.values():
                self._send(worker.identity, self.codec.encode(Shutdown(drain=drain)))

    def worker_exited(self, model: str, worker_id: str, reason: str) -> None:
        """The worker is gone (it may have died before registering): the model keeps the reason,
        and every request on the worker fails now, with a 503."""
        state = self.models[model]
        state.last_error = f"worker exited ({reason})"
        self._socket_of.pop(worker_id.encode(), None)
        worker = self.workers.pop(worker_id.encode(), None)
        if worker is None:
            return
        del state.workers[worker.identity]
        if not state.workers:
            state.ready.clear()
        message = f"The model's worker stopped ({reason}); retry."
        for request_id in worker.in_flight:
            stream = self.streams.get(request_id)
            if stream is not None:
                stream.queue.put_nowait(Failed(request_id, 503, "worker_died", message))
        log.warning(
            "worker gone",
            model=state.name,
            worker_id=worker_id,
            reason=reason,
            failed_requests=len(worker.in_flight),
        )

    async def _receive(self, socket: zmq.asyncio.Socket) -> None:
        yielded = time.perf_counter()
        while True:
            frames = await socket.recv_multipart()
            if len(frames) != 2:  # a worker sends one frame; ROUTER puts its identity in front
                log.error("message of the wrong shape from a worker peer, dropped", frames=len(frames))
                continue
            identity, frame = frames
            try:
                message = self.codec.decode(frame)
            except DecodeError as exc:
                log.error("malformed message from a worker, ignored", error=str(exc))
                continue
            if not isinstance(message, Register) and not self._from_its_socket(identity, socket):
                log.error("message from an unregistered or misplaced worker peer, dropped")
                continue
            if isinstance(message, StepOutput):
                if self._step_output(identity, message):
                    yielded = 0.0  # a first token: its handler writes it now, not 0.5 ms later
            elif isinstance(message, Embeddings | Tokenized | Detokenized | Failed):
                stream = self.streams.get(message.request_id)
                if stream is not None:
                    stream.queue.put_nowait(message)
            elif isinstance(message, Heartbeat):
                worker = self.workers.get(identity)
                if worker is not None:
                    worker.running, worker.waiting = message.running, message.waiting
                    worker.last_seen = time.monotonic()
            elif isinstance(message, Register):
                self._register(identity, message, socket)
            # A frame already queued is returned without a trip through the event loop, so a
            # worker sending faster than we read would keep the handlers from writing anything
            # until its burst ended (the first token of a long answer then came with the last).
            # Every YIELD_EVERY_S the handlers get their turn, and write what came meanwhile at once.
            if time.perf_counter() - yielded > YIELD_EVERY_S:
                await asyncio.sleep(0)
                yielded = time.perf_counter()

    def _step_output(self, identity: bytes, message: StepOutput) -> bool:
        """Hand each delta to its stream; True when one is a stream's first."""
        first = False
        for delta in message.deltas:
            stream = self.streams.get(delta.request_id)
            if stream is not None:
                first = first or stream.before_first_token
                stream.queue.put_nowait(delta)
        worker = self.workers.get(identity)
        if worker is None:
            return first
        worker.running, worker.waiting = message.running, message.waiting
        worker.last_seen = time.monotonic()
        state = self.models[worker.info.model]
        state.steps += 1
        state.steps_by_batch_size[len(message.deltas)] += 1
        for delta in message.deltas:
            state.tokens_generated += delta.tokens
            if delta.finish_reason is not None:
                state.prompt_tokens += delta.prompt_tokens
                state.completion_tokens += delta.completion_tokens
        return first

    def _from_its_socket(self, identity: bytes, socket: zmq.asyncio.Socket) -> bool:
        """A registered worker speaks on the socket it registered on, never the other one."""
        worker = self.workers.get(identity)
        return worker is not None and self._socket_of.get(identity, self._socket) is socket

    def _refuse(self, identity: bytes, socket: zmq.asyncio.Socket, info: Register, reason: str) -> None:
        log.error("worker refused", worker_id=info.worker_id, model=info.model, reason=reason)
        with contextlib.suppress(zmq.ZMQError):
            socket.send_multipart([identity, self.codec.encode(Refused(reason))], flags=zmq.NOBLOCK)

    def _register(self, identity: bytes, info: Register, socket: zmq.asyncio.Socket) -> None:
        remote = socket is self._remote
        if info.protocol_version != PROTOCOL_VERSION:
            reason = f"protocol version {info.protocol_version} differs from the gateway's {PROTOCOL_VERSION}"
            return self._refuse(identity, socket, info, reason)
        if info.worker_id.encode() != identity:
            return self._refuse(identity, socket, info, "its worker id is not its socket identity")
        if identity in self.workers and not self._from_its_socket(identity, socket):
            return self._refuse(identity, socket, info, "a worker of the other link has this id")
        if remote and info.model not in self.models and self.allow_remote_models:
            self.expect(info.model)  # a model only remote workers serve
            self.models[info.model].remote = True
        state = self.models.get(info.model)
        if state is None:
            return self._refuse(identity, socket, info, f"model {info.model!r} is not served by this gateway")
        old = self.workers.get(identity)
        if old is not None:  # registered again: what the old record held is lost with it
            self.worker_exited(old.info.model, old.info.worker_id, "registered again")
        if remote:
            self._socket_of[identity] = socket
        state.workers[identity] = self.workers[identity] = Worker(identity, info)
        state.last_error, state.failed = None, False
        state.ready.set()
        log.info(
            "worker registered",
            worker_id=info.worker_id,
            model=info.model,
            engine=info.engine,
            device=info.device,
            tasks=info.tasks,
            max_batch=info.max_batch,
            context_length=info.context_length,
            pid=info.pid,
        )

    async def _watch(self) -> None:
        """A worker that stopped talking is treated as dead even if its process lingers."""
        while True:
            await asyncio.sleep(min(5.0, self.bounds.heartbeat_timeout / 2))
            now = time.monotonic()
            for worker in list(self.workers.values()):
                if now - worker.last_seen > self.bounds.heartbeat_timeout:
                    self.worker_exited(worker.info.model, worker.info.worker_id, "missed heartbeats")
                    self.on_silent(worker.info.worker_id)
