"""The GGUF's Q4_1 blocks in OpenVINO IR as they are, each block's minimum kept exactly, in the
form OpenVINO's CPU plugin multiplies with int8 activations.

A Q4_1 block holds 32 four-bit codes q, a scale d and a minimum m (both float16): w = d*q + m.
OpenVINO GenAI's GGUF reader writes each block as d * (q - z) with z an unsigned 4-bit zero point,
so it rounds -m/d to an integer in 0..15: every weight moves by up to d/2. Measured on SmolLM2-135M's
GGUF (tests/benchmarks/faithfulness.py): the model so built scores its fixed text 0.21 nats/token
below the GGUF de-quantized exactly, and picks the same next token only 71% of the time.

Here each block keeps an integer zero point z (-m/d rounded) and what the rounding leaves out,
r = d*z + m (|r| <= d/2), goes back in beside the matmul: x·w = x·(d*(q - z)) + sum over blocks b of
r_b * (the sum of x over block b), a ReduceSum over 32-wide blocks of x and a small MatMul (blocks x
N) added to the compressed one, as the ONNX engine does (engines/onnx/gguf_weights.py). Exact in
float32. Why not the float zero point -m/d, exact too and what this module wrote before: the CPU
plugin quantizes a compressed matmul's activations to int8 (`DYNAMIC_QUANTIZATION_GROUP_SIZE`, the
worker's default, device.py) only for integer zero points; with them the compressed matmuls of a
one-row decode step took 12.7 ms instead of 19.7, and a step of 8 rows 29-35 ms instead of 43-59
(the IR run directly, Xeon VM, AVX-512 VNNI/AMX).

Why not without the residual's nodes, each block as 8-bit codes 16q and an 8-bit zero point -16m/d
rounded (every weight within d/32 of the GGUF's; measured 2026-12-02): decode steps of 8 rows 13%
faster and of one row 5-9%, the worker 24 MB larger, the fixed text 0.007 nats/token below the
reference (0.005 with f32 activations, no longer exact) and 96.5% top-1; but the greedy answer to
"What is the capital of France?", a near tie in the reference ("The" 0.08 nats above "L"), became
"L'Étoile, la Cité, ..." (llama.cpp's server on the GGUF, too, starts it "L'Étoile"), and the
README's examples must answer it sensibly (issue 2).

The matmuls that read the same input (query, key and value; gate and up) are one here, its output
split after: each node costs the plugin time a step beyond its arithmetic, and the residuals add
three to four a matmul (measured, one row: 20-24 ms a step fused, 24-26 not).

The reader keeps the codes and the scales unchanged, so each compressed weight of the IR is matched
to its GGUF tensor by its codes, in llama.cpp's row order or in Hugging Face's (the reader permutes
the rows of the attention's query and key weights as transformers does).

The reader decompresses in float16; here it is float32 (the codes converted to f32, the scales f32
constants): the CPU plugin computes in f32 anyway, and it copies float16 decompression constants
into f32 ones that it keeps beside its kernels' packed weights for the model's life (31 MB for
SmolLM2); f32 ones it reads in place while packing and not after, so the worker pages them out with
the rest of the weights file (workers/memory.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import openvino as ov
from openvino import opset13 as ops

from workers.gguf_blocks import q4_1_blocks, to_hf_rows

BLOCK = 32


@dataclass(frozen=True)
class Residual:
    """A Q4_1 tensor's integer zero points z [rows, blocks] (0..15) and what they round off,
    r = d*z + m [rows, blocks] (float32): w = d*(q - z) + r."""

    zero: np.ndarray
    rest: np.ndarray

    def rows(self, heads: int) -> Residual:
        return Residual(to_hf_rows(self.zero, heads), to_hf_rows(self.rest, heads))


def _key(codes: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(codes, dtype=np.uint8).tobytes()).hexdigest()


def residuals(gguf_file: Path, config: dict) -> tuple[dict[str, Residual], int]:
    """Every Q4_1 tensor's Residual under the key of its codes, in both row orders; and how many
    Q4_1 tensors there are."""
    heads = {
        config["num_attention_heads"],
        config.get("num_key_value_heads") or config["num_attention_heads"],
    }
    table: dict[str, Residual] = {}
    count = 0
    for tensor in gguf.GGUFReader(gguf_file).tensors:
        if tensor.tensor_type != gguf.GGMLQuantizationType.Q4_1:
            continue
        count += 1
        scale, minimum, codes = q4_1_blocks(tensor)
        d, m = scale.astype(np.float32), minimum.astype(np.float32)
        exact = np.divide(-m, d, out=np.zeros_like(d), where=d != 0)
        zero = np.clip(np.rint(exact), 0, 15).astype(np.uint8)
        residual = Residual(zero, d * zero + m)
        table[_key(codes)] = residual
        for n in heads:
            if codes.shape[0] % (2 * n) == 0:
                table[_key(to_hf_rows(codes, n))] = residual.rows(n)
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


@dataclass
class _Weight:
    """One Q4_1 matmul of the IR: the MatMul, its packed codes [rows, blocks * 16 bytes], scales
    [rows, blocks, 1] and the GGUF's Residual."""

    matmul: ov.Node
    packed: np.ndarray
    scale: np.ndarray
    residual: Residual


