"""Whole-model counts against independent references: real nn.Module parameter counts, published
parameter counts, the 2 x params per token closed form, and the issue's headline numbers."""

from pathlib import Path

import numpy as np
import pytest
import torch
from reference_modules import build, n_bytes, n_params

import roofline
from roofline.config import Workload, load_model, parse_model
from roofline.predict import step_time
from roofline.transformer import model_ops, parameter_count

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DATA = Path(__file__).resolve().parent / "data"

TINY_CONFIGS = {
    "llama": dict(
        model_type="llama",
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=100,
        tie_word_embeddings=False,
    ),
    "qwen2": dict(
        model_type="qwen2",
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=120,
        tie_word_embeddings=True,
    ),
    "mixtral": dict(
        model_type="mixtral",
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        vocab_size=50,
        num_local_experts=4,
        num_experts_per_tok=2,
    ),
    "gpt2": dict(model_type="gpt2", n_embd=48, n_layer=2, n_head=4, n_inner=None, n_positions=64, vocab_size=90),
}


@pytest.mark.parametrize("arch", sorted(TINY_CONFIGS))
def test_weight_bytes_equal_a_real_module(arch):
    config = TINY_CONFIGS[arch]
    module = build(config, torch.bfloat16)
    model = parse_model(config)
    ops = model_ops(model, Workload(), "decode", 1, 1, 1)
    assert sum(op.count * op.params for op in ops) == n_params(module)
    assert sum(op.count * op.param_bytes for op in ops) == n_bytes(module)


@pytest.mark.parametrize(
    "name, published",
    [
        ("llama-2-7b", 6_738_415_616),  # Hugging Face model card / safetensors metadata
        ("llama-2-70b", 68_976_648_192),
        ("llama-3-8b", 8_030_261_248),
        ("llama-3-70b", 70_553_706_496),
        ("mistral-7b", 7_241_732_096),
        ("mixtral-8x7b", 46_702_792_704),
        ("qwen2.5-7b", 7_615_616_512),
        ("gpt2", 124_439_808),
        # the families of issue 9: HF transformers' meta build of the shipped config.json (tests/test_hf_families),
        # equal to the model card's figure (tests/data/hf_configs/SOURCES.md)
        ("deepseek-r1", 671_026_404_352),
        ("deepseek-v2-lite", 15_706_484_224),
        ("qwen3-30b-a3b", 30_532_122_624),
        ("qwen1.5-moe-a2.7b", 14_315_784_192),
        ("gemma-2-9b", 9_241_705_984),
        ("gemma-3-1b", 999_885_952),
        ("phi-4-mini", 3_836_021_760),
        ("falcon-7b", 6_921_720_704),
        ("olmo-2-7b", 7_298_617_344),
        ("gpt-oss-20b", 20_914_757_184),
    ],
)
def test_published_parameter_counts(name, published):
    assert parameter_count(load_model(EXAMPLES / f"{name}.yaml")) == published


