"""Prefix reuse (issue 24, item 5): a two-turn conversation whose system prompt is about 1,500
tokens; the time to the first token of turn 2 (the system prompt, turn 1 and its answer, a new
question) against turn 1's, per engine, with OpenVINO's prefix caching on (the default) and off.
Each conversation's system prompt starts with its own number, so turn 1 never finds it cached.

`python -m tests.benchmarks.run --only prefix` (also part of `make bench`).
"""

from __future__ import annotations

import json
import statistics
import time

import httpx

from tests.benchmarks import machine
from tests.benchmarks.faithfulness import TEXT
from tests.server import Server

HEADING = "## Prefix reuse: turn 2 of a conversation with a long system prompt"
CONVERSATIONS = 3
# model id suffix -> engine, worker options (the models file's tables)
VARIANTS = {
    "openvino": ("openvino", {}),
    "openvino-no-prefix-cache": ("openvino", {"prefix_caching": False}),
    "torch": ("torch", {}),
}
SYSTEM_CHARACTERS = 7000  # of faithfulness.txt: about 1,500 tokens with the chat template


def tables(model: str, source: str) -> list[str]:
    """The models file's tables of the variants the bench's chat variants do not have already."""
    out = []
    for suffix, (engine, options) in VARIANTS.items():
        if not options:
            continue
        out.append(f'["{model}-{suffix}"]\nsource = "{source}"\nengine = "{engine}"\npreload = false\n')
        values = "".join(f"{name} = {str(value).lower()}\n" for name, value in options.items())
        out.append(f'["{model}-{suffix}".options]\n{values}')
    return out


def first_token(server: Server, model: str, messages: list[dict]) -> tuple[float, str, int]:
    """Seconds to the first streamed content, the whole answer, the prompt's tokens."""
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": 16,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started, first, text, prompt = time.perf_counter(), None, "", 0
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                prompt = chunk["usage"]["prompt_tokens"]
            for choice in chunk.get("choices") or []:
                content = choice["delta"].get("content")
                if content:
                    first = first or time.perf_counter() - started
                    text += content
    return first or time.perf_counter() - started, text, prompt


def warm_up(server: Server, model: str) -> None:
    """Loaded (a 503 while its worker starts) and warm."""
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    deadline = time.monotonic() + 1800
    while httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=600).status_code == 503:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{model} did not load")
        time.sleep(2)


def conversation(server: Server, model: str, number: int) -> tuple[float, float, int]:
    system = f"Conversation {number}. Answer from these notes.\n\n" + TEXT.read_text()[:SYSTEM_CHARACTERS]
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Who is Maren Holt?"}]
    turn1, answer, tokens = first_token(server, model, messages)
    messages += [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "What did Tobias measure?"},
    ]
    turn2, _, _ = first_token(server, model, messages)
    return turn1, turn2, tokens


def measure(server: Server, model: str) -> dict[str, tuple[float, float, int]]:
    rows = {}
    for suffix in VARIANTS:
        name = f"{model}-{suffix}"
        warm_up(server, name)
        runs = [conversation(server, name, 1000 * len(rows) + i) for i in range(CONVERSATIONS)]
        rows[suffix] = (
            statistics.median(r[0] for r in runs),
            statistics.median(r[1] for r in runs),
            runs[0][2],
        )
        print(f"prefix {suffix}: {rows[suffix]}")
    return rows


def section(rows: dict[str, tuple[float, float, int]], date: str) -> list[str]:
    tokens = next(iter(rows.values()))[2]
    lines = [
        HEADING,
        "",
        f"{machine.measured(date)} "
        f"Two turns of a chat whose system prompt is {tokens} tokens (turn 1's whole "
        f"prompt; from `tests/benchmarks/faithfulness.txt`), 16 tokens an answer, greedy, streamed; turn 2 "
        "adds turn 1's answer and a new question. Time to first token through HTTP, the median of "
        f"{CONVERSATIONS} conversations, each with its own system prompt. Goal: turn 2 within 25% of "
        "turn 1's. OpenVINO's prefix caching keeps the KV blocks of prompts it has seen; the torch "
        "engine keeps the KV of recent prompts' prefills (`prefix_cache_tokens`, 2,048 by default) "
        "and prefills turn 2 on from turn 1's.",
        "",
        "| model id suffix | turn 1 TTFT ms | turn 2 TTFT ms | turn 2 / turn 1 |",
        "|---|---|---|---|",
    ]
    for suffix, (one, two, _) in rows.items():
        lines.append(f"| `-{suffix}` | {one * 1000:.0f} | {two * 1000:.0f} | {two / one:.0%} |")
    lines += ["", "`python -m tests.benchmarks.run --only prefix` (also part of `make bench`)"]
    return lines
