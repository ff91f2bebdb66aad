"""A GGUF's quantized blocks as they are, for the engines that carry them unchanged (OpenVINO's IR,
ONNX Runtime's MatMulNBits): codes, scales and minimums per 32-wide block, and the row order
transformers gives the attention's query and key weights."""

from __future__ import annotations

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
