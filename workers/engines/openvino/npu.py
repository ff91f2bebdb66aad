"""The OpenVINO engine on an Intel NPU: an LLMPipeline, one request at a time.

The NPU runs a model compiled for static shapes (prompts up to MAX_PROMPT_LEN tokens, then at least
MIN_RESPONSE_LEN generated) and one sequence at a time, so this worker registers max_batch = 1 and
the others wait in its queue. A prompt past MAX_PROMPT_LEN is refused with the limit in the
message. `generate` blocks, so it runs in a thread whose streamer hands each token to `step()`;
a cancel makes the streamer answer CANCEL, which stops OpenVINO at the next token.

The same class drives an LLMPipeline on the CPU, which is how it is tested on machines without an
NPU; only the compile properties differ (device.npu_properties).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino_genai as ov_genai
import structlog

from protocol import Delta, Failed, Generate
from workers.engines.base import Capabilities, Engine, EngineStats, RequestError
from workers.engines.openvino.device import NpuShape
from workers.engines.openvino.generation_config import generation_config
from workers.grammar import Grammars
from workers.prompts import prompt_ids
from workers.sequence import Sequence

log = structlog.get_logger()

_WAIT = 0.05  # step() waits this long for a token before giving the worker its loop back
_END = object()  # what the generating thread puts last in the queue


@dataclass
class _Job:
    seq: Sequence
    config: Any  # GenerationConfig
    tokens: queue.Queue[object] = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class _Streamer(ov_genai.StreamerBase):
    def __init__(self, job: _Job) -> None:
        super().__init__()
        self.job = job

    def write(self, token: int | list[int]) -> ov_genai.StreamingStatus:
        self.job.tokens.put(token)
        if self.job.cancelled.is_set():
            return ov_genai.StreamingStatus.CANCEL
        return ov_genai.StreamingStatus.RUNNING

    def end(self) -> None:
        pass


class NpuEngine(Engine):
    def __init__(
        self,
        source: Path,
        tokenizer: Future[Any],
        device: str,
        shape: NpuShape,
        properties: dict[str, object],
    ) -> None:
        """`tokenizer` is being loaded meanwhile (load_tokenizer_meanwhile)."""
        self.pipe = ov_genai.LLMPipeline(str(source), device, **properties)
        self.tokenizer = tokenizer = tokenizer.result()
        self.shape = shape
        self.vocab_size = len(tokenizer)
        self.eos_ids = {tokenizer.eos_token_id} - {None}
        self.waiting: deque[_Job] = deque()
        self.current: _Job | None = None
        self.failures: list[Failed] = []
        self.stats = EngineStats()
        self.grammars = Grammars(tokenizer, self.vocab_size, self.eos_ids)
        self.capabilities = Capabilities(
            engine="openvino",
            device=device.lower(),
            tasks=["chat", "completion"],
            max_batch=1,
            context_length=shape.context_length,
        )
        log.info("openvino engine ready", device=device, properties=properties, batch=1)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add(self, request: Generate) -> None:
        ids = prompt_ids(self.tokenizer, request, self.vocab_size)
        if len(ids) > self.shape.max_prompt_len:
            raise RequestError(
                400,
                "context_length_exceeded",
                f"This model runs on the NPU compiled for prompts of at most "
                f"{self.shape.max_prompt_len} tokens (MAX_PROMPT_LEN), but the prompt has {len(ids)} "
                "tokens.",
                "messages",
            )
        seq = Sequence.start(request, ids, self.shape.context_length, self._decode)
        if request.logprobs is not None or request.echo:
            raise RequestError(
                400,
                "unsupported_parameter",
                "This model runs on the NPU, whose pipeline gives no log-probabilities.",
                "logprobs",
            )
        self.waiting.append(_Job(seq, generation_config(request, seq.budget, seq.grammar, self.grammars)))
        self._count()

    def cancel(self, request_id: str) -> None:
        self.waiting = deque(j for j in self.waiting if j.seq.request_id != request_id)
        if self.current is not None and self.current.seq.request_id == request_id:
            self.current.seq.done = True  # nothing more is sent for it
            self.current.cancelled.set()
        self._count()

    def has_work(self) -> bool:
        return bool(self.current or self.waiting)

    def step(self) -> list[Delta]:
        if self.current is None:
            self._start(self.waiting.popleft())
        job = self.current
        assert job is not None
        tokens, ended = self._take(job)
        deltas = []
        if tokens and not job.seq.done:
            deltas.append(job.seq.advance(tokens, self.eos_ids))
            self.stats.tokens_generated += deltas[-1].tokens
            self.stats.steps += 1
        if job.seq.done:
            job.cancelled.set()  # a stop string or the budget: stop OpenVINO too
        if ended:
            if isinstance(ended, Exception):
                self.failures.append(
                    Failed(job.seq.request_id, 500, "engine_error", f"OpenVINO failed: {ended}")
                )
            elif not job.seq.done:
                deltas.append(job.seq.end("stop"))  # OpenVINO's own stop
            self.current = None
        self._count()
        return deltas

    def _start(self, job: _Job) -> None:
        ids = ov.Tensor(np.array([job.seq.prompt], dtype=np.int64))

        def generate() -> None:
            try:
                self.pipe.generate(ids, job.config, _Streamer(job))
                job.tokens.put(_END)
            except Exception as exc:  # reported as the request's failure
                job.tokens.put(exc)

        job.thread = threading.Thread(target=generate, name="openvino-generate", daemon=True)
        self.current = job
        job.thread.start()

    def _take(self, job: _Job) -> tuple[list[int], object]:
        """Tokens streamed since the last step (waiting up to _WAIT for the first), and the end
        marker or exception if the generating thread is done."""
        tokens: list[int] = []
        timeout: float | None = _WAIT
        while True:
            try:
                item = job.tokens.get(timeout=timeout) if timeout else job.tokens.get_nowait()
            except queue.Empty:
                return tokens, None
            if item is _END or isinstance(item, Exception):
                return tokens, item
            tokens.extend(item if isinstance(item, list) else [item])  # type: ignore[arg-type]
            timeout = None

    def _count(self) -> None:
        self.stats.running = 1 if self.current else 0
        self.stats.waiting = len(self.waiting)