def test_matmul_flops_match_flop_counter_on_a_module():
    """Every matmul op of a decode step of tiny llama against FlopCounterMode on a torch forward."""
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    c = TINY_CONFIGS["llama"]
    model = parse_model(c)
    b, L = 3, 10
    h, nh, d, inter = 64, 8, 8, 160  # 2 KV heads
    ops = {op.name: op for op in model_ops(model, Workload(), "decode", b, 1, L)}
    mod = build(c, torch.float32)
    layer = mod.layers[0]
    x = torch.empty(b, 1, h, device="meta")
    with FlopCounterMode(display=False) as counter:
        q = layer.q(x).view(b, 1, nh, d).transpose(1, 2)
        k = torch.empty(b, nh, L, d, device="meta")  # cache of L keys, kv heads expanded to query heads
        o = F.scaled_dot_product_attention(q, k, k)
        layer.o(o.transpose(1, 2).reshape(b, 1, nh * d))
        layer.k(x), layer.v(x), layer.gate(x), layer.up(x), layer.down(torch.empty(b, 1, inter, device="meta"))
        mod.lm_head(x)
    names = ("q_proj", "k_proj", "v_proj", "attention", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head")
    assert sum(float(ops[n].cost.flops) for n in names) == counter.get_total_flops()


def test_decode_flops_are_two_per_parameter_plus_attention():
    m = load_model(EXAMPLES / "llama-3-8b.yaml")
    b, L = 4, 3000
    ops = model_ops(m, Workload(), "decode", b, 1, L)
    total = sum(op.count * float(op.cost.flops) for op in ops)
    embedding_params = m.vocab_size * m.hidden_size
    norm_params = (2 * m.num_hidden_layers + 1) * m.hidden_size
    matmul_params = parameter_count(m) - embedding_params - norm_params
    attention = 4 * b * m.num_attention_heads * m.head_dim * L * m.num_hidden_layers  # qk + sv per cached key
    closed_form = 2 * matmul_params * b + attention
    assert total == pytest.approx(closed_form, rel=1e-3)  # the rest is element-wise work
    assert total > closed_form


def test_llama2_7b_decode_on_a10_matches_the_back_of_envelope():
    r = roofline.analyze(EXAMPLES / "llama-2-7b.yaml", "a10", batch_size=1, phase="decode")
    s = r.summary.iloc[0]
    assert s["weight_bytes"] == pytest.approx(6_738_415_616 * 2)  # 13.48 GB of bf16 weights
    # 13.2 GB of weights read (the embedding table is gathered, not streamed) + 0.27 GB KV at 512 tokens
    assert s["decode_bytes_read"] == pytest.approx(13.49e9, rel=2e-3)
    assert s["decode_roofline_time_s"] == pytest.approx(s["decode_bytes_read"] / 600e9, rel=2e-3)  # ~22.5 ms
    assert 0.021 < s["decode_roofline_time_s"] < 0.023
    # the step (predict.py's launch queue): the GPU is the bottleneck (483 ops x 10 us of eager host time =
    # 4.8 ms), so it is the first op's launch + every op's kernel time (at least the A10's 1 us per-kernel
    # figure) + a 1 us launch gap before each: 10 us + 22.71 ms + 483 x 1 us = 23.2 ms, 43.1 tokens/s; plus
    # 16 us while the queue fills (the first layer's norm and q_proj wait for their launches)
    ops = r.ops
    kernels = float((ops["count"] * np.maximum(ops["time_s"], 1e-6)).sum())
    assert s["decode_time_s"] == pytest.approx(10e-6 + kernels + 483 * 1e-6 + 16e-6)
    assert s["decode_time_s"] == pytest.approx(step_time(ops))
    assert s["decode_share_memory"] == pytest.approx(1.0)  # small ops keep their class: their launch is hidden


def test_prefill_2048_on_h100_is_compute_bound_in_every_projection():
    r = roofline.analyze(EXAMPLES / "llama-2-7b.yaml", "h100-sxm", batch_size=1, prompt_len=2048, phase="prefill")
    projections = r.ops[r.ops["op"].isin(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])]
    assert len(projections) == 7
    assert (projections["bound"] == "compute").all()
    # intensity of a [2048, 4096] x [4096, 4096] bf16 matmul: 2*2048*4096^2 / ((2048*4096*2 + 4096^2 + 2048*4096) * 2)
    q = projections[projections["op"] == "q_proj"].iloc[0]
    assert q["arithmetic_intensity"] == pytest.approx(2 * 2048 * 4096**2 / ((2 * 2048 * 4096 + 4096**2) * 2))


def test_gqa_flops_use_query_heads_and_kv_bytes_use_kv_heads():
    m = load_model(EXAMPLES / "llama-3-8b.yaml")  # 32 query heads, 8 KV heads, d = 128
    attn = next(op for op in model_ops(m, Workload(), "decode", 1, 1, 1000) if op.name == "attention")
    assert attn.cost.flops == 4 * 32 * 128 * 1000
    assert attn.cost.kv_bytes_read == 2 * 8 * 128 * 1000 * 2


