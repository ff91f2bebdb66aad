"""Which engine serves which model id, and the variants that load on their first request."""

import httpx

MODEL = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_the_default_chat_model_runs_on_openvino(server):
    status = server.status(MODEL)
    assert status["state"] == "ready"
    assert (status["engine"], status["device"], status["tasks"]) == (
        "openvino",
        "cpu",
        ["chat", "completion"],
    )
    assert status["replicas"][0]["max_batch"] == 8


def test_greedy_text_is_the_same_streamed_and_not_on_openvino(client):
    kwargs = dict(model=MODEL, messages=QUESTION, temperature=0, max_tokens=40)
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    streamed = "".join(
        c.choices[0].delta.content or "" for c in client.chat.completions.create(**kwargs, stream=True)
    )
    assert "Paris" in whole and streamed == whole


def test_engine_variants_load_on_their_first_request(server, client):
    """The torch variant is registered but not started; a request loads it and is then served."""
    before = {m["id"]: m for m in httpx.get(f"{server.url}/v1/models/status").json()["data"]}
    assert before[f"{MODEL}-torch"]["state"] in ("registered", "ready")
    reply = client.chat.completions.create(
        model=f"{MODEL}-torch", messages=QUESTION, temperature=0, max_tokens=30, timeout=180
    )
    assert "Paris" in reply.choices[0].message.content
    torch_status = server.status(f"{MODEL}-torch")
    assert (torch_status["state"], torch_status["engine"]) == ("ready", "torch")
    stream = client.chat.completions.create(
        model=f"{MODEL}-torch", messages=QUESTION, temperature=0, max_tokens=30, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream) == reply.choices[0].message.content
