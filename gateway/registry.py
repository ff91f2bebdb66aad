"""What the gateway knows of its models and their workers: built only from what workers register
and report (heartbeats, step outputs), plus the lifecycle flags the router and supervisor set."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.link import Peer
from protocol import PROTOCOL_VERSION, Register

MAX_REMOTE_MODELS = 64  # models that only remote workers serve (with --allow-remote-models)


@dataclass
class Worker:
    peer: Peer
    info: Register
    in_flight: set[str] = field(default_factory=set)
    running: int = 0
    waiting: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    started: float = field(default_factory=time.time)


@dataclass
class ModelState:
    """What the gateway knows of one model: its workers and what they reported."""

    name: str
    workers: dict[Peer, Worker] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    tokens_generated: int = 0  # every token of every step, cancelled requests' included
    prompt_tokens: int = 0  # of finished requests
    completion_tokens: int = 0  # of finished requests
    cancelled: int = 0  # requests cancelled at the worker: client gone, timeout
    steps: int = 0
    steps_by_batch_size: Counter[int] = field(default_factory=Counter)
    last_error: str | None = None
    loading: bool = False  # a worker was asked for (preload or first request)
    restarts: int = 0  # workers started again after one exited
    last_used: float = field(default_factory=time.monotonic)  # a request began or ended
    draining: bool = False  # being unloaded: its workers finish what they hold, then stop
    failed: bool = False  # its workers keep dying before they serve (a crash loop)
    remote: bool = False  # served only by workers on other machines (no local worker to start)
    held: int = 0  # sequences admitted but waiting for their caller's share (admission.py)

    @property
    def at_workers(self) -> int:
        return sum(len(w.in_flight) for w in self.workers.values())

    @property
    def in_flight(self) -> int:
        """Sequences admitted and not ended: at the workers, or waiting for their caller's share."""
        return self.at_workers + self.held

    @property
    def state(self) -> str:
        if self.draining:
            return "draining"
        if self.workers:
            return "ready"
        return "failed" if self.failed else "loading" if self.loading else "registered"

    def status(self) -> dict[str, object]:
        workers = list(self.workers.values())
        first = workers[0].info if workers else None
        return {
            "id": self.name,
            "state": self.state,
            "engine": first.engine if first else None,
            "device": first.device if first else None,
            "tasks": first.tasks if first else [],
            "context_length": first.context_length if first else None,
            "replicas": [
                {
                    "worker_id": w.info.worker_id,
                    "pid": w.info.pid,
                    "uptime_s": round(time.time() - w.started, 1),
                    "max_batch": w.info.max_batch,
                    "in_flight": len(w.in_flight),
                    "running": w.running,
                }
                for w in workers
            ],
            "in_flight": self.in_flight,
            "running": sum(w.running for w in workers),
            "waiting": sum(w.waiting for w in workers) + self.held,
            "tokens_generated": self.tokens_generated,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cancelled": self.cancelled,
            "restarts": self.restarts,
            "steps": self.steps,
            "steps_by_batch_size": {str(k): v for k, v in sorted(self.steps_by_batch_size.items())},
            "last_error": self.last_error,
        }


def refusal(
    info: Register,
    peer: Peer,
    workers: Mapping[Peer, Worker],
    models: Mapping[str, ModelState],
    remote_models: bool,
) -> str | None:
    """Why this registration is refused, or None. A remote worker may bring a model of its own
    when `remote_models` (--allow-remote-models), up to MAX_REMOTE_MODELS of them."""
    if info.protocol_version != PROTOCOL_VERSION:
        return f"protocol version {info.protocol_version} differs from the gateway's {PROTOCOL_VERSION}"
    if info.worker_id.encode() != peer.identity:
        return "its worker id is not its socket identity"
    if Peer(not peer.remote, peer.identity) in workers:  # one name, one worker, in the status
        return "a worker of the other link has this id"
    if info.model in models:
        return None
    if not (peer.remote and remote_models):
        return f"model {info.model!r} is not served by this gateway"
    if sum(state.remote for state in models.values()) >= MAX_REMOTE_MODELS:
        return f"already {MAX_REMOTE_MODELS} models only remote workers serve"
    return None
