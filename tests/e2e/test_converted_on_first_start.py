"""A model whose worker converts it on its first start: the packaged chat model on OpenVINO with
`openvino_weight_format = "int8"` in a models file, into an empty cache. The first request waits
for the export (optimum-intel, from .venv-convert) and the load, then is answered by the real
`openai` client."""

import openai
import openvino as ov

from tests.server import start_server, stop_server

MODELS = """
[smollm2-int8]
source = "smollm2-135m-instruct"
engine = "openvino"
preload = false

[smollm2-int8.options]
openvino_weight_format = "int8"
threads = 1
"""


def test_the_worker_exports_int8_on_first_start_and_serves_it(tmp_path):
    models = tmp_path / "models.toml"
    models.write_text(MODELS)
    cache = tmp_path / "cache"
    server = start_server("--models", str(models), "--cache-dir", str(cache), timeout=60)
    try:
        assert server.status("smollm2-int8")["state"] == "registered"
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300)
        reply = client.chat.completions.create(
            model="smollm2-int8",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0,
            max_tokens=20,
        )
        assert "Paris" in reply.choices[0].message.content
        (exported,) = (cache / "openvino").glob("SmolLM2-135M-Instruct.Q4_1-int8-*")
        model = ov.Core().read_model(exported / "openvino_model.xml")
        types = {
            op.get_element_type().get_type_name()
            for op in model.get_ops()
            if op.get_type_name() == "Constant"
        }
        assert "u8" in types and not types & {"u4", "i4"}  # int8 weights, not the GGUF's int4
        assert server.status("smollm2-int8")["state"] == "ready"
    finally:
        stop_server(server)
