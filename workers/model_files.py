"""What every engine reads from a model's files besides the weights: the Hugging Face tokenizer
(chat template, incremental decoding) and the context length. A source is a GGUF file or a
directory in Hugging Face layout (an OpenVINO IR or ONNX export keeps the tokenizer files beside
the model)."""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any


def hf_location(path: Path) -> tuple[Path, dict[str, str]]:
    """The directory and keyword arguments transformers' from_pretrained takes for this source."""
    if path.suffix == ".gguf":
        return path.parent, {"gguf_file": path.name}
    return path, {}


def load_tokenizer(path: Path) -> Any:
    """A model's tokenizer. A directory with a tokenizer.json (every IR and ONNX export, most
    Hugging Face models) gets it on the `tokenizers` library alone (workers/hf_tokenizer.py); a GGUF
    (its tokenizer in its metadata) or a directory with only a SentencePiece model gets
    transformers' AutoTokenizer, which converts them (and imports torch)."""
    from workers.hf_tokenizer import HfTokenizer

    directory, kwargs = hf_location(path)
    if not kwargs and HfTokenizer.readable(directory):
        return HfTokenizer(directory)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory, **kwargs)


def load_tokenizer_meanwhile(path: Path) -> Future[Any]:
    """load_tokenizer in a thread of its own, for an engine that builds its model meanwhile
    (OpenVINO compiles without holding the GIL)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="tokenizer")
    try:
        return pool.submit(load_tokenizer, path)
    finally:
        pool.shutdown(wait=False)


def context_length(path: Path) -> int:
    """The context the model was trained for: GGUF metadata, or config.json's
    max_position_embeddings."""
    if path.suffix == ".gguf":
        from gguf import GGUFReader

        fields = GGUFReader(path).fields
        arch_field = fields["general.architecture"]
        arch = bytes(arch_field.parts[arch_field.data[0]]).decode()
        length = fields[f"{arch}.context_length"]
        return int(length.parts[length.data[0]][0])
    config = json.loads((path / "config.json").read_text())
    return int(config["max_position_embeddings"])
