"""The router: what the gateway does with its workers.

Workers connect over the link (link.py: sockets, CURVE, frame checks) and `Register` what they
serve; the registry (registry.py) holds what they said. A request goes to the least-loaded ready
worker of its model, through admission (admission.py: per-caller shares, bounds), and the deltas
of each `StepOutput` are handed to the streams (stream.py) they belong to. A stream ends exactly
once: finished, failed, or closed by its handler (which cancels at the worker what it had sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import msgspec
import structlog
import zmq.asyncio

from gateway.admission import Admission, Placed
from gateway.clients import Caller
from gateway.errors import APIError
from gateway.link import Peer, WorkerLink
from gateway.registry import ModelState, Worker, refusal
from gateway.stream import Answer, Request, Stream
from protocol import (
    Adapter,
    Cancel,
    Delta,
    Detokenize,
    Embed,
    Embeddings,
    Failed,
    Generate,
    Heartbeat,
    LoadAdapter,
    Ranked,
    Refused,
    Register,
    RegisterAgain,
    Rerank,
    Shutdown,
    StepOutput,
    Tokenize,
    UnloadAdapter,
)

log = structlog.get_logger()
ASK_EVERY_S = 1.0  # an unregistered peer that keeps sending is answered (and logged) this often


class LoRA(NamedTuple):
    """A LoRA adapter served here: the model it adapts, the adapter, and whether a worker of its own
    serves it (OpenVINO) rather than its base's workers (the requests then carry it)."""

    base: str
    adapter: Adapter
    own_worker: bool = False


