"""POST /v1/embeddings through the real server and the real `openai` client: all-MiniLM-L6-v2 on
torch (the default id) and on OpenVINO (its -openvino variant, converted to IR on first load)."""

import base64

import httpx
import numpy as np
import openai
import pytest

MODEL = "all-minilm-l6-v2"


def vectors(reply):
    return np.array([d.embedding for d in reply.data], dtype=np.float32)


def test_texts_are_embedded_normalized_and_counted(client):
    reply = client.embeddings.create(model=MODEL, input=["hello world", "The cat sat on the mat."])
    v = vectors(reply)
    assert v.shape == (2, 384) and [d.index for d in reply.data] == [0, 1]
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert reply.usage.prompt_tokens == 4 + 9 == reply.usage.total_tokens  # [CLS] ... [SEP] each
    assert reply.model == MODEL and reply.object == "list"
    # the values sentence-transformers gives for this model and text
    assert np.allclose(v[0, :3], [-0.0344773, 0.0310232, 0.0067350], atol=1e-4)


def test_meaning_is_what_the_vectors_measure(client):
    v = vectors(
        client.embeddings.create(
            model=MODEL, input=["A man is eating food.", "A man eats a meal.", "The stock market fell."]
        )
    )
    assert v[0] @ v[1] > 0.7 > 0.2 > v[0] @ v[2]


def test_one_string_token_ids_and_base64_agree(client, server):
    text = client.embeddings.create(model=MODEL, input="hello world")
    ids = client.embeddings.create(model=MODEL, input=[7592, 2088])  # "hello world" without [CLS]/[SEP]
    many = client.embeddings.create(model=MODEL, input=[[7592, 2088], [7592]])
    assert np.allclose(vectors(text)[0], vectors(ids)[0], atol=1e-6)
    assert np.allclose(vectors(many)[0], vectors(text)[0], atol=1e-6) and len(many.data) == 2
    raw = httpx.post(
        f"{server.url}/v1/embeddings",
        json={"model": MODEL, "input": "hello world", "encoding_format": "base64"},
    ).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(decoded, vectors(text)[0])


def test_openvino_gives_the_same_vectors_as_torch(client):
    texts = ["hello world", "OpenVINO runs this encoder too.", "short", "a " * 100]
    on_torch = vectors(client.embeddings.create(model=MODEL, input=texts))
    on_openvino = vectors(client.embeddings.create(model=f"{MODEL}-openvino", input=texts, timeout=300))
    assert (np.sum(on_torch * on_openvino, axis=1) >= 0.999).all()


def test_too_long_is_a_400_unless_truncation_is_asked_for(client, server):
    long = "word " * 400
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model=MODEL, input=long)
    assert (
        error.value.body["code"] == "context_length_exceeded" and "at most 256" in error.value.body["message"]
    )
    cut = httpx.post(f"{server.url}/v1/embeddings", json={"model": MODEL, "input": long, "truncate": True})
    assert cut.status_code == 200 and cut.json()["usage"]["prompt_tokens"] == 256


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": MODEL, "input": "hi", "dimensions": 128}, "dimensions", "unsupported_parameter"),
        ({"model": MODEL, "input": "hi", "dimensions": 384}, None, None),
        ({"model": MODEL, "input": ""}, "input", "invalid_value"),
        ({"model": MODEL, "input": []}, "input", "invalid_value"),
        ({"model": MODEL, "input": [[]]}, "input[0]", "invalid_value"),
        ({"model": MODEL, "input": [1, 99999999]}, "input", "invalid_input"),
        ({"model": MODEL, "input": "hi", "encoding_format": "int8"}, "encoding_format", "invalid_value"),
        ({"model": MODEL}, "input", "missing_required_parameter"),
        ({"model": "smollm2-135m-instruct", "input": "hi"}, "model", "unsupported_task"),
        ({"model": "nope", "input": "hi"}, "model", "model_not_found"),
    ],
)
def test_bad_embedding_requests(server, body, param, code):
    response = httpx.post(f"{server.url}/v1/embeddings", json=body)
    if code is None:
        assert response.status_code == 200
        return
    assert response.status_code in (400, 404), response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code)


def test_chat_on_the_embedding_model_says_what_it_serves(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert error.value.body["code"] == "unsupported_task" and "embedding" in error.value.body["message"]
