"""The GGUF's Q4_1 blocks in OpenVINO IR as they are: each block's minimum kept exactly.

A Q4_1 block holds 32 four-bit codes q, a scale d and a minimum m (both float16): w = d*q + m.
OpenVINO GenAI's GGUF reader writes each block as d * (q - z) with z an unsigned 4-bit zero point,
so it rounds -m/d to the nearest integer in 0..15: every weight moves by up to d/2. Measured on
SmolLM2-135M's GGUF (tests/benchmarks/faithfulness.py): the model so built scores its fixed text
0.21 nats/token below the GGUF de-quantized exactly, and picks the same next token only 71% of the
time. With z = -m/d as a constant, the same graph scores within 0.001 nats/token of it and agrees
on 99%, at the same speed on the CPU (its compressed-weights matmul takes float zero points).

The reader keeps the codes and the scales unchanged, so each compressed weight of the IR is matched
to its GGUF tensor by its codes, in llama.cpp's row order or in Hugging Face's (the reader permutes
the rows of the attention's query and key weights as transformers does), and only the zero point is
replaced.

The reader decompresses in float16; here it is float32 (the codes converted to f32, the scales and
zero points f32 constants): z exact needs it, and the CPU plugin computes in f32 anyway. It copies
float16 decompression constants into f32 ones that it keeps beside its kernels' packed weights for
the model's life (31 MB for SmolLM2); f32 ones it reads in place while packing and not after, so
the worker pages them out with the rest of the weights file (workers/memory.py). Measured with the
worker's pipeline: f16 constants widened so give logits equal to the bit; with z in f32 too, 31 MB
less resident at rest and under load, the same speed, the fixed text's score 0.0004 nats/token from
the reference instead of 0.0006 (top-1 agreement unchanged), 5 of 6 greedy answers of 128 tokens
unchanged (one from its 96th token on); the IR is 112 MB instead of 97.
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


def decompress_in_float32(model: ov.Model) -> None:
    """Every float16 constant as float32 (exact), every conversion of integer codes to float16 as
    one to float32, and the conversions to float32 that are then no-ops removed."""
    for node in model.get_ordered_ops():
        if node.get_type_name() == "Constant" and node.get_element_type() == ov.Type.f16:
            wide = ov.op.Constant(node.get_data().astype(np.float32))
            for target in node.output(0).get_target_inputs():
                target.replace_source_output(wide.output(0))
        elif (
            node.get_type_name() == "Convert"
            and node.get_output_element_type(0) == ov.Type.f16
            and node.get_input_element_type(0).is_integral()
        ):
            wide = ov.opset13.convert(node.input_value(0), ov.Type.f32)
            for target in node.output(0).get_target_inputs():
                target.replace_source_output(wide.output(0))
    model.validate_nodes_and_infer_types()
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Convert":
            continue
        if node.get_input_element_type(0) == node.get_output_element_type(0):
            for target in node.output(0).get_target_inputs():
                target.replace_source_output(node.input_value(0))
    model.validate_nodes_and_infer_types()


def keep_minimums(ir_file: Path, gguf_file: Path, config_file: Path) -> tuple[int, int]:
    """Rewrite the IR to decompress in float32, with the 4-bit zero points of Q4_1 weights the GGUF's
    exact -m/d; returns how many were rewritten and how many Q4_1 tensors the GGUF has (other 4-bit
    blocks, Q4_0's symmetric ones, have an integer zero point and are left as the reader wrote them)."""
    table, q4_1 = exact_zero_points(gguf_file, json.loads(config_file.read_text()))
    core = ov.Core()
    model = core.read_model(ir_file)
    decompress_in_float32(model)
    rewritten = 0
    for node, weights in four_bit_weights(model):
        packed = np.frombuffer(weights.get_data().tobytes(), dtype=np.uint8)
        codes = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(weights.get_output_shape(0))
        zero = table.get(_key(codes))
        if zero is None:
            continue
        exact = ov.op.Constant(zero.reshape(*zero.shape, 1))  # float32
        node.input(1).replace_source_output(exact.output(0))
        rewritten += 1
    model.validate_nodes_and_infer_types()
    written = ir_file.with_name("exact-" + ir_file.name)
    ov.save_model(model, written, compress_to_fp16=False)
    del model
    written.rename(ir_file)
    written.with_suffix(".bin").rename(ir_file.with_suffix(".bin"))
    return rewritten, q4_1
