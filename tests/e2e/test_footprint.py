"""What the default server's workers hold: no torch at rest (about 210 MB a process here). The
embedding worker never needs it; the chat worker (OpenVINO) loads it with xgrammar the first time
it decodes under a grammar, and still answers that request within its schema. Workers on the CPU
load no other device's plugin (the GPU plugin alone held ~28 MB in each), and each worker keeps
resident only the parts of its weights file it reads (not all it read compiling and packing)."""

import json
import shutil
from pathlib import Path

import httpx
import pytest

from gateway.config import default_source
from tests.server import start_server, stop_server
from workers.engines.openvino.convert import ir_directory
from workers.engines.openvino.encoder import ir_location
from workers.settings import DEFAULT_CACHE_DIR
from workers.sources import resolve

CHAT, EMBED = "smollm2-135m-instruct", "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Copies of the converted models of its own: the kernel pages out only what one process alone
    # maps, so another server's workers (the session's) mapping the same files would keep their
    # pages resident here too. (Not there yet, they are converted on the way.)
    cache = tmp_path_factory.mktemp("footprint") / "cache"
    for converted in (
        ir_directory(DEFAULT_CACHE_DIR, resolve(default_source(CHAT))),
        ir_location(DEFAULT_CACHE_DIR, resolve(default_source(EMBED))),
    ):
        if converted.is_dir():
            shutil.copytree(converted, cache / converted.relative_to(DEFAULT_CACHE_DIR))
    server = start_server("--no-engine-variants", "--cache-dir", str(cache), timeout=180)
    yield server
    stop_server(server)


def holds_torch(server, model: str) -> bool:
    pid = server.status(model)["replicas"][0]["pid"]
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "libopenvino_intel_cpu_plugin" in maps
    assert "libopenvino_intel_gpu_plugin" not in maps and "libopenvino_intel_npu_plugin" not in maps
    return "libtorch" in maps


def test_the_default_workers_hold_no_torch_until_a_grammar_needs_it(server):
    assert not holds_torch(server, CHAT) and not holds_torch(server, EMBED)
    plain = {"model": CHAT, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
    assert httpx.post(f"{server.url}/v1/chat/completions", json=plain, timeout=60).status_code == 200
    embedded = httpx.post(f"{server.url}/v1/embeddings", json={"model": EMBED, "input": "hi"}, timeout=60)
    assert embedded.status_code == 200
    assert not holds_torch(server, CHAT) and not holds_torch(server, EMBED)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    constrained = {
        **plain,
        "messages": [{"role": "user", "content": "Name a city in France as JSON."}],
        "max_tokens": 40,
        "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
    }
    answer = httpx.post(f"{server.url}/v1/chat/completions", json=constrained, timeout=120)
    assert answer.status_code == 200, answer.text
    assert isinstance(json.loads(answer.json()["choices"][0]["message"]["content"])["city"], str)
    assert holds_torch(server, CHAT) and not holds_torch(server, EMBED)


def resident_of(server, model: str, suffix: str) -> tuple[int, int]:
    """Bytes of the mapped file ending in `suffix` resident in the model's worker, and its size."""
    pid = server.status(model)["replicas"][0]["pid"]
    resident, size, inside = 0, 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if not fields[0].endswith(":"):
            inside = len(fields) == 6 and fields[5].endswith(suffix)
            if inside:
                size = Path(fields[5]).stat().st_size
        elif fields[0] == "Rss:" and inside:
            resident += int(fields[1]) << 10
    return resident, size


def test_the_embedding_worker_keeps_little_of_the_encoder_file_resident_once_it_has_served(server):
    # read whole to compile and again by a first inference packing the weights for the kernels: the
    # worker hands the pages back after both; serving brings back only the token embeddings it uses
    texts = ["hi", "A lighthouse keeper watched the storm roll in over the bay all night long. " * 4]
    embedded = httpx.post(f"{server.url}/v1/embeddings", json={"model": EMBED, "input": texts}, timeout=60)
    assert embedded.status_code == 200 and len(embedded.json()["data"][1]["embedding"]) == 384
    resident, size = resident_of(server, EMBED, "/encoder.bin")
    assert size > 40e6 and resident < size / 3, (resident, size)  # float16 weights: 45 MB


def test_the_chat_worker_keeps_little_of_its_weights_file_resident_once_it_has_served(server):
    # the CPU plugin reads the whole IR again packing the weights for its kernels; the worker does
    # that before it registers and hands the pages back: a served request does not bring them back
    story = {"role": "user", "content": "Tell me a long story about a lighthouse keeper and a storm."}
    chat = {"model": CHAT, "messages": [story], "max_tokens": 64}
    assert httpx.post(f"{server.url}/v1/chat/completions", json=chat, timeout=60).status_code == 200
    resident, size = resident_of(server, CHAT, "/openvino_model.bin")
    assert size > 80e6 and resident < size / 3, (resident, size)


def test_workers_run_with_two_malloc_arenas_unless_the_operator_says_otherwise(server, monkeypatch, tmp_path):
    for model in (CHAT, EMBED):
        pid = server.status(model)["replicas"][0]["pid"]
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"MALLOC_ARENA_MAX=2" in environ
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    empty = tmp_path / "models.toml"
    empty.write_text("")
    mine = start_server("--test-engine", "--allow-remote-models", "--models", str(empty))
    try:
        pid = mine.status("test-engine")["replicas"][0]["pid"]
        assert b"MALLOC_ARENA_MAX=4" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    finally:
        stop_server(mine)
