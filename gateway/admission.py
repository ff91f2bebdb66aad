"""Admission: which of a model's sequences go to a worker now, and which wait for their caller.

Each caller (an API key, or the client address when no keys are set) has a share of each model:
at most `share` of its sequences (generations, embedding requests) at the workers at once, by
default the model's max_batch. Its sequences past the share wait here, in order, and go out one
by one as its earlier ones end. So one caller's 300 prompts take the batch's slots, not the
worker's whole queue: another caller's request goes to the worker beside them and is next in line
when a slot frees, instead of waiting behind all 300 or getting a 503.
A request is refused (503) only when the model holds its limit of sequences at its workers (their
batches plus --max-queue), or the caller would have more than --key-waiting sequences waiting.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.errors import APIError
from gateway.registry import ModelState, Worker
from gateway.stream import Request
from protocol import Detokenize, LoadAdapter, Tokenize


@dataclass
class Placed:
    """One sequence this gateway admitted: its model, worker and caller, and whether it went out."""

    state: ModelState
    worker: Worker
    caller: str
    request: Request
    sent: bool = False


@dataclass
class Callers:
    """One model's callers: sequences each has at the workers, and those waiting for its share."""

    sent: Counter[str] = field(default_factory=Counter)
    held: dict[str, deque[Placed]] = field(default_factory=dict)


class Admission:
    def __init__(
        self, send: Callable[[Placed], None], share: int, max_queue: int, max_waiting: int = 1024
    ) -> None:
        """`send` puts a sequence on its worker (and fails it if the worker cannot be reached);
        `share`: a caller's sequences at a model's workers at once, 0 for the model's max_batch;
        `max_waiting`: a caller's sequences waiting for its share of one model."""
        self._send, self.share, self.max_queue, self.max_waiting = send, share, max_queue, max_waiting
        self.placed: dict[str, Placed] = {}  # by request id, until the sequence ends
        self._callers: dict[str, Callers] = {}  # by model
        # (model, caller) → its sequences at the workers through other gateways (shared_share.py)
        self.elsewhere: dict[tuple[str, str], int] = {}

    def admit(self, state: ModelState, worker: Worker, caller: str, requests: Sequence[Request]) -> None:
        """Send what the caller's share allows now, hold the rest; 503 past the bounds."""
        callers = self._callers.setdefault(state.name, Callers())
        room = self._room(state, callers, caller)
        waiting = len(callers.held.get(caller, ()))
        capacity = sum(w.info.max_batch for w in state.workers.values()) + self.max_queue
        if state.at_workers + min(len(requests), room) > capacity:
            raise APIError(
                503,
                f"The model `{state.name}` has {capacity} requests running or queued, its limit; "
                "retry shortly.",
                "server_busy",
                headers={"Retry-After": "1"},
            )
        if waiting + len(requests) - room > self.max_waiting:
            raise APIError(
                503,
                f"You have {waiting} requests waiting for the model `{state.name}` beside those "
                "running, the most one caller may have; retry when some have finished.",
                "server_busy",
                headers={"Retry-After": "1"},
            )
        held = callers.held.setdefault(caller, deque())
        for request in requests:
            placed = self.placed[request.request_id] = Placed(state, worker, caller, request)
            if isinstance(request, Tokenize | Detokenize | LoadAdapter):  # no sequence: answered at once
                self._go(placed, callers)
            else:
                held.append(placed)
                state.held += 1
        self._release(state, callers, caller)

    def ended(self, request_id: str) -> Placed | None:
        """The sequence is over (finished, failed or withdrawn): its slot goes to its caller's next."""
        placed = self.placed.pop(request_id, None)
        if placed is None:
            return None
        placed.worker.in_flight.discard(request_id)
        callers = self._callers[placed.state.name]
        if placed.sent:
            if not isinstance(placed.request, Tokenize | Detokenize | LoadAdapter):
                callers.sent[placed.caller] -= 1
        else:
            callers.held[placed.caller].remove(placed)
            placed.state.held -= 1
        self._release(placed.state, callers, placed.caller)
        if not callers.sent[placed.caller] and not callers.held.get(placed.caller):
            callers.sent.pop(placed.caller, None)
            callers.held.pop(placed.caller, None)
        return placed

    def sent(self, request_id: str) -> bool:
        placed = self.placed.get(request_id)
        return placed is not None and placed.sent

    def on_worker(self, worker: Worker) -> list[Placed]:
        """Every sequence placed on the worker, sent or held (when it is gone)."""
        return [p for p in self.placed.values() if p.worker is worker]

    def counts(self) -> dict[tuple[str, str], int]:
        """(model, caller) → this gateway's sequences at the workers, for the other gateways."""
        return {(model, caller): n for model, c in self._callers.items() for caller, n in c.sent.items() if n}

    def release_all(self, states: dict[str, ModelState]) -> None:
        """After `elsewhere` changed: send what the shares now allow."""
        for model, callers in self._callers.items():
            for caller in list(callers.held):
                if model in states:
                    self._release(states[model], callers, caller)

    def _room(self, state: ModelState, callers: Callers, caller: str) -> int:
        share = self.share or sum(w.info.max_batch for w in state.workers.values())
        return max(0, share - callers.sent[caller] - self.elsewhere.get((state.name, caller), 0))

    def _release(self, state: ModelState, callers: Callers, caller: str) -> None:
        held = callers.held.get(caller)
        while held and self._room(state, callers, caller):
            placed = held.popleft()
            state.held -= 1
            callers.sent[caller] += 1
            self._go(placed, callers)

    def _go(self, placed: Placed, callers: Callers) -> None:
        placed.sent = True
        placed.worker.in_flight.add(placed.request.request_id)
        self._send(placed)
