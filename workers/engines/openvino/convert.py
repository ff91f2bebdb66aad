"""GGUF → OpenVINO IR, once, into the model cache.

OpenVINO GenAI reads a GGUF itself, but opens the file for writing (O_RDWR|O_APPEND), so it cannot
read the packaged GGUF inside a read-only installation, as a hardened service has it. So the GGUF
is read once, from a private copy, with `enable_save_ov_model`, which makes OpenVINO GenAI write
the model it built (and the tokenizer and detokenizer IR) beside that copy; the Hugging Face
tokenizer and config go into the same directory. The directory is what the engine then serves.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import openvino_genai as ov_genai
import structlog

from workers.model_cache import entry, staged
from workers.model_files import hf_location

log = structlog.get_logger()

IR_FILE = "openvino_model.xml"


def ir_directory(cache_dir: Path, gguf: Path) -> Path:
    """This GGUF's IR directory in the cache: named by the file's path and size."""
    return entry(cache_dir / "openvino", gguf.stem, gguf)


def gguf_to_ir(gguf: Path, cache_dir: Path) -> Path:
    """The IR directory of this GGUF, converted now if the cache does not have it yet."""
    target = ir_directory(cache_dir, gguf)
    if (target / IR_FILE).exists():
        return target
    from transformers import AutoConfig, AutoTokenizer

    log.info("converting the GGUF to OpenVINO IR (once)", source=str(gguf), target=str(target))
    with staged(target, IR_FILE) as staging:
        copy = Path(shutil.copy(gguf, staging.model / gguf.name))
        ov_genai.LLMPipeline(str(copy), "CPU", enable_save_ov_model=True)  # writes beside the copy
        copy.unlink()
        directory, kwargs = hf_location(gguf)
        AutoTokenizer.from_pretrained(directory, **kwargs).save_pretrained(staging.model)
        AutoConfig.from_pretrained(directory, **kwargs).save_pretrained(staging.model)
    log.info("converted", target=str(target))
    return target
