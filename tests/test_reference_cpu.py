"""The reference decoder on the CPU: every analytic op runs as a record_function range with the same
name, flash and naive attention compute the same function, the KV cache carries a prefill into a
decode step, and the profile / calibration plumbing that needs no GPU."""

import gzip
import json
from dataclasses import replace

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from roofline.analysis import analyze
from roofline.compare import compare
from roofline.config import parse_model, parse_workload
from roofline.errors import ConfigError, UnknownHardware
from roofline.measure.calibrate import build_spec
from roofline.measure.nvml import NvmlSampler, decode_reasons, spec_name_for_gpu
from roofline.measure.profile import profile_model
from roofline.measure.reference import (
    QuantWeight,
    ReferenceDecoder,
    build_reference,
    reference_dtype,
    reference_formats,
)
from roofline.specs import load_spec, resolve_spec_path
from roofline.transformer import model_ops
from roofline.validate import load_mapping

TINY = {
    "llama": dict(
        model_type="llama",
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=100,
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
    "gpt2": dict(model_type="gpt2", n_embd=48, n_layer=3, n_head=4, n_inner=None, n_positions=64, vocab_size=90),
    "mixtral": dict(
        model_type="mixtral",
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        vocab_size=50,
        num_local_experts=4,
        num_experts_per_tok=2,
    ),
}
BATCH, PROMPT, CONTEXT = 2, 8, 12


def _setup(arch, attn_impl="flash", **workload):
    m = parse_model(TINY[arch])
    w = parse_workload(dict(batch_size=BATCH, prompt_len=PROMPT, context_len=CONTEXT, attn_impl=attn_impl, **workload))
    return m, w


def _range_names(step) -> list:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return [e.name for e in prof.events()]


@pytest.mark.parametrize("arch", sorted(TINY))
@pytest.mark.parametrize("attn_impl", ["flash", "naive"])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_every_analytic_op_is_a_profiler_range(arch, attn_impl, phase):
    m, w = _setup(arch, attn_impl)
    ref = build_reference(m, w, layers=2, device="cpu")
    seen = _range_names(ref.make_step(phase, PROMPT, CONTEXT))
    analytic = [op.name for op in model_ops(m, w, phase, BATCH, PROMPT, CONTEXT)]
    missing = sorted(set(analytic) - set(seen))
    assert not missing, f"ops with no record_function range: {missing}"
    for op in model_ops(m, w, phase, BATCH, PROMPT, CONTEXT):  # per-layer ops once per reference layer
        expected = 2 if op.count == m.num_hidden_layers else 1
        assert seen.count(op.name) == expected, op.name


@pytest.mark.parametrize("arch", sorted(TINY))
def test_flash_and_naive_attention_agree(arch):
    m, w = _setup(arch, "flash")
    flash = build_reference(m, w, device="cpu", seed=3)
    naive = build_reference(m, replace(w, attn_impl="naive"), device="cpu", seed=3)
    for phase in ("prefill", "decode"):
        a = flash.make_step(phase, PROMPT, CONTEXT)().float()
        b = naive.make_step(phase, PROMPT, CONTEXT)().float()
        assert torch.isfinite(a).all()
        err = (a - b).norm() / a.norm()
        assert err < 2e-2, (phase, float(err))  # bf16 operands: rounding, not a different function


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("attn_impl", ["flash", "naive"])
def test_decode_after_prefill_matches_a_longer_prefill(arch, attn_impl):
    """The KV cache holds what prefill wrote: prefill of s tokens + one decode step == prefill of s + 1."""
    m = parse_model(TINY[arch])
    ref = ReferenceDecoder(
        m, layers=2, batch=2, max_context=16, dtype=torch.bfloat16, attn_impl=attn_impl, device="cpu", seed=1
    )
    ids = torch.randint(0, m.vocab_size, (2, 9))
    ref.forward(ids[:, :8], 0)
    step = ref.forward(ids[:, 8:9], 8).float()
    full = ref.forward(ids, 0).float()
    assert (step - full).norm() / full.norm() < 2e-2


def test_lm_head_runs_on_the_last_position_only():
    m, w = _setup("llama")
    out = build_reference(m, w, device="cpu").make_step("prefill", PROMPT, CONTEXT)()
    assert out.shape == (BATCH, m.vocab_size)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"weight_dtype": "int4"}, "weight_dtype int4: not supported by the reference model, which runs bf16/fp16"),
        ({"kv_dtype": "int8"}, "kv_dtype int8: not supported by the reference model, which stores the KV cache in"),
        ({"act_dtype": "fp8"}, "act_dtype fp8 with weight_dtype bf16: not supported by the reference model"),
        ({"weight_dtype": "int8", "act_dtype": "fp8"}, "act_dtype fp8 with weight_dtype int8"),
    ],
)
def test_dtypes_the_reference_cannot_run_are_refused_clearly(changes, message):
    m, w = _setup("llama", **changes)
    with pytest.raises(ConfigError) as err:
        build_reference(m, w, device="cpu")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_quantised_weights_of_a_moe_model_are_refused():
    m, w = _setup("mixtral", weight_dtype="fp8")
    with pytest.raises(ConfigError, match="the MoE reference runs its experts in 16-bit"):
        build_reference(m, w, device="cpu")


