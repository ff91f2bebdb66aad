"""One module per engine behind the one interface in base.py; each is imported only when chosen."""

from __future__ import annotations

from workers.engines.base import Engine
from workers.settings import WorkerSettings
from workers.sources import resolve


def load_engine(settings: WorkerSettings) -> Engine:
    if settings.engine == "test":  # only by explicit configuration: see test_engine.py
        from workers.engines.test_engine import TestTokenEngine

        return TestTokenEngine(settings.max_batch)
    if settings.engine == "torch" and settings.task == "embedding":
        from workers.engines.torch_embeddings import TorchEmbedder

        return TorchEmbedder(resolve(settings.source), settings.device, settings.threads)
    if settings.engine == "torch":
        from workers.engines.torch_engine import TorchEngine

        return TorchEngine(
            resolve(settings.source),
            settings.device,
            settings.max_batch,
            settings.threads,
            settings.context_length,
            settings.prefill_chunk,
        )
    if settings.engine == "openvino":
        from workers.engines.openvino import load

        return load(settings)
    if settings.engine == "onnx":
        from workers.engines.onnx import load as load_onnx

        return load_onnx(settings)
    raise ValueError(f"unknown engine {settings.engine!r}")
