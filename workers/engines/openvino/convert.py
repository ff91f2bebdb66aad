"""Sources → OpenVINO IR, once, into the model cache. Two ways:

- A GGUF with its own weights (the default for a GGUF). OpenVINO GenAI reads a GGUF itself, but
  opens the file for writing (O_RDWR|O_APPEND), so it cannot read the packaged GGUF inside a
  read-only installation, as a hardened service has it. So the GGUF is read once, from a private
  copy, with `enable_save_ov_model`, which makes OpenVINO GenAI write the model it built (and the
  tokenizer and detokenizer IR) beside that copy; the Hugging Face tokenizer and config go into the
  same directory. The reader rounds each Q4_1 block's minimum to a 4-bit zero point; q4_1.py adds
  back what the rounding left out.
- Any weight format (fp16, int8, int4; for an NPU, symmetric and int4 channel-wise): optimum-intel's
  exporter, which compresses the weights with NNCF and writes the tokenizer and detokenizer IR. It
  reads a Hugging Face directory (a GGUF becomes one first, de-quantized to float32 by
  transformers). optimum-intel pins a transformers and a torch that the serving environment cannot
  share, so it runs as a command from its own environment, which `make convert-tools` builds
  beside this one (.venv-convert beside .venv).

The directory is what the engine then serves.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import structlog

from workers.gguf_to_hf import as_hf_directory
from workers.model_cache import entry, staged
from workers.model_files import hf_location
from workers.settings import WeightFormat

log = structlog.get_logger()

IR_FILE = "openvino_model.xml"
IR_WEIGHTS = "openvino_model.bin"
# what optimum-cli prints that is worth passing on: NNCF's table of the weights it compressed
_TABLE_EDGES = tuple("│┍┝├┕")


def ir_directory(cache_dir: Path, gguf: Path) -> Path:
    """This GGUF's IR directory in the cache: named by the file's path and size (and, apart from
    the IRs made before it, by what q4_1.py rewrites: integer zero points with the exact residual
    beside them, matmuls of one input fused, float32 decompression)."""
    return entry(cache_dir / "openvino", gguf.stem, gguf, extra="q4_1-residual-fused-f32")


def gguf_to_ir(gguf: Path, cache_dir: Path) -> Path:
    """The IR directory of this GGUF, converted now if the cache does not have it yet."""
    target = ir_directory(cache_dir, gguf)
    if (target / IR_FILE).exists():
        return target
    # imported here, in the conversion's own process: a worker that serves an IR needs neither the
    # GGUF reader (~3 MB and ~60 ms to import) nor, serving an encoder, OpenVINO GenAI (~12 MB)
    import openvino_genai as ov_genai
    from transformers import AutoConfig, AutoTokenizer

    from workers.engines.openvino.q4_1 import keep_minimums

    log.info("converting the GGUF to OpenVINO IR (once)", source=str(gguf), target=str(target))
    with staged(target, IR_FILE) as staging:
        copy = Path(shutil.copy(gguf, staging.model / gguf.name))
        ov_genai.LLMPipeline(str(copy), "CPU", enable_save_ov_model=True)  # writes beside the copy
        copy.unlink()
        directory, kwargs = hf_location(gguf)
        AutoTokenizer.from_pretrained(directory, **kwargs).save_pretrained(staging.model)
        AutoConfig.from_pretrained(directory, **kwargs).save_pretrained(staging.model)
        rewritten, q4_1 = keep_minimums(staging.model / IR_FILE, gguf, staging.model / "config.json")
    log.info("converted", target=str(target), q4_1_tensors=q4_1, exact_minimums=rewritten)
    return target


def weight_arguments(weight_format: WeightFormat, npu: bool) -> list[str]:
    """optimum-cli's weight options. For an NPU, as OpenVINO's NPU guide asks: symmetric weights,
    int4 channel-wise (group size -1) on every layer (ratio 1). Elsewhere int4 goes in groups of
    128, or of a divisor where a layer's width is not a multiple of 128 (SmolLM2's 576)."""
    arguments = ["--weight-format", weight_format]
    if weight_format == "int4" and npu:
        arguments += ["--sym", "--group-size", "-1", "--ratio", "1.0"]
    elif weight_format == "int4":
        arguments += ["--group-size", "128", "--group-size-fallback", "adjust"]
    elif weight_format == "int8" and npu:
        arguments += ["--sym"]
    return arguments


def optimum_cli(explicit: Path | None = None) -> Path:
    """The optimum-cli to run: the one given, else that of the environment `make convert-tools`
    builds beside this one (.venv-convert beside .venv), else one on PATH."""
    candidates = [explicit] if explicit else [Path(f"{sys.prefix}-convert/bin/optimum-cli")]
    if not explicit and (found := shutil.which("optimum-cli")):
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        f"converting to OpenVINO with a weight format needs optimum-intel's optimum-cli "
        f"({explicit or 'none in .venv-convert or on PATH'}); it pins its own transformers and torch, "
        "so it lives in an environment of its own: `make convert-tools` builds .venv-convert"
    )


def export_directory(cache_dir: Path, source: Path, weight_format: WeightFormat, npu: bool) -> Path:
    """This source's IR directory for these weights: named by the source's path and size."""
    name = f"{source.stem}-{weight_format}{'-npu' if npu else ''}"
    return entry(cache_dir / "openvino", name, source, extra=name)


def export(
    source: Path,
    cache_dir: Path,
    weight_format: WeightFormat,
    npu: bool = False,
    cli: Path | None = None,
    say: Callable[[str], None] = print,
) -> Path:
    """The IR directory of this causal LM (a GGUF or a Hugging Face directory) with these weights,
    exported now with optimum-intel if the cache does not have it yet."""
    target = export_directory(cache_dir, source, weight_format, npu)
    if (target / IR_FILE).exists():
        return target
    command = [str(optimum_cli(cli)), "export", "openvino", "--task", "text-generation-with-past"]
    command += weight_arguments(weight_format, npu)
    with staged(target, IR_FILE) as staging:
        hf = as_hf_directory(source, cache_dir, say)
        say(f"exporting with optimum-intel: {' '.join(command[3:])}")
        _run([*command, "--model", str(hf), str(staging.model)], say)
    log.info("exported", target=str(target), weight_format=weight_format, npu=npu)
    return target


def _run(command: list[str], say: Callable[[str], None]) -> None:
    """optimum-cli, passing on NNCF's table of what it compressed; its last lines if it fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("VIRTUAL_ENV", None)
    last: collections.deque[str] = collections.deque(maxlen=4)
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            line = line.rstrip()
            if line.startswith(_TABLE_EDGES):
                say(f"  {line}")
            elif line.strip():
                last.append(line.strip())
    if child.returncode != 0:
        raise RuntimeError(f"optimum-intel's export failed: {' | '.join(last)}")
