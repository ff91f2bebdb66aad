"""What `enginehouse convert` can do on this installation, worked out from the tools actually
installed, and how big given model sources are: `python -m workers.conversions [SOURCE ...]` prints
it as JSON. The gateway's model-lab routes (/api/convert/cross/paths, /api/assets/catalog) run it,
so what they say is what the converter itself would find.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import asdict, dataclass

from workers.sources import resolve

SERVING = "make install"  # the serving environment: openvino-genai, onnxruntime-genai, torch
CONVERT_EXTRA = "pip install 'enginehouse[convert]' (make install does)"
CONVERT_TOOLS = "make convert-tools (optimum-intel in .venv-convert)"


@dataclass
class ConversionPath:
    source: str  # gguf, hf-causal-lm, hf-encoder
    to: str  # openvino, onnx
    options: dict[str, list[str] | bool]  # weight_format, precision, npu: the values it takes
    tools: list[str]  # what it runs
    available: bool
    missing: list[str]
    install: str  # the command that installs what is missing
    command: str  # the same conversion from the command line


def _modules(*names: str) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


def _optimum() -> list[str]:
    from workers.engines.openvino.convert import optimum_cli

    try:
        optimum_cli()
    except RuntimeError:
        return ["optimum-cli"]
    return []


def paths() -> list[ConversionPath]:
    openvino = _modules("openvino", "openvino_genai", "openvino_tokenizers")
    torch = _modules("torch", "transformers")
    onnx_builder = _modules("onnxruntime_genai", "onnx", "onnx_ir", "onnxscript")
    optimum = _optimum()
    formats = ["fp16", "int8", "int4"]

    def path(source, to, options, tools, missing, install, command) -> ConversionPath:
        return ConversionPath(source, to, options, tools, not missing, missing, install, command)

    return [
        path(
            "gguf", "openvino", {}, ["openvino-genai", "openvino-tokenizers"], openvino, SERVING,
            "enginehouse convert MODEL.gguf --to openvino",
        ),
        path(
            "gguf", "openvino", {"weight_format": formats, "npu": True},
            ["transformers (GGUF to Hugging Face)", "optimum-cli export openvino", "nncf"],
            torch + optimum, CONVERT_TOOLS,
            "enginehouse convert MODEL.gguf --to openvino --weight-format int8 [--npu]",
        ),
        path(
            "hf-causal-lm", "openvino", {"weight_format": formats, "npu": True},
            ["optimum-cli export openvino", "nncf"], optimum, CONVERT_TOOLS,
            "enginehouse convert HF_DIRECTORY --to openvino --weight-format int4 [--npu]",
        ),
        path(
            "gguf", "onnx", {"precision": ["int4", "fp16", "fp32"]},
            ["transformers (GGUF to Hugging Face)", "onnxruntime-genai model builder"],
            torch + onnx_builder, CONVERT_EXTRA,
            "enginehouse convert MODEL.gguf --to onnx --precision int4",
        ),
        path(
            "hf-causal-lm", "onnx", {"precision": ["int4", "fp16", "fp32"]},
            ["onnxruntime-genai model builder"], torch + onnx_builder, CONVERT_EXTRA,
            "enginehouse convert HF_DIRECTORY --to onnx --precision int4",
        ),
        path(
            "hf-encoder", "onnx", {}, ["torch.export", "torch.onnx"],
            torch + _modules("onnx", "onnx_ir", "onnxscript"), CONVERT_EXTRA,
            "enginehouse convert ENCODER_DIRECTORY --to onnx",
        ),
        path(
            "hf-encoder", "openvino", {}, ["torch.export", "openvino"], torch + _modules("openvino"),
            SERVING, "enginehouse convert ENCODER_DIRECTORY --to openvino",
        ),
    ]  # fmt: skip


def size(source: str) -> dict[str, object]:
    """A source's bytes on disk (a file, or every file of a directory), or why it is not there."""
    try:
        path = resolve(source)
    except FileNotFoundError as exc:
        return {"present": False, "bytes": None, "error": str(exc)}
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return {"present": True, "bytes": sum(p.stat().st_size for p in files), "path": str(path)}


def main(argv: list[str]) -> int:
    report = {"paths": [asdict(p) for p in paths()], "sources": {s: size(s) for s in argv}}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