@pytest.mark.parametrize(
    "changes, linear, kv, differs",
    [
        ({}, "dense", torch.bfloat16, 0),
        ({"weight_dtype": "fp8"}, "fp8_scaled_mm", torch.bfloat16, 1),  # weight-only, run as W8A8: says so
        ({"weight_dtype": "fp8", "act_dtype": "fp8"}, "fp8_scaled_mm", torch.bfloat16, 1),
        ({"weight_dtype": "int8"}, "int8_dequant", torch.bfloat16, 1),
        ({"weight_dtype": "int8", "act_dtype": "int8"}, "int8_int_mm", torch.bfloat16, 1),
        ({"kv_dtype": "fp8"}, "dense", torch.float8_e4m3fn, 1),
        ({"weight_dtype": "fp8", "kv_dtype": "fp8"}, "fp8_scaled_mm", torch.float8_e4m3fn, 2),
    ],
)
def test_reference_formats_of_8_bit_workloads(changes, linear, kv, differs):
    _, w = _setup("llama", **changes)
    f = reference_formats(w)
    assert (f.dtype, f.linear, f.kv_dtype, len(f.differs)) == (torch.bfloat16, linear, kv, differs)


# (changes, phase, the largest relative error against the bf16 reference of the same seed)
QUANTISED = [
    # e4m3 keeps 3 mantissa bits: ~3% rounding per value, weights and activations both: ~5% measured
    ({"weight_dtype": "fp8"}, "prefill", 0.1),
    ({"weight_dtype": "fp8", "act_dtype": "fp8"}, "decode", 0.1),
    # int8: 1/254 of the range per weight (per output channel): ~1% measured; activations too: ~2%
    ({"weight_dtype": "int8"}, "decode", 0.04),
    ({"weight_dtype": "int8", "act_dtype": "int8"}, "prefill", 0.05),
    ({"kv_dtype": "fp8"}, "decode", 0.05),  # the cache's values rounded to e4m3: ~2% measured
    ({"kv_dtype": "fp8", "attn_impl": "naive"}, "decode", 0.05),
]


@pytest.mark.parametrize("changes, phase, tolerance", QUANTISED)
def test_8_bit_reference_computes_the_same_function(changes, phase, tolerance):
    m, w = _setup("llama", **changes)
    bf16 = build_reference(m, replace(w, weight_dtype="bf16", act_dtype="bf16", kv_dtype="bf16"), device="cpu", seed=3)
    quant = build_reference(m, w, device="cpu", seed=3)
    a = bf16.make_step(phase, PROMPT, CONTEXT)().float()
    b = quant.make_step(phase, PROMPT, CONTEXT)().float()
    assert torch.isfinite(b).all()
    err = float((a - b).norm() / a.norm())
    assert 0 < err < tolerance, err


def test_fp8_kv_cache_is_stored_in_e4m3_and_prefill_does_not_read_it():
    m, w = _setup("llama", kv_dtype="fp8")
    bf16 = build_reference(m, replace(w, kv_dtype="bf16"), device="cpu", seed=3)
    fp8 = build_reference(m, w, device="cpu", seed=3)
    L = fp8.blocks[0]
    assert L.k_cache.dtype == torch.float8_e4m3fn and L.v_cache.dtype == torch.float8_e4m3fn
    # [batch 2, kv heads 2, positions 12, head_dim 8] at 1 byte: 384 bytes, half of bf16's 768
    assert L.k_cache.nbytes == 2 * 2 * 12 * 8 * 1 == bf16.blocks[0].k_cache.nbytes / 2
    assert fp8.weight_bytes() == bf16.weight_bytes()  # the weights are untouched
    # prefill attends to the fresh bf16 k and v: the same logits; it writes the rounded values to the cache
    a = bf16.make_step("prefill", PROMPT, CONTEXT)()
    b = fp8.make_step("prefill", PROMPT, CONTEXT)()
    assert torch.equal(a, b)
    written = fp8.blocks[1].k_cache[:, :, :PROMPT].to(torch.bfloat16)
    assert torch.equal(written, bf16.blocks[1].k_cache[:, :, :PROMPT].to(torch.float8_e4m3fn).to(torch.bfloat16))


