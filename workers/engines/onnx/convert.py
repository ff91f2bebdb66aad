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

import structlog

from workers.gguf_blocks import carriable, read_tensors
from workers.gguf_to_hf import as_hf_directory
from workers.model_cache import entry, staged
from workers.settings import OnnxPrecision

log = structlog.get_logger()

GENAI_CONFIG = "genai_config.json"


def require_convert_extra() -> None:
    """Building or exporting ONNX needs the `convert` extra; serving a built model does not."""
    missing = [m for m in ("onnx", "onnx_ir", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(
            f"converting to ONNX needs {', '.join(missing)}: pip install 'enginehouse[convert]' "
            "(make install does), or convert on a machine that has them and copy the cache"
        )


def onnx_directory(cache_dir: Path, source: Path, precision: OnnxPrecision, lora: str = "") -> Path:
    """This source's ONNX directory in the cache: named by its path, size and the precision (and the
    LoRA shape it takes adapters of)."""
    name = f"{source.stem}-{precision}" + (f"-lora-{lora[:40]}" if lora else "")
    return entry(cache_dir / "onnx", name, source, extra=precision + lora)


def build(
    source: Path,
    cache_dir: Path,
    precision: OnnxPrecision | None = None,
    say: Callable[[str], None] = print,
    adapter_shape: Path | None = None,
) -> Path:
    """The ONNX directory of this source (a GGUF or a Hugging Face directory), built now if the
    cache does not have it yet. Without a precision: a GGUF with its own blocks when they are Q4_1
    and Q8_0 (gguf_weights.py), else int4. With `adapter_shape` (a PEFT directory), built in fp32
    with LoRA inputs of that adapter's rank and layers (onnx/lora.py)."""
    from workers.engines.onnx.lora import make_adapter_ready, shape_of

    gguf = source.suffix == ".gguf"
    lora = shape_of(adapter_shape) if adapter_shape is not None else ""
    tensors = None  # the GGUF's, read (seconds) only to build
    if lora:
        precision = "fp32"
    elif precision is None and gguf:
        cached = (onnx_directory(cache_dir, source, "gguf") / GENAI_CONFIG).exists()
        tensors = None if cached else read_tensors(source)
        precision = "gguf" if cached or carriable(tensors) else "int4"
    precision = precision or "int4"
    if precision == "gguf" and not gguf:
        raise ValueError(f"precision gguf keeps a GGUF's own blocks; {source} is not a GGUF")
    target = onnx_directory(cache_dir, source, precision, lora)
    if (target / GENAI_CONFIG).exists():
        return target
    require_convert_extra()
    with staged(target, GENAI_CONFIG) as staging:
        hf = as_hf_directory(source, cache_dir, say)
        say(f"building the {precision} ONNX model with ONNX Runtime GenAI's model builder")
        command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf)]
        command += [
            "-o",
            str(staging.model),
            "-p",
            "int4" if precision == "gguf" else precision,
            "-e",
            "cpu",
            "-c",
            str(staging.scratch / "cache"),
        ]
        if adapter_shape is not None:
            command += ["--extra_options", f"adapter_path={adapter_shape}"]
        run = subprocess.run(
            command, env={**os.environ, "TQDM_DISABLE": "1"}, capture_output=True, text=True, check=False
        )
        if run.returncode != 0:
            last = (run.stderr or run.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"the ONNX Runtime GenAI model builder failed: {' | '.join(last)}")
        shutil.copy(hf / "config.json", staging.model / "config.json")
        if precision == "gguf":
            from workers.engines.onnx.gguf_weights import carry_gguf_weights

            say("putting the GGUF's own blocks in the ONNX model")
            config = json.loads((hf / "config.json").read_text())
            carried = carry_gguf_weights(staging.model, tensors or read_tensors(source), config)
            log.info("the GGUF's blocks carried", weights=carried)
        if adapter_shape is not None:
            make_adapter_ready(staging.model)
    log.info("built", target=str(target))
    return target


def genai_context_length(directory: Path) -> int:
    return int(json.loads((directory / GENAI_CONFIG).read_text())["model"]["context_length"])