def test_sliding_window_caps_decode_keys():
    m = load_model(EXAMPLES / "mistral-7b.yaml")  # window 4096
    attn = lambda L: next(op for op in model_ops(m, Workload(), "decode", 1, 1, L) if op.name == "attention")  # noqa
    assert attn(8192).cost.kv_bytes_read == attn(4096).cost.kv_bytes_read
    assert attn(2048).cost.kv_bytes_read == attn(4096).cost.kv_bytes_read / 2


def test_moe_decode_reads_only_touched_experts():
    m = load_model(EXAMPLES / "mixtral-8x7b.yaml")
    per_expert = 3 * 4096 * 14336 * 2
    one = next(op for op in model_ops(m, Workload(), "decode", 1, 1, 100) if op.name == "experts")
    assert one.cost.weight_bytes_read == pytest.approx(2 * per_expert)  # batch 1, top-2: two experts
    big = next(op for op in model_ops(m, Workload(), "prefill", 1, 4096, 4096) if op.name == "experts")
    assert big.cost.weight_bytes_read == pytest.approx(8 * per_expert)  # prefill touches all eight


def test_tensor_parallel_splits_and_adds_collectives():
    m = load_model(EXAMPLES / "llama-2-70b.yaml")
    w = Workload(tp=4)
    ops = {op.name: op for op in model_ops(m, w, "decode", 8, 1, 1024)}
    assert ops["q_proj"].params == 8192 * 8192 / 4
    assert ops["k_proj"].params == 8192 * 128 * 2  # 8 KV heads / 4 GPUs = 2 heads of 128
    assert ops["attn_all_reduce"].cost.comm_bytes == pytest.approx(2 * 3 / 4 * 8 * 8192 * 2)
    assert {"embed_all_reduce", "mlp_all_reduce", "logits_all_gather"} <= set(ops)
    per_gpu = parameter_count(m, w)
    assert per_gpu == pytest.approx(68_976_648_192 / 4, rel=1e-3)  # only norms are replicated
    assert "attn_all_reduce" not in {op.name for op in model_ops(m, Workload(), "decode", 8, 1, 1024)}


def test_naive_attention_materialises_scores():
    m = parse_model(TINY_CONFIGS["llama"])
    names = [op.name for op in model_ops(m, Workload(attn_impl="naive"), "prefill", 1, 16, 16)]
    assert names[names.index("kv_cache_write") + 1 : names.index("o_proj")] == ["qk_matmul", "softmax", "sv_matmul"]


def test_quantised_weights_shrink_only_linear_layers():
    m = load_model(EXAMPLES / "llama-2-7b.yaml")
    bf16 = {op.name: op for op in model_ops(m, Workload(), "decode", 1, 1, 1)}
    int4 = {op.name: op for op in model_ops(m, Workload(weight_dtype="int4"), "decode", 1, 1, 1)}
    q = 4096 * 4096
    assert int4["q_proj"].cost.weight_bytes_read == q * 0.5 + q / 128 * 2
    assert int4["lm_head"].cost.weight_bytes_read == bf16["lm_head"].cost.weight_bytes_read  # head stays 16-bit
    assert int4["q_proj"].compute_dtype == "bf16"  # weight-only quantisation computes in bf16
    w8a8 = {op.name: op for op in model_ops(m, Workload(weight_dtype="fp8", act_dtype="fp8"), "decode", 1, 1, 1)}
    assert w8a8["q_proj"].compute_dtype == "fp8"


def test_sweep_arrays_match_scalar_points():
    m = load_model(EXAMPLES / "qwen2.5-7b.yaml")
    batches = np.array([1.0, 8.0, 64.0])
    swept = model_ops(m, Workload(), "decode", batches, 128.0, np.array([256.0, 512.0, 1024.0]))
    for i, (b, L) in enumerate([(1, 256), (8, 512), (64, 1024)]):
        single = model_ops(m, Workload(), "decode", b, 128, L)
        for a, s in zip(swept, single):
            assert np.broadcast_to(a.cost.bytes_read, (3,))[i] == pytest.approx(float(s.cost.bytes_read))
            assert np.broadcast_to(a.cost.flops, (3,))[i] == pytest.approx(float(s.cost.flops))


