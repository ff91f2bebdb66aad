"""GGUF → OpenVINO IR, once, into the model cache.

OpenVINO GenAI reads a GGUF itself, but opens the file for writing (O_RDWR|O_APPEND), so it cannot
read the packaged GGUF inside a read-only installation, as a hardened service has it. So the GGUF
is read once, from a private copy, with `enable_save_ov_model`, which makes OpenVINO GenAI write
the model it built (and the tokenizer and detokenizer IR) beside that copy; the Hugging Face
tokenizer and config go into the same directory. The directory is what the engine then serves.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import openvino_genai as ov_genai
import structlog

from workers.model_files import hf_location

log = structlog.get_logger()

IR_FILE = "openvino_model.xml"


def ir_directory(cache_dir: Path, gguf: Path) -> Path:
    """This GGUF's IR directory in the cache: named by the file's path and size."""
    stamp = f"{gguf.resolve()}:{gguf.stat().st_size}"
    return cache_dir / "openvino" / f"{gguf.stem}-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}"


def gguf_to_ir(gguf: Path, cache_dir: Path) -> Path:
    """The IR directory of this GGUF, converted now if the cache does not have it yet."""
    target = ir_directory(cache_dir, gguf)
    if (target / IR_FILE).exists():
        return target
    from transformers import AutoConfig, AutoTokenizer

    log.info("converting the GGUF to OpenVINO IR (once)", source=str(gguf), target=str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
    try:
        copy = Path(shutil.copy(gguf, staging / gguf.name))
        ov_genai.LLMPipeline(str(copy), "CPU", enable_save_ov_model=True)
        copy.unlink()
        directory, kwargs = hf_location(gguf)
        AutoTokenizer.from_pretrained(directory, **kwargs).save_pretrained(staging)
        AutoConfig.from_pretrained(directory, **kwargs).save_pretrained(staging)
        if not (staging / IR_FILE).exists():
            raise RuntimeError(f"OpenVINO GenAI wrote no {IR_FILE} for {gguf}")
        try:
            staging.rename(target)
        except OSError:
            if not (target / IR_FILE).exists():  # not another worker converting the same at once
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("converted", target=str(target))
    return target