def _weight(subtract: ov.Node, codes: ov.Node, residual: Residual) -> _Weight:
    """The reader's decompression: codes → Convert → Subtract(zero point) → Multiply(scale) →
    Reshape → MatMul(x, w, transpose_b); another shape stops the conversion rather than guess."""
    (multiply,) = (t.get_node() for t in subtract.output(0).get_target_inputs())
    (reshape,) = (t.get_node() for t in multiply.output(0).get_target_inputs())
    (matmul,) = (t.get_node() for t in reshape.output(0).get_target_inputs())
    scale = multiply.input(1).get_source_output().get_node()
    shape = (multiply.get_type_name(), reshape.get_type_name(), matmul.get_type_name(), scale.get_type_name())
    if shape != ("Multiply", "Reshape", "MatMul", "Constant") or not matmul.get_attributes()["transpose_b"]:
        raise ValueError(f"unexpected decompression of {codes.get_friendly_name()}: {shape}")
    rows, blocks = residual.zero.shape
    packed = np.frombuffer(codes.get_data().tobytes(), dtype=np.uint8).reshape(rows, blocks * BLOCK // 2)
    return _Weight(matmul, packed, scale.get_data().astype(np.float32), residual)


def _u4(values: np.ndarray, shape: list[int]) -> ov.Node:
    """A u4 Constant of these bytes (two codes a byte, the first in the low nibble)."""
    tensor = ov.Tensor(ov.Type.u4, ov.Shape(shape))
    np.copyto(tensor.data.reshape(-1), values.reshape(-1))
    return ov.op.Constant(tensor)


def _pack(codes: np.ndarray) -> np.ndarray:
    flat = codes.reshape(-1)
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)


def _fused(x: ov.Output, weights: list[_Weight]) -> list[ov.Output]:
    """One matmul of x [batch, tokens, blocks * 32] with these weights stacked by rows, plus the
    residuals times x's block sums; its output split back into one per weight."""
    packed = np.concatenate([w.packed for w in weights])
    scale = np.concatenate([w.scale for w in weights])
    zero = np.concatenate([w.residual.zero for w in weights])
    rest = np.concatenate([w.residual.rest for w in weights])
    rows, blocks = zero.shape
    codes = ops.convert(_u4(packed, [rows, blocks, BLOCK]), ov.Type.f32)
    zero_point = ops.convert(_u4(_pack(zero), [rows, blocks, 1]), ov.Type.f32)
    w = ops.multiply(ops.subtract(codes, zero_point), ops.constant(scale))
    w = ops.reshape(w, ops.constant(np.array([rows, blocks * BLOCK], np.int64)), special_zero=False)
    split = ops.reshape(x, ops.constant(np.array([0, 0, blocks, BLOCK], np.int64)), special_zero=True)
    block_sums = ops.reduce_sum(split, ops.constant(np.array([-1], np.int64)), keep_dims=False)
    correction = ops.matmul(block_sums, ops.constant(np.ascontiguousarray(rest.T)), False, False)
    y = ops.add(ops.matmul(x, w, False, True), correction)
    if len(weights) == 1:
        return [y.output(0)]
    sizes = np.array([w.residual.zero.shape[0] for w in weights], np.int64)
    return list(ops.variadic_split(y, ops.constant(np.array(-1, np.int64)), ops.constant(sizes)).outputs())


def keep_minimums(ir_file: Path, gguf_file: Path, config_file: Path) -> tuple[int, int]:
    """Rewrite the IR to decompress in float32, each Q4_1 matmul with integer zero points and the
    GGUF's exact residual beside it, the ones of one input fused; returns how many weights were
    rewritten and how many Q4_1 tensors the GGUF has (other 4-bit blocks, Q4_0's symmetric ones,
    have an integer zero point already and are left as the reader wrote them)."""
    table, q4_1 = residuals(gguf_file, json.loads(config_file.read_text()))
    model = ov.Core().read_model(ir_file)
    decompress_in_float32(model)
    by_input: dict[tuple[str, int], tuple[ov.Output, list[_Weight]]] = {}  # by (node, output)
    for subtract, codes in four_bit_weights(model):
        packed = np.frombuffer(codes.get_data().tobytes(), dtype=np.uint8)
        unpacked = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(codes.get_output_shape(0))
        residual = table.get(_key(unpacked))
        if residual is not None:
            weight = _weight(subtract, codes, residual)
            x = weight.matmul.input_value(0)
            by_input.setdefault((x.get_node().get_name(), x.get_index()), (x, []))[1].append(weight)
    for x, weights in by_input.values():
        if x.get_partial_shape().rank.get_length() != 3:
            raise ValueError(f"unexpected input of {weights[0].matmul.get_friendly_name()}: {x}")
        for weight, output in zip(weights, _fused(x, weights), strict=True):
            for target in weight.matmul.output(0).get_target_inputs():
                target.replace_source_output(output)
    model.validate_nodes_and_infer_types()
    written = ir_file.with_name("exact-" + ir_file.name)
    ov.save_model(model, written, compress_to_fp16=False)
    del model
    written.rename(ir_file)
    written.with_suffix(".bin").rename(ir_file.with_suffix(".bin"))
    return sum(len(weights) for _, weights in by_input.values()), q4_1
