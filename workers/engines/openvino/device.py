"""Which OpenVINO device a worker uses, and the properties each kind of pipeline is built with.

Plain functions of the configuration, so what the NPU would be given is tested on machines that
have none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

NPU_PROMPT_ALIGN = 64  # the NPU plugin compiles prompt lengths in multiples of this


def choose_device(requested: str, available: Sequence[str]) -> str:
    """`auto`: the NPU if there is one, else a GPU, else the CPU. A named device must be present.

    `available` is `openvino.Core().available_devices`: names like CPU, GPU, GPU.0, GPU.1, NPU.
    """
    wanted = requested.upper()
    kinds = {name.split(".")[0] for name in available}
    if wanted == "AUTO":
        return "NPU" if "NPU" in kinds else "GPU" if "GPU" in kinds else "CPU"
    if wanted.split(".")[0] not in kinds and wanted not in available:
        raise ValueError(
            f"OpenVINO sees no {requested!r} device here (it sees: {', '.join(available) or 'none'})"
        )
    return wanted


@dataclass(frozen=True)
class NpuShape:
    """The static shapes the NPU compiles: prompts up to max_prompt_len tokens (a multiple of 64),
    then at least min_response_len generated tokens."""

    max_prompt_len: int
    min_response_len: int

    @classmethod
    def aligned(cls, max_prompt_len: int, min_response_len: int) -> NpuShape:
        rounded = -(-max_prompt_len // NPU_PROMPT_ALIGN) * NPU_PROMPT_ALIGN
        return cls(rounded, min_response_len)

    @property
    def context_length(self) -> int:
        return self.max_prompt_len + self.min_response_len


def batching_properties(device: str, threads: int, cache_dir: Path | None, kv_precision: str | None) -> dict:
    """Properties of a ContinuousBatchingPipeline on the CPU or a GPU."""
    props: dict[str, object] = {}
    if device == "CPU":
        props["INFERENCE_NUM_THREADS"] = threads
    if kv_precision:
        props["KV_CACHE_PRECISION"] = kv_precision
    if cache_dir is not None and device != "CPU":  # compiling for a GPU takes a while: keep it
        props["CACHE_DIR"] = str(cache_dir)
    return props


def npu_properties(shape: NpuShape, cache_dir: Path | None) -> dict:
    """Properties of an LLMPipeline on the NPU: its static shapes and the compiled-model cache."""
    props: dict[str, object] = {
        "MAX_PROMPT_LEN": shape.max_prompt_len,
        "MIN_RESPONSE_LEN": shape.min_response_len,
    }
    if cache_dir is not None:
        props["CACHE_DIR"] = str(cache_dir)
    return props