def test_8_bit_weights_are_stored_in_8_bits_with_their_scales():
    m, w = _setup("llama")
    # tiny llama, 2 layers: embedding and lm_head 100 x 64 and the final norm 64, in bf16: 25,728 B;
    # per layer the norms 2 x 64 x 2 B = 256 B and 7 projections of 64x64 + 16x64 + 16x64 + 64x64 + 3 x 96x64
    # = 28,672 values
    assert build_reference(m, w, device="cpu").weight_bytes() == 25_728 + 2 * (256 + 28_672 * 2)  # 140,928
    fp8 = build_reference(m, replace(w, weight_dtype="fp8"), device="cpu")
    assert fp8.weight_bytes() == 25_728 + 2 * (256 + 28_672 + 7 * 4)  # one fp32 scale per tensor: 83,640
    int8 = build_reference(m, replace(w, weight_dtype="int8"), device="cpu")
    # one bf16 scale per output channel: 64 + 16 + 16 + 64 + 96 + 96 + 64 = 416 channels
    assert int8.weight_bytes() == 25_728 + 2 * (256 + 28_672 + 416 * 2)  # 85,248
    q = int8.blocks[0].wq
    assert q.q.dtype == torch.int8 and q.scale.shape == (64,)
    assert fp8.blocks[0].wq.q.dtype == torch.float8_e4m3fn and fp8.blocks[0].wq.scale.dim() == 0
    # the dequantised weight is the bf16 one within half a quantisation step
    ref = build_reference(m, w, device="cpu")
    step = q.scale.float()[:, None]
    assert ((q.dequantized().float() - ref.blocks[0].wq.float()).abs() <= 0.5 * step + 1e-3).all()


def test_int_mm_pads_fewer_than_17_rows():
    """torch._int_mm on CUDA needs more than 16 rows: a decode step of batch 2 is padded and sliced back."""
    w = torch.randn(32, 64, dtype=torch.bfloat16)
    qw = QuantWeight(w, "int8_int_mm")
    x = torch.randn(2, 1, 64, dtype=torch.bfloat16)
    y = qw(x)
    assert y.shape == (2, 1, 32) and y.dtype == torch.bfloat16
    exact = x.float() @ w.float().t()
    assert float((y.float() - exact).norm() / exact.norm()) < 0.03


def test_scaled_mm_needs_multiples_of_16():
    with pytest.raises(ConfigError, match="a 24 x 64 weight cannot run through torch._scaled_mm: its in and out"):
        QuantWeight(torch.randn(24, 64, dtype=torch.bfloat16), "fp8_scaled_mm")


def test_mixed_16_bit_dtypes_and_tp_are_refused():
    _, w = _setup("llama", act_dtype="fp16")
    with pytest.raises(ConfigError, match="must be the same"):
        reference_dtype(w)
    with pytest.raises(ConfigError, match="must be the same"):
        reference_dtype(replace(w, act_dtype="bf16", weight_dtype="fp8", kv_dtype="fp16"))
    with pytest.raises(ConfigError, match="runs on one GPU"):
        reference_dtype(replace(w, act_dtype="bf16", tp=2))


def test_profile_pipeline_on_cpu(tmp_path):
    """The whole profile pipeline, op times from CPU time: one row per analytic op, a trace per phase."""
    m, w = _setup("llama")
    run = profile_model(
        m, w, spec="h100-sxm", device="cpu", layers=2, warmup=1, iters=2, timing_iters=2, trace_dir=tmp_path
    )
    assert run.source == "reference" and run.ranks == [0] and run.layers == 2
    for phase in ("prefill", "decode"):  # the run itself: measured figures only, every op of the model
        rows = run.ops[run.ops["phase"] == phase]
        assert list(rows["op"]) == [op.name for op in model_ops(m, w, phase, BATCH, PROMPT, CONTEXT)]
        assert (rows["gpu_time_s"] > 0).all() and not {"flops", "predicted_time_s", "measured_bound"} & set(rows)
        # 2 reference layers: a per-layer op runs twice per step, embedding and lm_head once
        assert rows.set_index("op")["calls"].to_dict() == {
            op.name: 2 if op.count == m.num_hidden_layers else 1 for op in model_ops(m, w, phase, 1, 1, 1)
        }
    result = compare(analyze(m, "h100-sxm", workload=run.workload), run)
    for phase in ("prefill", "decode"):
        rows = result.ops[result.ops["phase"] == phase]
        analytic = [op.name for op in model_ops(m, w, phase, BATCH, PROMPT, CONTEXT)]
        assert list(rows["op"]) == analytic
        assert (rows["measured_time_s"] > 0).all()
        assert rows["predicted_time_s"].notna().all()
        assert rows["measured_bound"].notna().all()
        with gzip.open(run.traces[phase]) as fh:
            names = {e.get("name") for e in json.load(fh)["traceEvents"]}
        assert set(analytic) <= names
    assert list(result.steps["phase"]) == ["prefill", "decode"]
    assert (result.steps["kernel_time_full_s"] > result.steps["kernel_time_ref_s"]).all()  # 3 layers > 2


