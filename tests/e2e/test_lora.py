"""LoRA adapters through the real server and the real `openai` client, on the torch, ONNX and
OpenVINO engines: an adapter made with PEFT for SmolLM2-135M answers greedily what transformers + PEFT
answer; requests for the base and for two adapters, sent at once, share the engine's steps and each
gets what it gets alone; adapters load and unload at run time (vLLM's, the simple server's and
llama.cpp's routes); one that does not fit is refused with the reason; an unknown one is a 404. On
OpenVINO an adapter is a worker of its own, started when it is declared or loaded."""

import concurrent.futures
import copy
import json
import os

import httpx
import openai
import pytest
import torch

from tests.server import start_server, stop_server
from tests.workers.test_torch_lora import QUESTIONS, SOURCE, make_lora, peft_greedy
from workers.engines.torch_engine import load_pretrained
from workers.gguf_to_hf import as_hf_directory
from workers.settings import DEFAULT_CACHE_DIR

BASE = "smollm2-torch"
ONNX_BASE = "smollm2-onnx"  # built in fp32 with LoRA inputs of its declared adapter's shape
OV_BASE = "smollm2-openvino"  # the GGUF's own weights; its adapters run on optimum-intel's fp16 export


@pytest.fixture(scope="module")
def pristine():
    return load_pretrained(as_hf_directory(SOURCE, DEFAULT_CACHE_DIR, print), torch.float32)[1]


@pytest.fixture(scope="module")
def loras(pristine, tmp_path_factory):
    return [make_lora(pristine, tmp_path_factory.mktemp(f"lora{i}"), seed=i) for i in range(2)]


@pytest.fixture(scope="module")
def served(loras, tmp_path_factory):
    models = tmp_path_factory.mktemp("models") / "models.toml"
    models.write_text(
        f'[{BASE}]\nsource = "smollm2-135m-instruct"\nengine = "torch"\nmax_batch = 8\n'
        f'[lora-one]\nbase = "{BASE}"\nadapter = "{loras[0]}"\n'
        f'[{ONNX_BASE}]\nsource = "smollm2-135m-instruct"\nengine = "onnx"\nmax_batch = 8\n'
        f'[lora-onnx]\nbase = "{ONNX_BASE}"\nadapter = "{loras[0]}"\n'
        f'[{OV_BASE}]\nsource = "smollm2-135m-instruct"\nengine = "openvino"\npreload = false\n'
        f'[lora-ov]\nbase = "{OV_BASE}"\nadapter = "{loras[0]}"\n'
    )
    srv = start_server("--models", str(models))
    yield srv
    stop_server(srv)


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)


def greedy(client, model, question):
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], temperature=0, max_tokens=24
    )
    return reply.choices[0].message.content


def test_a_declared_adapters_greedy_answer_is_transformers_and_pefts(client, pristine, loras):
    question = QUESTIONS[2]
    answer = greedy(client, "lora-one", question)
    assert answer == peft_greedy(copy.deepcopy(pristine), loras[0], question)
    assert answer != greedy(client, BASE, question)
    listed = {m["id"]: m for m in client.models.list().model_dump()["data"]}
    assert listed["lora-one"]["parent"] == BASE and listed["lora-one"]["root"] == str(loras[0])


def test_base_and_adapters_at_once_share_steps_and_get_what_they_get_alone(client, served, loras):
    reply = httpx.post(
        f"{served.url}/v1/load_lora_adapter",
        json={"lora_name": "lora-two", "lora_path": str(loras[1]), "base": BASE},
        timeout=120,
    )
    assert reply.status_code == 200 and "added successfully" in reply.text
    jobs = [(model, q) for q in QUESTIONS for model in (BASE, "lora-one", "lora-two")]
    alone = {job: greedy(client, *job) for job in jobs}
    before = _batched_steps(served)
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        together = dict(zip(jobs, pool.map(lambda job: greedy(client, *job), jobs), strict=True))
    assert together == alone
    assert _batched_steps(served) - before >= 10  # steps that advanced several sequences at once
    assert len({alone[(m, QUESTIONS[2])] for m in (BASE, "lora-one", "lora-two")}) >= 2


