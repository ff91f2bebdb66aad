"""One benchmark request: its body, the SSE stream read line by line (no client library), and what
it measured: when it started, each piece's arrival, the end, the token counts, how it failed."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import aiohttp
import msgspec

from gateway.bench.settings import BenchSettings

STORY = (
    "the lighthouse keeper watched a storm roll over the harbour while ships turned home and gulls "
    "circled the old stone tower as rain began to fall on the quiet town below the cliffs"
)


_WORDS = STORY.split(" ")


@dataclass
class Prompt:
    body: dict[str, object]  # prompt or messages (or input, query and documents, a form's fields)
    expected_tokens: int
    audio: bytes | None = None  # transcriptions: the file, sent as multipart/form-data


@dataclass
class Sample:
    started: float
    ok: bool = False
    rate_limited: bool = False  # answered 429: counted apart from the errors
    retry_after: float | None = None
    arrivals: list[float] = field(default_factory=list)  # a timestamp per content event
    ended: float = 0.0
    units: float = 0.0  # rerank: documents scored; transcriptions: seconds of audio
    prompt_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None

    @property
    def ttft(self) -> float | None:
        return self.arrivals[0] - self.started if self.arrivals else None


def prompts(s: BenchSettings) -> list[Prompt]:
    """The request bodies, from --prompts or the built-in set (--input-len words, seeded)."""
    if s.endpoint == "transcriptions":
        if s.audio is None:
            raise ValueError("--endpoint transcriptions sends an audio file: give it with --audio FILE")
        return [Prompt({"model": s.model}, 0, s.audio.read_bytes())]
    if s.prompts is not None:
        return [_from_line(line, s) for line in s.prompts.read_text().splitlines() if line.strip()]
    rng = random.Random(s.seed)
    made = []
    for _ in range(64):
        words = " ".join(rng.choice(_WORDS) for _ in range(s.input_len))
        made.append(_from_text(f"Continue this story: {words}", s.max_tokens, s))
    if s.endpoint == "rerank":  # each built-in text a document, queried by another
        texts = [str(p.body["input"]) for p in made]
        return [
            Prompt(
                {
                    "model": s.model,
                    "query": texts[i],
                    "documents": [texts[(i + k) % 64] for k in range(1, s.documents + 1)],
                },
                0,
            )
            for i in range(64)
        ]
    return made


def _from_line(line: str, s: BenchSettings) -> Prompt:
    item = json.loads(line)
    max_tokens = int(item.get("max_tokens", s.max_tokens))
    if "messages" in item and s.endpoint == "chat":
        return Prompt(_generation_body({"messages": item["messages"]}, max_tokens, s), max_tokens)
    text = item.get("prompt")
    if not isinstance(text, str):
        raise ValueError(f'each line of {s.prompts} needs "prompt" (or "messages" for chat): {line[:80]}')
    return _from_text(text, max_tokens, s)


def _from_text(text: str, max_tokens: int, s: BenchSettings) -> Prompt:
    if s.endpoint in ("embeddings", "rerank"):
        return Prompt({"model": s.model, "input": text}, 0)
    given = {"messages": [{"role": "user", "content": text}]} if s.endpoint == "chat" else {"prompt": text}
    return Prompt(_generation_body(given, max_tokens, s), max_tokens)


def _generation_body(given: dict[str, object], max_tokens: int, s: BenchSettings) -> dict[str, object]:
    body = {
        "model": s.model,
        **given,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": s.ignore_eos,
    }
    if s.temperature is not None:
        body["temperature"] = s.temperature
    if s.json_schema is not None:
        schema = json.loads(s.json_schema.read_text())
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "bench", "schema": schema}}
    return body


def read_events(sample: Sample, lines: Iterable[bytes], now: float | None = None) -> None:
    """Fold SSE lines into the sample: a content event is an arrival (timestamped now), the usage
    event gives the token counts, an error event fails it. Used on the live stream line by line."""
    for line in lines:
        if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
            continue
        event = msgspec.json.decode(line[6:])
        if "error" in event:
            sample.error = str(event["error"].get("code") or event["error"].get("message"))
            return
        if event.get("usage"):
            sample.prompt_tokens = event["usage"]["prompt_tokens"]
            sample.output_tokens = event["usage"]["completion_tokens"]
        for choice in event.get("choices") or ():
            if choice.get("text") or (choice.get("delta") or {}).get("content"):
                sample.arrivals.append(time.perf_counter() if now is None else now)
                break


async def send(session: aiohttp.ClientSession, url: str, prompt: Prompt, s: BenchSettings) -> Sample:
    """One request; with --respect-rate-limit a 429 waits its Retry-After and goes again."""
    backoff = 1.0
    while True:
        sample = await _once(session, url, prompt, s)
        if not (sample.rate_limited and s.respect_rate_limit):
            return sample
        await asyncio.sleep(sample.retry_after or backoff)
        backoff = min(backoff * 2, 30.0)


async def _once(session: aiohttp.ClientSession, url: str, prompt: Prompt, s: BenchSettings) -> Sample:
    sample = Sample(started=time.perf_counter())
    try:
        if prompt.audio is not None:
            form = aiohttp.FormData(prompt.body)
            form.add_field("file", prompt.audio, filename="audio", content_type="application/octet-stream")
            sent = session.post(url, data=form)
        else:
            sent = session.post(url, json=prompt.body)
        async with sent as response:
            if response.status == 429:
                sample.rate_limited = True
                retry_after = response.headers.get("Retry-After", "")
                sample.retry_after = float(retry_after) if retry_after.isdigit() else None
                return sample
            if response.status != 200:
                sample.error = f"HTTP {response.status}"
                return sample
            if s.endpoint in ("embeddings", "rerank", "transcriptions"):  # one answer, not a stream
                answer = await response.json()
                sample.arrivals.append(time.perf_counter())
                if s.endpoint == "transcriptions":
                    sample.units = float(answer["usage"]["seconds"])
                else:
                    sample.prompt_tokens = answer["usage"]["prompt_tokens"]
                    sample.units = float(len(prompt.body.get("documents") or ()))
            else:
                async for line in response.content:
                    read_events(sample, (line,))
                    if sample.error:
                        return sample
        sample.ok = True
    except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as exc:
        sample.error = type(exc).__name__
    finally:
        sample.ended = time.perf_counter()
    return sample
