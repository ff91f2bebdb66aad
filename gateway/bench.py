"""`enginehouse bench`: a streaming load client for any OpenAI-compatible server.

It uses aiohttp with a connector as large as the concurrency (the openai client collapses under
load), parses SSE itself, and counts output tokens from the server's own usage figures.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

import aiohttp
from msgspec import json
from pydantic import Field
from pydantic_settings import BaseSettings, CliApp, SettingsConfigDict

DEFAULT_PROMPT = "Write a long story about a lighthouse keeper and a storm."


class BenchSettings(BaseSettings):
    model_config = SettingsConfigDict(
        cli_kebab_case=True, cli_implicit_flags=True, cli_prog_name="enginehouse bench"
    )

    url: str = Field("http://127.0.0.1:8000", description="the server's base URL, without /v1")
    model: str = "smollm2-135m-instruct"
    endpoint: Literal["chat", "completions"] = "chat"
    api_key: str | None = None
    concurrency: int = Field(1, ge=1)
    num_requests: int | None = Field(None, ge=1, description="default: the concurrency")
    max_tokens: int = Field(128, ge=1)
    ignore_eos: bool = True
    prompt: str = DEFAULT_PROMPT
    json_out: str | None = Field(None, description="write the report as JSON to this file")


@dataclass
class Sample:
    ok: bool
    started: float
    first: float | None = None
    ended: float = 0.0
    output_tokens: int = 0
    error: str | None = None


@dataclass
class Report:
    concurrency: int
    completed: int
    failed: int
    duration_s: float
    output_tokens: int
    output_tok_s: float
    ttft_ms_mean: float
    ttft_ms_median: float
    tpot_ms_mean: float
    errors: list[str] = field(default_factory=list)

    def text(self) -> str:
        return (
            f"concurrency {self.concurrency}: {self.completed} ok, {self.failed} failed in "
            f"{self.duration_s:.2f} s; {self.output_tokens} output tokens, "
            f"{self.output_tok_s:.1f} tok/s; "
            f"TTFT mean {self.ttft_ms_mean:.0f} ms (median {self.ttft_ms_median:.0f}); "
            f"TPOT mean {self.tpot_ms_mean:.1f} ms"
        )


def _body(s: BenchSettings) -> dict[str, object]:
    body: dict[str, object] = {
        "model": s.model,
        "max_tokens": s.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": s.ignore_eos,
    }
    if s.endpoint == "chat":
        body["messages"] = [{"role": "user", "content": s.prompt}]
    else:
        body["prompt"] = s.prompt
    return body


async def _one(session: aiohttp.ClientSession, url: str, body: dict[str, object]) -> Sample:
    sample = Sample(ok=False, started=time.perf_counter())
    try:
        async with session.post(url, json=body) as response:
            if response.status != 200:
                sample.error = f"HTTP {response.status}"
                return sample
            async for line in response.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                event = json.decode(line[6:])
                if "error" in event:
                    sample.error = str(event["error"].get("code"))
                    return sample
                if event.get("usage"):
                    sample.output_tokens = event["usage"]["completion_tokens"]
                elif sample.first is None and any(
                    c.get("text") or c.get("delta", {}).get("content") for c in event["choices"]
                ):
                    sample.first = time.perf_counter()
        sample.ok = True
    except aiohttp.ClientError as exc:
        sample.error = type(exc).__name__
    finally:
        sample.ended = time.perf_counter()
    return sample


async def run(s: BenchSettings) -> Report:
    total = s.num_requests or s.concurrency
    path = "/v1/chat/completions" if s.endpoint == "chat" else "/v1/completions"
    headers = {"Authorization": f"Bearer {s.api_key}"} if s.api_key else {}
    pending = iter(range(total))
    samples: list[Sample] = []
    connector = aiohttp.TCPConnector(limit=s.concurrency)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:

        async def lane() -> None:
            for _ in pending:
                samples.append(await _one(session, s.url + path, _body(s)))

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(s.concurrency)))
        duration = time.perf_counter() - started
    ok = [x for x in samples if x.ok]
    ttft = [(x.first - x.started) * 1000 for x in ok if x.first]
    tpot = [(x.ended - x.first) * 1000 / (x.output_tokens - 1) for x in ok if x.first and x.output_tokens > 1]
    tokens = sum(x.output_tokens for x in ok)
    return Report(
        concurrency=s.concurrency,
        completed=len(ok),
        failed=len(samples) - len(ok),
        duration_s=duration,
        output_tokens=tokens,
        output_tok_s=tokens / duration,
        ttft_ms_mean=statistics.fmean(ttft) if ttft else 0.0,
        ttft_ms_median=statistics.median(ttft) if ttft else 0.0,
        tpot_ms_mean=statistics.fmean(tpot) if tpot else 0.0,
        errors=sorted({x.error for x in samples if x.error}),
    )


def main(argv: list[str]) -> int:
    settings = CliApp.run(BenchSettings, cli_args=argv)
    report = asyncio.run(run(settings))
    print(report.text())
    if settings.json_out:
        with open(settings.json_out, "wb") as f:
            f.write(json.encode(asdict(report)))
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
