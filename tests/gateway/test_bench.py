"""`enginehouse bench`'s own parsing and statistics, on a stream recorded from this server and on
samples with given timestamps (no clock in the assertions), and its 429 handling against a small
aiohttp app that answers as a rate-limited server does."""

from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from gateway.bench import BenchSettings, run
from gateway.bench.requests import Sample, prompts, read_events
from gateway.bench.stats import Spread, report

RECORDED = Path(__file__).parent / "recorded" / "chat_stream.sse"


def test_a_recorded_chat_stream_is_read_into_arrivals_and_usage():
    sample = Sample(started=0.0)
    lines = [line + b"\n" for line in RECORDED.read_bytes().splitlines()]
    for t, line in enumerate(lines):
        read_events(sample, [line], now=float(t))
    # the role-only first chunk and the finish chunk carry no text: 7 pieces of "The capital of
    # France is Paris."; the usage chunk gives the server's counts
    assert len(sample.arrivals) == 7 and sample.ttft == 2.0
    assert (sample.prompt_tokens, sample.output_tokens) == (37, 8) and sample.error is None


def test_an_error_event_fails_the_sample():
    sample = Sample(started=0.0)
    read_events(sample, [b'data: {"error": {"message": "gone", "code": "worker_died"}}\n'], now=1.0)
    assert sample.error == "worker_died" and not sample.arrivals


def _sample(started, arrivals, ended, tokens, ok=True, **kw):
    return Sample(started=started, ok=ok, arrivals=arrivals, ended=ended, output_tokens=tokens, **kw)


def test_statistics_percentiles_goodput_and_counts():
    samples = [
        _sample(0.0, [0.1, 0.2, 0.3], 0.3, 3, prompt_tokens=5),
        _sample(0.0, [0.5, 0.7, 0.9], 0.9, 3, prompt_tokens=5),
        _sample(1.0, [1.2, 1.3], 1.3, 2, prompt_tokens=4),
        _sample(1.0, [], 1.1, 0, ok=False, error="HTTP 500"),
        _sample(1.0, [], 1.0, 0, ok=False, rate_limited=True),
    ]
    r = report(samples, duration=2.0, concurrency=2, slos={"ttft": 300, "e2el": 1000})
    assert (r.completed, r.failed, r.rate_limited, r.errors) == (3, 1, 1, {"HTTP 500": 1})
    assert (r.output_tokens, r.prompt_tokens) == (8, 14)
    assert r.output_tok_s == 4.0 and r.total_tok_s == 11.0 and r.request_per_s == 1.5
    ttft = [100.0, 500.0, 200.0]
    assert r.ttft_ms.mean == pytest.approx(np.mean(ttft))
    assert r.ttft_ms.p90 == pytest.approx(np.percentile(ttft, 90))
    assert r.ttft_ms.p99 == pytest.approx(np.percentile(ttft, 99))
    itl = [100.0, 100.0, 200.0, 200.0, 100.0]
    assert r.itl_ms.median == pytest.approx(np.median(itl))
    assert r.tpot_ms.mean == pytest.approx(np.mean([100.0, 200.0, 100.0]))
    assert r.e2el_ms.p90 == pytest.approx(np.percentile([300.0, 900.0, 300.0], 90))
    # ttft ≤ 300 and e2el ≤ 1000: the first and third requests
    assert r.goodput_req_s == 1.0
    assert r.timeline_tok_s == [6.0, 2.0]  # tokens by the second their pieces arrived
    assert "1 rate-limited" in r.text() and "HTTP 500 x1" in r.text()


def test_an_empty_run_reports_zeros():
    r = report([], duration=1.0, concurrency=1, slos={})
    assert r.completed == 0 and r.ttft_ms == Spread() and r.goodput_req_s is None


def test_built_in_and_file_prompts(tmp_path):
    built = prompts(BenchSettings(input_len=20, seed=3, max_tokens=7))
    again = prompts(BenchSettings(input_len=20, seed=3, max_tokens=7))
    assert built == again and built[0].body["max_tokens"] == 7
    assert len(built[0].body["messages"][0]["content"].split()) == 3 + 20  # "Continue this story:"
    lines = tmp_path / "p.jsonl"
    lines.write_text('{"prompt": "a", "max_tokens": 3}\n\n{"messages": [{"role": "user", "content": "b"}]}\n')
    read = prompts(BenchSettings(prompts=lines, max_tokens=9))
    assert read[0].body["messages"] == [{"role": "user", "content": "a"}] and read[0].expected_tokens == 3
    assert read[1].body["messages"][0]["content"] == "b" and read[1].expected_tokens == 9
    with pytest.raises(ValueError, match='needs "prompt"'):  # a chat line for /v1/completions
        prompts(BenchSettings(prompts=lines, endpoint="completions"))
    assert "temperature" not in built[0].body  # the server's default sampling unless asked
    greedy = prompts(BenchSettings(prompts=lines, temperature=0))
    assert [p.body["temperature"] for p in greedy] == [0.0, 0.0]


async def _rate_limited_app(aiohttp_server, refusals):
    calls = []

    async def chat(request):
        calls.append(1)
        if len(calls) <= refusals:
            return web.json_response(
                {"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "0"}
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(RECORDED.read_bytes())
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return await aiohttp_server(app), calls


async def test_429_is_counted_apart_or_waited_out(aiohttp_server):
    server, calls = await _rate_limited_app(aiohttp_server, refusals=2)
    url = str(server.make_url("")).rstrip("/")
    counted = await run(BenchSettings(url=url, num_requests=3, progress=False))
    assert (counted.rate_limited, counted.failed, counted.completed) == (2, 0, 1)
    assert counted.output_tokens == 8
    calls.clear()
    waited = await run(BenchSettings(url=url, num_requests=1, progress=False, respect_rate_limit=True))
    assert (waited.rate_limited, waited.completed, len(calls)) == (0, 1, 3)


def test_a_soak_duration_takes_a_unit():
    from protocol.settings import parse_settings

    assert parse_settings(BenchSettings, ["--duration", "30m"]).duration == 1800
    assert parse_settings(BenchSettings, ["--duration", "90s"]).duration == 90
    assert parse_settings(BenchSettings, ["--duration", "45"]).duration == 45
    assert parse_settings(BenchSettings, ["--duration", "1.5h"]).duration == 5400
