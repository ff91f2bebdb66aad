"""The worker's loop: read every waiting message, run one engine step, send its output, repeat.

Cancels are read between steps, so a cancelled sequence is gone before the next step runs. A
worker may serve several gateways (one DEALER socket each): it registers with every one, each sees
its whole load in the heartbeats, and each request's answers go back to the gateway that sent it;
the engine's max_batch is the one bound for all of them.
"""

from __future__ import annotations

import os
import time

import msgspec
import structlog
import zmq

from protocol import (
    PROTOCOL_VERSION,
    Cancel,
    Detokenize,
    Embed,
    Failed,
    Generate,
    Heartbeat,
    LoadAdapter,
    Refused,
    Register,
    RegisterAgain,
    Rerank,
    Shutdown,
    StepOutput,
    ToGateway,
    Tokenize,
    ToWorker,
    Transcribe,
    UnloadAdapter,
    WorkerCodec,
)
from protocol.codec import DecodeError
from workers.engines.base import Engine, RequestError
from workers.settings import WorkerSettings
from workers.tokenization import detokenize, tokenize

# a send that waits for room (a gateway's queue full) looks this often whether the gateway is still
# there: a gateway killed mid-stream reads nothing more, and the send would wait forever
SEND_WAIT_MS = 1000
# with several gateways, one that takes nothing for this long is given up on (its requests are
# cancelled) so that the others' requests go on; until then its requests lose no message
STALL_S = 10.0

log = structlog.get_logger()