def test_pipeline_parallel_stages_bubble_and_memory():
    m = load_model(EXAMPLES / "llama-2-70b.yaml")
    one = roofline.analyze(m, "h100-sxm", batch_size=1, prompt_len=128, phase="decode", tp=2)
    four = roofline.analyze(m, "h100-sxm", batch_size=1, prompt_len=128, phase="decode", tp=2, pp=4, microbatches=8)
    send = four.ops[four.ops["op"] == "pp_send"].iloc[0]
    assert send["count"] == 3 and send["comm_bytes"] == 8192 * 2 / 2  # one token's hidden state, half per TP rank
    assert send["bound"] == "communication"
    s1, s4 = one.summary.iloc[0], four.summary.iloc[0]
    # one micro-batch crosses every stage: the latency is the unpipelined time plus three sends
    assert s4["decode_time_s"] == pytest.approx(s1["decode_time_s"] + 3 * send["stream_s"])  # GPU-bound
    assert s4["pipeline_bubble"] == pytest.approx(3 / (8 + 3))  # (P-1) / (m+P-1)
    assert s4["decode_stage_time_s"] < s4["decode_time_s"] / 3.5  # ~1/4 of the layers per stage
    # weights per GPU: a quarter of the layers plus the larger of embedding and head, in bf16, split over tp=2
    layers = 80 * (8192 * (8192 + 2 * 1024 + 8192) + 3 * 8192 * 28672) * 2 / 2
    assert s4["weight_bytes"] == pytest.approx(layers / 4 + 32000 * 8192 * 2 / 2 + 8192 * 2, rel=1e-3)


def test_pipeline_stages_must_divide_layers():
    from roofline.errors import ConfigError

    with pytest.raises(ConfigError, match="pp 3 does not divide num_hidden_layers 80 into equal stages"):
        roofline.analyze(EXAMPLES / "llama-2-70b.yaml", "h100-sxm", pp=3)


def test_expert_parallelism_adds_all_to_all_and_splits_experts():
    m = load_model(EXAMPLES / "mixtral-8x7b.yaml")
    w = Workload(ep=4)
    ops = {op.name: op for op in model_ops(m, w, "decode", 64, 1, 1024)}
    # each GPU: 16 of the 64 sequences, 2 of the 8 experts
    assert ops["experts"].params == 2 * 3 * 4096 * 14336
    assert ops["moe_dispatch"].cost.comm_bytes == pytest.approx(3 / 4 * 16 * 2 * 4096 * 2)  # 16 tokens x top-2 rows
    assert ops["moe_combine"].count == 32 and ops["moe_dispatch"].category == "collective"
    assert ops["attention"].cost.kv_bytes_read == 16 * 1024 * 8 * 128 * 2 * 2
    # 64 tokens x top-2 over 8 experts: every expert is hit, so each GPU reads both of its experts in full
    assert ops["experts"].cost.weight_bytes_read == pytest.approx(2 * 3 * 4096 * 14336 * 2, rel=1e-6)


def test_expert_parallelism_needs_moe():
    from roofline.errors import ConfigError

    with pytest.raises(ConfigError, match="ep 2 needs a mixture-of-experts model"):
        roofline.analyze(EXAMPLES / "llama-2-7b.yaml", "h100-sxm", ep=2)


