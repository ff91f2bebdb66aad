"""Our sampling parameters as an OpenVINO GenAI GenerationConfig.

Stop strings are not given to OpenVINO: the shared TextStream finds them (also across tokens) for
every engine alike, and the engine then stops the request. Whatever OpenVINO would refuse
(GenerationConfig.validate) is refused at admission with a 400 carrying its message.
"""

from __future__ import annotations

import secrets

import openvino_genai as ov_genai

from protocol import SamplingParams
from workers.engines.base import RequestError

_MIN_P_MAX = 0.9999  # OpenVINO wants min_p < 1; 1 means "only tokens as likely as the best"


def generation_config(params: SamplingParams, budget: int) -> ov_genai.GenerationConfig:
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
