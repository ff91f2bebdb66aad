"""One module per engine behind the one interface in base.py; each is imported only when chosen."""

from __future__ import annotations

from workers.engines.base import Engine
from workers.engines.cross_encoder import is_cross_encoder
from workers.settings import WorkerSettings
from workers.sources import resolve


def load_engine(settings: WorkerSettings) -> Engine:
    if settings.engine == "test":  # only by explicit configuration: see test_engine.py
        from workers.engines.test_engine import TestTokenEngine

        return TestTokenEngine(settings.max_batch)
    if settings.engine == "ctranslate2" or settings.task == "transcription":
        return _speech(settings)
    if settings.engine == "torch" and settings.task in ("embedding", "rerank"):
        from workers.engines.torch_encoder import TorchCrossEncoder, TorchEmbedder

        source = resolve(settings.source)
        cross = settings.task == "rerank" and is_cross_encoder(source)
        return (TorchCrossEncoder if cross else TorchEmbedder)(source, settings.device, settings.threads)
    if settings.engine == "torch":
        from workers.engines.torch_engine import TorchEngine

        return TorchEngine(
            resolve(settings.source),
            settings.device,
            settings.max_batch,
            settings.threads,
            settings.context_length,
            settings.prefill_chunk,
            settings.max_adapters,
            settings.cache_dir,
            settings.prefix_cache_tokens,
        )
    if settings.engine == "openvino":
        from workers.engines.openvino import load

        return load(settings)
    if settings.engine == "onnx":
        from workers.engines.onnx import load as load_onnx

        return load_onnx(settings)
    raise ValueError(f"unknown engine {settings.engine!r}")


def _speech(settings: WorkerSettings) -> Engine:
    if settings.engine != "ctranslate2" or settings.task != "transcription":
        raise ValueError('speech to text: engine = "ctranslate2" with task = "transcription"')
    from workers.engines.speech import SpeechEngine
    from workers.split_weights import joined

    model_dir = joined(resolve(settings.source), settings.cache_dir, known=settings.model)
    return SpeechEngine(
        model_dir,
        settings.device,
        settings.threads,
        settings.compute_type,
        settings.beam_size,
        settings.max_batch,
    )