class Worker:
    def __init__(self, settings: WorkerSettings, engine: Engine, sockets: list[zmq.Socket]) -> None:
        self.settings, self.engine, self.sockets = settings, engine, sockets
        self.codec = WorkerCodec()
        self.draining = False
        self.exit_code: int | None = None
        self.orphaned = False  # the gateway that started it is gone: nothing to send to
        self.pending: list[tuple[int, ToWorker]] = []  # read during long work, handled after it
        self.next_beat = 0.0
        self.origin: dict[str, int] = {}  # request id → the gateway (socket) that sent it
        self.refused: set[int] = set()
        # of several gateways, those given up on (`stall`) → the requests cancelled then
        self.stalled: dict[int, list[str]] = {}
        self.poller = zmq.Poller()
        for socket in sockets:
            self.poller.register(socket, zmq.POLLIN)

    def registration(self) -> Register:
        caps = self.engine.capabilities
        return Register(
            worker_id=self.settings.worker_id,
            model=self.settings.model,
            engine=caps.engine,
            device=caps.device,
            tasks=caps.tasks,
            max_batch=caps.max_batch,
            context_length=caps.context_length,
            protocol_version=PROTOCOL_VERSION,
            pid=os.getpid(),
            embedding_dimension=caps.embedding_dimension,
            chat_template=getattr(self.engine.tokenizer, "chat_template", None) or "",
        )

    def register(self) -> None:
        self.send(self.registration())

    def register_again(self, index: int) -> None:
        """The gateway at `index` does not know this worker (it crashed and came back): what it
        had sent is gone there, so it is cancelled here, and the worker registers with it."""
        if index in self.refused:
            return
        lost = [request_id for request_id, origin in self.origin.items() if origin == index]
        for request_id in lost:
            self.engine.cancel(request_id)
            del self.origin[request_id]
        self.stalled.pop(index, None)
        log.warning("registering again", gateway=self.settings.connect[index], cancelled=len(lost))
        self._send(index, self.registration())

    def send(self, message: ToGateway) -> None:
        """To the gateway the message's request came from; a registration or a heartbeat to all.
        A send waits for room, so a slow gateway slows the engine down and loses nothing; with one
        gateway for as long as the gateway that started this worker is there, with several for up
        to STALL_S: a gateway that takes nothing for that long costs its own requests only."""
        request_id = getattr(message, "request_id", None)
        if isinstance(message, StepOutput) and len(self.sockets) > 1:
            by_gateway: dict[int, list] = {}
            for delta in message.deltas:
                by_gateway.setdefault(self.origin.get(delta.request_id, 0), []).append(delta)
            for index, deltas in by_gateway.items():
                self._send(index, msgspec.structs.replace(message, deltas=deltas))
        elif request_id is not None:
            self._send(self.origin.get(request_id, 0), message)
        else:
            for index in range(len(self.sockets)):
                self._send(index, message)
        if isinstance(message, StepOutput):
            for delta in message.deltas:
                if delta.finish_reason is not None:
                    self.origin.pop(delta.request_id, None)
        elif request_id is not None:  # a request's one answer, or its failure
            self.origin.pop(request_id, None)

    def _send(self, index: int, message: ToGateway) -> None:
        if index in self.refused or self.orphaned:
            return
        frame, socket = self.codec.encode(message), self.sockets[index]
        if index in self.stalled:  # given up on: sent only if there is room at once
            try:
                socket.send(frame, zmq.NOBLOCK)
            except zmq.Again:
                return
            self.resume(index)
            return
        deadline = time.monotonic() + STALL_S
        while True:
            try:
                socket.send(frame)  # waits at most SEND_WAIT_MS (SNDTIMEO)
                return
            except zmq.Again:
                if self.gateway_gone():
                    return
                if len(self.sockets) > 1 and time.monotonic() >= deadline:
                    self.stall(index)
                    return

    def stall(self, index: int) -> None:
        """One of several gateways took nothing for STALL_S: its requests are cancelled, and what
        goes to it is dropped until it takes a message again or sends a request (`resume`)."""
        gone = [request_id for request_id, origin in self.origin.items() if origin == index]
        log.warning(
            "a gateway is not taking messages; its requests are cancelled",
            gateway=self.settings.connect[index],
            requests=len(gone),
        )
        for request_id in gone:
            self.engine.cancel(request_id)
            del self.origin[request_id]
        self.stalled[index] = gone

    def resume(self, index: int) -> None:
        """A stalled gateway is back: the requests cancelled meanwhile fail there, not hang."""
        message = f"the gateway took nothing from the worker for {STALL_S:g} s; the request was cancelled"
        for request_id in self.stalled.pop(index, ()):
            self._send(index, Failed(request_id, 503, "worker_gave_up", message))

    def beat_if_due(self) -> None:
        now = time.monotonic()
        if now >= self.next_beat:
            self.next_beat = now + self.settings.heartbeat_interval
            self.heartbeat()

    def heartbeat(self) -> None:
        s = self.engine.stats
        self.send(
            Heartbeat(
                running=s.running, waiting=s.waiting, tokens_generated=s.tokens_generated, steps=s.steps
            )
        )

    def run(self) -> int:
        interval_ms = int(self.settings.heartbeat_interval * 1000)
        while self.exit_code is None:
            busy = self.engine.has_work() or self.pending
            if self.poller.poll(0 if busy else interval_ms) or self.pending:
                self.read_messages()
            if self.exit_code is not None:
                break
            if self.engine.has_work():
                deltas = self.engine.step()
                if deltas:
                    s = self.engine.stats
                    self.send(StepOutput(deltas=deltas, running=s.running, waiting=s.waiting))
                for failure in self.engine.failures:
                    self.send(failure)
                self.engine.failures.clear()
            elif self.draining:
                self.exit_code = 0
            if time.monotonic() >= self.next_beat:
                self.beat_if_due()
                self.gateway_gone()
        return self.exit_code

    def gateway_gone(self) -> bool:
        """The gateway that started this worker is gone (exit then); a remote worker's gateway may
        come back: it is never gone."""
        if not self.orphaned and self.settings.parent_pid and os.getppid() != self.settings.parent_pid:
            log.warning("gateway is gone, exiting")
            self.orphaned, self.exit_code = True, 0
        return self.orphaned

    def receive(self) -> list[tuple[int, ToWorker]]:
        """Every message waiting on the sockets, with the gateway it came from; a malformed one is
        answered and skipped."""
        messages: list[tuple[int, ToWorker]] = []
        for index, socket in enumerate(self.sockets):
            while True:
                try:
                    frame = socket.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                try:
                    message = self.codec.decode(frame)
                except DecodeError as exc:
                    self.refuse_malformed(index, frame, str(exc))
                    continue
                request_id = getattr(message, "request_id", None)
                if request_id is not None and not isinstance(message, Cancel):
                    self.origin[request_id] = index
                    if index in self.stalled:  # it sends requests: it is there again
                        self.resume(index)
                messages.append((index, message))
        return messages

    def read_messages(self) -> None:
        cancelled = False
        # every waiting embedding (rerank) request shares the forward passes
        embeds: list[Embed] = []
        reranks: list[Rerank] = []
        messages, self.pending = [*self.pending, *self.receive()], []
        for index, message in messages:
            if isinstance(message, Generate | Transcribe):
                self.generate(message)
            elif isinstance(message, Embed):
                embeds.append(message)
            elif isinstance(message, Rerank):
                reranks.append(message)
            elif isinstance(message, Tokenize | Detokenize):
                self.tokens(message)
            elif isinstance(message, LoadAdapter):
                self.load_adapter(message)
            elif isinstance(message, UnloadAdapter):
                self.engine.unload_adapter(message.name)
            elif isinstance(message, Cancel):
                self.engine.cancel(message.request_id)
                self.origin.pop(message.request_id, None)  # a cancelled request gets no answer
                cancelled = True
            elif isinstance(message, Shutdown):
                log.info("shutdown requested", drain=message.drain)
                self.draining = True
                if not message.drain:
                    self.exit_code = 0
            elif isinstance(message, RegisterAgain):
                self.register_again(index)
            elif isinstance(message, Refused):
                log.error(
                    "a gateway refused this worker",
                    reason=message.reason,
                    gateway=self.settings.connect[index],
                )
                self.refused.add(index)
                if len(self.refused) == len(self.sockets):
                    self.exit_code = 2
        if embeds:
            self.encode(embeds)
        if reranks:
            self.encode(reranks)
        if cancelled:  # let the gateway see the freed sequence now, not at the next heartbeat
            self.heartbeat()

    def during(self, working: set[str]) -> set[str]:
        """Between two steps of long work: heartbeat when due, and of what came meanwhile, the
        cancels of the requests being worked on (returned); the rest waits for the next round."""
        self.beat_if_due()
        cancelled: set[str] = set()
        for index, message in self.receive():
            if isinstance(message, Cancel) and message.request_id in working:
                cancelled.add(message.request_id)
            else:
                self.pending.append((index, message))
        return cancelled

    def refuse_malformed(self, index: int, frame: bytes, error: str) -> None:
        """A frame that is not a valid message still fails its request, if it names one."""
        log.error("malformed message from the gateway", error=error)
        try:
            request_id = msgspec.msgpack.decode(frame).get("request_id")
        except Exception:
            return
        if isinstance(request_id, str):
            self._send(
                index, Failed(request_id, 400, "invalid_request", f"the worker could not read it: {error}")
            )

    def encode(self, requests: list[Embed] | list[Rerank]) -> None:
        """Embedding or rerank requests, answered together after bounded passes of work."""
        if self.draining:
            for r in requests:
                self.send(Failed(r.request_id, 503, "worker_draining", "the model is shutting down"))
            return
        try:
            working = {r.request_id for r in requests}
            between = lambda: self.during(working)  # noqa: E731
            if isinstance(requests[0], Embed):
                results = self.engine.embed(requests, between)  # type: ignore[arg-type]
            else:
                results = self.engine.rerank(requests, between)  # type: ignore[arg-type]
        except Exception:
            log.exception("encoder failed", requests=len(requests))
            message = "the worker failed on this request"
            results = [Failed(r.request_id, 500, "internal_error", message) for r in requests]
        for result in results:
            self.send(result)
        if len(results) < len(requests):
            log.info("encoder requests cancelled midway", cancelled=len(requests) - len(results))

    def tokens(self, request: Tokenize | Detokenize) -> None:
        try:
            if self.engine.tokenizer is None:
                raise RequestError(
                    400, "unsupported_task", "this model has no text tokenizer to use", "model"
                )
            if isinstance(request, Tokenize):
                self.send(tokenize(self.engine.tokenizer, request))
            else:
                self.send(detokenize(self.engine.tokenizer, request))
        except RequestError as exc:
            self.send(Failed(request.request_id, exc.status, exc.code, exc.message, exc.param))
        except Exception:  # the tokenizer's own failure fails this request, not the worker
            log.exception("tokenization failed", request_id=request.request_id)
            self.send(Failed(request.request_id, 500, "internal_error", "the worker failed on this request"))

    def load_adapter(self, request: LoadAdapter) -> None:
        try:
            self.send(self.engine.load_adapter(request.request_id, request.adapter))
        except RequestError as exc:
            self.send(Failed(request.request_id, exc.status, exc.code, exc.message, exc.param))
        except Exception as exc:  # an unreadable file: the request fails, not the worker
            log.exception("adapter could not be loaded", adapter=request.adapter.name)
            message = f"the adapter could not be loaded: {exc}"
            self.send(Failed(request.request_id, 400, "invalid_adapter", message, "lora_path"))

    def generate(self, request: Generate | Transcribe) -> None:
        if self.draining:
            self.send(Failed(request.request_id, 503, "worker_draining", "the model is shutting down"))
            return
        if isinstance(request, Generate):
            request = self.with_defaults(request)
        try:
            self.engine.add(request)
        except RequestError as exc:
            self.send(Failed(request.request_id, exc.status, exc.code, exc.message, exc.param))
        except Exception:
            log.exception("request could not be admitted", request_id=request.request_id)
            self.send(Failed(request.request_id, 500, "internal_error", "the worker failed on this request"))

    def with_defaults(self, request: Generate) -> Generate:
        params = request.params  # absent temperature and top_p take this model's defaults
        temperature = self.settings.temperature if params.temperature is None else params.temperature
        top_p = self.settings.top_p if params.top_p is None else params.top_p
        params = msgspec.structs.replace(params, temperature=temperature, top_p=top_p)
        return msgspec.structs.replace(request, params=params)
