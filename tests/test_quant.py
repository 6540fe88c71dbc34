"""A checkpoint's quantization_config sets the weight format: real blocks (tests/data/quant_configs,
SOURCES.md says where each comes from) against hand counts, the checkpoints' tensor layouts, and a
size that Hugging Face's docs print for a loaded FP8 checkpoint."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import roofline
from roofline.cli import main
from roofline.config import Workload, parse_model
from roofline.dtypes import FORMATS, compute_dtype, scale_bytes
from roofline.errors import ConfigError
from roofline.formulas import weight_storage_bytes
from roofline.quant import parse_quantization_config
from roofline.transformer import model_ops

QDATA = Path(__file__).resolve().parent / "data" / "quant_configs"
AWQ_LLAMA = QDATA / "awq-llama-3.1-8b-instruct.json"
FP8_LLAMA = QDATA / "compressed-tensors-fp8-llama-3.1-8b-instruct.json"

# Llama-3.1-8B: hidden 4096, 32 layers, 8 KV heads of 128, intermediate 14336, vocab 128256, untied
H, L, KV, I, V = 4096, 32, 8 * 128, 14336, 128256
LINEARS = [(H, H), (H, KV), (H, KV), (H, H), (H, I), (H, I), (I, H)]  # (in, out): q k v o gate up down
LINEAR_PARAMS = L * sum(i * o for i, o in LINEARS)  # 32 * 218,103,808 = 6,979,321,856
EMBED_AND_HEAD_BYTES = 2 * V * H * 2  # 16-bit, not converted: 2,101,346,304
NORM_BYTES = (2 * L + 1) * H * 2  # 532,480


def block(name):
    return json.loads((QDATA / name).read_text())["quantization_config"]


def tiny(quantization_config, **extra):
    config = dict(
        model_type="llama",
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=100,
        tie_word_embeddings=False,
    )
    return parse_model({**config, **extra, "quantization_config": quantization_config}, "tiny")


def ops_by_name(model, spec="h100-sxm"):
    r = roofline.analyze(model, spec, phase="decode", batch_size=1, context_len=16, prompt_len=16)
    return r, r.ops.set_index("op")


def test_awq_llama_31_8b_weight_bytes_follow_the_checkpoint():
    r = roofline.analyze(AWQ_LLAMA, "h100-sxm", phase="decode", batch_size=1, context_len=1024)
    # hand count: 4-bit values + per group of 128 an fp16 scale and a 4-bit zero = 0.5 + 2.5/128 byte per weight;
    # 6,979,321,856 * 0.51953125 = 3,625,976,040 B; embeddings and lm_head fp16, 2,101,346,304; norms 532,480
    expected = LINEAR_PARAMS * (0.5 + 2.5 / 128) + EMBED_AND_HEAD_BYTES + NORM_BYTES
    assert expected == pytest.approx(5.7279e9, rel=1e-4)
    assert r.summary["weight_bytes"].iloc[0] == pytest.approx(expected, rel=1e-12)
    # independent: the tensors AutoAWQ's WQLinear_GEMM stores per linear: qweight int32 [in, out/8],
    # qzeros int32 [in/128, out/8], scales fp16 [in/128, out]
    layout = L * sum(
        np.prod([i, o // 8]) * 4 + np.prod([i // 128, o // 8]) * 4 + np.prod([i // 128, o]) * 2 for i, o in LINEARS
    )
    assert r.summary["weight_bytes"].iloc[0] == pytest.approx(layout + EMBED_AND_HEAD_BYTES + NORM_BYTES, rel=1e-12)
    assert r.workload.weight_dtype == "int4"
    assert r.workload.weight_dtype_source.startswith("checkpoint quantization_config (awq, 4-bit int4, group 128")
    ops = r.ops.set_index("op")
    assert ops.loc["q_proj", "compute_dtype"] == "bf16"  # weight-only: dequantised to the activations
    # decode streams the weights: about 16.06 / 5.73 = 2.8x less than the same model read as bf16
    bf16 = roofline.analyze(AWQ_LLAMA, "h100-sxm", phase="decode", batch_size=1, context_len=1024, weight_dtype="bf16")
    assert bf16.summary["weight_bytes"].iloc[0] == pytest.approx(16.06e9, rel=1e-3)
    # (the roofline step: the eager step at batch 1 is bound by the host's launches either way)
    assert bf16.summary["decode_roofline_time_s"].iloc[0] / r.summary["decode_roofline_time_s"].iloc[0] > 2.5


def test_the_flag_wins_over_the_checkpoint_and_says_so():
    r = roofline.analyze(AWQ_LLAMA, "h100-sxm", phase="decode", weight_dtype="fp8")
    assert r.workload.weight_dtype == "fp8" and r.workload.weight_dtype_source == "--weight-dtype"
    assert r.summary["weight_bytes"].iloc[0] == pytest.approx(LINEAR_PARAMS + EMBED_AND_HEAD_BYTES + NORM_BYTES)
    model = roofline.load_model(AWQ_LLAMA)
    assert roofline.analyze(model, "a10", weight_dtype="fp8").workload.weight_dtype_source == "weight_dtype argument"
    assert roofline.analyze(model, "a10").workload.weight_dtype == "int4"  # a ModelConfig keeps its checkpoint


def test_cli_prints_and_records_where_the_weight_format_came_from():
    runner = CliRunner()
    out = runner.invoke(main, ["analyze", str(AWQ_LLAMA), "--gpu", "a10", "--phase", "decode"])
    assert out.exit_code == 0, out.output
    assert "weights int4 from checkpoint quantization_config (awq, 4-bit int4, group 128" in out.output
    out = runner.invoke(main, ["analyze", str(AWQ_LLAMA), "--gpu", "a10", "--weight-dtype", "bf16", "--format", "json"])
    assert out.exit_code == 0, out.output
    workload = json.loads(out.output)["workload"]
    assert (workload["weight_dtype"], workload["weight_dtype_source"]) == ("bf16", "--weight-dtype")


def test_compressed_tensors_fp8_matches_the_size_transformers_prints():
    # HF transformers' compressed_tensors docs load nm-testing/Meta-Llama-3.1-8B-Instruct-FP8-hf and print the
    # parameters' nelement * element_size: 8.4575 GiB. Ours: fp8 linears + a 16-bit scale per tensor (224 of
    # them) + 16-bit embeddings, lm_head and norms = 9,081,201,088 B = 8.4575 GiB
    r, ops = ops_by_name(FP8_LLAMA)
    expected = LINEAR_PARAMS + 224 * 2 + EMBED_AND_HEAD_BYTES + NORM_BYTES
    assert r.summary["weight_bytes"].iloc[0] == pytest.approx(expected, rel=1e-12)
    assert expected / 2**30 == pytest.approx(8.4575, abs=5e-5)
    assert ops.loc["q_proj", "compute_dtype"] == "fp8"  # W8A8 on Hopper's fp8 tensor cores
    assert ops.loc["lm_head", "compute_dtype"] == "bf16"
    a100, a100_ops = ops_by_name(FP8_LLAMA, "a100-80gb-sxm")  # no fp8 tensor cores: weight-only
    assert a100_ops.loc["q_proj", "compute_dtype"] == "bf16"
    assert "a100-80gb-sxm has no fp8 tensor cores, so weight-only" in a100.workload.weight_dtype_source
    assert a100.summary["weight_bytes"].iloc[0] == pytest.approx(expected, rel=1e-12)


def test_deepseek_fp8_block_scales_one_fp32_per_128x128_block():
    q = parse_quantization_config(block("fp8-deepseek-v3.json"), "deepseek")
    assert (q.dtype, q.block_shape, q.scale_bytes, q.act_dtype) == ("fp8", (128, 128), 4.0, "fp8")
    # a 7168 -> 18432 expert-sized matrix: 144 x 56 = 8,064 blocks, 4 bytes each
    assert weight_storage_bytes(7168 * 18432, q.format, fan_in=7168) == 7168 * 18432 + 8064 * 4
    # kv_a_proj_with_mqa 7168 -> 576: 576 rows make ceil(576/128) = 5 block rows; 5 x 56 = 280 blocks
    assert weight_storage_bytes(7168 * 576, q.format, fan_in=7168) == 7168 * 576 + 280 * 4
    m = tiny(
        block("fp8-deepseek-v3.json"),
        hidden_size=256,
        intermediate_size=384,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    _, ops = ops_by_name(m)
    # gate_proj 256 -> 384: 3 x 2 = 6 blocks; o_proj 256 -> 256: 2 x 2 = 4 blocks
    assert ops.loc["gate_proj", "weight_bytes_read"] == 256 * 384 + 6 * 4
    assert ops.loc["o_proj", "param_bytes"] == 256 * 256 + 4 * 4


def test_gpt_oss_mxfp4_leaves_attention_and_router_in_16_bit():
    q = parse_quantization_config(block("mxfp4-gpt-oss-20b.json"), "gpt-oss")
    assert (q.dtype, q.group_size, q.scale_bytes, q.act_dtype) == ("mxfp4", 32, 1.0, None)
    _, ops = ops_by_name(tiny(block("mxfp4-gpt-oss-20b.json")), "b200")
    assert ops.loc["q_proj", "weight_bytes_read"] == 64 * 64 * 2  # model.layers.*.self_attn: not converted
    assert ops.loc["gate_proj", "weight_bytes_read"] == 64 * 160 * (0.5 + 1 / 32)  # e2m1 + an e8m0 per 32
    assert ops.loc["gate_proj", "compute_dtype"] == "bf16"  # weight-only as shipped


@pytest.mark.parametrize(
    "name, method", [("modelopt-nvfp4.json", "modelopt NVFP4"), ("compressed-tensors-nvfp4.json", "compressed-tensors")]
)
def test_nvfp4_e4m3_scale_per_16_plus_fp32_per_tensor(name, method):
    q = parse_quantization_config(block(name), name)
    assert (q.dtype, q.group_size, q.scale_bytes, q.tensor_bytes, q.act_dtype) == ("nvfp4", 16, 1.0, 4.0, "nvfp4")
    assert q.quant_method == method and q.not_converted == ("lm_head",)
    # the RedHat checker's count: params/2 + params/16 + 4 per linear
    n = 4096 * 14336
    assert weight_storage_bytes(n, q.format, fan_in=4096) == n / 2 + n / 16 + 4
    _, b200 = ops_by_name(tiny(block(name)), "b200")
    assert b200.loc["gate_proj", "compute_dtype"] == "fp4"  # W4A4 on Blackwell's fp4 tensor cores
    h100, ops = ops_by_name(tiny(block(name)), "h100-sxm")
    assert ops.loc["gate_proj", "compute_dtype"] == "bf16"
    assert "h100-sxm has no fp4 tensor cores" in h100.workload.weight_dtype_source


def test_gptq_counts_scales_and_packed_zeros_per_group():
    q = parse_quantization_config(block("gptq-qwen3-30b-a3b-int4.json"), "gptq")
    assert (q.dtype, q.group_size, q.scale_bytes, q.zero_bytes) == ("int4", 128, 2.0, 0.5)
    # GPTQ keeps qzeros even when sym: per 128 values an fp16 scale + a 4-bit zero
    assert weight_storage_bytes(128 * 256, q.format, fan_in=128) == 128 * 256 * 0.5 + 256 * 2.5
    per_channel = parse_quantization_config({"quant_method": "gptq", "bits": 8, "group_size": -1}, "gptq")
    assert weight_storage_bytes(128 * 256, per_channel.format, fan_in=128) == 128 * 256 + 256 * (2 + 1)


def test_named_dtypes_keep_their_scales():
    # int4: one fp16 scale per 128 values, or per head_dim in the KV cache (unchanged from before)
    assert scale_bytes("int4", 1024) == 1024 / 128 * 2
    assert scale_bytes("int4", 1024, group_size=64) == 1024 / 64 * 2
    assert scale_bytes("fp8", 1024) == 0.0
    # nvfp4: an e4m3 per 16 (its own group, not the KV head_dim); mxfp4: an e8m0 per 32
    assert scale_bytes("nvfp4", 1024, group_size=128) == 1024 / 16
    assert scale_bytes("mxfp4", 1024) == 1024 / 32
    assert weight_storage_bytes(1024, "nvfp4") == 512 + 64 + 4
    assert FORMATS["nvfp4"].compute == FORMATS["mxfp4"].compute == "fp4"


@pytest.mark.parametrize(
    "weight, act, expected",
    [
        ("nvfp4", "bf16", "bf16"),
        ("mxfp4", "bf16", "bf16"),
        ("nvfp4", "nvfp4", "fp4"),
        ("mxfp4", "mxfp4", "fp4"),
        ("nvfp4", "fp8", "fp8"),
        ("int4", "bf16", "bf16"),
        ("fp8", "fp8", "fp8"),
        ("bf16", "fp8", "bf16"),
    ],
)
def test_compute_dtype(weight, act, expected):
    assert compute_dtype(weight, act) == expected


def test_fp4_weights_and_kv_by_flag():
    m = parse_model(
        dict(
            model_type="llama",
            hidden_size=64,
            intermediate_size=160,
            num_hidden_layers=2,
            num_attention_heads=8,
            num_key_value_heads=2,
            vocab_size=100,
        )
    )
    ops = {op.name: op for op in model_ops(m, Workload(weight_dtype="nvfp4", kv_dtype="mxfp4"), "decode", 1, 1, 8)}
    assert ops["gate_proj"].cost.weight_bytes_read == 64 * 160 * (0.5 + 1 / 16) + 4
    # KV cache: 2 (k, v) x 2 heads x 8 dims per token = 32 values, 0.5 byte + 1/32 byte each
    assert ops["kv_cache_write"].cost.kv_bytes_written == 32 * (0.5 + 1 / 32)


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"quant_method": "bitsandbytes", "load_in_4bit": True},
            "quant_method 'bitsandbytes' is not supported; supported: awq, gptq, fp8, compressed-tensors, modelopt, mxfp4",
        ),
        ({"quant_method": "awq", "bits": 3}, "3-bit weights are not modelled (4 or 8 bits)"),
        ({"quant_method": "fp8", "weight_block_size": [128]}, "weight_block_size must be two positive whole numbers"),
        ({"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION"}, "quant_algo 'MIXED_PRECISION' is not modelled"),
        ("awq", "quantization_config must be a mapping with a quant_method"),
    ],
)
def test_bad_quantization_config_is_one_clear_line(raw, message):
    with pytest.raises(ConfigError) as err:
        tiny(raw)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_per_layer_mix_is_refused_not_guessed():
    m = tiny({"quant_method": "modelopt", "quant_algo": "FP8", "ignore": ["model.layers.0.self_attn*"]})
    with pytest.raises(ConfigError, match="converts q_proj in 1 of 2 layers only; per-layer formats are not modelled"):
        roofline.analyze(m, "h100-sxm")


def test_cli_unknown_quant_method_exits_1_with_one_line(tmp_path):
    config = json.loads(AWQ_LLAMA.read_text())
    config["quantization_config"] = {"quant_method": "hqq"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    out = CliRunner().invoke(main, ["analyze", str(path), "--gpu", "a10"])
    assert out.exit_code == 1
    assert out.output.strip().splitlines() == [
        f"Error: {path}: quantization_config: quant_method 'hqq' is not supported; supported: awq, gptq, fp8, "
        f"compressed-tensors, modelopt, mxfp4 (or remove quantization_config and pass --weight-dtype)"
    ]


def test_a_declared_kv_cache_scheme_sets_the_kv_dtype_unless_a_flag_does():
    # NVIDIA's ModelOpt NVFP4 export declares kv_cache_scheme {num_bits: 8, type: float}: an fp8 KV cache,
    # which vLLM applies without --kv-cache-dtype
    assert parse_quantization_config(block("modelopt-nvfp4.json"), "m").kv_dtype == "fp8"
    assert parse_quantization_config(block("compressed-tensors-nvfp4.json"), "m").kv_dtype is None  # null there
    assert (
        parse_quantization_config(
            {"quant_method": "modelopt", "quant_algo": "FP8", "kv_cache_quant_algo": "FP8"}, "m"
        ).kv_dtype
        == "fp8"
    )
    m = tiny(block("modelopt-nvfp4.json"))
    r = roofline.analyze(m, "b200", phase="decode", batch_size=1, context_len=16, prompt_len=16)
    assert (r.workload.kv_dtype, r.workload.kv_dtype_source) == (
        "fp8",
        "checkpoint quantization_config (kv_cache_scheme)",
    )
    # tiny: 2 layers x (k, v) x 2 KV heads x 8 dims = 64 values per cached token, 1 byte each in fp8
    assert r.summary["kv_cache_bytes"].iloc[0] == 16 * 64 * 1
    flagged = roofline.analyze(m, "b200", phase="decode", batch_size=1, context_len=16, prompt_len=16, kv_dtype="bf16")
    assert (flagged.workload.kv_dtype, flagged.workload.kv_dtype_source) == ("bf16", "kv_dtype argument")
    assert flagged.summary["kv_cache_bytes"].iloc[0] == 16 * 64 * 2
    with pytest.raises(ConfigError, match="kv_cache_quant_algo 'FP6' is not modelled"):
        tiny({"quant_method": "modelopt", "quant_algo": "FP8", "kv_cache_quant_algo": "FP6"})
