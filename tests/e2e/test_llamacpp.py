"""llama.cpp's /completion and /props, for scripts written against its server."""

import json
import time

import httpx

PROMPT = "The capital of France is"


def complete(server, **body):
    return httpx.post(f"{server.url}/completion", json={"prompt": PROMPT, **body}, timeout=60)


def events(server, **body):
    with httpx.stream("POST", f"{server.url}/completion", json={"prompt": PROMPT, **body}, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]


def test_completion_answers_in_llamacpp_shape(server):
    answer = complete(server, n_predict=12, temperature=0).json()
    assert answer["stop"] is True and answer["stop_type"] == "limit" and "Paris" in answer["content"]
    assert answer["tokens_predicted"] == 12 and answer["tokens_evaluated"] == 5
    timings = answer["timings"]
    assert timings["predicted_n"] == 12 and timings["prompt_n"] == 5 and timings["predicted_ms"] > 0


def test_stop_word_and_eos(server):
    word = complete(server, n_predict=30, temperature=0, stop=["."]).json()
    assert (word["stop_type"], word["stopping_word"], word["content"]) == ("word", ".", " Paris")
    tokens = httpx.post(f"{server.url}/tokenize", json={"content": PROMPT}).json()["tokens"]
    by_ids = httpx.post(
        f"{server.url}/completion", json={"prompt": tokens, "n_predict": 30, "temperature": 0, "stop": ["."]}
    ).json()
    assert by_ids["content"] == word["content"]


def test_streamed_pieces_add_up_to_the_answer(server):
    whole = complete(server, n_predict=16, temperature=0).json()
    streamed = events(server, n_predict=16, temperature=0, stream=True)
    assert all(e["stop"] is False for e in streamed[:-1]) and streamed[-1]["stop"] is True
    assert "".join(e["content"] for e in streamed) == whole["content"]
    assert streamed[-1]["tokens_predicted"] == 16 and "timings" in streamed[-1]


def test_closing_a_completion_stream_cancels_it(server):
    before = server.status()["cancelled"]
    with httpx.stream(
        "POST",
        f"{server.url}/completion",
        json={"prompt": PROMPT, "n_predict": 400, "ignore_eos": True, "stream": True},
        timeout=60,
    ) as r:
        lines = r.iter_lines()
        while not next(lines).startswith("data: "):
            pass
    deadline = time.monotonic() + 5
    while server.status()["cancelled"] == before:
        assert time.monotonic() < deadline, "the closed stream was not cancelled at the worker"
        time.sleep(0.05)


def test_bad_completion_requests(server):
    for body, param in [({"n_predict": 0}, "n_predict"), ({"prompt": ""}, "prompt"), ({"top_p": 0}, "top_p")]:
        answer = httpx.post(f"{server.url}/completion", json={"prompt": PROMPT, **body})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param
    embed = complete(server, model="all-minilm-l6-v2")
    assert embed.status_code == 400 and embed.json()["error"]["code"] == "unsupported_task"


def test_props_describe_the_default_model(server):
    props = httpx.get(f"{server.url}/props").json()
    assert props["default_generation_settings"]["n_ctx"] == 8192
    assert props["default_generation_settings"]["params"]["temperature"] == 0.8
    assert props["total_slots"] == 8 and "<|im_start|>" in props["chat_template"]
    assert httpx.get(f"{server.url}/props", params={"model": "nope"}).status_code == 404
