"""A request as an OpenVINO GenAI GenerationConfig: its sampling parameters, its grammar, and
whether log-probabilities are read back.

Stop strings are not given to OpenVINO: the shared TextStream finds them (also across tokens) for
every engine alike, and the engine then stops the request. Whatever OpenVINO would refuse
(GenerationConfig.validate) is refused at admission with a 400 carrying its message. A JSON schema
goes to OpenVINO's own structured output (xgrammar inside it) after our copy of xgrammar compiled
it: a schema that fails inside OpenVINO's step fails every request of the pipeline with it, so
OpenVINO gets the grammar we made of the schema (workers/grammar.py).
OpenVINO gives each generated token's log-probability but no alternatives and none for the prompt,
so `top_logprobs` above 0 and `echo` with log-probabilities are refused.
"""

from __future__ import annotations

import secrets

import openvino_genai as ov_genai

from protocol import Generate, SamplingParams
from workers.engines.base import RequestError
from workers.grammar import Constraint, Grammars

_MIN_P_MAX = 0.9999  # OpenVINO wants min_p < 1; 1 means "only tokens as likely as the best"


def generation_config(
    request: Generate, budget: int, grammar: Constraint | None, grammars: Grammars
) -> ov_genai.GenerationConfig:
    config = sampling_config(request.params, budget)
    if request.logprobs is not None:
        if request.logprobs > 0:
            raise RequestError(
                400,
                "unsupported_parameter",
                "The openvino engine gives each token's log-probability but no alternatives: "
                "use top_logprobs 0 (completions: logprobs 0), or the torch or onnx engine.",
                "top_logprobs" if request.messages is not None else "logprobs",
            )
        if request.echo:
            raise RequestError(
                400,
                "unsupported_parameter",
                "The openvino engine gives no log-probabilities of prompt tokens: use the torch or "
                "onnx engine for echo with logprobs.",
                "echo",
            )
        config.logprobs = 1
    if grammar is not None:
        text = grammars.grammar_text(grammar)  # a 400 now, not a failed step later
        config.structured_output_config = ov_genai.StructuredOutputConfig(grammar=text)
    return config


def sampling_config(params: SamplingParams, budget: int) -> ov_genai.GenerationConfig:
    config = ov_genai.GenerationConfig()
    config.max_new_tokens = budget
    config.ignore_eos = params.ignore_eos
    config.repetition_penalty = params.repetition_penalty
    config.presence_penalty = params.presence_penalty
    config.frequency_penalty = params.frequency_penalty
    config.do_sample = not params.greedy
    if config.do_sample:
        config.temperature = params.temperature if params.temperature is not None else 1.0
        config.top_p = params.top_p if params.top_p is not None else 1.0
        if params.top_k > 0:
            config.top_k = params.top_k
        config.min_p = min(params.min_p, _MIN_P_MAX)
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        config.rng_seed = seed % 2**64
    try:
        config.validate()
    except RuntimeError as exc:
        message = str(exc).strip().splitlines()[-1]
        raise RequestError(
            400, "invalid_sampling", f"OpenVINO refused the sampling parameters: {message}"
        ) from exc
    return config
