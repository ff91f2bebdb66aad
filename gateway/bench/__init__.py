"""`enginehouse bench`: a load client for any OpenAI-compatible server (ours, llama.cpp's, vLLM,
Ollama), in the manner of `vllm bench serve`: settings, the requests and their SSE, the load,
the statistics, the plot."""

from __future__ import annotations

import asyncio
import dataclasses
import sys

from msgspec import json

from gateway.bench import requests
from gateway.bench.load import run
from gateway.bench.settings import BenchSettings
from gateway.bench.stats import Report
from protocol.settings import parse_settings

__all__ = ["BenchSettings", "Report", "main", "run"]


def main(argv: list[str]) -> int:
    settings = parse_settings(BenchSettings, argv)
    samples: list[requests.Sample] = []
    try:
        report = asyncio.run(run(settings, samples))
    except (ValueError, OSError) as exc:  # a bad prompts file: the reason, not a traceback
        raise SystemExit(f"enginehouse bench: {exc}") from None
    print(report.text())
    if settings.json_out:
        settings.json_out.write_bytes(
            json.encode({"settings": _echo(settings), **dataclasses.asdict(report)})
        )
    if settings.plot:
        from gateway.bench.plot import draw

        draw(
            settings.plot,
            samples,
            report,
            f"{settings.model}, {settings.endpoint}, concurrency {settings.concurrency}",
        )
    return 0 if report.failed == 0 else 1


def _echo(settings: BenchSettings) -> dict[str, object]:
    return {k: str(v) if v is not None else None for k, v in settings.model_dump(exclude={"api_key"}).items()}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
