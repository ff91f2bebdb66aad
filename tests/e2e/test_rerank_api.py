"""Reranking through the real server: the default (all-MiniLM-L6-v2 as a bi-encoder) puts the
relevant document first, in the Jina/Cohere shape on every path peers use; a tiny cross-encoder
made here (random weights, the MiniLM tokenizer) scores exactly as a plain transformers forward."""

import httpx
import pytest

from tests.server import start_server, stop_server
from tests.workers.test_rerank import DOCUMENTS, QUERY, make_cross_encoder, plain_scores


def test_the_default_puts_the_relevant_document_first_in_the_jina_and_cohere_shape(server):
    body = {"model": "all-minilm-l6-v2", "query": QUERY, "documents": DOCUMENTS}
    reply = httpx.post(f"{server.url}/v1/rerank", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["model"] == "all-minilm-l6-v2" and answer["id"].startswith("rerank-")
    results = answer["results"]
    assert results[0]["index"] == 1 and len(results) == 5
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert results[0]["document"] == {"text": DOCUMENTS[1]}
    assert answer["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("path", ["/rerank", "/v2/rerank", "/reranking", "/v1/reranking"])
def test_every_peers_path_top_n_and_return_documents(server, path):
    # Cohere's documents may be objects with a text; no model: the server's first reranker
    body = {
        "query": QUERY,
        "documents": [{"text": d} for d in DOCUMENTS],
        "top_n": 2,
        "return_documents": False,
    }
    reply = httpx.post(f"{server.url}{path}", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert len(results) == 2 and results[0]["index"] == 1
    assert all(set(r) == {"index", "relevance_score"} for r in results)


def test_bad_rerank_requests_are_400s_in_openais_error_shape(server):
    url = f"{server.url}/v1/rerank"
    too_many = httpx.post(url, json={"query": "q", "documents": ["d"] * 1001}, timeout=60)
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "documents"
    assert httpx.post(url, json={"query": "q", "documents": []}, timeout=60).status_code == 400
    long = {"query": QUERY, "documents": ["bread " * 600]}
    refused = httpx.post(url, json=long, timeout=60)
    assert refused.status_code == 400 and "Document 0" in refused.json()["error"]["message"]
    assert httpx.post(url, json={**long, "truncate": True}, timeout=60).status_code == 200
    chat = httpx.post(
        url, json={"model": "smollm2-135m-instruct", "query": "q", "documents": ["d"]}, timeout=60
    )
    assert chat.status_code == 400 and chat.json()["error"]["code"] == "unsupported_task"
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'enginehouse_documents_reranked_total{model="all-minilm-l6-v2"}' in metrics


@pytest.fixture(scope="module")
def cross_server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-cross-encoder")
    model, tokenizer = make_cross_encoder(directory)
    models = directory.parent / "models.toml"
    models.write_text(
        f'[tiny-reranker]\nsource = "{directory}"\nengine = "torch"\ntask = "rerank"\nthreads = 1\n'
        f'[tiny-reranker-onnx]\nsource = "{directory}"\nengine = "onnx"\ntask = "rerank"\n'
        "threads = 1\npreload = false\n"
    )
    srv = start_server(
        "--models", str(models), "--cache-dir", str(directory.parent / "cache"), "--max-audio-bytes", "2048"
    )
    yield srv, model, tokenizer
    stop_server(srv)


@pytest.mark.parametrize("model_id", ["tiny-reranker", "tiny-reranker-onnx"])
def test_a_cross_encoders_scores_equal_a_plain_transformers_forward(cross_server, model_id):
    srv, model, tokenizer = cross_server
    body = {"model": model_id, "query": QUERY, "documents": DOCUMENTS, "return_documents": False}
    reply = httpx.post(f"{srv.url}/v1/rerank", json=body, timeout=300)
    assert reply.status_code == 200, reply.text
    served = {r["index"]: r["relevance_score"] for r in reply.json()["results"]}
    expected = plain_scores(model, tokenizer, QUERY, DOCUMENTS)
    assert max(abs(served[i] - float(expected[i])) for i in range(len(DOCUMENTS))) < 1e-4
    listed = {m["id"]: m for m in httpx.get(f"{srv.url}/v1/models", timeout=10).json()["data"]}
    assert listed[model_id]["task"] == "rerank"


def test_an_audio_file_over_the_limit_is_a_400_naming_it(cross_server):
    srv = cross_server[0]
    files = {"file": ("big.wav", b"\0" * 4096, "audio/wav")}
    reply = httpx.post(f"{srv.url}/v1/audio/transcriptions", files=files, data={"model": "x"}, timeout=30)
    assert reply.status_code == 400 and "2048 bytes" in reply.json()["error"]["message"]
