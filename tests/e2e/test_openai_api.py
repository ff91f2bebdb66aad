"""The OpenAI API through the real server and the real `openai` client."""

import httpx
import openai
import pytest

MODEL = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_chat_answers_the_question(client):
    reply = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, max_tokens=30)
    choice = reply.choices[0]
    assert "Paris" in choice.message.content
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert reply.id.startswith("chatcmpl-") and reply.model == MODEL and reply.object == "chat.completion"
    assert reply.usage.prompt_tokens > 10 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streamed_chat_equals_non_streamed_and_counts_usage(client):
    kwargs = dict(model=MODEL, messages=QUESTION, temperature=0, max_tokens=30)
    whole = client.chat.completions.create(**kwargs)
    chunks = list(
        client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert all(c.id == chunks[0].id for c in chunks)


def test_sse_framing_and_proxy_headers(server):
    body = {"model": MODEL, "messages": QUESTION, "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["cache-control"] == "no-cache" and r.headers["x-accel-buffering"] == "no"
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"


def test_completions_one_choice_per_prompt(client):
    reply = client.completions.create(
        model=MODEL,
        prompt=["The sky is", "Paris is the capital of"],
        max_tokens=5,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    assert [c.index for c in reply.choices] == [0, 1]
    assert all(c.finish_reason == "length" and c.text for c in reply.choices)
    assert reply.usage.completion_tokens == 10


def test_streamed_completions_from_token_ids(client):
    ids = [504, 3575, 282, 4649, 314]  # "The capital of France is"
    chunks = list(
        client.completions.create(model=MODEL, prompt=ids, max_tokens=4, temperature=0, stream=True)
    )
    assert "".join(c.choices[0].text for c in chunks).strip()
    assert chunks[-1].choices[0].finish_reason == "length"


def test_stop_strings_are_not_returned(client):
    reply = client.chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, max_tokens=30, stop=["Paris", "never appears"]
    )
    assert reply.choices[0].finish_reason == "stop"
    assert "Paris" not in reply.choices[0].message.content
    assert reply.choices[0].message.content.startswith("The capital of France is")


def test_same_seed_same_text(client):
    kwargs = dict(
        model=MODEL,
        messages=[{"role": "user", "content": "Tell me a short story."}],
        temperature=1.0,
        top_p=0.95,
        max_tokens=24,
        seed=42,
    )
    first = client.chat.completions.create(**kwargs).choices[0].message.content
    second = client.chat.completions.create(**kwargs).choices[0].message.content
    assert first == second


def test_models_list_and_object(client):
    models = client.models.list()
    embedder = "all-minilm-l6-v2"
    variants = [f"{m}-{engine}" for m in (MODEL, embedder) for engine in ("openvino", "torch", "onnx")]
    assert [m.id for m in models.data] == [MODEL, embedder, "whisper-base", *variants]
    assert client.models.retrieve(MODEL).owned_by == "enginehouse"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_unknown_model_is_404_model_not_found(client):
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert error.value.body["code"] == "model_not_found" and error.value.body["param"] == "model"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (b'{"model": "smollm2-135m-instruct"}', 400, "messages"),
        (b'{"model": "smollm2-135m-instruct", "messages": []}', 400, "messages"),
        (
            b'{"model": "smollm2-135m-instruct", "messages": [{"role": "wizard", "content": "x"}]}',
            400,
            "messages[0].role",
        ),
        (
            b'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "x"}], '
            b'"temperature": 5}',
            400,
            "temperature",
        ),
        (
            b'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "x"}], "n": 0}',
            400,
            "n",
        ),
        (
            b'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "x"}], '
            b'"max_tokens": -1}',
            400,
            "max_tokens",
        ),
    ],
)
def test_malformed_bodies_get_openai_errors(server, body, status, param):
    r = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == status
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"] and error["param"] == param


def test_prompt_over_the_context_is_a_400_even_when_streamed(server):
    body = {"model": MODEL, "prompt": [100] * 9000, "stream": True}
    r = httpx.post(f"{server.url}/v1/completions", json=body, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def test_unknown_routes_and_methods(server):
    assert httpx.get(f"{server.url}/v1/nothing").status_code == 404
    r = httpx.delete(f"{server.url}/v1/models")
    assert r.status_code == 405 and "error" in r.json()


def test_health(server):
    r = httpx.get(f"{server.url}/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


# the engine-style chat endpoint's documented request: a raw prompt instead of messages, top_k -1
RAW_PROMPT_CHAT = {
    "model": MODEL,
    "prompt": "The capital of France is",
    "max_tokens": 8,
    "temperature": 0.0,
    "top_p": 1.0,
    "top_k": -1,
    "stream": False,
}


def test_chat_takes_a_raw_prompt_without_the_chat_template(server, client):
    r = httpx.post(f"{server.url}/v1/chat/completions", json=RAW_PROMPT_CHAT, timeout=60)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["role"] == "assistant"
    # the text goes to the model as it is: the same tokens and answer as a plain completion
    plain = client.completions.create(
        model=MODEL, prompt=RAW_PROMPT_CHAT["prompt"], max_tokens=8, temperature=0
    )
    assert answer["usage"]["prompt_tokens"] == plain.usage.prompt_tokens == 5
    assert answer["choices"][0]["message"]["content"] == plain.choices[0].text
    streamed = httpx.post(
        f"{server.url}/v1/chat/completions", json={**RAW_PROMPT_CHAT, "stream": True}, timeout=60
    )
    assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"prompt": None}, "Either messages or prompt must be provided"),
        ({"messages": QUESTION}, "not both"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "messages"),
    ],
)
def test_chat_needs_messages_or_a_prompt_not_both(server, extra, says):
    body = {**RAW_PROMPT_CHAT, **extra}
    body = {k: v for k, v in body.items() if v is not None}
    r = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 400 and says in r.json()["error"]["message"], r.text
    if "messages" in extra:
        assert "`messages`" in r.json()["error"]["message"] and "`prompt`" in r.json()["error"]["message"]