def test_profile_needs_a_gpu_or_a_spec():
    m, w = _setup("llama")
    with pytest.raises(ConfigError, match="explicit spec"):
        profile_model(m, w, device="cpu")
    with pytest.raises(ConfigError, match="one point at a time"):
        profile_model(m, replace(w, batch_size=(1, 2)), spec="h100-sxm", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a CUDA GPU")
def test_profile_without_cuda_says_so():
    from roofline.errors import DeviceError

    m, w = _setup("llama")
    with pytest.raises(DeviceError, match="no CUDA GPU found"):
        profile_model(m, w)


# ---------------------------------------------------------------------------------------------
# NVML and calibration pieces that need no GPU


@pytest.mark.parametrize(
    "name, spec",
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA A10", "a10"),
        ("NVIDIA A10G", "a10g"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb-sxm"),
    ],
)
def test_gpu_names_map_to_shipped_specs(name, spec):
    assert spec_name_for_gpu(name) == spec
    load_spec(spec)  # the spec it names exists


def test_unknown_gpu_name_says_what_to_pass():
    with pytest.raises(UnknownHardware, match=r"GPU 'NVIDIA B200' has no shipped spec; pass --gpu"):
        spec_name_for_gpu("NVIDIA B200")


def test_throttle_reason_bits():
    assert decode_reasons(0x1 | 0x4) == ["gpu_idle", "sw_power_cap"]
    assert decode_reasons(0) == []


def test_sampler_without_nvml_goes_on_and_says_so():
    sampler = NvmlSampler()
    with sampler:
        pass
    if not sampler.available:
        assert "NVML not available" in sampler.notes[0]
        assert sampler.samples.empty


def test_calibrated_spec_loads_and_its_measured_figures_win(tmp_path):
    shipped = load_mapping(resolve_spec_path("h100-sxm"), "hardware spec")
    measured = {
        "peak_tflops": {"bf16": 700.0, "fp8": 1300.0},
        "mem_bandwidth_gb_per_s": 3000.0,
        "launch_overhead_us": 6.0,
        "graph_launch_overhead_us": 1.5,
        "conditions": {"gpu": "NVIDIA H100 80GB HBM3", "date": "2026-11-22T00:00:00Z"},
    }
    raw = build_spec(shipped, measured, "made up for this test")
    from roofline.measure.calibrate import write_spec

    spec = load_spec(write_spec(raw, tmp_path / "calibrated.yaml"))
    assert spec.ceiling_flops("bf16") == 700e12
    assert spec.ceiling_flops("fp16") == spec.peak_flops_per_s["fp16"]  # not measured: datasheet
    assert spec.ceiling_bytes_per_s() == 3000e9
    assert spec.ceiling_launch_s(cuda_graph=True) == pytest.approx(1.5e-6)
    assert spec.sources["measured"] == "made up for this test"


def test_the_moe_reference_counts_the_experts_its_router_sent_tokens_to():
    # per MoE layer call, the experts with tokens: what validate predicts an MoE case at (routed_experts)
    m, w = _setup("mixtral")
    ref = build_reference(m, w, layers=2, device="cpu")
    chosen = []
    real_topk = torch.topk

    def spy(*args, **kw):  # the router's choice, to count by hand beside the reference's own count
        out = real_topk(*args, **kw)
        chosen.append(out[1].clone())
        return out

    step = ref.make_step("decode", PROMPT, CONTEXT)
    torch.topk = spy
    try:
        step()
    finally:
        torch.topk = real_topk
    assert len(ref.routed) == 2 == len(chosen)  # two MoE layers, one call each
    assert ref.routed == [len(set(c.flatten().tolist())) for c in chosen]
    assert all(2 <= r <= 4 for r in ref.routed)  # top-2 of 4 experts over 2 tokens: 2 to 4 of them
