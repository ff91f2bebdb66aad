"""The OpenVINO engine on the CPU or a GPU: OpenVINO GenAI's ContinuousBatchingPipeline.

Paged attention and the scheduler are OpenVINO's: every `step()` advances each running request by
one token and prefills waiting prompts in chunks of at most `max_num_batched_tokens` (dynamic split
fuse), so requests join and leave between steps, as in the torch engine. We feed it token ids made
with the model's Hugging Face tokenizer and read back token ids, which go through the shared
Sequence (incremental detokenizer, stop strings, budget).
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino_genai as ov_genai
import structlog

from protocol import Adapter, AdapterLoaded, Delta, Failed, Generate, TokenLogprob
from workers import logprobs
from workers.engines.base import Capabilities, Engine, EngineStats, RequestError
from workers.engines.openvino.convert import IR_WEIGHTS
from workers.engines.openvino.generation_config import generation_config
from workers.engines.openvino.lora import checked
from workers.grammar import Grammars
from workers.memory import page_out
from workers.prompts import prompt_ids
from workers.sequence import Sequence

log = structlog.get_logger()

_OWN_WORKER = (
    "On OpenVINO a LoRA adapter is served by a worker of its own (its pipeline fixes its adapters); "
    "this worker serves the base model"
)
# A prefill this long and one decode step make the CPU plugin pack every matmul's weights for each
# kernel it uses (measured: after a 2-token prefill, the first 40-token prompt packed them again).
WARM_UP_TOKENS = 64
_NO_ROOM = "The prompt does not fit the KV cache; shorten it or give the model more (kv_cache_gb)."


@contextmanager
def _detokenizer_alone(source: Path) -> Iterator[str]:
    """A directory with the IR's detokenizer alone, for OpenVINO GenAI's tokenizer of the pipeline.
    The pipeline takes and gives token ids (workers/hf_tokenizer.py tokenizes) and asks its
    tokenizer only for the vocabulary of structured output (xgrammar inside it), which the
    detokenizer gives; the tokenizer model, compiled, held 8 MB (measured: the same tokens, the
    same structured output). The tokenizer model is where GenAI reads the EOS id from; without it,
    config.json gives it (else the xgrammar inside GenAI is built with -1 for its stop token), and
    each request is given ours as well."""
    with tempfile.TemporaryDirectory(prefix="enginehouse-detokenizer-") as directory:
        for name in ("openvino_detokenizer.xml", "openvino_detokenizer.bin", "config.json"):
            if (source / name).is_file():
                os.symlink(source / name, Path(directory) / name)
        yield directory


@dataclass
class _Request:
    seq: Sequence
    handle: Any  # openvino_genai's GenerationHandle


@dataclass(frozen=True)
class SchedulerOptions:
    kv_blocks: int  # paged KV cache shared by every sequence (device.kv_cache_blocks)
    max_batch: int  # sequences decoded together
    max_batched_tokens: int  # tokens (prompt chunks + one per running sequence) per step
    prefix_caching: bool  # reuse the KV blocks of a prompt prefix seen before (system prompts)

    def scheduler_config(self) -> ov_genai.SchedulerConfig:
        config = ov_genai.SchedulerConfig()
        config.num_kv_blocks = self.kv_blocks
        config.max_num_seqs = self.max_batch
        config.max_num_batched_tokens = max(self.max_batched_tokens, self.max_batch)
        config.dynamic_split_fuse = True
        config.enable_prefix_caching = self.prefix_caching
        return config


class BatchingEngine(Engine):
    def __init__(
        self,
        source: Path,
        tokenizer: Future[Any],
        device: str,
        scheduler: SchedulerOptions,
        properties: dict[str, object],
        context_length: int,
        adapter: ov_genai.AdapterConfig | None = None,
    ) -> None:
        """`tokenizer` is being loaded meanwhile (load_tokenizer_meanwhile)."""
        self.source = source
        if adapter is not None:
            properties = {**properties, "adapters": adapter}
        with _detokenizer_alone(source) as detokenizer:
            self.pipe = ov_genai.ContinuousBatchingPipeline(
                str(source),
                ov_genai.Tokenizer(detokenizer),
                scheduler.scheduler_config(),
                device,
                **properties,
            )
        self._ids = itertools.count()
        self.tokenizer = tokenizer = tokenizer.result()
        self.vocab_size = len(tokenizer)
        self.eos_ids = {tokenizer.eos_token_id} - {None}
        self._eos = tokenizer.eos_token_id  # ours, given each request (config.json's may differ)
        self.context_length = context_length
        self.requests: dict[str, _Request] = {}
        self.failures: list[Failed] = []
        self.stats = EngineStats()
        self.grammars = Grammars(tokenizer, self.vocab_size, self.eos_ids)
        self.pieces = logprobs.Pieces(tokenizer)
        self.capabilities = Capabilities(
            engine="openvino",
            device=device.lower(),
            tasks=["chat", "completion"],
            max_batch=scheduler.max_batch,
            context_length=context_length,
        )
        log.info("openvino engine ready", device=device, properties=properties, scheduler=vars(scheduler))

    def warm_up(self) -> None:
        """One throwaway request, then hand back the IR's weights file.

        OpenVINO's CPU plugin packs the weights for its kernels on their first inference (a longer
        prefill and a one-token step each have theirs), reading the whole mapped .bin; those pages
        then stay resident though only the token-embedding rows a prompt uses are read again
        (measured: the 97 MB file, 114 MB now, back to 7-32 MB resident under load once paged out,
        the worker 58 MB smaller at the end of the bench's load). The packing (0.5-1.5 s) was the
        first request's to wait for; a request that comes while the worker does this waits instead."""
        config = ov_genai.GenerationConfig()
        config.max_new_tokens, config.ignore_eos = 2, True
        self._stop_at_eos(config)
        length = max(1, min(WARM_UP_TOKENS, self.context_length - 2))
        ids = ov.Tensor((np.arange(1, length + 1, dtype=np.int64) % self.vocab_size)[None])
        handle = self.pipe.add_request(next(self._ids), ids, config)
        while self.pipe.has_non_finished_requests():
            self.pipe.step()
        handle.read_all()
        page_out(self.source / IR_WEIGHTS)

    def _stop_at_eos(self, config: ov_genai.GenerationConfig) -> None:
        if self._eos is not None:
            config.set_eos_token_id(self._eos)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add(self, request: Generate) -> None:
        if request.adapter is not None:
            raise RequestError(400, "unsupported_adapter", _OWN_WORKER, "model")
        ids = prompt_ids(self.tokenizer, request, self.vocab_size)
        seq = Sequence.start(request, ids, self.context_length, self._decode)
        config = generation_config(request, seq.budget, seq.grammar, self.grammars)
        self._stop_at_eos(config)
        if seq.echo:
            seq.prompt_logprobs = logprobs.prompt_pieces(ids, self.pieces)
        tensor = ov.Tensor(np.array([ids], dtype=np.int64))
        handle = self.pipe.add_request(next(self._ids), tensor, config)
        self.requests[request.request_id] = _Request(seq, handle)
        self._count()

    def load_adapter(self, request_id: str, adapter: Adapter) -> AdapterLoaded:
        """Only a check that the adapter fits this model: the gateway then serves it from a worker
        of its own (openvino/lora.py)."""
        config = json.loads((self.source / "config.json").read_text())
        lora = checked(adapter.path, config)
        return AdapterLoaded(request_id, adapter.name, lora.rank, lora.targets)

    def cancel(self, request_id: str) -> None:
        request = self.requests.pop(request_id, None)
        if request is not None:
            request.handle.cancel()  # OpenVINO frees its blocks at the next step
            self._count()

    def has_work(self) -> bool:
        # a cancelled request is only released by a step, so step until OpenVINO has none
        return bool(self.requests) or self.pipe.has_non_finished_requests()

    def step(self) -> list[Delta]:
        self.pipe.step()
        deltas = []
        for request_id, request in list(self.requests.items()):
            seq, handle = request.seq, request.handle
            if handle.can_read():
                outputs = handle.read().values()
                tokens = [t for out in outputs for t in out.generated_ids]
                chosen: list[TokenLogprob] = []
                if seq.logprobs is not None:
                    values = [v for out in outputs for v in out.generated_log_probs]
                    chosen = [
                        TokenLogprob(self.pieces.of(t), v) for t, v in zip(tokens, values, strict=False)
                    ]
                if tokens:
                    deltas.append(seq.advance(tokens, self.eos_ids, chosen))
                    self.stats.tokens_generated += deltas[-1].tokens
            status = handle.get_status()
            if not seq.done and status == ov_genai.GenerationStatus.IGNORED:
                self.failures.append(Failed(request_id, 400, "context_length_exceeded", _NO_ROOM, "messages"))
                seq.done = True
            elif not seq.done and status != ov_genai.GenerationStatus.RUNNING:
                deltas.append(seq.end("stop"))  # OpenVINO's own stop criteria
            if seq.done:
                handle.cancel()  # no-op when OpenVINO finished it; frees it after a stop string
                del self.requests[request_id]
        self.stats.steps += 1
        self._count()
        return deltas

    def _count(self) -> None:
        metrics = self.pipe.get_metrics()
        self.stats.running = min(metrics.scheduled_requests, len(self.requests))
        self.stats.waiting = len(self.requests) - self.stats.running
