"""Which OpenVINO device a worker uses, and the properties each kind of pipeline is built with.

Plain functions of the configuration, so what the NPU would be given is tested on machines that
have none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from workers.settings import WorkerSettings

NPU_PROMPT_ALIGN = 64  # the NPU plugin compiles prompt lengths in multiples of this
KV_BLOCK_TOKENS = {"CPU": 32, "GPU": 16}  # tokens in one paged-attention block (checked on the CPU)
# bytes a cached K or V element takes; u8 also keeps a f32 scale and zero point per token and head
KV_ELEMENT_BYTES = {"u8": 1 + 8 / 64, "i8": 1 + 8 / 64, "f16": 2.0, "bf16": 2.0, "f32": 4.0}
DEFAULT_KV_PRECISION = {"CPU": "u8", "GPU": "f16"}
# OpenVINO's CPU plugin runs paged attention with kernels built per instruction set (AVX-512 and
# AVX2). Its AVX2 u8 KV kernels were not deterministic: on an AMD EPYC without AVX-512, greedy
# answers to the same 8 prompts differed run to run (1 of 8, the cache's prefix blocks reused) and
# from the same prompt alone (2-3 of 24); f16 and f32 gave equal text every time, as fast.
AVX2_KV_PRECISION = "f16"


def devices_to_choose_from(requested: str, core) -> list[str]:
    """The devices `choose_device` needs to see: every one for `auto`, else only the named one when
    it is there. Listing every device loads every plugin: a CPU worker held the GPU plugin, ~28 MB."""
    wanted = requested.upper()
    if wanted != "AUTO":
        try:
            core.get_property(wanted, "FULL_DEVICE_NAME")
            return [wanted]
        except RuntimeError:  # not there: the list says what is
            pass
    return core.available_devices


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


def kv_cache_precision(device: str, requested: str | None, cpu_flags: set[str] | None = None) -> str | None:
    """The KV cache's element type: the one asked for; f16 on a CPU without AVX-512 (where the
    plugin's u8 kernels are the AVX2 ones, see AVX2_KV_PRECISION); else None, the device's own
    (DEFAULT_KV_PRECISION). `cpu_flags`: /proc/cpuinfo's, read when not given."""
    if requested is not None or device.split(".")[0] != "CPU":
        return requested
    flags = _cpu_flags() if cpu_flags is None else cpu_flags
    return None if not flags or "avx512f" in flags else AVX2_KV_PRECISION


def _cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo does not say."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def kv_cache_blocks(config: dict, device: str, precision: str | None, gigabytes: float) -> int:
    """How many paged KV blocks fit in `gigabytes` for a model with this config.json on this device.

    The pipeline's own `cache_size` takes whole GB only, and it allocates blocks as they are first
    used; with prefix caching it keeps them, so the worker grows until the whole cache is in use.
    Counting blocks lets the cache be sized to what a small model needs, so it is full early.
    """
    kind = device.split(".")[0]
    heads = config.get("num_key_value_heads") or config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    element = KV_ELEMENT_BYTES[(precision or DEFAULT_KV_PRECISION.get(kind, "f16")).lower()]
    token_bytes = config["num_hidden_layers"] * 2 * heads * head_dim * element
    block_bytes = token_bytes * KV_BLOCK_TOKENS.get(kind, 16)
    return max(1, int(gigabytes * (1 << 30) / block_bytes))


def compile_properties(device: str, settings: WorkerSettings) -> dict:
    """What every model compiled for this device is built with: on the CPU its threads, the
    precision of its float math and whether activations are quantized. OpenVINO's own defaults on a
    CPU with AVX-512 BF16 (or AMX) and VNNI are bf16 and int8 activations in groups of 32: bf16
    changed the greedy answers and moved embeddings by 1e-3 (measured on an AVX-512 EPYC), so the
    float math is f32; the int8 activations are kept (settings.dynamic_quantization: the matmuls of
    integer-coded weights only, measured in faithfulness.py)."""
    if device != "CPU":
        return {}
    return {
        "INFERENCE_NUM_THREADS": settings.threads,
        "INFERENCE_PRECISION_HINT": settings.inference_precision,
        "DYNAMIC_QUANTIZATION_GROUP_SIZE": 32 if settings.dynamic_quantization else 0,
    }


def batching_properties(device: str, settings: WorkerSettings, cache_dir: Path | None) -> dict:
    """Properties of a ContinuousBatchingPipeline on the CPU or a GPU."""
    props = compile_properties(device, settings)
    if settings.kv_cache_precision:
        props["KV_CACHE_PRECISION"] = settings.kv_cache_precision
    # compiling for a GPU takes a while: keep it. Not for the CPU: its plugin cannot import the blob
    # of a model with PagedAttention (measured, OpenVINO 2026.4: "Runtime info k_head_size and
    # num_k_heads are required", lost in the blob), so OpenVINO would compile again on every start
    # and rewrite a 147 MB file (the same 3.5-3.9 s to a pipeline with or without it)
    if cache_dir is not None and device != "CPU":
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
