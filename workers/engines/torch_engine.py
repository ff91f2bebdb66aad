"""The torch engine: a transformers causal LM driven by our own continuous-batching decode loop.

Each step first prefills waiting requests, at most `prefill_chunk` prompt tokens per step, so a
long prompt neither stalls the running streams nor keeps the worker from reading cancels. A request
is prefilled alone (all but its last prompt token) and copied into the batch cache as a new row.
Then one batched forward runs over one token per row:
the last prompt token for a row that just joined, the last sampled token for the others. Every row
therefore advances exactly one token per step, and finished or cancelled rows leave at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

import structlog
import torch
import transformers
from transformers import AutoModelForCausalLM
from transformers.cache_utils import DynamicCache

from protocol import Delta, Generate
from workers.engines.base import Capabilities, Engine, EngineStats
from workers.engines.torch_kv import BatchKV
from workers.engines.torch_sampling import RowSampler, choose_tokens
from workers.model_files import hf_location, load_tokenizer
from workers.prompts import prompt_ids
from workers.sequence import Sequence

log = structlog.get_logger()
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


@dataclass
class _Row:
    """A sequence and what the decode loop keeps beside it."""

    seq: Sequence
    sampler: RowSampler
    next_input: int  # the token this row feeds to the next step


def load_pretrained(path: Path, dtype: torch.dtype) -> tuple[object, torch.nn.Module]:
    """Tokenizer and model from a GGUF file (de-quantized by transformers) or a HF directory."""
    directory, kwargs = hf_location(path)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, **kwargs)
    return load_tokenizer(path), model.eval()


class TorchEngine(Engine):
    def __init__(
        self,
        source: Path,
        device: str,
        max_batch: int,
        threads: int,
        context_length: int | None = None,
        prefill_chunk: int = 512,
    ) -> None:
        torch.set_num_threads(threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.tokenizer, self.model = load_pretrained(source, dtype)
        self.model.to(self.device)
        config = self.model.config
        self.vocab_size = int(config.vocab_size)
        self.context_length = min(int(config.max_position_embeddings), context_length or 1 << 62)
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = {self.tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.kv = BatchKV(config.num_hidden_layers, config.num_key_value_heads, head_dim, dtype, self.device)
        self.max_batch, self.prefill_chunk = max_batch, prefill_chunk
        self.running: list[_Row] = []
        self.waiting: deque[_Row] = deque()  # the first may be part-way through its prefill
        self.prefix: DynamicCache | None = None  # that first one's cache so far
        self.stats = EngineStats()
        self.failures = []  # every refusal happens in add()
        self.capabilities = Capabilities(
            engine="torch",
            device=self.device.type,
            tasks=["chat", "completion"],
            max_batch=max_batch,
            context_length=self.context_length,
        )
        log.info("torch engine ready", threads=threads, device=self.device.type, dtype=str(dtype))

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    # --- the Engine interface -----------------------------------------------------------

    def add(self, request: Generate) -> None:
        ids = prompt_ids(self.tokenizer, request, self.vocab_size)
        seq = Sequence.start(request, ids, self.context_length, self._decode)
        self.waiting.append(_Row(seq, RowSampler(request.params, ids), ids[-1]))
        self._count()

    def cancel(self, request_id: str) -> None:
        if self.waiting and self.waiting[0].seq.request_id == request_id:
            self.prefix = None
        self.waiting = deque(r for r in self.waiting if r.seq.request_id != request_id)
        rows = [i for i, r in enumerate(self.running) if r.seq.request_id != request_id]
        if len(rows) != len(self.running):
            self._keep(rows)
        self._count()

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    @torch.inference_mode()
    def step(self) -> list[Delta]:
        self._prefill()
        if not self.running:
            return []
        mask, positions = self.kv.next_inputs()
        inputs = torch.tensor([[r.next_input] for r in self.running], device=self.device)
        logits = self.model(
            input_ids=inputs,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=self.kv.cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits
        tokens = choose_tokens(logits[:, -1, :].float().cpu(), [r.sampler for r in self.running])
        deltas, keep = [], []
        for i, (row, token) in enumerate(zip(self.running, tokens, strict=True)):
            row.next_input = token
            row.sampler.record(token)
            deltas.append(row.seq.advance(token, self.eos_ids))
            if not row.seq.done:
                keep.append(i)
        self.stats.steps += 1
        self.stats.tokens_generated += len(tokens)
        if len(keep) != len(self.running):
            self._keep(keep)
        self._count()
        return deltas

    # --- internals ----------------------------------------------------------------------

    def _prefill(self) -> None:
        """Prefill waiting requests in order, up to `prefill_chunk` tokens; admit those done."""
        budget = self.prefill_chunk
        while self.waiting and len(self.running) < self.max_batch and budget > 0:
            prompt = self.waiting[0].seq.prompt
            n = len(prompt) - 1  # the last prompt token goes through the batched step
            if self.prefix is None:
                self.prefix = DynamicCache()
            done = self.prefix.get_seq_length()
            take = min(budget, n - done)
            if take > 0:
                ids = torch.tensor([prompt[done : done + take]], device=self.device)
                self.model.model(input_ids=ids, past_key_values=self.prefix, use_cache=True)
                budget -= take
            if done + take == n:
                self.kv.add(self.prefix if n else None, n)
                self.running.append(self.waiting.popleft())
                self.prefix = None

    def _keep(self, rows: list[int]) -> None:
        self.running = [self.running[i] for i in rows]
        self.kv.keep(rows)

    def _count(self) -> None:
        self.stats.running, self.stats.waiting = len(self.running), len(self.waiting)
