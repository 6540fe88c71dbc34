"""The expert-loop keys that calibrate measures on a real CUDA GPU (measure_op_costs: the small MoE model at
decode batch 1 and MOE_WIDE_BATCH). Skipped, with the reason shown, where there is no CUDA GPU."""

import pytest
import torch

from roofline.measure.calibrate import measure_op_costs
from roofline.predict import EXPERT_BODY_KERNELS
from roofline.specs import load_spec

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_the_expert_loop_keys_are_measured():
    from roofline.measure.nvml import GPU_SPECS

    spec = load_spec(GPU_SPECS.get(torch.cuda.get_device_name(), "h100-sxm"))
    ops, cond = measure_op_costs(spec, repeats=3)
    e = ops["experts"]
    # the runs' own routing, which the per-active-expert keys divide by: top-2 of 8 at batch 1, more at batch 16
    routed = cond["moe_routed_experts"]
    assert routed["batch_1"] == 2.0 and 2.0 < routed["batch_16"] <= 8.0
    # each expert with tokens launches at least the 9 kernels of the reference's loop body
    assert EXPERT_BODY_KERNELS <= e["kernels_per_active_expert"] < 2 * EXPERT_BODY_KERNELS
    # the routing's and the where's kernels, each near the minimum: under 3x the op's mean kernel at batch 1
    assert 0 < e["small_kernel_us"] < 3 * e["fixed_us"] / e["kernels"]
    assert e["active_experts"] == 2.0 and e["syncs"] == 8
    # the models' head is cold_vocab's (4x the L2): its time is no floor for a smaller head's
    assert "fixed_us" not in ops["lm_head"] and ops["q_proj"]["fixed_us"] > 0
