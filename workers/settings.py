"""The worker's settings: flags over `ENGINEHOUSE_WORKER_*` environment variables."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from protocol.logs import LogFormat

# the weights an ONNX model is built with (workers/engines/onnx/convert.py)
OnnxPrecision = Literal["gguf", "int4", "fp16", "fp32"]
DEFAULT_CACHE_DIR = Path("~/.cache/enginehouse").expanduser()
WeightFormat = Literal["fp32", "fp16", "int8", "int4"]  # what optimum-intel writes for OpenVINO


def default_threads() -> int:
    """Every core: measured with the gateway and a load client running on 2 cores, 2 engine threads
    served 8 streams 30% faster than 1 and one stream as fast (docs/benchmarks.md). Several workers
    on one machine should split the cores between them (--threads)."""
    return os.cpu_count() or 1


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ENGINEHOUSE_WORKER_",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_prog_name="enginehouse worker",
    )

    model: str = Field(description="the model id this worker registers")
    source: str = Field(description="a model path, or pkg:PACKAGE/FILE inside an installed package")
    connect: Annotated[list[str], NoDecode] = Field(
        description="the gateway's router address, ipc://... or tcp://...; repeat it to serve several "
        "gateways (it registers with each; its max_batch is shared by all)",
    )
    engine: Literal["torch", "openvino", "onnx", "ctranslate2", "test"] = "torch"  # test: test_engine.py
    task: Literal["generate", "embedding", "rerank", "transcription"] = Field(
        "generate",
        description="what the model does; rerank: a cross-encoder (a *ForSequenceClassification "
        "directory), or an embedding model scoring by cosine similarity",
    )
    device: str = Field(
        "cpu",
        description="torch: cpu, cuda or auto; openvino: cpu, gpu, npu or auto (npu > gpu > cpu); "
        "onnx: the execution provider, cpu, cuda, dml, qnn or openvino",
    )
    max_batch: int = Field(8, ge=1, description="sequences decoded together in one step")
    context_length: int | None = Field(None, ge=16, description="cap the model's context (tokens)")
    prefill_chunk: int = Field(
        512, ge=16, description="most prompt tokens prefilled in one engine step (smaller: smoother streams)"
    )
    threads: int = Field(default_factory=default_threads, ge=1, description="CPU threads for the engine")
    cache_dir: Path = Field(
        DEFAULT_CACHE_DIR,
        description="models converted for an engine are kept here (OpenVINO IR, ONNX)",
    )
    max_adapters: int = Field(
        8, ge=1, description="torch: LoRA adapters kept loaded at once (past it the least recently used goes)"
    )
    prefix_cache_tokens: int = Field(
        2048,
        ge=0,
        description="torch: prompt KV kept for later requests that start the same way (a system "
        "prompt, earlier turns), in tokens (SmolLM2-135M in fp32: 46 KB a token); 0: none kept",
    )
    # --- openvino ---
    kv_cache_gb: float = Field(
        0.25,
        gt=0,
        description="openvino cpu/gpu: paged KV cache shared by all sequences, in GB (0.25: about "
        "20,000 tokens of SmolLM2-135M in u8, 11,000 in f16); with prefix caching the worker grows to "
        "it and stays there",
    )
    kv_cache_precision: str | None = Field(
        None,
        description="openvino: u8, f16 or f32 (default: the device's, u8 on a CPU and f16 on a GPU; f16 on a "
        "CPU without AVX-512, whose u8 kernels gave different greedy text for the same request)",
    )
    inference_precision: Literal["f32", "bf16", "f16"] = Field(
        "f32",
        description="openvino cpu: the precision of the float math, embeddings' too (f32: what the "
        "weights give; OpenVINO's own choice on a CPU with AVX-512 BF16 or AMX is bf16, which changes "
        "greedy text and embeddings)",
    )
    dynamic_quantization: bool = Field(
        True,
        description="openvino cpu: int8 activations (in groups of 32) in the matmuls of integer-coded "
        "weights on a CPU with VNNI or AMX, as llama.cpp multiplies its 4-bit blocks; of the default "
        "GGUF's IR every layer (its Q4_1 blocks' exact minimums are an integer zero point and a "
        "residual beside it). Measured: decode steps of 8 sequences 30-40% faster, one sequence as "
        "fast; the fixed text's score 0.004 nats/token from the GGUF de-quantized exactly, 96% top-1 "
        "agreement (off: 0.001, 99%)",
    )
    prefix_caching: bool = Field(
        True, description="openvino cpu/gpu: reuse KV blocks of repeated prompt prefixes"
    )
    openvino_weight_format: WeightFormat | None = Field(
        None,
        description="openvino: convert the source with optimum-intel to these weights on first start "
        "(make convert-tools; on an NPU symmetric, int4 channel-wise); left out, a GGUF keeps its own "
        "and a Hugging Face directory becomes int8",
    )
    adapter: Path | None = Field(
        None,
        description="openvino: serve the model with this PEFT LoRA adapter applied to every request "
        "(OpenVINO GenAI fixes a pipeline's adapters, so an adapter is a worker of its own; the source "
        "is exported with optimum-intel, which keeps the layer names the adapter targets)",
    )
    adapter_scale: float = Field(1.0, ge=0.0, description="openvino: the --adapter's scale")
    npu_max_prompt_len: int = Field(
        1024, ge=64, description="openvino npu: longest prompt (rounded up to 64)"
    )
    npu_min_response_len: int = Field(128, ge=1, description="openvino npu: tokens always left to generate")
    compiled_cache_dir: Path | None = Field(
        None, description="openvino gpu/npu: compiled models kept here (default: CACHE_DIR/openvino-compiled)"
    )
    # --- onnx ---
    onnx_precision: OnnxPrecision | None = Field(
        None,
        description="onnx: the weights of a converted source; gguf: a GGUF's own Q4_1/Q8_0 blocks "
        "(the default for a GGUF), int4/fp16/fp32: what the model builder writes (int4 otherwise)",
    )
    # --- ctranslate2 (speech to text) ---
    compute_type: str = Field(
        "int8",
        description="ctranslate2: the weights' type at run time (int8, int8_float32, float32, float16...)",
    )
    beam_size: int = Field(1, ge=1, le=16, description="ctranslate2: Whisper's beam (1: greedy, the fastest)")
    adapter_shape: Path | None = Field(
        None,
        description="onnx: build the model (fp32) with LoRA inputs of this PEFT adapter's rank and layers, "
        "so that adapters of that shape are served, each request its own",
    )
    temperature: float = Field(1.0, ge=0.0, description="default for requests that leave it out")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="default for requests that leave it out")
    # --- a remote worker's CurveZMQ keys (files from `enginehouse keys`) ---
    curve_key: Path | None = Field(None, description="this worker's key pair (worker.key_secret)")
    curve_server_key: Path | None = Field(None, description="the gateway's public key (server.key)")
    worker_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    parent_pid: int | None = Field(None, description="exit when this process is gone (set by the gateway)")
    heartbeat_interval: float = Field(1.0, gt=0)
    log_format: LogFormat = "auto"
    log_level: str = "info"

    @field_validator("connect", mode="before")
    @classmethod
    def _addresses(cls, value: object) -> object:
        """One address, several (repeated flag, or comma-separated in the environment)."""
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value
