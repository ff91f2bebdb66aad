"""The GGUF's Q4_1 blocks in OpenVINO IR as they are: each block's minimum kept exactly.

A Q4_1 block holds 32 four-bit codes q, a scale d and a minimum m (both float16): w = d*q + m.
OpenVINO GenAI's GGUF reader writes each block as d * (q - z) with z an unsigned 4-bit zero point,
so it rounds -m/d to the nearest integer in 0..15: every weight moves by up to d/2. Measured on
SmolLM2-135M's GGUF (tests/benchmarks/faithfulness.py): the model so built scores its fixed text
0.21 nats/token below the GGUF de-quantized exactly, and picks the same next token only 71% of the
time. With z = -m/d as a float16 constant, the same graph scores within 0.001 nats/token of it and
agrees on 99%, at the same speed on the CPU (its compressed-weights matmul takes float zero points).

The reader keeps the codes and the scales unchanged, so each compressed weight of the IR is matched
to its GGUF tensor by its codes, in llama.cpp's row order or in Hugging Face's (the reader permutes
the rows of the attention's query and key weights as transformers does), and only the zero point is
replaced.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import openvino as ov

from workers.gguf_blocks import q4_1_blocks, to_hf_rows


def _key(codes: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(codes, dtype=np.uint8).tobytes()).hexdigest()


def exact_zero_points(gguf_file: Path, config: dict) -> tuple[dict[str, np.ndarray], int]:
    """-m/d of every Q4_1 block [rows, blocks] (float32), under the key of its tensor's codes, in
    both row orders; and how many Q4_1 tensors there are."""
    heads = {
        config["num_attention_heads"],
        config.get("num_key_value_heads") or config["num_attention_heads"],
    }
    table: dict[str, np.ndarray] = {}
    count = 0
    for tensor in gguf.GGUFReader(gguf_file).tensors:
        if tensor.tensor_type != gguf.GGMLQuantizationType.Q4_1:
            continue
        count += 1
        scale, minimum, codes = q4_1_blocks(tensor)
        scale32 = scale.astype(np.float32)
        zero = np.divide(-minimum.astype(np.float32), scale32, out=np.zeros_like(scale32), where=scale32 != 0)
        table[_key(codes)] = zero
        for n in heads:
            if codes.shape[0] % (2 * n) == 0:
                table[_key(to_hf_rows(codes, n))] = to_hf_rows(zero, n)
    return table, count


def four_bit_weights(model: ov.Model) -> Iterator[tuple[ov.Node, ov.Node]]:
    """Each decompression `Subtract` of 4-bit weights (input 0: the codes converted; input 1: the
    zero point) with the codes' Constant."""
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Subtract":
            continue
        weights = node.input(0).get_source_output().get_node().input(0).get_source_output().get_node()
        if weights.get_type_name() == "Constant" and weights.get_element_type() == ov.Type.u4:
            yield node, weights


def keep_minimums(ir_file: Path, gguf_file: Path, config_file: Path) -> tuple[int, int]:
    """Rewrite the IR's 4-bit zero points of Q4_1 weights as the GGUF's exact -m/d; returns how many
    were rewritten and how many Q4_1 tensors the GGUF has (other 4-bit blocks, Q4_0's symmetric
    ones, have an integer zero point and are left as the reader wrote them)."""
    table, q4_1 = exact_zero_points(gguf_file, json.loads(config_file.read_text()))
    core = ov.Core()
    model = core.read_model(ir_file)
    rewritten = 0
    for node, weights in four_bit_weights(model):
        packed = np.frombuffer(weights.get_data().tobytes(), dtype=np.uint8)
        codes = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(weights.get_output_shape(0))
        zero = table.get(_key(codes))
        if zero is None:
            continue
        exact = ov.op.Constant(zero.astype(np.float16).reshape(*zero.shape, 1))
        node.input(1).replace_source_output(exact.output(0))
        rewritten += 1
    model.validate_nodes_and_infer_types()
    written = ir_file.with_name("exact-" + ir_file.name)
    ov.save_model(model, written, compress_to_fp16=False)
    del model
    written.rename(ir_file)
    written.with_suffix(".bin").rename(ir_file.with_suffix(".bin"))
    return rewritten, q4_1
