"""Tensor parallelism on real GPUs: 2 processes, NCCL, the collective rows measured from their NCCL
kernels, and the all-reduce calibration. Skipped, with the reason shown, without 2 CUDA GPUs."""

import pytest
import torch

from roofline.config import parse_model, parse_workload
from roofline.measure import distributed as D

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs"),
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


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    m = parse_model(SMALL)
    w = parse_workload(dict(batch_size=4, prompt_len=256, context_len=512, tp=2))
    from roofline.analysis import analyze
    from roofline.compare import compare

    r = D.profile_distributed(
        m, w, layers=2, warmup=2, iters=3, timing_iters=5, trace_dir=tmp_path_factory.mktemp("tp")
    )
    return compare(analyze(m, r.device["spec"], workload=r.workload), r)


def test_every_collective_row_is_its_nccl_kernels(run):
    coll = run.ops[run.ops["comm_bytes"] > 0]
    assert len(coll) == 2 * 2 * 4  # ranks x phases x collectives
    assert (coll["n_kernels"] >= 1).all(), coll[["rank", "phase", "op", "n_kernels"]]
    assert coll["kernels"].str.contains("nccl", case=False).all()
    assert (coll["comm_time_s"] > 0).all() and (coll["busbw_bytes_per_s"] > 0).all()
    assert (coll["exposed_comm_s"] <= coll["comm_time_s"] * (1 + 1e-9)).all()
    assert (coll["comm_time_min_rank_s"] <= coll["comm_time_s"] * (1 + 1e-9)).all()
    assert (coll["measured_bound"] == "communication").all()


def test_steps_account_for_the_nccl_time(run):
    s = run.steps
    assert (s["join"] == "roofline.measure.trace").all(), run.notes
    assert (s["unattributed_gpu_time_per_step_s"] < 0.05 * s["kernel_time_ref_s"]).all()
    assert ((s["exposed_comm_share"] > 0) & (s["exposed_comm_share"] <= 1)).all()
    assert run.run.device["world_size"] == 2 and run.run.device["backend"] == "nccl"


def test_all_reduce_calibration_on_two_gpus():
    from roofline.measure.collectives import calibrate_collectives

    f = calibrate_collectives(sizes=[4096, 4 * 2**20], nproc=2, ops=("all_reduce",), warmup=2, iters=5, repeats=3)
    assert list(f["world"]) == [2, 2] and (f["busbw_bytes_per_s"] > 0).all()
    assert f["busbw_bytes_per_s"].iloc[1] > f["busbw_bytes_per_s"].iloc[0]  # latency dominates 4 KiB
