"""The ONNX engine: ONNX Runtime GenAI, one Generator per running request, every request advanced
by one token per step (the caller drives the loop, so a cancel stops a request at once).

Measured here (SmolLM2-135M int4, 2 threads, 128 tokens, in-process): a Generator alone makes
206 to 211 tok/s, eight Generators interleaved 178 tok/s in all. This version's `og.Engine` (its own
continuous batching) also runs on the CPU, but batches at most 4 requests and made 161 tok/s alone
and 200 in all for eight: one stream is what this engine is for, so it drives Generators.

Sampling uses ONNX Runtime GenAI's search options (greedy or do_sample with temperature, top_p,
top_k, repetition_penalty, random_seed); min_p, presence_penalty and frequency_penalty, which
it rejects, are applied by reading the logits and choosing with the sampler the torch engine uses.

Constrained decoding masks the logits with the grammar the torch engine uses (workers/grammar.py)
and hands them back (`set_logits`) for ONNX Runtime GenAI's sampler to draw from. Its own guidance
(GeneratorParams.set_guidance, llguidance) was tried first and dropped: it cuts the nucleus (top_p)
before it masks, so when no token the grammar allows is in the nucleus it draws from what is left,
which is noise (measured: a City schema at temperature 0.8, top_p 0.9, seed 14 turned into 1,000
tokens of stray Hebrew letters inside a string; the same request with top_p 1 ended in 46 tokens).
Masking first, then temperature and truncation, draws from the model's distribution over what the
grammar allows. Choosing with our sampler and appending the token instead cost 3x (a full-vocabulary
sort per token, and `append_tokens` at 16 ms against 11 for a whole plain step).
Log-probabilities are read from the logits before any mask; with `echo`, from the logits of the
whole prompt after it is appended.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime_genai as og
import structlog
import torch

from protocol import Adapter, AdapterLoaded, Delta, Generate, SamplingParams, Transcribe
from workers import logprobs
from workers.engines.base import Capabilities
from workers.engines.interleaved import InterleavedEngine
from workers.engines.onnx.lora import OnnxAdapters
from workers.engines.torch_sampling import RowSampler, choose_tokens
from workers.grammar import Grammars, mask_logits
from workers.prompts import prompt_ids
from workers.sequence import Sequence

log = structlog.get_logger()
PROVIDERS = {"cpu": None, "cuda": "cuda", "dml": "dml", "qnn": "QNN", "openvino": "OpenVINO"}


@dataclass
class _Running:
    seq: Sequence
    generator: Any  # og.Generator
    sampler: RowSampler | None  # set when the request needs rules ONNX Runtime GenAI lacks
    matcher: Any = None  # xgrammar's GrammarMatcher when it decodes under a grammar
    fresh: bool = True  # its prompt is not in the model yet
    adapter: str | None = None  # the LoRA adapter active on its Generator

    @property
    def request_id(self) -> str:
        return self.seq.request_id

    @property
    def done(self) -> bool:
        return self.seq.done


def _config(directory: Path, provider: str, threads: int) -> Any:
    config = og.Config(str(directory))
    options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
    config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
    name = PROVIDERS[provider]
    if name is not None:
        config.clear_providers()
        config.append_provider(name)
    return config


class OnnxEngine(InterleavedEngine[_Running]):
    def __init__(
        self,
        directory: Path,
        tokenizer: Any,
        provider: str,
        threads: int,
        max_batch: int,
        context_length: int,
        adapters: OnnxAdapters,
    ) -> None:
        super().__init__(max_batch)
        self.model = og.Model(_config(directory, provider, threads))
        self.adapters = adapters.bind(self.model, directory)
        self.tokenizer = tokenizer
        self.vocab_size = len(tokenizer)
        self.context_length = context_length
        self.eos_ids = {tokenizer.eos_token_id} - {None}
        self.capabilities = Capabilities(
            engine="onnx",
            device=provider,
            tasks=["chat", "completion"],
            max_batch=max_batch,
            context_length=context_length,
        )
        self.pieces = logprobs.Pieces(tokenizer)
        self.grammars = Grammars(tokenizer, self.vocab_size, self.eos_ids)
        log.info("onnx engine ready", provider=provider, threads=threads, directory=str(directory))

    def _decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def _generator(self, params: SamplingParams, prompt: list[int], budget: int) -> Any:
        # the worker has filled in the model's temperature and top_p where the request had none
        temperature = 1.0 if params.temperature is None else params.temperature
        top_p = 1.0 if params.top_p is None else params.top_p
        seed = params.seed if params.seed is not None else int.from_bytes(os.urandom(4), "little") >> 1
        options: dict[str, Any] = {
            "max_length": len(prompt) + budget,
            "do_sample": not params.greedy and temperature > 0,
            "repetition_penalty": params.repetition_penalty,
            "random_seed": seed % 2**31,
        }
        if options["do_sample"]:
            # top_k 0 is "off" to ONNX Runtime GenAI too (the whole vocabulary, same draws as
            # top_k = vocabulary size), and 2.4x faster here than spelling the vocabulary out
            options.update(temperature=temperature, top_p=top_p, top_k=params.top_k)
        if params.ignore_eos:
            options["min_length"] = len(prompt) + budget
        generator_params = og.GeneratorParams(self.model)
        generator_params.set_search_options(**options)
        return og.Generator(self.model, generator_params)

    # --- the Engine interface -----------------------------------------------------------

    def load_adapter(self, request_id: str, adapter: Adapter) -> AdapterLoaded:
        lora = self.adapters.get(adapter, self._adapters_in_use())
        return AdapterLoaded(request_id, adapter.name, lora.rank, lora.targets)

    def unload_adapter(self, name: str) -> None:
        if name not in self._adapters_in_use():  # a running Generator keeps its own until it ends
            self.adapters.unload(name)

    def _adapters_in_use(self) -> set[str]:
        return {r.adapter for r in [*self.running, *self.waiting] if r.adapter is not None}

    def add(self, request: Generate | Transcribe) -> None:
        assert isinstance(request, Generate)  # the gateway sends a model only its tasks
        if request.adapter is not None:
            self.load_adapter(request.request_id, request.adapter)
        ids = prompt_ids(self.tokenizer, request, self.vocab_size)
        seq = Sequence.start(request, ids, self.context_length, self._decode)
        p = request.params
        own_rules = p.min_p > 0.0 or p.presence_penalty != 0.0 or p.frequency_penalty != 0.0
        matcher = None if seq.grammar is None else self.grammars.matcher(seq.grammar)
        if seq.echo and seq.logprobs is None:
            seq.prompt_logprobs = logprobs.prompt_pieces(ids, self.pieces)
        sampler = RowSampler(p, ids) if own_rules else None
        generator = self._generator(p, ids, seq.budget)
        adapter = request.adapter.name if request.adapter is not None else None
        if adapter is not None:
            self.adapters.activate(generator, adapter)
        self.admit(_Running(seq, generator, sampler, matcher, adapter=adapter))

    def advance(self, row: _Running) -> Delta:
        generator, seq = row.generator, row.seq
        if row.fresh:
            generator.append_tokens(seq.prompt)
            row.fresh = False
            if seq.echo and seq.logprobs is not None:
                scores = generator.get_output("logits")
                seq.prompt_logprobs = logprobs.of_prompt(
                    torch.from_numpy(scores[0, :-1]), seq.prompt, seq.logprobs, self.pieces
                )
        scores = None
        if row.sampler is not None or row.matcher is not None or seq.logprobs is not None:
            raw = generator.get_logits()
            scores = torch.from_numpy(raw.reshape(-1, raw.shape[-1])[-1])
        allowed = scores
        if row.matcher is not None:
            assert scores is not None
            allowed = scores.clone().unsqueeze(0)
            mask_logits(allowed, [(0, row.matcher)])
            allowed = allowed[0]
        if row.sampler is None:
            if row.matcher is not None:  # its own sampler draws from what the grammar allows
                assert allowed is not None
                generator.set_logits(allowed.numpy().reshape(raw.shape))
            generator.generate_next_token()
            token = int(generator.get_next_tokens()[0])
        else:
            assert allowed is not None
            token = choose_tokens(allowed.unsqueeze(0), [row.sampler])[0]
            row.sampler.record(token)
            generator.append_tokens([token])
        if row.matcher is not None:
            row.matcher.accept_token(token)
        chosen = []
        if seq.logprobs is not None and scores is not None:
            chosen = [logprobs.of_logits(scores, token, seq.logprobs, self.pieces)]
        return seq.advance([token], self.eos_ids, chosen)
