"""Sources → ONNX Runtime GenAI model directories, once, into the model cache.

ONNX Runtime GenAI's model builder reads a Hugging Face directory (it cannot read a Q4_1 GGUF),
so a GGUF is first turned into one with transformers (de-quantized to float32), then built with
`--precision`; the builder writes model.onnx, its weights, genai_config.json and the tokenizer.
config.json goes beside them, for the context length. The directory is what the engine serves.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import structlog

from workers.gguf_to_hf import as_hf_directory
from workers.model_cache import entry, staged

log = structlog.get_logger()

Precision = Literal["int4", "fp16", "fp32"]
GENAI_CONFIG = "genai_config.json"


def require_convert_extra() -> None:
    """Building or exporting ONNX needs the `convert` extra; serving a built model does not."""
    missing = [m for m in ("onnx", "onnx_ir", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(
            f"converting to ONNX needs {', '.join(missing)}: pip install 'enginehouse[convert]' "
            "(make install does), or convert on a machine that has them and copy the cache"
        )


def onnx_directory(cache_dir: Path, source: Path, precision: Precision) -> Path:
    """This source's ONNX directory in the cache: named by its path, size and the precision."""
    return entry(cache_dir / "onnx", f"{source.stem}-{precision}", source, extra=precision)


def build(
    source: Path, cache_dir: Path, precision: Precision = "int4", say: Callable[[str], None] = print
) -> Path:
    """The ONNX directory of this source (a GGUF or a Hugging Face directory), built now if the
    cache does not have it yet."""
    target = onnx_directory(cache_dir, source, precision)
    if (target / GENAI_CONFIG).exists():
        return target
    require_convert_extra()
    with staged(target, GENAI_CONFIG) as staging:
        hf = as_hf_directory(source, staging.scratch, say)
        say(f"building the {precision} ONNX model with ONNX Runtime GenAI's model builder")
        command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf)]
        command += [
            "-o",
            str(staging.model),
            "-p",
            precision,
            "-e",
            "cpu",
            "-c",
            str(staging.scratch / "cache"),
        ]
        run = subprocess.run(
            command, env={**os.environ, "TQDM_DISABLE": "1"}, capture_output=True, text=True, check=False
        )
        if run.returncode != 0:
            last = (run.stderr or run.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"the ONNX Runtime GenAI model builder failed: {' | '.join(last)}")
        shutil.copy(hf / "config.json", staging.model / "config.json")
    log.info("built", target=str(target))
    return target


def genai_context_length(directory: Path) -> int:
    return int(json.loads((directory / GENAI_CONFIG).read_text())["model"]["context_length"])
