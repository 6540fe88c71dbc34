"""The measurement side on a real CUDA GPU: reference model, profiler join, wall/graph timing,
calibration, NVML. Skipped, with the reason shown, where there is no CUDA GPU."""

import gzip
import json
from dataclasses import replace

import pytest
import torch

from roofline.config import parse_model, parse_workload
from roofline.errors import DeviceError
from roofline.specs import load_spec
from roofline.transformer import model_ops

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

SMALL = dict(
    model_type="llama",
    hidden_size=1024,
    intermediate_size=2816,
    num_hidden_layers=4,
    num_attention_heads=16,
    num_key_value_heads=4,
    vocab_size=8000,
)


def _small(**workload):
    m = parse_model(SMALL)
    w = parse_workload(dict(batch_size=4, prompt_len=256, context_len=512, **workload))
    return m, w


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    from roofline.analysis import analyze
    from roofline.compare import compare
    from roofline.measure.profile import profile_model

    m, w = _small()
    run = profile_model(
        m, w, spec="h100-sxm", layers=2, warmup=2, iters=3, timing_iters=5, trace_dir=tmp_path_factory.mktemp("traces")
    )
    return m, w, compare(analyze(m, "h100-sxm", workload=run.workload), run)


def test_every_op_has_kernels_and_a_time(profiled):
    m, w, result = profiled
    for phase in ("prefill", "decode"):
        rows = result.ops[result.ops["phase"] == phase]
        c = w.context_len[0]
        assert list(rows["op"]) == [op.name for op in model_ops(m, w, phase, 4, 256, c)]
        assert (rows["n_kernels"] >= 1).all(), rows.loc[rows["n_kernels"] < 1, "op"].tolist()
        assert (rows["measured_time_s"] > 0).all()
        assert rows["measured_bound"].notna().all()
    assert (result.steps["join"] == "roofline.measure.trace").all(), result.notes


def test_step_timings_are_consistent(profiled):
    _, _, result = profiled
    for row in result.steps.itertuples():
        assert row.graph_step_ref_s > 0 and row.eager_step_ref_s > 0
        # a graph replay runs the same kernels as the profiled step, so it cannot beat their sum by much
        assert row.graph_step_ref_s > 0.8 * row.kernel_time_ref_s
        assert row.unattributed_gpu_time_per_step_s < 0.05 * row.kernel_time_ref_s


def test_one_step_trace_is_small_and_readable(profiled):
    from roofline.measure.trace import analyze_trace

    _, _, result = profiled
    for phase, path in result.run.traces.items():
        with gzip.open(path) as fh:
            events = json.load(fh)["traceEvents"]
        assert any(e.get("cat") == "kernel" for e in events)
        ta = analyze_trace(path, "h100-sxm")
        assert ta.summary["n_orphans"] == 0


def test_matmul_ops_get_a_measured_class(profiled):
    _, _, result = profiled
    matmuls = result.ops[result.ops["category"] == "matmul"]
    assert matmuls["measured_bound"].isin(["compute", "memory", "latency", "overhead"]).all()
    assert (matmuls["achieved_flops_per_s"] > 0).all()


def test_flash_and_naive_agree_on_cuda():
    from roofline.measure.reference import build_reference

    m, w = _small()
    flash = build_reference(m, w, device="cuda", seed=5)
    naive = build_reference(m, replace(w, attn_impl="naive"), device="cuda", seed=5)
    with torch.no_grad():
        for phase in ("prefill", "decode"):
            a = flash.make_step(phase, 256, 512)().float()
            b = naive.make_step(phase, 256, 512)().float()
            assert torch.isfinite(a).all()
            assert (a - b).norm() / a.norm() < 2e-2


def test_out_of_memory_names_the_fix():
    from roofline.measure.profile import profile_model

    huge = dict(SMALL, vocab_size=10**9, hidden_size=8192, num_attention_heads=64, num_key_value_heads=8)
    m = parse_model(huge)
    w = parse_workload(dict(batch_size=1, prompt_len=16, phase="prefill"))
    with pytest.raises(DeviceError, match="out of GPU memory.*fewer --layers or a smaller --batch"):
        profile_model(m, w, spec="h100-sxm", layers=1, warmup=1, iters=1)


def test_quick_calibration_writes_a_spec_that_loads(tmp_path):
    from roofline.measure.calibrate import calibrate

    name = torch.cuda.get_device_name()
    from roofline.measure.nvml import GPU_SPECS

    spec_name = GPU_SPECS.get(name, "h100-sxm")
    raw = calibrate(tmp_path / "cal.yaml", spec=spec_name, quick=True)
    spec = load_spec(tmp_path / "cal.yaml")
    assert spec.is_calibrated
    assert spec.ceiling_flops("bf16") == pytest.approx(raw["measured"]["peak_tflops"]["bf16"] * 1e12)
    assert 0 < raw["measured"]["graph_launch_overhead_us"] < raw["measured"]["launch_overhead_us"]
    assert raw["sources"]["measured"].startswith("roofline calibrate on")


def test_nvml_sees_the_gpu():
    from roofline.measure.nvml import NvmlSampler, gpu_info

    info = gpu_info()
    if info["nvml"] != "available":
        pytest.skip(f"NVML: {info['nvml']}")
    assert info["name"] == torch.cuda.get_device_name()
    with NvmlSampler(interval_s=0.01) as sampler:
        a = torch.randn(4096, 4096, device="cuda")
        for _ in range(20):
            a = a @ a.T / 64
        torch.cuda.synchronize()
    assert len(sampler.samples) >= 1
    assert sampler.samples["sm_clock_mhz"].max() > 0


def test_profile_times_the_host_reference_of_a_calibrated_spec(tmp_path):
    # reports/h200/calibration.yaml records its host reference (858.56 us): profile times the same step beside
    # its own, keeps it with the ratio and notes it; the datasheet spec records none, so none is timed
    from pathlib import Path

    from roofline.measure.profile import profile_model

    calibrated = str(Path(__file__).parent.parent / "reports" / "h200" / "calibration.yaml")
    m, w = _small(phase="decode")
    run = profile_model(m, w, spec=calibrated, layers=1, warmup=1, iters=2, timing_iters=5, trace_dir=tmp_path)
    host = run.device["host_reference"]
    assert host["calibrated_us"] == 858.56 and len(host["samples_us"]) == 2
    assert host["eager_step_us"] == min(host["samples_us"]) > 0
    assert host["scale"] == pytest.approx(host["eager_step_us"] / 858.56, rel=1e-3)
    assert any(n.startswith("host reference:") for n in run.notes)
    plain = profile_model(m, w, spec="h100-sxm", layers=1, warmup=1, iters=2, timing_iters=5, trace_dir=tmp_path)
    assert "host_reference" not in plain.device