@dataclass(frozen=True)
class Bounds:
    load_timeout: float  # a request waits this long for its model's first worker
    first_token_timeout: float  # and this long for its first token
    max_queue: int  # requests per model beyond what its workers' batches hold
    heartbeat_timeout: float  # a worker silent this long is presumed dead
    answer_timeout: float  # a one-answer request (embeddings, tokens) waits this long for it
    key_share: int = 0  # a caller's sequences at a model's workers at once (0: its max_batch)
    key_waiting: int = 1024  # a caller's sequences waiting for its share of a model


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
        `enginehouse keys`) is given."""
        self.link = WorkerLink(address, remote, keys)
        self.address = address
        self.bounds = bounds
        self.models: dict[str, ModelState] = {}
        self.workers: dict[Peer, Worker] = {}
        self.unregistered: dict[Peer, float] = {}  # peers that sent before registering → when answered
        self.streams: dict[str, Stream] = {}
        self.admission = Admission(self._place, bounds.key_share, bounds.max_queue, bounds.key_waiting)
        self._tasks: list[asyncio.Task[None]] = []
        self.on_silent: Callable[[str], None] = lambda worker_id: None  # the supervisor kills it
        self.on_demand: Callable[[str], None] = lambda model: None  # the supervisor starts one
        self.allow_remote_models = allow_remote_models
        self.adapters: dict[str, LoRA] = {}  # by model id

    def expect(self, model: str) -> None:
        """Declare a model the gateway serves; requests for it wait for its worker to register."""
        self.models.setdefault(model, ModelState(model))

    def model(self, name: str, param: str = "model") -> ModelState:
        """The model's state (an adapter's: its base's); a 404 naming the request's field when no
        such model is served."""
        name = self.served_by(name)
        state = self.models.get(name)
        if state is None:
            raise APIError(404, f"The model `{name}` does not exist.", "model_not_found", param)
        return state

    def served_by(self, name: str) -> str:
        """The model whose workers serve this one: an adapter's base, unless it has its own."""
        lora = self.adapters.get(name)
        return lora.base if lora is not None and not lora.own_worker else name

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

    async def start(self) -> None:
        self.link.bind()
        self._tasks = [asyncio.create_task(self._receive(s)) for s in self.link.sockets()]
        self._tasks.append(asyncio.create_task(self._watch()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.link.close()

    # --- requests -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def open(
        self, model: str, task: str | None, requests: Sequence[Request], caller: Caller
    ) -> AsyncIterator[Stream]:
        """Place the requests on one worker of `model` (an adapter's: of its base, each generation
        carrying the adapter); on leaving, cancel whatever is unfinished."""
        if self.served_by(model) != model:
            model, adapter, _ = self.adapters[model]
            requests = [
                msgspec.structs.replace(r, adapter=adapter) if isinstance(r, Generate) else r
                for r in requests
            ]
        state = self.model(model)
        state.last_used = time.monotonic()
        if not state.workers:
            if not caller.may_load:
                raise APIError(
                    403,
                    f"The model `{model}` is not loaded, and loading one needs an admin key.",
                    "permission_denied",
                    "model",
                )
            await self.wait_ready(model)
        worker = min(state.workers.values(), key=lambda w: len(w.in_flight))
        if task is not None and task not in worker.info.tasks:
            raise APIError(
                400,
                f"The model `{model}` does not support {task}; it serves: {', '.join(worker.info.tasks)}.",
                "unsupported_task",
                "model",
            )
        # a generation's first token comes after its prefill; a large embedding's one answer (a
        # long audio's first segment) may take minutes of work (its worker heartbeats meanwhile)
        generating = isinstance(requests[0], Generate)
        stream = Stream(
            requests, self.bounds.first_token_timeout if generating else self.bounds.answer_timeout
        )
        for request in requests:
            self.streams[request.request_id] = stream
        try:
            self.admission.admit(state, worker, caller.id, requests)
            yield stream
        finally:  # also on cancellation (client gone): no await here, the Cancel leaves at once
            state.last_used = time.monotonic()
            # what still waits for its share goes first, so that none of it is sent to be cancelled
            for request_id in sorted(stream.index, key=self.admission.sent):
                self.streams.pop(request_id, None)
                placed = self.admission.ended(request_id)
                if placed is not None and placed.sent and request_id in stream.open:
                    state.cancelled += 1
                    self._send(placed.worker, Cancel(request_id))

    async def ask(
        self,
        model: str,
        task: str | None,
        request: Embed | Rerank | Tokenize | Detokenize | LoadAdapter,
        caller: Caller,
    ) -> Answer:
        """One request, one answer (embeddings, tokens, text); `task` None: any model will do."""
        async with self.open(model, task, [request], caller) as stream:
            async for _, item in stream:
                assert not isinstance(item, Delta)
                if isinstance(item, Embeddings | Ranked):
                    self.model(model).prompt_tokens += item.prompt_tokens
                return item
        raise AssertionError("a one-answer stream ends with its answer or an error")

    def _place(self, placed: Placed) -> None:
        """Admission lets the sequence go: send it to its worker."""
        self._send(placed.worker, placed.request)

    def _send(self, worker: Worker, message: Request | Cancel | Shutdown | UnloadAdapter) -> None:
        """Send now, without waiting. A worker that cannot be reached (gone, or its queue full) is
        lost: a Cancel it never gets would leave a sequence running unseen, so it is dropped (a local
        one killed and restarted) and what it held fails; soon, not inside the caller's loop."""
        if not self.link.send(worker.peer, message) and self.workers.get(worker.peer) is worker:
            asyncio.get_running_loop().call_soon(self._lost, worker, "unreachable")

    def _lost(self, worker: Worker, reason: str) -> None:
        if self.workers.get(worker.peer) is not worker:
            return  # already gone
        self._drop(worker, reason)
        if not worker.peer.remote:
            self.on_silent(worker.info.worker_id)

    # --- workers ------------------------------------------------------------------------

    def tell_workers(self, model: str, message: UnloadAdapter) -> None:
        """A message with no answer to every worker of the model."""
        for worker in list(self.model(model).workers.values()):
            self._send(worker, message)

    def shutdown_workers(self, drain: bool, model: str | None = None) -> None:
        """Ask the workers (of one model, or all) to stop; with drain, after what they hold."""
        for state in self.models.values():
            if model is not None and state.name != model:
                continue
            state.draining = drain and model is not None  # an unload, not the gateway stopping
            for worker in list(state.workers.values()):
                self._send(worker, Shutdown(drain=drain))

    def registered(self, worker_id: str) -> bool:
        """A local worker has registered (it is not still loading its model)."""
        return Peer(False, worker_id.encode()) in self.workers

    def worker_exited(self, model: str, worker_id: str, reason: str) -> None:
        """A local worker's process is gone (it may have died before registering): the model keeps
        the reason, and every request on the worker fails now, with a 503."""
        self.models[model].last_error = f"worker exited ({reason})"
        worker = self.workers.get(Peer(False, worker_id.encode()))
        if worker is not None:
            self._drop(worker, reason)

    def _drop(self, worker: Worker, reason: str) -> None:
        state = self.models[worker.info.model]
        state.last_error = f"worker exited ({reason})"
        del self.workers[worker.peer], state.workers[worker.peer]
        if not state.workers:
            state.ready.clear()
        message = f"The model's worker stopped ({reason}); retry."
        # what waited for its caller's share first, so that none of it goes out to this worker
        failed = sorted(self.admission.on_worker(worker), key=lambda placed: placed.sent)
        for placed in failed:
            request_id = placed.request.request_id
            self.admission.ended(request_id)
            stream = self.streams.get(request_id)
            if stream is not None:
                stream.queue.put_nowait(Failed(request_id, 503, "worker_died", message))
        log.warning(
            "worker gone",
            model=state.name,
            worker_id=worker.info.worker_id,
            peer=str(worker.peer),
            reason=reason,
            failed_requests=len(failed),
        )

    async def _receive(self, socket: zmq.asyncio.Socket) -> None:
        async for peer, message in self.link.messages(socket):
            if isinstance(message, Register):
                self._register(peer, message)
                continue
            worker = self.workers.get(peer)
            if worker is None:
                self._unregistered(peer)
                continue
            worker.last_seen = time.monotonic()
            if isinstance(message, StepOutput):
                if self._step_output(worker, message):
                    self.link.yield_now()  # a first token: its handler writes it now
            elif isinstance(message, Heartbeat):
                worker.running, worker.waiting = message.running, message.waiting
            elif self._mine(worker, message.request_id):  # Embeddings, Ranked, Tokenized, Detokenized, Failed
                self.streams[message.request_id].queue.put_nowait(message)
                self.admission.ended(message.request_id)

    def _mine(self, worker: Worker, request_id: str) -> bool:
        """The request is open and was sent to this worker (no worker speaks for another's)."""
        placed = self.admission.placed.get(request_id)
        return placed is not None and placed.sent and placed.worker is worker and request_id in self.streams

    def _step_output(self, worker: Worker, message: StepOutput) -> bool:
        """Hand each delta to its stream; True when one is a stream's first."""
        first = False
        state = self.models[worker.info.model]
        for delta in message.deltas:
            if not self._mine(worker, delta.request_id):
                continue
            stream = self.streams[delta.request_id]
            first = first or stream.before_first_token
            stream.queue.put_nowait(delta)
            state.tokens_generated += delta.tokens
            if delta.finish_reason is not None:
                state.prompt_tokens += delta.prompt_tokens
                state.completion_tokens += delta.completion_tokens
                self.admission.ended(delta.request_id)
        worker.running, worker.waiting = message.running, message.waiting
        state.steps += 1
        state.steps_by_batch_size[len(message.deltas)] += 1
        return first

    def _unregistered(self, peer: Peer) -> None:
        """A message from a peer that has not registered, dropped. A remote worker outlives a
        gateway that crashed and came back, and keeps sending to it: it is asked to register
        again (a local worker is this gateway's child and goes with it)."""
        now = time.monotonic()
        if now - self.unregistered.get(peer, -ASK_EVERY_S) < ASK_EVERY_S:
            return
        if len(self.unregistered) > 1024:  # bounded, whoever sends
            self.unregistered.clear()
        self.unregistered[peer] = now
        log.warning("message from an unregistered worker peer, dropped", peer=str(peer), asked=peer.remote)
        if peer.remote:
            self.link.send(peer, RegisterAgain())

    def _refuse(self, peer: Peer, info: Register, reason: str) -> None:
        log.error("worker refused", worker_id=info.worker_id, model=info.model, peer=str(peer), reason=reason)
        self.link.send(peer, Refused(reason))

    def _register(self, peer: Peer, info: Register) -> None:
        self.unregistered.pop(peer, None)
        reason = refusal(info, peer, self.workers, self.models, self.allow_remote_models)
        if reason is not None:
            return self._refuse(peer, info, reason)
        if info.model not in self.models:  # a model only remote workers serve
            self.expect(info.model)
            self.models[info.model].remote = True
        state = self.models[info.model]
        old = self.workers.get(peer)
        if old is not None:  # registered again: what the old record held is lost with it
            self._drop(old, "registered again")
        state.workers[peer] = self.workers[peer] = Worker(peer, info)
        state.last_error, state.failed = None, False
        state.ready.set()
        said = {k: v for k, v in msgspec.structs.asdict(info).items() if k != "chat_template"}
        log.info("worker registered", remote=peer.remote, **said)

    async def _watch(self) -> None:
        """A worker that stopped talking is treated as dead even if its process lingers."""
        while True:
            await asyncio.sleep(min(5.0, self.bounds.heartbeat_timeout / 2))
            now = time.monotonic()
            for worker in list(self.workers.values()):
                if now - worker.last_seen > self.bounds.heartbeat_timeout:
                    self._lost(worker, "missed heartbeats")
