"""The torch engine: a transformers causal LM driven by our own continuous-batching decode loop.

Each step first prefills waiting requests, at most `prefill_chunk` prompt tokens per step, so a
long prompt neither stalls the running streams nor keeps the worker from reading cancels. A request
is prefilled alone (all but its last prompt token) and copied into the batch cache as a new row;
its prefill is kept a while (torch_prefix.py), and a later prompt that starts the same way (a
system prompt, a conversation's earlier turns) prefills on from it.
Then one batched forward runs over one token per row:
the last prompt token for a row that just joined, the last sampled token for the others. Every row
therefore advances exactly one token per step, and finished or cancelled rows leave at once.

A row may decode with a LoRA adapter (torch_lora.py): rows with different adapters, and rows with
none, share the same steps; each gets its own adapter's low-rank update.

A row under a grammar (a JSON schema, a required tool call) has the tokens its grammar forbids
masked out of its logits before the sampler chooses; other rows in the same step are untouched.
Log-probabilities are taken from the logits before any mask or sampling rule (workers/logprobs.py);
with `echo`, the prompt is prefilled through the LM head so its tokens get theirs too.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import torch
import transformers
from transformers import AutoModelForCausalLM
from transformers.cache_utils import DynamicCache

from protocol import Adapter, AdapterLoaded, Delta, Generate, Transcribe
from workers import logprobs
from workers.engines.base import Capabilities, Engine, EngineStats
from workers.engines.torch_kv import BatchKV
from workers.engines.torch_lora import Adapters
from workers.engines.torch_prefix import PrefixCache
from workers.engines.torch_sampling import RowSampler, choose_tokens
from workers.gguf_to_hf import as_hf_directory
from workers.grammar import Grammars, mask_logits
from workers.model_files import hf_location, load_tokenizer
from workers.prompts import prompt_ids
from workers.sequence import Sequence
from workers.settings import DEFAULT_CACHE_DIR

log = structlog.get_logger()
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


@dataclass
class _Row:
    """A sequence and what the decode loop keeps beside it."""

    seq: Sequence
    sampler: RowSampler
    next_input: int  # the token this row feeds to the next step
    matcher: Any = None  # xgrammar's GrammarMatcher when the row decodes under a grammar
    adapter: str | None = None  # the LoRA adapter it decodes with
    prompt_logits: list[torch.Tensor] = field(default_factory=list)  # echo: per prefill chunk

    @property
    def scores_prompt(self) -> bool:
        return self.seq.echo and self.seq.logprobs is not None


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
        max_adapters: int = 8,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        prefix_cache_tokens: int = 0,
    ) -> None:
        torch.set_num_threads(threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        # a GGUF is read from its Hugging Face directory in the cache (seconds, not 40 s)
        hf = as_hf_directory(source, cache_dir, lambda text: log.info(text))
        self.tokenizer, self.model = load_pretrained(hf, dtype)
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
        self.prefixes = PrefixCache(prefix_cache_tokens)  # finished prefills, for later prompts
        self.stats = EngineStats()
        self.failures = []  # every refusal happens in add()
        self.grammars = Grammars(self.tokenizer, self.vocab_size, self.eos_ids)
        self.pieces = logprobs.Pieces(self.tokenizer)
        self.adapters = Adapters(self.model, max_adapters)
        self.dropping: set[str] = set()  # adapters to unload once no row uses them
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

    def add(self, request: Generate | Transcribe) -> None:
        assert isinstance(request, Generate)  # the gateway sends a model only its tasks
        ids = prompt_ids(self.tokenizer, request, self.vocab_size)
        adapter = None
        if request.adapter is not None:
            adapter = self._adapter(request.adapter).name
        seq = Sequence.start(request, ids, self.context_length, self._decode)
        matcher = None if seq.grammar is None else self.grammars.matcher(seq.grammar)
        row = _Row(seq, RowSampler(request.params, ids), ids[-1], matcher, adapter)
        if seq.echo and not row.scores_prompt:
            seq.prompt_logprobs = logprobs.prompt_pieces(ids, self.pieces)
        self.waiting.append(row)
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

    def load_adapter(self, request_id: str, adapter: Adapter) -> AdapterLoaded:
        loaded = self._adapter(adapter)
        return AdapterLoaded(request_id, loaded.name, loaded.rank, loaded.targets)

    def unload_adapter(self, name: str) -> None:
        self.prefixes.forget(name)
        self.dropping.add(name)
        self._drop_unused()

    def _adapter(self, adapter: Adapter) -> Any:
        self.dropping.discard(adapter.name)
        in_use = {r.adapter for r in [*self.running, *self.waiting] if r.adapter is not None}
        before = self.adapters.loaded.get(adapter.name)
        was = None if before is None else (before.path, before.scale)
        loaded = self.adapters.get(adapter.name, adapter.path, adapter.scale, in_use)
        if was is not None and was != (loaded.path, loaded.scale):  # other weights: other KV
            self.prefixes.forget(adapter.name)
        return loaded

    def _drop_unused(self) -> None:
        in_use = {r.adapter for r in [*self.running, *self.waiting]}
        for name in [n for n in self.dropping if n not in in_use]:
            self.adapters.unload(name)
            self.dropping.discard(name)

    @torch.inference_mode()
    def step(self) -> list[Delta]:
        self._prefill()
        if not self.running:
            return []
        mask, positions = self.kv.next_inputs()
        self.adapters.route([r.adapter for r in self.running])
        inputs = torch.tensor([[r.next_input] for r in self.running], device=self.device)
        logits = self.model(
            input_ids=inputs,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=self.kv.cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits
        logits = logits[:, -1, :].float().cpu()
        scored = {
            i: torch.log_softmax(logits[i], dim=-1)
            for i, row in enumerate(self.running)
            if row.seq.logprobs is not None
        }
        matchers = [(i, row.matcher) for i, row in enumerate(self.running) if row.matcher is not None]
        if matchers:
            mask_logits(logits, matchers)
        tokens = choose_tokens(logits, [r.sampler for r in self.running])
        deltas, keep = [], []
        for i, (row, token) in enumerate(zip(self.running, tokens, strict=True)):
            row.next_input = token
            row.sampler.record(token)
            if row.matcher is not None:
                row.matcher.accept_token(token)
            chosen = []
            if i in scored:
                chosen = [logprobs.chosen(scored[i], token, row.seq.logprobs or 0, self.pieces)]
            deltas.append(row.seq.advance([token], self.eos_ids, chosen))
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
            row = self.waiting[0]
            prompt = row.seq.prompt
            n = len(prompt) - 1  # the last prompt token goes through the batched step
            if self.prefix is None:
                # where an earlier prompt started the same way, prefill on from its cache (not for
                # a prompt scored through the LM head: each position needs its own logits)
                if not row.scores_prompt:
                    self.prefix = self.prefixes.longest(prompt[:n], row.adapter)
                self.prefix = self.prefix or DynamicCache()
            done = self.prefix.get_seq_length()
            take = min(budget, n - done)
            if take > 0:
                ids = torch.tensor([prompt[done : done + take]], device=self.device)
                self.adapters.route([row.adapter])
                if row.scores_prompt:  # through the LM head: each position predicts the next token
                    out = self.model(input_ids=ids, past_key_values=self.prefix, use_cache=True)
                    row.prompt_logits.append(out.logits[0].float().cpu())
                else:
                    self.model.model(input_ids=ids, past_key_values=self.prefix, use_cache=True)
                budget -= take
            if done + take == n:
                if row.scores_prompt:
                    scores = torch.cat(row.prompt_logits) if row.prompt_logits else torch.empty(0)
                    row.seq.prompt_logprobs = logprobs.of_prompt(
                        scores, prompt, row.seq.logprobs or 0, self.pieces
                    )
                    row.prompt_logits.clear()
                self.kv.add(self.prefix if n else None, n)
                self.prefixes.keep(prompt[:n], row.adapter, self.prefix)
                self.running.append(self.waiting.popleft())
                self.prefix = None

    def _keep(self, rows: list[int]) -> None:
        self.running = [self.running[i] for i in rows]
        self.kv.keep(rows)
        if self.dropping:
            self._drop_unused()

    def _count(self) -> None:
        self.stats.running, self.stats.waiting = len(self.running), len(self.waiting)
