"""/metrics in Prometheus' text format, parsed with prometheus-client's own parser."""

import time

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

MODEL = "smollm2-135m-instruct"


def scrape(server) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_chat_request_moves_the_counters(server):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    before = scrape(server)
    reply = client.chat.completions.create(
        model=MODEL, max_tokens=5, temperature=0, messages=[{"role": "user", "content": "Hi"}]
    )
    after = scrape(server)
    route = {"route": "/v1/chat/completions", "model": MODEL, "status": "200"}
    assert (
        value(after, "enginehouse_requests_total", **route)
        == value(before, "enginehouse_requests_total", **route) + 1
    )
    for name, usage in (
        ("completion_tokens", reply.usage.completion_tokens),
        ("prompt_tokens", reply.usage.prompt_tokens),
    ):
        grown = value(after, f"enginehouse_{name}_total", model=MODEL) - value(
            before, f"enginehouse_{name}_total", model=MODEL
        )
        assert grown == usage
    ttft = "enginehouse_time_to_first_token_seconds_count"
    assert value(after, ttft, model=MODEL) == value(before, ttft, model=MODEL) + 1
    assert value(after, "enginehouse_workers", model=MODEL) == 1
    httpx.post(f"{server.url}/v1/chat/completions", json={"model": "made-up", "messages": []})
    unknown = [k for k in scrape(server) if k[0] == "enginehouse_requests_total" and "made-up" in str(k)]
    assert unknown == []  # a model nobody serves is no label value
    assert value(after, "enginehouse_engine_steps_total", model=MODEL) > 0


def test_a_closed_stream_counts_as_cancelled(server):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    before = value(scrape(server), "enginehouse_cancelled_total", model=MODEL)
    stream = client.chat.completions.create(
        model=MODEL,
        max_tokens=500,
        stream=True,
        messages=[{"role": "user", "content": "Tell me a story."}],
        extra_body={"ignore_eos": True},
    )
    chunks = iter(stream)
    for _ in range(3):
        next(chunks)
    stream.close()
    deadline = time.monotonic() + 5
    while value(scrape(server), "enginehouse_cancelled_total", model=MODEL) == before:
        assert time.monotonic() < deadline, "the cancel was not counted"
        time.sleep(0.05)
    assert value(scrape(server), "enginehouse_cancelled_total", model=MODEL) == before + 1


def test_v1_metrics_gives_the_same_figures_as_json(server):
    text = scrape(server)
    data = httpx.get(f"{server.url}/v1/metrics", timeout=10).json()
    samples = {
        (s["name"], tuple(sorted(s["labels"].items()))): s["value"]
        for family in data.values()
        for s in family
    }
    for name in ("enginehouse_workers", "enginehouse_model_state"):
        keys = [k for k in text if k[0] == name]
        assert keys and all(samples[k] == text[k] for k in keys)
    assert samples[("enginehouse_model_state", (("model", MODEL), ("state", "ready")))] == 1
    assert ("enginehouse_worker_restarts_total", (("model", MODEL),)) in samples