def test_on_onnx_adapters_answer_as_peft_and_share_steps_with_the_base(client, served, pristine, loras):
    question = QUESTIONS[2]
    assert greedy(client, "lora-onnx", question) == peft_greedy(copy.deepcopy(pristine), loras[0], question)
    reply = httpx.post(
        f"{served.url}/v1/lora/load",
        json={"lora_name": "lora-onnx-two", "lora_path": str(loras[1]), "base": ONNX_BASE},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    jobs = [(model, q) for q in QUESTIONS for model in (ONNX_BASE, "lora-onnx", "lora-onnx-two")]
    alone = {job: greedy(client, *job) for job in jobs}
    before = _batched_steps(served, ONNX_BASE)
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        together = dict(zip(jobs, pool.map(lambda job: greedy(client, *job), jobs), strict=True))
    assert together == alone
    assert _batched_steps(served, ONNX_BASE) - before >= 10
    assert len({alone[(m, question)] for m in (ONNX_BASE, "lora-onnx", "lora-onnx-two")}) >= 2


def _batched_steps(server, base=BASE):
    status = httpx.get(f"{server.url}/v1/models/status", timeout=10).json()["data"]
    steps = next(m for m in status if m["id"] == base)["steps_by_batch_size"]
    return sum(count for size, count in steps.items() if int(size) >= 3)


def test_load_unload_and_refusals(client, served, loras, tmp_path):
    url = served.url
    loaded = httpx.post(
        f"{url}/v1/lora/load", json={"lora_name": "lora-three", "lora_path": str(loras[1])}, timeout=120
    ).json()
    assert (
        loaded["status"] == "loaded"
        and loaded["rank"] == 8
        and loaded["target_modules"] == ["q_proj", "v_proj"]
    )
    listed = httpx.get(f"{url}/lora-adapters", timeout=10).json()
    assert {a["name"] for a in listed} >= {"lora-one", "lora-three"}
    assert greedy(client, "lora-three", QUESTIONS[0])
    assert (
        httpx.post(f"{url}/v1/lora/unload", json={"lora_name": "lora-three"}, timeout=30).status_code == 200
    )
    with pytest.raises(openai.NotFoundError):
        greedy(client, "lora-three", QUESTIONS[0])
    gone = httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "lora-three"}, timeout=30)
    assert gone.status_code == 404
    # rank 4 declared, rank 8 weights: refused with the reason, and not listed
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    config = json.loads((loras[0] / "adapter_config.json").read_text())
    (wrong / "adapter_config.json").write_text(json.dumps({**config, "r": 4}))
    (wrong / "adapter_model.safetensors").write_bytes((loras[0] / "adapter_model.safetensors").read_bytes())
    refused = httpx.post(
        f"{url}/v1/load_lora_adapter", json={"lora_name": "bad", "lora_path": str(wrong)}, timeout=60
    )
    assert refused.status_code == 400 and "rank 4" in refused.json()["error"]["message"]
    assert "bad" not in {m.id for m in client.models.list().data}
    scales = httpx.post(f"{url}/lora-adapters", json=[{"id": 0, "scale": 0.0}], timeout=10)
    assert scales.status_code == 200
    assert greedy(client, "lora-one", QUESTIONS[2]) == greedy(client, BASE, QUESTIONS[2])  # scale 0: the base
    httpx.post(f"{url}/lora-adapters", json=[{"id": 0, "scale": 1.0}], timeout=10)


def test_on_openvino_an_adapter_is_a_worker_of_its_own_that_answers_as_peft(
    client, served, pristine, loras, tmp_path
):
    """OpenVINO GenAI fixes a pipeline's adapters: the declared adapter runs in a worker of its own
    (the adapter fused into optimum-intel's export of the base), answering as transformers + PEFT;
    one loaded at run time is checked by a worker of the base, then gets its worker, which goes
    when it is unloaded."""
    question = QUESTIONS[1]
    assert greedy(client, "lora-ov", question) == peft_greedy(copy.deepcopy(pristine), loras[0], question)
    assert greedy(client, "lora-ov", question) != greedy(client, OV_BASE, question)
    listed = {m["id"]: m for m in client.models.list().model_dump()["data"]}
    assert listed["lora-ov"]["parent"] == OV_BASE
    url = served.url
    loaded = httpx.post(
        f"{url}/v1/load_lora_adapter",
        json={"lora_name": "lora-ov-two", "lora_path": str(loras[1]), "base": OV_BASE},
        timeout=300,
    )
    assert loaded.status_code == 200, loaded.text
    worker = served.status("lora-ov-two")["replicas"][0]["pid"]
    assert greedy(client, "lora-ov-two", question) == peft_greedy(copy.deepcopy(pristine), loras[1], question)
    unloaded = httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "lora-ov-two"}, timeout=60)
    assert unloaded.status_code == 200
    with pytest.raises(openai.NotFoundError):
        greedy(client, "lora-ov-two", question)
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)
    # an adapter for a layer this model lacks: refused by the base's check, no worker started
    from safetensors.numpy import load_file, save_file

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "adapter_config.json").write_bytes((loras[0] / "adapter_config.json").read_bytes())
    weights = load_file(str(loras[0] / "adapter_model.safetensors"))
    save_file(
        {k.replace("layers.0.", "layers.99."): v for k, v in weights.items()},
        str(wrong / "adapter_model.safetensors"),
    )
    refused = httpx.post(
        f"{url}/v1/load_lora_adapter",
        json={"lora_name": "bad-ov", "lora_path": str(wrong), "base": OV_BASE},
        timeout=60,
    )
    assert refused.status_code == 400 and "layers.99" in refused.json()["error"]["message"]
    assert "bad-ov" not in {m.id for m in client.models.list().data}
    scale = httpx.post(
        f"{url}/lora-adapters", json=[{"id": _place(url, "lora-ov"), "scale": 0.5}], timeout=10
    )
    assert scale.status_code == 400 and "unload it and load it again" in scale.json()["error"]["message"]


def _place(url, name):
    return next(a["id"] for a in httpx.get(f"{url}/lora-adapters", timeout=10).json() if a["name"] == name)
