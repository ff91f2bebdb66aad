"""The GGUF's own blocks in the ONNX model the builder wrote (`--onnx-precision gguf`).

ONNX Runtime GenAI's model builder cannot read a Q4_1 GGUF: it builds from the de-quantized
float32 weights and quantizes them again (int4, symmetric, 32-wide blocks), which moves every weight
and made the model 0.26 nats/token less likely on a fixed text than the GGUF itself. This keeps the
graph the builder wrote (its fused attention, its int8-activation matmuls) and puts back, weight by
weight, what the GGUF holds:

- Q4_1 (w = d*q + m per block of 32): MatMulNBits takes the codes and scales as they are and reads
  them with its default zero point, 8: x·(d*(q - 8)); the rest, x·(m + 8d), is per block that
  constant times the sum of x over the block: a ReduceSum over blocks and a small MatMul (K/32 by
  N) beside each matmul, about 12% of a token's time. (MatMulNBits' float zero points, -m/d, are
  exact too but run on a de-quantizing path 20x slower; a zero-point input of 0 costs more.)
- Q8_0 (w = d*q), the token embeddings and the tied output layer: 8-bit MatMulNBits and
  GatherBlockQuantized with the codes shifted to unsigned (their default zero point is 128).

Each weight is found by the builder's node names (`/model/layers.N/attn/qkv_proj/MatMul_Q4`, ...);
a node with no GGUF tensor of a known type behind it stops the conversion rather than guessing.
"""

from __future__ import annotations

import re
from pathlib import Path

import gguf
import numpy as np
import onnx
from onnx import helper, numpy_helper

from workers.gguf_blocks import q4_1_blocks, q8_0_blocks, to_hf_rows

BLOCK = 32
_LAYER = re.compile(r"^/model/layers\.(\d+)/(attn|mlp)/(\w+)/MatMul_Q4$")
_PARTS = {
    "qkv_proj": ("attn_q", "attn_k", "attn_v"),
    "o_proj": ("attn_output",),
    "gate_proj": ("ffn_gate",),
    "up_proj": ("ffn_up",),
    "down_proj": ("ffn_down",),
}
Q4_1, Q8_0 = gguf.GGMLQuantizationType.Q4_1, gguf.GGMLQuantizationType.Q8_0


class _Graph:
    """The model's graph with its initializers by name, and new ones added under fresh names."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        self.initializers = {i.name: i for i in self.graph.initializer}

    def put(self, name: str, array: np.ndarray) -> str:
        tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
        if name in self.initializers:
            self.initializers[name].CopyFrom(tensor)
        else:
            self.graph.initializer.append(tensor)
            self.initializers[name] = self.graph.initializer[-1]
        return name


def _q4_1_rows(tensors: dict[str, gguf.ReaderTensor], names: list[str], heads: dict[str, int]):
    """Scales, minimums [N, blocks] and codes [N, blocks, 32] of these Q4_1 tensors stacked by rows,
    the query's and key's rows in transformers' order."""
    parts = []
    for name in names:
        tensor = tensors[name]
        if tensor.tensor_type != Q4_1:
            raise ValueError(f"{name} is {tensor.tensor_type.name}: only Q4_1 layers are carried")
        blocks = q4_1_blocks(tensor)
        kind = name.split(".")[-2]
        if kind in heads:
            blocks = tuple(to_hf_rows(array, heads[kind]) for array in blocks)
        parts.append(blocks)
    return (np.concatenate([p[i] for p in parts]) for i in range(3))


def _carry_q4_1(
    graph: _Graph, node: onnx.NodeProto, sums: dict[str, str], scale, minimum, codes
) -> list[onnx.NodeProto]:
    """Node's weights become the Q4_1 blocks, read with MatMulNBits' default zero point, 8:
    x·(d*(q - 8)); the nodes returned add x·(m + 8d), so the output is x·(d*q + m). The block sums
    of an input are made once for every matmul that reads it (`sums`: input → their name)."""
    blocks = scale.shape[1]
    weight, scales, x = node.input[1], node.input[2], node.input[0]
    graph.put(weight, (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8))
    graph.put(scales, scale.astype(np.float32))
    del node.input[3:]
    output, base = node.output[0], node.name
    node.output[0] = f"{output}_codes"
    offsets = graph.put(f"{weight}_offsets", (minimum.astype(np.float32) + 8 * scale.astype(np.float32)).T)
    added = []
    if x not in sums:
        shape = graph.put(f"{weight}_block_shape", np.array([0, 0, blocks, BLOCK], np.int64))
        axes = graph.put(f"{weight}_block_axes", np.array([-1], np.int64))
        sums[x] = f"{base}/sums"
        added += [
            helper.make_node("Reshape", [x, shape], [f"{base}/blocks"], name=f"{base}/Blocks"),
            helper.make_node(
                "ReduceSum", [f"{base}/blocks", axes], [sums[x]], keepdims=0, name=f"{base}/Sums"
            ),
        ]
    added.append(helper.make_node("MatMul", [sums[x], offsets], [f"{base}/offsets"], name=f"{base}/Offsets"))
    added.append(
        helper.make_node("Add", [node.output[0], f"{base}/offsets"], [output], name=f"{base}/AddOffsets")
    )
    return added


