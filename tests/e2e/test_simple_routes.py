"""The simple REST routes (/generate, /chat, /generate/batch, /models/*, /system/info): their
defaults, their documented answers (`{"response", "usage"}`; /chat's `{"choices": [{"message"}]}`),
`model_id` naming the model, their SSE streams and their `{"detail"}` errors."""

import json

import httpx
import pytest

CHAT_MODEL = "smollm2-135m-instruct"


def post(server, path, **body):
    return httpx.post(f"{server.url}{path}", json=body, timeout=120)


def events(server, path, **body):
    with httpx.stream("POST", f"{server.url}{path}", json={**body, "stream": True}, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        lines = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_generate_with_only_a_prompt_uses_the_servers_defaults(server):
    answer = post(server, "/generate", prompt="Once upon a time", max_length=24).json()
    assert set(answer) == {"response", "usage"} and answer["response"]
    usage = answer["usage"]
    assert 1 <= usage["completion_tokens"] <= 24 and usage["prompt_tokens"] == 4
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_generate_with_every_field_and_greedy_is_repeatable(server):
    body = {
        "prompt": "The capital of France is",
        "max_length": 12,
        "temperature": 1.3,
        "top_p": 0.5,
        "top_k": 5,
        "repetition_penalty": 1.0,
        "do_sample": False,  # greedy: the sampling fields do not apply
        "model": CHAT_MODEL,
    }
    first, second = post(server, "/generate", **body).json(), post(server, "/generate", **body).json()
    assert first["response"] == second["response"] and "Paris" in first["response"]
    assert first["usage"]["completion_tokens"] == 12


def test_generate_streamed_adds_up_to_the_whole_answer(server):
    body = {"prompt": "The capital of France is", "max_length": 12, "do_sample": False}
    whole = post(server, "/generate", **body).json()
    streamed = events(server, "/generate", **body)
    assert "".join(e.get("response", "") for e in streamed) == whole["response"]
    assert streamed[-1] == {"finish_reason": "length", "usage": whole["usage"]}


# the simple server's documented requests, as its docs write them (model_id may be null)
DOCUMENTED_CHAT = {
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "model_id": None,
    "max_length": 64,
    "temperature": 0.7,
    "top_p": 0.9,
    "stream": False,
}
DOCUMENTED_GENERATE = {"prompt": "Once upon a time", "model_id": "string", "max_length": 16, "stream": False}


def test_chat_answers_in_the_documented_shape_read_as_its_client_reads_it(server):
    answer = post(server, "/chat", **DOCUMENTED_CHAT).json()
    assert set(answer) == {"choices", "usage"}
    choice = answer["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    assert answer["usage"]["total_tokens"] > answer["usage"]["prompt_tokens"] > 20


def test_model_id_names_the_model_and_model_is_its_alias(server):
    unknown = post(server, "/generate", **DOCUMENTED_GENERATE)  # "string": no such model
    assert unknown.status_code == 404 and list(unknown.json()) == ["detail"]
    assert "string" in unknown.json()["detail"]
    for path, body in [
        ("/generate", {"prompt": "Hi", "max_length": 4}),
        ("/chat", {"messages": [{"role": "user", "content": "Hi"}], "max_length": 4}),
        ("/generate/batch", {"prompts": ["Hi"], "max_length": 4}),
    ]:
        assert post(server, path, **body, model_id=CHAT_MODEL).status_code == 200
        assert post(server, path, **body, model=CHAT_MODEL).status_code == 200
        wrong = post(server, path, **body, model_id="all-minilm-l6-v2")  # an embedding model
        assert wrong.status_code in (400, 404) and list(wrong.json()) == ["detail"], wrong.text
        assert post(server, path, **body, model_id="nope").status_code == 404
    both = post(server, "/generate", prompt="Hi", model_id=CHAT_MODEL, model="all-minilm-l6-v2")
    assert both.status_code == 400 and "model_id" in both.json()["detail"]


def test_chat_with_and_without_options(server):
    plain = post(server, "/chat", messages=[{"role": "user", "content": "Say hello."}], max_length=16)
    assert plain.status_code == 200 and plain.json()["choices"][0]["message"]["content"]
    body = {
        "messages": [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "max_length": 24,  # greedy it may say "The capital of France, also known as ..." first
        "do_sample": False,
    }
    answer = post(server, "/chat", **body).json()
    content = answer["choices"][0]["message"]["content"]
    assert "Paris" in content and answer["usage"]["prompt_tokens"] > 20
    streamed = events(server, "/chat", **body)  # the stream keeps its {"response"} pieces
    assert "".join(e.get("response", "") for e in streamed) == content


def test_a_batch_of_eight_is_answered_in_order_and_decoded_as_one_batch(server):
    before = server.status()["steps_by_batch_size"].get("8", 0)
    prompts = [f"Count from {i} to {i + 5}:" for i in range(8)]
    answer = post(server, "/generate/batch", prompts=prompts, max_length=16, do_sample=False).json()
    assert len(answer["responses"]) == 8 and all(answer["responses"])
    assert answer["usage"]["completion_tokens"] == 8 * 16
    # the worker's own count of steps that decoded 8 sequences at once moved
    assert server.status()["steps_by_batch_size"].get("8", 0) > before
    alone = post(server, "/generate", prompt=prompts[3], max_length=16, do_sample=False).json()
    assert alone["response"] == answer["responses"][3]


def test_a_streamed_batch_says_which_prompt_each_piece_is_for(server):
    streamed = events(server, "/generate/batch", prompts=["One", "Two", "Three"], max_length=4)
    finished = [e for e in streamed if "finish_reason" in e]
    assert sorted(e["index"] for e in finished) == [0, 1, 2]
    assert "usage" in streamed[-1] and streamed[-1]["usage"]["completion_tokens"] == 12


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/generate", {}, 400, "prompt"),
        ("/generate", {"prompt": ""}, 400, "prompt"),
        ("/generate", {"prompt": "hi", "temperature": 5}, 400, "temperature"),
        ("/generate", {"prompt": "hi", "max_length": 0}, 400, "max_length"),
        ("/generate", {"prompt": "hi", "model": "nope"}, 404, "nope"),
        ("/generate", {"prompt": "word " * 9000}, 413, "context length"),
        ("/chat", {"messages": []}, 400, "messages"),
        ("/chat", {"messages": [{"role": "robot", "content": "hi"}]}, 400, "role"),
        ("/generate/batch", {"prompts": ["hi"] * 65}, 413, "64"),
        ("/generate/batch", {"prompts": []}, 400, "prompts"),
        ("/models/load", {}, 400, "model_id"),
        ("/models/load", {"model_id": "nope"}, 404, "nope"),
        ("/models/unload", {"model_id": "nope"}, 404, "nope"),
    ],
)
def test_errors_are_detail_objects(server, path, body, status, says):
    response = post(server, path, **body)
    assert response.status_code == status, response.text
    assert list(response.json()) == ["detail"] and says in response.json()["detail"]


def test_not_json_is_a_400_detail(server):
    response = httpx.post(f"{server.url}/generate", content=b"{nope", timeout=10)
    assert response.status_code == 400 and "JSON" in response.json()["detail"]


def test_current_and_available_models(server):
    current = httpx.get(f"{server.url}/models/current").json()
    assert current["model_id"] == CHAT_MODEL and current["loaded"] and current["task"] == "generate"
    assert {CHAT_MODEL, "all-minilm-l6-v2"} <= set(current["loaded_models"])
    available = {m["model_id"]: m for m in httpx.get(f"{server.url}/models/available").json()["models"]}
    assert available[CHAT_MODEL]["engine"] == "openvino" and available[CHAT_MODEL]["context_length"] == 8192
    assert available["all-minilm-l6-v2"]["task"] == "embedding"


def test_load_and_unload_a_model(server):
    model = "all-minilm-l6-v2-torch"
    loaded = post(server, "/models/load", model_id=model).json()
    assert (loaded["status"], loaded["model_id"], loaded["loaded"]) == ("loaded", model, True)
    assert post(server, "/models/load", model_id=model).json()["loaded"]  # idempotent
    unloaded = post(server, "/models/unload", model_id=model).json()
    assert (unloaded["status"], unloaded["state"]) == ("unloaded", "registered")
    assert post(server, "/models/unload", model_id=model).status_code == 200  # idempotent


def test_system_info(server):
    info = httpx.get(f"{server.url}/system/info", timeout=60).json()
    assert (
        info["cpu"]["threads"] >= 1 and info["memory"]["total_bytes"] > info["memory"]["available_bytes"] > 0
    )
    assert "CPU" in info["devices"]["openvino"]["devices"]
    assert set(info["devices"]) == {"openvino", "onnxruntime", "torch"}
    assert CHAT_MODEL in [m["model_id"] for m in info["loaded_models"]]
