"""The OpenVINO engine: ContinuousBatchingPipeline on the CPU or a GPU, LLMPipeline on an NPU,
and the encoder of an embedding model as OpenVINO IR."""

from __future__ import annotations

import json
from pathlib import Path

import openvino as ov
import structlog

from workers.engines.base import Engine
from workers.engines.cross_encoder import is_cross_encoder
from workers.engines.openvino.convert import IR_FILE, export, ir_directory
from workers.engines.openvino.device import (
    NpuShape,
    batching_properties,
    choose_device,
    compile_properties,
    devices_to_choose_from,
    kv_cache_blocks,
    kv_cache_precision,
    npu_properties,
)
from workers.model_cache import convert_apart
from workers.model_files import context_length, load_tokenizer_meanwhile
from workers.settings import WorkerSettings
from workers.sources import resolve

log = structlog.get_logger()
# an adapter's base, exported by optimum-intel: fp16 gave answers equal to transformers + PEFT in fp32
ADAPTER_WEIGHTS = "fp16"


def load(settings: WorkerSettings) -> Engine:
    source = resolve(settings.source)
    available = devices_to_choose_from(settings.device, ov.Core())
    device = choose_device(settings.device, available)
    log.info("openvino device chosen", requested=settings.device, device=device, available=available)
    properties = compile_properties(device, settings)
    if settings.task == "rerank" and is_cross_encoder(source):
        from workers.engines.openvino.encoder import OpenVINOCrossEncoder

        return OpenVINOCrossEncoder(source, device, properties, settings.cache_dir)
    if settings.task in ("embedding", "rerank"):
        from workers.engines.openvino.encoder import OpenVINOEmbedder

        return OpenVINOEmbedder(source, device, properties, settings.cache_dir)
    source = ir_to_serve(source, settings, npu=device == "NPU")
    tokenizer = load_tokenizer_meanwhile(source)
    compiled = settings.compiled_cache_dir or settings.cache_dir / "openvino-compiled"
    if device == "NPU":
        from workers.engines.openvino.npu import NpuEngine

        shape = NpuShape.aligned(settings.npu_max_prompt_len, settings.npu_min_response_len)
        return NpuEngine(source, tokenizer, device, shape, npu_properties(shape, compiled))
    from workers.engines.openvino.batching import BatchingEngine, SchedulerOptions

    if not (source / "config.json").is_file():
        raise ValueError(f"{source} has no config.json: the KV cache is sized from the model's shape")
    config = json.loads((source / "config.json").read_text())
    precision = kv_cache_precision(device, settings.kv_cache_precision)
    settings = settings.model_copy(update={"kv_cache_precision": precision})
    adapter = None
    if settings.adapter is not None:
        from workers.engines.openvino.lora import adapter_config

        adapter = adapter_config(settings.adapter, settings.adapter_scale, source, config)
    scheduler = SchedulerOptions(
        kv_blocks=kv_cache_blocks(config, device, settings.kv_cache_precision, settings.kv_cache_gb),
        max_batch=settings.max_batch,
        max_batched_tokens=settings.prefill_chunk,
        prefix_caching=settings.prefix_caching,
    )
    properties = batching_properties(device, settings, compiled)
    length = min(context_length(source), settings.context_length or 1 << 62)
    return BatchingEngine(source, tokenizer, device, scheduler, properties, length, adapter)


def ir_to_serve(source: Path, settings: WorkerSettings, npu: bool) -> Path:
    """The IR directory to serve: the source if it is one, else its conversion in the cache (a GGUF
    with its own weights unless a weight format or an adapter is set, a Hugging Face directory with
    optimum-intel)."""
    if (source / IR_FILE).is_file():
        return source
    if source.suffix == ".gguf" and settings.openvino_weight_format is None and settings.adapter is None:
        target = ir_directory(settings.cache_dir, source)
        if not (target / IR_FILE).exists():
            convert_apart(source, "openvino", settings.cache_dir)
        return target
    if not (source / "config.json").is_file() and source.suffix != ".gguf":
        raise ValueError(f"{source} is neither OpenVINO IR, a GGUF file nor a Hugging Face directory")
    # an adapter needs the layers' names, which only optimum-intel's export keeps
    weights = settings.openvino_weight_format or (ADAPTER_WEIGHTS if settings.adapter else "int8")
    return export(source, settings.cache_dir, weights, npu, say=lambda text: log.info(text))
