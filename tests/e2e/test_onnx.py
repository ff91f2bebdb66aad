"""The ONNX engine through the real server and the real `openai` client: the `-onnx` variants of
the default models, built into the cache on their first request (as a user would meet them)."""

import threading
import time

import httpx
import numpy as np
import pytest

MODEL = "smollm2-135m-instruct-onnx"
# France's is a near tie for the GGUF's model, which int8 activations may tip; Japan's is not
QUESTION = [{"role": "user", "content": "What is the capital of Japan?"}]
STORY = [{"role": "user", "content": "Tell me a long story about a dragon."}]


@pytest.fixture(scope="module")
def onnx_model(server):
    """The variant loaded (GGUF → HF → int4 ONNX on a fresh cache takes about half a minute)."""
    loaded = httpx.post(f"{server.url}/v1/models/load", json={"name": MODEL}, timeout=600)
    assert loaded.status_code == 200, loaded.text
    return MODEL


def test_chat_streamed_and_not_gives_the_same_greedy_text(server, client, onnx_model):
    status = server.status(onnx_model)
    assert (status["engine"], status["device"], status["state"]) == ("onnx", "cpu", "ready")
    kwargs = dict(model=onnx_model, messages=QUESTION, temperature=0, max_tokens=30)
    whole = client.chat.completions.create(**kwargs)
    streamed = "".join(
        c.choices[0].delta.content or "" for c in client.chat.completions.create(**kwargs, stream=True)
    )
    assert "Tokyo" in whole.choices[0].message.content and streamed == whole.choices[0].message.content
    # the GGUF's own blocks answer and stop, as the GGUF does
    assert whole.choices[0].finish_reason == "stop" and whole.usage.prompt_tokens == 37
    assert 0 < whole.usage.completion_tokens < 30


def test_closing_a_stream_stops_generation_on_onnx(server, client, onnx_model):
    stream = client.chat.completions.create(
        model=onnx_model, messages=STORY, max_tokens=2000, stream=True, extra_body={"ignore_eos": True}
    )
    for i, _ in enumerate(stream):
        if i == 5:
            break
    stream.close()
    deadline = time.monotonic() + 2
    while (status := server.status(onnx_model))["running"] or status["in_flight"]:
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    time.sleep(0.5)
    assert server.status(onnx_model)["tokens_generated"] == status["tokens_generated"]
    assert status["cancelled"] >= 1 and status["tokens_generated"] < 200


def test_concurrent_requests_all_progress(server, client, onnx_model):
    before = server.status(onnx_model)["steps_by_batch_size"].get("4", 0)
    answers = {}

    def ask(i):
        reply = client.chat.completions.create(
            model=onnx_model,
            messages=[{"role": "user", "content": f"Write story number {i}."}],
            max_tokens=24,
            extra_body={"ignore_eos": True},
        )
        answers[i] = reply.usage.completion_tokens

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == {i: 24 for i in range(4)}
    # steps that advanced all four at once: each request moved on every step, none waited its turn
    assert server.status(onnx_model)["steps_by_batch_size"].get("4", 0) > before


def test_embeddings_on_onnx_equal_the_defaults(client):
    texts = ["hello world", "ONNX Runtime serves embeddings too.", "short"]
    on_onnx = client.embeddings.create(model="all-minilm-l6-v2-onnx", input=texts, timeout=300)
    on_default = client.embeddings.create(model="all-minilm-l6-v2", input=texts)  # OpenVINO
    a = np.array([d.embedding for d in on_onnx.data])
    b = np.array([d.embedding for d in on_default.data])
    assert (np.sum(a * b, axis=1) >= 0.999).all()
    assert on_onnx.usage.prompt_tokens == on_default.usage.prompt_tokens