def _q8_0(tensors: dict[str, gguf.ReaderTensor], name: str) -> tuple[np.ndarray, np.ndarray]:
    tensor = tensors[name]
    if tensor.tensor_type != Q8_0:
        raise ValueError(f"{name} is {tensor.tensor_type.name}: only Q8_0 embeddings are carried")
    scale, codes = q8_0_blocks(tensor)
    return scale.astype(np.float32), (codes.astype(np.int16) + 128).astype(np.uint8)


def carry_gguf_weights(model_dir: Path, tensors: dict[str, gguf.ReaderTensor], config: dict) -> int:
    """Rewrite model_dir/model.onnx (and its .data) with the GGUF's blocks (`tensors`:
    gguf_blocks.read_tensors); how many weights."""
    path = model_dir / "model.onnx"
    model = onnx.load(path)
    graph = _Graph(model)
    heads = {
        "attn_q": config["num_attention_heads"],
        "attn_k": config.get("num_key_value_heads") or config["num_attention_heads"],
    }
    embeddings = _q8_0(tensors, "token_embd.weight")
    names = {
        "token_embd.weight": (
            graph.put("model.embed_tokens.weight_q8", embeddings[1]),
            graph.put("model.embed_tokens.scales_q8", embeddings[0]),
        )
    }
    if "output.weight" in tensors:  # not tied to the embeddings
        scale, codes = _q8_0(tensors, "output.weight")
        names["output.weight"] = (
            graph.put("lm_head.weight_q8", codes),
            graph.put("lm_head.scales_q8", scale),
        )
    output = names.get("output.weight", names["token_embd.weight"])
    producers = {out: node for node in model.graph.node for out in node.output}
    carried, nodes, sums = 0, [], {}
    for node in model.graph.node:
        nodes.append(node)
        if node.op_type == "MatMulNBits" and (match := _LAYER.match(node.name)):
            layer, _, part = match.groups()
            if part not in _PARTS:
                raise ValueError(f"no GGUF tensor known for {node.name}")
            blocks = _q4_1_rows(tensors, [f"blk.{layer}.{kind}.weight" for kind in _PARTS[part]], heads)
            nodes += _carry_q4_1(graph, node, sums, *blocks)
        elif node.op_type == "MatMulNBits" and node.name == "/lm_head/MatMul_Q4":
            node.input[1:] = list(output)
            _set(node, "bits", 8)
        elif node.op_type == "GatherBlockQuantized":  # its table: the codes as [vocabulary, hidden]
            codes, scales = names["token_embd.weight"]
            reshape = producers[node.input[0]]
            rows, blocks = embeddings[0].shape
            reshape.input[:] = [
                codes,
                graph.put("model.embed_tokens.shape_q8", np.array([rows, blocks * BLOCK])),
            ]
            node.input[2] = scales
            _set(node, "bits", 8)
        elif node.op_type == "MatMulNBits":
            raise ValueError(f"no GGUF tensor known for {node.name}")
        else:
            continue
        carried += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _drop_unused(model)
    for stale in (path, model_dir / "model.onnx.data"):
        stale.unlink()
    onnx.save(model, path, save_as_external_data=True, location="model.onnx.data")
    return carried


def _set(node: onnx.NodeProto, name: str, value: int) -> None:
    for attribute in node.attribute:
        if attribute.name == name:
            attribute.i = value
            return
    node.attribute.append(helper.make_attribute(name, value))


def _drop_unused(model: onnx.ModelProto) -> None:
    """Initializers and nodes no longer read (the builder's re-quantized embedding table)."""
    while True:
        read = {name for node in model.graph.node for name in node.input}
        read |= {output.name for output in model.graph.output}
        dead = [n for n in model.graph.node if not any(o in read for o in n.output)]
        for node in dead:
            model.graph.node.remove(node)
        if not dead:
            break
    kept = [i for i in model.graph.initializer if i.name in read]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
