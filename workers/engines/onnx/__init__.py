"""The ONNX engine: ONNX Runtime GenAI for generation, ONNX Runtime for embeddings. The execution
provider is the `device` setting: cpu (the default), cuda, dml, qnn or openvino."""

from __future__ import annotations

import structlog

from workers.engines.base import Engine
from workers.engines.cross_encoder import is_cross_encoder
from workers.engines.onnx.convert import build, genai_context_length
from workers.engines.onnx.lora import OnnxAdapters
from workers.model_files import load_tokenizer
from workers.settings import WorkerSettings
from workers.sources import resolve

log = structlog.get_logger()


def load(settings: WorkerSettings) -> Engine:
    source = resolve(settings.source)
    provider = "cpu" if settings.device == "auto" else settings.device.lower()
    if settings.task == "rerank" and is_cross_encoder(source):
        from workers.engines.onnx.encoder import OnnxCrossEncoder

        return OnnxCrossEncoder(source, provider, settings.threads, settings.cache_dir)
    if settings.task in ("embedding", "rerank"):
        from workers.engines.onnx.encoder import OnnxEmbedder

        return OnnxEmbedder(source, provider, settings.threads, settings.cache_dir)
    from workers.engines.onnx.generation import PROVIDERS, OnnxEngine

    if provider not in PROVIDERS:
        raise ValueError(f"the onnx engine runs on {', '.join(PROVIDERS)}; not on {settings.device!r}")
    if not (source / "genai_config.json").is_file():
        source = build(
            source,
            settings.cache_dir,
            settings.onnx_precision,
            say=lambda text: log.info(text),
            adapter_shape=settings.adapter_shape,
        )
    length = min(genai_context_length(source), settings.context_length or 1 << 62)
    return OnnxEngine(
        source,
        load_tokenizer(source),
        provider,
        settings.threads,
        settings.max_batch,
        length,
        OnnxAdapters(settings.cache_dir, settings.max_adapters),
    )
