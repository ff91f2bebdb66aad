"""A GGUF's quantized blocks as they are, for the engines that carry them unchanged (OpenVINO's IR,
ONNX Runtime's MatMulNBits): codes, scales and minimums per 32-wide block, and the row order
transformers gives the attention's query and key weights."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

Q4_1_BLOCK_BYTES = 20  # float16 d, float16 m, 16 bytes of 32 codes (code j low nibble, j + 16 high)
Q8_0_BLOCK_BYTES = 34  # float16 d, 32 signed 8-bit codes


def q4_1_blocks(tensor: gguf.ReaderTensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Q4_1 tensor's scales and minimums [rows, blocks] (float16) and codes [rows, blocks, 32]
    (0..15): w = d*q + m."""
    raw = np.asarray(tensor.data).reshape(tensor.data.shape[0], -1, Q4_1_BLOCK_BYTES)
    scale = raw[..., 0:2].copy().view(np.float16)[..., 0]
    minimum = raw[..., 2:4].copy().view(np.float16)[..., 0]
    codes = np.concatenate([raw[..., 4:] & 0xF, raw[..., 4:] >> 4], axis=-1)
    return scale, minimum, codes


def q8_0_blocks(tensor: gguf.ReaderTensor) -> tuple[np.ndarray, np.ndarray]:
    """A Q8_0 tensor's scales [rows, blocks] (float16) and codes [rows, blocks, 32] (int8): w = d*q."""
    raw = np.asarray(tensor.data).reshape(tensor.data.shape[0], -1, Q8_0_BLOCK_BYTES)
    scale = raw[..., 0:2].copy().view(np.float16)[..., 0]
    return scale, raw[..., 2:].copy().view(np.int8)


def to_hf_rows(array: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's row order of a query or key weight → Hugging Face's (transformers'
    reverse_permute for Llama)."""
    rows = array.shape[0]
    return array.reshape(heads, rows // heads // 2, 2, *array.shape[1:]).swapaxes(1, 2).reshape(array.shape)


def read_tensors(gguf_file: Path) -> dict[str, gguf.ReaderTensor]:
    """A GGUF's tensors by name (its data mapped, not read); parsing the header takes seconds."""
    return {t.name: t for t in gguf.GGUFReader(gguf_file).tensors}


def carriable(tensors: dict[str, gguf.ReaderTensor]) -> bool:
    """Whether a GGUF's tensors are the kinds of blocks carried as they are into ONNX
    (engines/onnx/gguf_weights.py): Q4_1 layers, Q8_0 embeddings and output. Others (Q4_K and the
    like) are built by the model builder in int4 instead."""
    layers = [t for name, t in tensors.items() if name.startswith("blk.") and len(t.shape) > 1]
    embeddings = [tensors[name] for name in ("token_embd.weight", "output.weight") if name in tensors]
    q4_1, q8_0 = gguf.GGMLQuantizationType.Q4_1, gguf.GGMLQuantizationType.Q8_0
    return (
        bool(layers)
        and all(t.tensor_type == q4_1 for t in layers)
        and all(t.tensor_type == q8_0 for t in embeddings)
    )
