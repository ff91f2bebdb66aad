"""Every streaming route goes through the one generation path (gateway/http/generation.py): closing
its stream early stops the worker's generation, and its request moves the same metrics."""

import httpx
import pytest

from tests.e2e.test_batching_and_cancel import assert_generation_stopped, wait_idle
from tests.e2e.test_metrics import scrape, value

MODEL = "smollm2-135m-instruct"
# greedy, the model ends a bare "Tell me a long story about a dragon." at once: a prompt it continues
STORY = "Once upon a time, in a land far away, there lived a dragon who"
MESSAGES = [{"role": "user", "content": "Tell me a long story about a dragon."}]
LONG = {"max_tokens": 2000, "ignore_eos": True, "stream": True}

ROUTES = [
    ("/v1/chat/completions", {"model": MODEL, "messages": MESSAGES, **LONG}),
    ("/v1/completions", {"model": MODEL, "prompt": STORY, **LONG}),
    ("/completion", {"prompt": STORY, "n_predict": 2000, "ignore_eos": True, "stream": True}),
    # the simple routes have no ignore_eos: greedy, a story runs long enough
    ("/generate", {"prompt": STORY, "max_length": 2000, "do_sample": False, "stream": True}),
    ("/chat", {"messages": MESSAGES, "max_length": 2000, "do_sample": False, "stream": True}),
    ("/generate/batch", {"prompts": [STORY, STORY], "max_length": 2000, "do_sample": False, "stream": True}),
    (
        "/v1/responses",
        {"model": MODEL, "input": STORY, "max_output_tokens": 2000, "temperature": 0, "stream": True},
    ),
    (
        "/v1/messages",
        {"model": MODEL, "messages": MESSAGES, "max_tokens": 2000, "temperature": 0, "stream": True},
    ),
]
HISTOGRAMS = (
    "enginehouse_time_to_first_token_seconds_count",
    "enginehouse_inter_token_latency_seconds_count",
    "enginehouse_request_duration_seconds_count",
)


@pytest.mark.parametrize(("path", "body"), ROUTES, ids=[path for path, _ in ROUTES])
def test_closing_a_stream_stops_generation_and_moves_the_metrics(server, path, body):
    wait_idle(server, 30)
    before = scrape(server)
    with httpx.stream("POST", f"{server.url}{path}", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        events = (line for line in response.iter_lines() if line.startswith("data: "))
        for _ in range(6):
            next(events)
        assert server.status()["running"] >= 1
    assert_generation_stopped(server, within=2.0)
    after = scrape(server)
    for name in HISTOGRAMS:
        assert value(after, name, model=MODEL) > value(before, name, model=MODEL), name
