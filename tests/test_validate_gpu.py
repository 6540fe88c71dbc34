"""The kernel model's measurements and roofline validate on a real CUDA GPU (small sizes: plumbing, not
figures; the figures are reports/h200/ and reports/validate-h200/). Skipped without a CUDA GPU."""

import pytest
import torch

from roofline.specs import load_spec

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_kernel_time_is_the_kernels_not_the_host():
    from roofline.measure.calibrate import kernel_min_s, kernel_time_s

    floor = kernel_min_s(repeats=20)
    assert 0.5e-6 < floor < 20e-6  # one tiny kernel: about 1-3 us of device time on a Hopper part
    x = torch.randn(64 * 1024 * 1024, device="cuda", dtype=torch.bfloat16)  # 128 MiB
    t = kernel_time_s(lambda: torch.neg(x), repeats=5)
    assert 2 * x.numel() * 2 / t < 10e12  # reads and writes 268 MB: below any HBM's bandwidth


def test_small_tables_load_into_a_spec(tmp_path):
    from roofline.measure.calibrate import (
        build_spec,
        measure_bandwidth_curve,
        measure_gemm_table,
        write_spec,
    )
    from roofline.measure.nvml import spec_name_for_gpu
    from roofline.specs import resolve_spec_path
    from roofline.validate import load_mapping

    name = spec_name_for_gpu(torch.cuda.get_device_name(0))
    spec = load_spec(name)
    measured = {
        "bandwidth_curve": measure_bandwidth_curve(spec, repeats=3, sizes=(4096, 1 << 24)),
        "gemm": {"bf16": measure_gemm_table(spec, tokens=(1, 64), shapes=((1024, 1024), (1024, 4096)), repeats=3)},
    }
    path = write_spec(build_spec(load_mapping(resolve_spec_path(name), "spec"), measured, "test"), tmp_path / "s.yaml")
    k = load_spec(path).measured_kernels
    assert k["bandwidth"][1][0] < k["bandwidth"][1][1]  # 4 KB moves slower than 16 MB
    assert k["gemm"]["bf16"][2].shape == (2, 2)


def test_quick_validate_runs_both_modes(tmp_path):
    from roofline.validation import QUICK_MATRIX, validate, write_validation

    v = validate(matrix=QUICK_MATRIX[:1], layers=1)
    assert set(v.steps["mode"]) == {"eager", "graph"}
    assert (v.steps["measured_step_s"] > 0).all()
    assert (v.ops["measured_time_s"] > 0).all()
    out = write_validation(v, tmp_path / "v")
    assert (out / "errors.png").is_file()