def test_max_window_layers_windows_only_the_layers_from_it_on():
    """qwen2 with use_sliding_window: layers >= max_window_layers are windowed, the rest see everything."""
    m = parse_model(
        dict(
            TINY_CONFIGS["qwen2"], num_hidden_layers=4, use_sliding_window=True, sliding_window=100, max_window_layers=3
        )
    )
    assert m.layer_windows == (None, None, None, 100)
    ops = {op.name: op for op in model_ops(m, Workload(), "decode", 1, 1, 1000)}
    assert ops["attention"].count == 3 and ops["sliding_attention"].count == 1
    assert ops["attention"].cost.kv_bytes_read == 2 * 2 * 16 * 1000 * 2  # K and V, 2 KV heads of 16, 1000 keys
    assert ops["sliding_attention"].cost.kv_bytes_read == 2 * 2 * 16 * 100 * 2  # the window's 100 keys
    r = roofline.analyze(m, "h100-sxm", batch_size=1, prompt_len=1000, phase="decode").summary.iloc[0]
    assert r["kv_cache_bytes"] == (3 * 1000 + 1 * 100) * 2 * 2 * 16 * 2  # per layer: its keys x K,V x heads x d x bf16


def test_use_sliding_window_false_windows_no_layer():
    m = load_model(EXAMPLES / "qwen2.5-7b.yaml")  # sliding_window 131072 shipped, use_sliding_window false
    assert m.sliding_window is None and set(m.layer_windows) == {None}


def test_gemma2_alternates_windowed_and_global_layers():
    m = load_model(EXAMPLES / "gemma-2-9b.yaml")
    assert m.layer_windows[:4] == (4096, None, 4096, None)
    ops = {op.name: op for op in model_ops(m, Workload(), "decode", 1, 1, 8192)}
    assert ops["attention"].count == ops["sliding_attention"].count == 21
    # 16 query heads of 256: 4 FLOP per pair per dim
    assert ops["attention"].cost.flops == 4 * 16 * 256 * 8192
    assert ops["sliding_attention"].cost.flops == 4 * 16 * 256 * 4096
    names = [op.name for op in model_ops(m, Workload(), "decode", 1, 1, 8192)]
    assert {"embed_scale", "post_attn_norm", "post_mlp_norm", "logit_softcap"} <= set(names)


def test_mla_cache_is_the_latent_and_the_form_is_selectable():
    m = load_model(EXAMPLES / "deepseek-r1.yaml")
    decode = {op.name: op for op in model_ops(m, Workload(), "decode", 1, 1, 4096)}
    assert {"q_absorb", "v_absorb"} <= set(decode) and "kv_b_proj" not in decode  # absorbed by default
    assert decode["kv_cache_write"].cost.kv_bytes_written == 576 * 2
    # absorbed attention: 128 heads x 4096 latents x 2 x (2 x 512 + 64) FLOP; the latent read once
    assert decode["attention"].cost.flops == 128 * 4096 * 2 * (2 * 512 + 64)
    assert decode["attention"].cost.kv_bytes_read == 4096 * 576 * 2
    prefill = {op.name: op for op in model_ops(m, Workload(), "prefill", 1, 16, 16)}
    assert "kv_b_proj" in prefill and "q_absorb" not in prefill  # decompressed by default
    forced = {op.name for op in model_ops(m, Workload(mla_form="decompressed"), "decode", 1, 1, 4096)}
    assert "kv_b_proj" in forced
    # the split of kv_b_proj into its K and V halves keeps the parameters
    assert decode["q_absorb"].params + decode["v_absorb"].params == prefill["kv_b_proj"].params == 512 * 128 * 256


def test_llama_attention_bias_covers_o_proj_and_qwen2_does_not():
    llama = {
        op.name: op
        for op in model_ops(
            parse_model(dict(TINY_CONFIGS["llama"], attention_bias=True)), Workload(), "decode", 1, 1, 1
        )
    }
    assert llama["o_proj"].params == 64 * 64 + 64 and llama["q_proj"].params == 64 * 64 + 64
    qwen2 = {op.name: op for op in model_ops(parse_model(TINY_CONFIGS["qwen2"]), Workload(), "decode", 1, 1, 1)}
    assert qwen2["o_proj"].params == 64 * 64 and qwen2["q_proj"].params == 64 * 64 + 64
