"""Tokenize and detokenize: llama.cpp's /tokenize and /detokenize, and vLLM's /v1/tokenize and
/v1/detokenize, answered by the model's own tokenizer in its worker."""

import httpx
import pytest

CHAT = "smollm2-135m-instruct"


def post(server, path, body):
    return httpx.post(f"{server.url}{path}", json=body, timeout=30)


def test_llamacpp_tokenize_round_trips_and_gives_pieces(server):
    text = "Hello 你好 world"
    tokens = post(server, "/tokenize", {"content": text}).json()["tokens"]
    assert all(isinstance(t, int) for t in tokens) and len(tokens) == 7
    assert post(server, "/detokenize", {"tokens": tokens}).json() == {"content": text}
    pieces = post(server, "/tokenize", {"content": text, "with_pieces": True}).json()["tokens"]
    assert [p["id"] for p in pieces] == tokens
    assert pieces[0]["piece"] == "Hello" and pieces[-1]["piece"] == " world"
    # 你 and 好 are split across tokens: those pieces are bytes, which together are the characters
    raw = bytes(b for p in pieces[2:6] for b in p["piece"])
    assert raw.decode() == "你好"


def test_special_tokens_only_when_asked_and_any_model(server):
    plain = post(server, "/tokenize", {"content": "Hello", "model": "all-minilm-l6-v2"}).json()
    special = post(
        server, "/tokenize", {"content": "Hello", "model": "all-minilm-l6-v2", "add_special": True}
    ).json()
    assert special["tokens"] == [101, *plain["tokens"], 102]  # [CLS] ... [SEP]


def test_v1_tokenize_and_detokenize(server):
    answer = post(server, "/v1/tokenize", {"model": CHAT, "prompt": "Hello world", "return_token_strs": True})
    body = answer.json()
    assert body["count"] == len(body["tokens"]) == 2 and body["max_model_len"] == 8192
    assert body["token_strs"] == ["Hello", " world"]
    assert post(server, "/v1/detokenize", {"model": CHAT, "tokens": body["tokens"]}).json() == {
        "prompt": "Hello world"
    }


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "param"),
    [
        ("/tokenize", {"content": 1}, 400, "invalid_value", "content"),
        ("/tokenize", {}, 400, "missing_required_parameter", "content"),
        ("/tokenize", {"content": "x", "model": "nope"}, 404, "model_not_found", "model"),
        ("/detokenize", {"tokens": [10**6]}, 400, "invalid_tokens", "tokens"),
        ("/detokenize", {"tokens": [-1]}, 400, "invalid_value", "tokens[0]"),
        ("/v1/tokenize", {"prompt": "x"}, 400, "missing_required_parameter", "model"),
        ("/v1/detokenize", {"model": CHAT, "tokens": "abc"}, 400, "invalid_value", "tokens"),
    ],
)
def test_bad_tokenize_requests(server, path, body, status, code, param):
    answer = post(server, path, body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
