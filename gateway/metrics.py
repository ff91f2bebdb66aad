"""Prometheus metrics, one registry per app. Labels are bounded: route templates, model ids and
status codes, never request ids or client addresses.

Request timings are observed by the handlers; what the router counts per model (tokens, cancels,
engine steps, batch sizes, running and queued sequences) is read from it at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.router import Router

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TOKEN_GAP = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5)
# ModelState counter → (metric, help); exposed as <metric>_total{model}
_MODEL_COUNTERS = {
    "prompt_tokens": ("enginehouse_prompt_tokens", "Prompt tokens of finished requests"),
    "completion_tokens": ("enginehouse_completion_tokens", "Tokens generated for finished requests"),
    "tokens_generated": ("enginehouse_tokens_generated", "Tokens generated, cancelled requests' too"),
    "cancelled": ("enginehouse_cancelled", "Requests cancelled at the worker (client gone, timeout)"),
    "steps": ("enginehouse_engine_steps", "Engine steps"),
    "restarts": ("enginehouse_worker_restarts", "Workers started again after one exited"),
}
MODEL_STATES = ("registered", "loading", "ready")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "enginehouse_requests",
            "HTTP requests answered (model: the served model asked for, else empty)",
            ["route", "model", "status"],
            registry=r,
        )
        self.rate_limited = Counter(
            "enginehouse_rate_limited_requests", "Requests refused with 429", registry=r
        )
        self.shared_limits_up = Gauge(
            "enginehouse_shared_limits_up",
            "1 while the rate limits are shared in Redis (--redis-url), 0 while this gateway uses its own",
            registry=r,
        )
        self.ttft = Histogram(
            "enginehouse_time_to_first_token_seconds",
            "Time to first token",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.itl = Histogram(
            "enginehouse_inter_token_latency_seconds",
            "Time between a request's deltas",
            ["model"],
            buckets=_TOKEN_GAP,
            registry=r,
        )
        self.e2e = Histogram(
            "enginehouse_request_duration_seconds",
            "Generation requests, start to end",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )

        self.audio_seconds = Counter(
            "enginehouse_audio_seconds",
            "Seconds of audio transcribed (finished requests)",
            ["model"],
            registry=r,
        )
        self.realtime_factor = Histogram(
            "enginehouse_transcription_realtime_factor",
            "Audio seconds transcribed per wall second, per request (above 1: faster than real time)",
            ["model"],
            buckets=(0.5, 1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.documents_reranked = Counter(
            "enginehouse_documents_reranked", "Documents scored by rerank requests", ["model"], registry=r
        )

    def watch(self, router: Router) -> None:
        self.registry.register(_RouterCollector(router))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def as_json(self) -> dict[str, list[dict[str, object]]]:
        """The same figures as /metrics: each metric's samples with their labels."""
        return {
            family.name: [
                {"name": sample.name, "labels": sample.labels, "value": sample.value}
                for sample in family.samples
            ]
            for family in self.registry.collect()
        }


class _RouterCollector(Collector):
    def __init__(self, router: Router) -> None:
        self.router = router

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        model = ["model"]
        running = GaugeMetricFamily("enginehouse_running_sequences", "Sequences in a batch", labels=model)
        queued = GaugeMetricFamily(
            "enginehouse_queued_requests", "Requests waiting for a batch slot", labels=model
        )
        workers = GaugeMetricFamily("enginehouse_workers", "Registered workers", labels=model)
        states = GaugeMetricFamily(
            "enginehouse_model_state", "1 for the state each model is in", labels=["model", "state"]
        )
        batch = CounterMetricFamily(
            "enginehouse_engine_steps_by_batch_size",
            "Engine steps that advanced this many sequences",
            labels=["model", "batch_size"],
        )
        counters = {
            attr: CounterMetricFamily(metric, text, labels=model)
            for attr, (metric, text) in _MODEL_COUNTERS.items()
        }
        for name, state in self.router.models.items():
            replicas = state.workers.values()
            running.add_metric([name], sum(w.running for w in replicas))
            queued.add_metric([name], sum(w.waiting for w in replicas))
            workers.add_metric([name], len(replicas))
            for model_state in MODEL_STATES:
                states.add_metric([name, model_state], float(state.state == model_state))
            for size, count in state.steps_by_batch_size.items():
                batch.add_metric([name, str(size)], count)
            for counter, family in counters.items():
                family.add_metric([name], getattr(state, counter))
        yield from (running, queued, workers, states, batch, *counters.values())
