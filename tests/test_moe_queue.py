"""The MoE expert loop in the launch queue (predict.expert_loop, queue_blocks, queue_step with syncs) and
the calibration keys it reads (calibrate.expert_loop_keys)."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import roofline
from roofline.measure.calibrate import KERNEL_MODEL_DOC, expert_loop_keys, op_costs
from roofline.predict import EXPERT_BODY_KERNELS, expert_loop, queue_blocks, queue_step, step_time
from roofline.specs import parse_spec

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).parent.parent / "examples"
TINY_MODEL = str(DATA / "tiny_llama.yaml")
US = 1e-6

# two experts with tokens at the calibrated point; per expert 10 kernels, host 1 us each; small kernels 0.5 us
TWO_EXPERTS = {
    "host_eager_s": 100 * US,  # 80 us of routing and where syncs + 2 experts x 10 us
    "host_per_active_expert_s": 10 * US,
    "active_experts": 2.0,
    "kernels": 30.0,
    "kernels_per_active_expert": 10.0,  # 2 leading small kernels + the 8 of predict.EXPERT_KERNELS
    "small_kernel_s": 0.5 * US,
}


def tiny_spec(measured: dict | None = None):
    raw = yaml.safe_load((DATA / "tiny_gpu.yaml").read_text())
    if measured is not None:
        raw["measured"] = copy.deepcopy(measured)
    return parse_spec(raw, "tiny-calibrated")


def test_one_expert_is_the_launch_queue_of_its_kernels():
    # 10 kernels, host 1 us each; GPU: small 0.5, small 0.5, GEMM 3, small, GEMM 3, small, GEMM 3, small x 3.
    # GPU from kernel i to the end: 12.5, 12, 11.5, 8.5, 8, 5, 4.5, 1.5, 1, 0.5; + host up to i (i us):
    # 13.5, 14, 14.5, 12.5, 13, 11, 11.5, 9.5, 10, 10.5 -> 14.5 at the gate GEMM
    small, gemm = np.array([0.5]), np.array([3.0])
    blocks = [(2.0, 1.0, small), (1.0, 1.0, gemm), (1.0, 1.0, small), (1.0, 1.0, gemm), (1.0, 1.0, small)]
    blocks += [(1.0, 1.0, gemm), (3.0, 1.0, small)]
    assert queue_blocks(blocks) == pytest.approx([14.5])
    # one block of like kernels: its first kernel (GPU-bound) or its last (host-bound)
    assert queue_blocks([(4.0, 1.0, np.array([3.0]))]) == pytest.approx([1 + 4 * 3])
    assert queue_blocks([(4.0, 3.0, np.array([1.0]))]) == pytest.approx([4 * 3 + 1])


def test_two_experts_hand_computed():
    # the op's GEMM-table time 12 us: 2 experts x 3 GEMMs of 2 us
    e = expert_loop(TWO_EXPERTS, np.array([2.0]), np.array([12 * US]), 1.0, 0.0)
    assert e["kernels"] == pytest.approx([30.0])
    # GPU: the GEMMs + (30 - 2 x 3) x 0.5 = 12 + 12 = 24 us; never below 30 x 0.5 = 15 us
    assert e["predicted_s"] == pytest.approx([24 * US])
    assert e["fixed_s"] == pytest.approx([15 * US])
    assert e["host_s"] == pytest.approx([100 * US])
    # one expert: host 1 us per kernel; GPU 0.5, 0.5, 2, 0.5, 2, 0.5, 2, 0.5, 0.5, 0.5 = 9.5 us in all;
    # GPU from kernel i to the end: 9.5, 9, 8.5, 6.5, 6, 4, 3.5, 1.5, 1, 0.5; + i us of host:
    # 10.5, 11, 11.5, 10.5, 11, 10, 10.5, 9.5, 10, 10.5 -> 11.5 us at the gate GEMM
    # the occurrence: 80 us of routing and syncs + 2 x 11.5 = 103 us (host + GPU would be 124 us)
    assert e["sync_s"] == pytest.approx([103 * US])
    # in the queue: an op of host 5, GPU 50 us before it, one of host 5, GPU 1 after it: the experts
    # start when the GPU is free (55 us) and hold both until 158; the last op is issued at 163, ends 164
    host = np.array([[5 * US, 100 * US, 5 * US]])
    stream = np.array([[50 * US, 24 * US, 1 * US]])
    sync = np.array([[0.0, e["sync_s"][0], 0.0]])
    assert queue_step(host, stream, np.ones(3), None, sync) == pytest.approx([164 * US])


def test_an_expert_s_elementwise_kernels_take_their_bytes_over_the_bandwidth_curve():
    from roofline.predict import EXPERT_SMALL_ELEMENTS, expert_body_time

    # Mixtral (hidden 4096, width 14336), an expert with 128 tokens, a flat 1 TB/s curve: silu(gate) moves
    # 128 x 14336 x 2 elements x 2 bytes = 7.34 MB -> 7.34 us; silu * up 11.01 MB -> 11.01 us; the routing
    # weights' gather 0 bytes -> the 1.2 us floor; the weights' mul 128 x 4096 x 2 x 2 = 2.10 MB; index_add_ 3.15 MB
    curve = (np.array([1.0, 1e12]), np.array([1e12, 1e12]))
    body = expert_body_time(np.array([128.0]), 4096, 14336, curve)
    got = [body(e, 1.2 * US)[0] / US for e in EXPERT_SMALL_ELEMENTS]
    assert got == pytest.approx([7.340032, 11.010048, 1.2, 2.097152, 3.145728])
    # at 2 tokens (decode) every one is under the floor: the small-kernel time, as without the curve
    body = expert_body_time(np.array([2.0]), 4096, 14336, curve)
    assert [body(e, 1.2 * US)[0] for e in EXPERT_SMALL_ELEMENTS] == pytest.approx([1.2 * US] * 5)
    # in the loop: each active expert's non-GEMM time grows by what its sized kernels add over the floor
    # (TWO_EXPERTS: 2 leading kernels, the first the gather x[token]: 128 x 4096 x 2 x 2 = 2.10 MB)
    plain = expert_loop(TWO_EXPERTS, np.array([2.0]), np.array([12 * US]), 1.0, 0.0)
    sized = expert_loop(TWO_EXPERTS, np.array([2.0]), np.array([12 * US]), 1.0, 0.0, body_time=body128(curve))
    extra = (7.340032 + 11.010048 + 0.5 + 2.097152 + 3.145728 + 2.097152) - 6 * 0.5
    assert sized["predicted_s"][0] - plain["predicted_s"][0] == pytest.approx(2 * extra * US)
    assert sized["kernels"] == pytest.approx(plain["kernels"]) and sized["host_s"] == pytest.approx(plain["host_s"])


def body128(curve):
    from roofline.predict import expert_body_time

    return expert_body_time(np.array([128.0]), 4096, 14336, curve)


def test_routed_experts_down_matrix_reads_the_tall_k_table():
    # Mixtral's experts: gate and up at the plain table (0.5), down (width -> hidden) at tall_k (0.25), each a
    # third of the op's roofline: time / 0.5 x 2/3 + time / 0.25 x 1/3 = 2.667 x the roofline time
    tables = {"bf16": {"tokens": [1, 1000], "weight_elements": [1, 1e12], "efficiency": [[0.5, 0.5], [0.5, 0.5]]}}
    tables["bf16/tall_k"] = {k: v for k, v in tables["bf16"].items() if k != "efficiency"}
    tables["bf16/tall_k"]["efficiency"] = [[0.25, 0.25], [0.25, 0.25]]
    r = roofline.analyze(str(EXAMPLES / "mixtral-8x7b.yaml"), tiny_spec({"gemm": tables}), phase="prefill")
    e = r.ops.set_index("op").loc["experts"]
    assert e["predicted_time_s"] == pytest.approx(e["time_s"] * (2 / 3 / 0.5 + 1 / 3 / 0.25))
    d = r.ops.set_index("op").loc["q_proj"]  # a dense projection keeps its own table
    assert d["predicted_time_s"] == pytest.approx(d["time_s"] / 0.5)


def test_the_gemm_bound_limit_is_the_gpu_time_of_the_experts():
    # a host that launches for free: each expert is its GPU time (GEMMs + small kernels + gaps), back to back
    entry = dict(TWO_EXPERTS, host_per_active_expert_s=1e-15)
    a, gemm, gap = np.array([2.0, 5.0]), np.array([600 * US, 1500 * US]), 0.25 * US
    e = expert_loop(entry, a, gemm, 1.0, gap)
    per_expert = gemm / a + 7 * 0.5 * US + 10 * gap  # 3 GEMMs + 7 small kernels, 10 gaps
    assert e["sync_s"] == pytest.approx(100 * US + a * per_expert, rel=1e-9)
    assert e["kernels"] == pytest.approx([30.0, 60.0])  # 30 + 10 x (5 - 2)


def test_the_host_bound_limit_is_the_host_cost():
    # kernels that take no GPU time: the occurrence is the host's cost, routing + hpa per expert
    entry = dict(TWO_EXPERTS, small_kernel_s=1e-18)
    a = np.array([1.0, 2.0, 7.5])
    e = expert_loop(entry, a, np.full(3, 1e-18), 1.0, 0.0)
    assert e["sync_s"] == pytest.approx(e["host_s"], rel=1e-9)
    assert e["host_s"] == pytest.approx((100 + 10 * (a - 2)) * US)


def test_the_routing_and_syncs_scale_with_the_experts_of_the_loop():
    # calibrated with E0 = 8 where's: base 100 - 2 x 10 = 80 us and 30 - 2 x 10 = 10 kernels; a loop of 16
    # experts pays 16 where's: 160 us and 20 kernels, + 10 us and 10 kernels per expert with tokens
    entry = dict(TWO_EXPERTS, syncs=8)
    e = expert_loop(entry, np.array([2.0, 3.0]), np.array([1e-18, 1e-18]), 1.0, 0.0, experts=16)
    assert e["host_s"] == pytest.approx([180 * US, 190 * US])
    assert e["kernels"] == pytest.approx([40.0, 50.0])
    same = expert_loop(entry, np.array([3.0]), np.array([1e-18]), 1.0, 0.0, experts=8)
    assert same["host_s"] == pytest.approx([110 * US]) and same["kernels"] == pytest.approx([40.0])


def test_defaults_where_the_spec_lacks_the_loop_keys():
    # the loop body's 9 kernels per expert; small kernels at the entry's fixed / kernels = 68 / 68 = 1 us
    entry = {"host_eager_s": 645 * US, "host_per_active_expert_s": 118 * US, "active_experts": 2.0}
    entry.update(kernels=68.0, fixed_s=68 * US)
    e = expert_loop(entry, np.array([4.0]), np.array([100 * US]), 7.0, 0.0)
    assert EXPERT_BODY_KERNELS == 9
    assert e["kernels"] == pytest.approx([68 + 9 * 2])
    assert e["predicted_s"] == pytest.approx([(100 + (86 - 12) * 1.0) * US])
    # neither small_kernel nor fixed: the default passed in (kernel_min)
    bare = {k: v for k, v in entry.items() if k != "fixed_s"}
    assert expert_loop(bare, np.array([4.0]), np.array([0.0]), 7 * US, 0.0)["fixed_s"] == pytest.approx([86 * 7 * US])


def test_a_spec_carries_the_loop_keys_into_the_step():
    entry = {
        "host_eager_us": 100.0,
        "host_per_active_expert_us": 10.0,
        "active_experts": 2.0,
        "kernels": 30.0,
        "kernels_per_active_expert": 10.0,
        "small_kernel_us": 0.5,
        "syncs": 8,
    }
    spec = tiny_spec({"kernel_gap_us": 1e-9, "ops": {"experts": entry}})
    assert spec.measured_kernels["ops"]["experts"]["small_kernel_s"] == pytest.approx(0.5e-6)
    r = roofline.analyze(str(EXAMPLES / "mixtral-8x7b.yaml"), spec, phase="decode", batch_size=[1, 16])
    ops = r.ops[r.ops["op"] == "experts"]
    assert (ops["sync_s"] > 0).all() and (r.ops.loc[r.ops["op"] != "experts", "sync_s"] == 0).all()
    for point, rows in r.ops.groupby("point"):
        assert r.summary["decode_time_s"].iloc[point] == pytest.approx(step_time(rows))
    # in a CUDA graph nothing syncs (and the step is the closed form)
    graph = roofline.analyze(str(EXAMPLES / "mixtral-8x7b.yaml"), spec, phase="decode", cuda_graph=True)
    assert (graph.ops["sync_s"] == 0).all()


def test_a_step_without_syncs_is_unchanged():
    # numbers of the launch queue before the expert loop was modelled (commit be91308), tiny GPU and model:
    # prefill point 0 mixes host (100,003 s) and GPU (122,850 s) time, decode point 0 is host-bound
    spec = tiny_spec(
        {
            "kernel_min_us": 2e4,
            "kernel_gap_us": 5e3,
            "gemm": {"bf16": {"tokens": [1, 1000], "weight_elements": [1, 1e9], "efficiency": [[0.25] * 2] * 2}},
            "ops": {
                "rope": {"fixed_us": 3e4, "host_eager_us": 2e10, "kernels": 8},
                "attn_norm": {"host_eager_us": 3e10},
            },
        }
    )
    before = {
        False: [[163089.25000000006, 134222.5999999999], [7416073.930000003, 541251.53]],
        True: [[122850.155, 73545.83500000004], [7400461.035000004, 512889.8350000001]],
    }
    for cuda_graph, want in before.items():
        r = roofline.analyze(TINY_MODEL, spec, cuda_graph=cuda_graph, batch_size=[1, 64])
        assert r.summary[["prefill_time_s", "decode_time_s"]].to_numpy() == pytest.approx(np.array(want), rel=1e-12)
        assert (r.ops["sync_s"] == 0).all()


def fake_run(kernels: float, fixed_us: float, span_us: float):
    """(ops, step) of a profile with the experts op alone, two layers; the eager step = its spans plus the GPU tail
    it ends on (its last op's kernels, calibrate.step_tail_s): host scale 1."""
    ops = pd.DataFrame(
        {
            "op": ["experts"],
            "calls": [2],
            "span_s": [span_us * US],
            "gpu_time_s": [fixed_us * US],
            "n_kernels": [kernels],
        }
    )
    return ops, {"eager_step_ref_s": (2 * span_us + fixed_us) * US, "graph_step_ref_s": None}


def test_calibrate_derives_the_loop_keys_from_the_two_runs():
    # batch 1: 2 experts with tokens; batch 16: 8 (1 - 0.75^16) = 7.9199 expected, d = 5.9199 more.
    # Per active expert: 11 kernels, 20 us of GPU, 118 us of host. Without the active experts batch 1 keeps
    # 68 - 2 x 11 = 46 kernels and 108 - 2 x 20 = 68 us: 1.478 us per kernel
    d = 8 * (1 - 0.75**16) - 2
    narrow = op_costs(*fake_run(68, 108, 645))["experts"]
    wide = op_costs(*fake_run(68 + 11 * d, 108 + 20 * d, 645 + 118 * d))["experts"]
    got = expert_loop_keys(narrow, wide, 8, 2, 16)
    assert got["kernels_per_active_expert"] == pytest.approx(11.0, abs=2e-3)  # op_costs rounds kernels to 0.01
    assert got["host_per_active_expert_us"] == pytest.approx(118.0, abs=1e-3)
    assert got["small_kernel_us"] == pytest.approx(68 / 46, abs=2e-3)
    assert got["active_experts"] == 2.0 and got["syncs"] == 8
    # GPU noise making the active experts' share exceed batch 1's time: the mean kernel, 108 / 68
    noisy = op_costs(*fake_run(68 + 11 * d, 108 + 80 * d, 645 + 118 * d))["experts"]
    assert expert_loop_keys(narrow, noisy, 8, 2, 16)["small_kernel_us"] == pytest.approx(108 / 68, abs=1e-3)
    for key in ("kernels_per_active_expert", "small_kernel_us"):
        assert key in KERNEL_MODEL_DOC


def test_the_loop_keys_divide_by_the_routing_the_runs_measured():
    # the same runs, routed as the seeded model routes them: 2 and 7.5 experts with tokens (not 7.92): the
    # per-active figures are the differences over 5.5, 118 x 5.9199 / 5.5 = 127.01 us of host
    d = 8 * (1 - 0.75**16) - 2
    narrow = op_costs(*fake_run(68, 108, 645))["experts"]
    wide = op_costs(*fake_run(68 + 11 * d, 108 + 20 * d, 645 + 118 * d))["experts"]
    got = expert_loop_keys(narrow, wide, 8, 2, 16, routed=(2.0, 7.5))
    assert got["host_per_active_expert_us"] == pytest.approx(118.0 * d / 5.5, abs=2e-3)
    assert got["kernels_per_active_expert"] == pytest.approx(11.0 * d / 5.5, abs=3e-3)
    assert got["active_experts"] == 2.0
    # a routing that is missing (NaN, None) or does not grow from batch 1: the uniform expectation, as before
    for routed in ((2.0, float("nan")), (None, 7.5), (2.0, 2.0)):
        again = expert_loop_keys(narrow, wide, 8, 2, 16, routed=routed)
        assert again["host_per_active_expert_us"] == pytest.approx(118.0, abs=1e-3)
