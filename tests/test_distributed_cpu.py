"""Tensor-parallel measurement without GPUs: the tp-split reference computes the tp = 1 function,
the torchrun launcher runs 2 gloo processes end to end, failures come back as one line with nothing
left running, and the NCCL-kernel join reads the committed per-rank traces of a 2 x H200 run."""

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from roofline.analysis import analyze
from roofline.compare import COMM_TABLE_COLUMNS, comm_against_prediction, comm_table, compare
from roofline.config import load_model_and_workload, parse_model, parse_workload
from roofline.errors import ConfigError, DeviceError
from roofline.measure import distributed as D
from roofline.measure.collectives import calibrate_collectives, collective_ceilings, merge_collectives
from roofline.measure.reference import ReferenceDecoder, build_reference
from roofline.specs import load_spec, parse_spec, resolve_spec_path
from roofline.transformer import model_ops
from roofline.validate import load_mapping

DATA = Path(__file__).parent / "data"
TINY = {
    "llama": dict(
        model_type="llama",
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=101,
    ),  # odd vocab: a padded shard
    "mqa": dict(
        model_type="llama",
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        vocab_size=100,
    ),  # KV head replicated
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
        num_key_value_heads=2,
        vocab_size=50,
        num_local_experts=4,
        num_experts_per_tok=2,
    ),
}
BATCH, PROMPT, CONTEXT = 2, 8, 12
FAST = dict(warmup=0, iters=2, timing_iters=1)  # the launcher's plumbing, not timings


def _setup(arch="llama", **workload):
    m = parse_model(TINY[arch])
    w = parse_workload(dict(batch_size=BATCH, prompt_len=PROMPT, context_len=CONTEXT, tp=2, **workload))
    return m, w


# ---------------------------------------------------------------------------------------------
# the split reference, 2 gloo processes (torch.multiprocessing, no torchrun)


def _tp_worker(rank, store_path, out_dir):
    import torch.distributed as dist
    from torch.profiler import ProfilerActivity, profile

    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=2)
    results = {}
    for arch in sorted(TINY):
        for attn in ("flash", "naive"):
            m, w = _setup(arch, attn_impl=attn)
            tp2 = build_reference(m, w, layers=2, device="cpu", seed=5)
            x = torch.randint(0, m.vocab_size, (BATCH, PROMPT + 1), generator=torch.Generator().manual_seed(9))
            got = [tp2.forward(x[:, :PROMPT], 0), tp2.forward(x[:, PROMPT:], PROMPT)]
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                tp2.make_step("decode", PROMPT, CONTEXT)()
            names = [e.name for e in prof.events()]
            if rank == 0:
                tp1 = ReferenceDecoder(
                    m, layers=2, batch=BATCH, max_context=CONTEXT, attn_impl=attn, device="cpu", seed=5
                )
                want = [tp1.forward(x[:, :PROMPT], 0), tp1.forward(x[:, PROMPT:], PROMPT)]
                err = [float((g.float() - t.float()).norm() / t.float().norm()) for g, t in zip(got, want)]
                shapes = [tuple(g.shape) for g in got]
                results[(arch, attn)] = (err, shapes, names, tp2.weight_bytes(), tp1.weight_bytes())
    if rank == 0:
        torch.save(results, os.path.join(out_dir, "tp.pt"))
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def tp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("tp")
    mp.spawn(_tp_worker, args=(str(out / "store"), str(out)), nprocs=2, join=True)
    return torch.load(out / "tp.pt")


@pytest.mark.parametrize("arch", sorted(TINY))
@pytest.mark.parametrize("attn", ["flash", "naive"])
def test_tp2_reference_computes_the_tp1_function(tp_results, arch, attn):
    err, shapes, _, _, _ = tp_results[(arch, attn)]
    assert shapes == [(BATCH, TINY[arch].get("vocab_size"))] * 2  # gathered logits, padding dropped
    assert max(err) < 2e-2, err  # bf16 partial sums added in another order: rounding, not another function


@pytest.mark.parametrize("arch", sorted(TINY))
def test_tp2_ranges_are_the_analytic_ops_with_collectives(tp_results, arch):
    _, _, seen, _, _ = tp_results[(arch, "flash")]
    m, w = _setup(arch)
    ops = model_ops(m, w, "decode", BATCH, PROMPT, CONTEXT)
    assert {"embed_all_reduce", "attn_all_reduce", "mlp_all_reduce", "logits_all_gather"} <= {o.name for o in ops}
    for op in ops:  # per-layer ops once per reference layer
        assert seen.count(op.name) == (2 if op.count == m.num_hidden_layers else 1), op.name


def test_tp2_holds_about_half_the_weights(tp_results):
    _, _, _, tp2_bytes, tp1_bytes = tp_results[("llama", "flash")]
    # norms are replicated and the 101-row vocabulary pads to 2 x 51, so a little over half
    assert 0.5 * tp1_bytes < tp2_bytes < 0.56 * tp1_bytes


def test_tp_without_a_process_group_says_how_to_run_it():
    m, w = _setup()
    with pytest.raises(ConfigError, match=r"tp 2: the reference needs one process per GPU.*profile_distributed"):
        build_reference(m, w, device="cpu")


# ---------------------------------------------------------------------------------------------
# the launcher: torchrun, 2 gloo processes


@pytest.fixture(scope="module")
def gloo_run(tmp_path_factory):
    m, w = _setup()
    run = D.profile_distributed(m, w, spec="h200", backend="gloo", trace_dir=tmp_path_factory.mktemp("tr"), **FAST)
    assert run.source == "distributed" and run.ranks == [0, 1]
    return m, w, compare(analyze(m, "h200", workload=run.workload), run)


def test_every_rank_reports_every_analytic_op(gloo_run):
    m, w, r = gloo_run
    assert sorted(r.ops["rank"].unique()) == [0, 1]
    for (rank, phase), rows in r.ops.groupby(["rank", "phase"]):
        assert list(rows["op"]) == [o.name for o in model_ops(m, w, phase, BATCH, PROMPT, CONTEXT)], (rank, phase)
        assert (rows["measured_time_s"] > 0).all()
    assert set(r.run.traces) == {f"{ph}_rank{k}" for ph in ("prefill", "decode") for k in (0, 1)}
    assert all(Path(p).exists() for p in r.run.traces.values())
    assert r.run.device["world_size"] == 2 and r.run.device["backend"] == "gloo"


def test_collective_rows_carry_time_exposure_busbw_and_prediction(gloo_run):
    m, w, r = gloo_run
    spec = load_spec("h200")
    coll = r.ops[r.ops["comm_bytes"] > 0]
    assert set(coll["op"]) == set(D.COLLECTIVE_OPS)
    assert (coll["comm_time_s"] > 0).all()
    assert (coll["exposed_comm_s"] == coll["comm_time_s"]).all()  # on the CPU all of it is exposed
    assert (coll["comm_time_min_rank_s"] <= coll["comm_time_s"]).all()
    assert np.allclose(coll["busbw_bytes_per_s"], coll["comm_bytes"] / coll["comm_time_s"])
    # all-reduce of [tokens, hidden] bf16 over 2 GPUs: each sends 2(N-1)/N = 1 x the message
    prefill_ar = coll[(coll["phase"] == "prefill") & (coll["op"] == "attn_all_reduce")]
    assert (prefill_ar["comm_bytes"] == BATCH * PROMPT * 64 * 2).all()
    assert np.allclose(prefill_ar["predicted_comm_s"], spec.collective_latency_s + BATCH * PROMPT * 64 * 2 / 450e9)
    assert (coll["measured_bound"] == "communication").all()
    other = r.ops[r.ops["comm_bytes"] == 0]
    assert (other["comm_time_s"] == 0).all() and other["busbw_bytes_per_s"].isna().all()
    table = comm_table(r)
    assert len(table) == 8 and list(table.columns) == COMM_TABLE_COLUMNS
    s = r.steps
    assert len(s) == 4 and ((s["exposed_comm_share"] > 0) & (s["exposed_comm_share"] <= 1)).all()


def _alive(pids):
    return [p for p in pids if D.is_our_worker(p)]


@pytest.mark.parametrize(
    "fault, message",
    [
        ("1:raise", r"^rank 1: injected failure on rank 1 \(ROOFLINE_DIST_FAULT\)$"),
        ("1:exit", r"^rank 1 died \(exit code 7\) with no Python error .*; log: .*torchrun\.log$"),
    ],
)
def test_a_failing_rank_is_one_line_and_nothing_is_left_running(monkeypatch, tmp_path, fault, message):
    monkeypatch.setenv(D.FAULT_ENV, fault)
    monkeypatch.setattr(D.tempfile, "mkdtemp", lambda prefix: str(tmp_path))
    m, w = _setup(phase="decode")
    with pytest.raises(DeviceError, match=message):
        D.profile_distributed(m, w, spec="h200", backend="gloo", **FAST)
    pids = D.worker_pids(tmp_path)
    assert sorted(pids) == [0, 1]
    assert not _alive(pids.values())


def test_a_hung_rank_is_stopped_by_the_watchdog(monkeypatch, tmp_path):
    monkeypatch.setenv(D.FAULT_ENV, "1:hang")
    monkeypatch.setattr(D.tempfile, "mkdtemp", lambda prefix: str(tmp_path))
    monkeypatch.setattr(D, "KILL_GRACE_S", 3.0)
    m, w = _setup(phase="decode")
    # the limit must outlast both ranks' start (torch imported twice, which took over 12 s on a loaded 2-core
    # machine: rank 1 had not written its pid when the watchdog fired)
    limit = 20
    start = time.monotonic()
    with pytest.raises(DeviceError, match=rf"did not finish within {limit} s \(a rank hung\?\); stopped torchrun"):
        D.profile_distributed(m, w, spec="h200", backend="gloo", timeout_s=limit, init_timeout_s=120, **FAST)
    assert time.monotonic() - start < limit + 3 + 5 + 5
    pids = D.worker_pids(tmp_path)
    assert 1 in pids and not _alive(pids.values())


def test_stop_ends_torchrun_and_workers_in_their_own_sessions(tmp_path):
    """What the watchdog does when torchrun ignores SIGTERM: SIGKILL its group, then each worker by pid."""
    worker = (
        f"import os, time; open(os.path.join({str(tmp_path)!r}, 'rank0.pid'), 'w').write(str(os.getpid())); "
        "time.sleep(60)  # roofline.measure"
    )
    parent = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        f"subprocess.Popen([sys.executable, '-c', {worker!r}], start_new_session=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], start_new_session=True)
    for _ in range(200):
        if (tmp_path / "rank0.pid").exists() and (tmp_path / "rank0.pid").read_text():
            break
        time.sleep(0.05)
    pid = D.worker_pids(tmp_path)[0]
    assert D.is_our_worker(pid)
    old = D.KILL_GRACE_S
    D.KILL_GRACE_S = 0.5
    try:
        D.stop(proc, tmp_path)
    finally:
        D.KILL_GRACE_S = old
    assert proc.poll() is not None and not D.is_our_worker(pid)


# ---------------------------------------------------------------------------------------------
# set-up errors, caught before anything starts


def test_one_gpu_with_tp2_names_the_fix(monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(dist, "is_nccl_available", lambda: True)
    m, w = _setup()
    with pytest.raises(
        DeviceError,
        match=r"^tp 2 needs 2 GPUs on this host, one per process; found 1 .*; use fewer "
        r"processes, or more hosts with --nnodes$",
    ):
        D.profile_distributed(m, w, spec="h200")


def test_missing_nccl_says_so(monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(dist, "is_nccl_available", lambda: False)
    m, w = _setup()
    with pytest.raises(DeviceError, match=r"^NCCL is not available in this PyTorch build"):
        D.profile_distributed(m, w, spec="h200")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a CUDA GPU")
def test_no_gpu_says_so():
    m, w = _setup()
    with pytest.raises(DeviceError, match=r"^no CUDA GPU found .*; tp 2 needs 2 NVIDIA GPU\(s\)"):
        D.profile_distributed(m, w, spec="h200")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(nproc=3), r"tp 2 needs 2 processes in all; 1 host\(s\) x 3 per host = 3"),
        (dict(rdzv_args=("--nnodes", "1:2")), r"needs a fixed number of hosts"),
        (dict(rdzv_args=("--nproc-per-node", "2")), r"'--nproc-per-node' is not a torchrun rendezvous argument"),
        (dict(backend="mpi"), r"backend 'mpi' is not one of nccl, gloo"),
    ],
)
def test_bad_launch_arguments_are_refused(kwargs, message):
    m, w = _setup()
    with pytest.raises(ConfigError, match=message):
        D.profile_distributed(m, w, spec="h200", **kwargs)


def test_world_from_hosts_and_processes():
    assert D.world_of(4, None, 2) == (4, 2)
    assert D.world_of(1, 2, 2) == (4, 2)
    assert D.nnodes_of(["--nnodes=2", "--node-rank", "1"]) == 2
    with pytest.raises(ConfigError, match="tp 1 runs in one process"):
        D.world_of(1, 1, 1)


# ---------------------------------------------------------------------------------------------
# exposed communication and the cross-rank join, on tiny in-memory kernels


def _kernels(rows):
    f = pd.DataFrame(rows, columns=["name", "range", "step", "ts_s", "dur_s"])
    f["device"] = 0
    return f


def test_exposed_time_is_what_no_other_kernel_covers():
    k = _kernels(
        [
            ("gemm", "o_proj", 0, 0.0, 10.0),
            ("ncclDevKernel_AllReduce_Sum_bf16_RING_LL", "attn_all_reduce", 0, 5.0, 15.0),  # 5..20: 5 covered by gemm
            ("elementwise", "attn_residual", 0, 12.0, 2.0),  # 12..14: 2 more covered
            ("ncclDevKernel_AllReduce_Sum_bf16_RING_LL", "attn_all_reduce", 0, 30.0, 4.0),  # alone
            ("ncclDevKernel_AllReduce_Sum_bf16_RING_LL", "attn_all_reduce", -1, 40.0, 4.0),  # outside a step: left out
        ]
    )
    ck = D.comm_kernels(k)
    assert list(ck["dur_s"]) == [15.0, 4.0] and list(ck["exposed_s"]) == [8.0, 4.0] and list(ck["call"]) == [0, 1]
    by = D.comm_by_range(ck)
    assert by.loc[0, "calls_per_step"] == 2 and by.loc[0, "comm_time_s"] == 9.5 and by.loc[0, "exposed_comm_s"] == 6.0


def test_cross_rank_min_matches_calls_one_by_one():
    ck = pd.DataFrame(
        {
            "rank": [0, 0, 1, 1],
            "phase": "decode",
            "range": "mlp_all_reduce",
            "step": 0,
            "call": [0, 1, 0, 1],
            "dur_s": [10.0, 2.0, 3.0, 8.0],
            "exposed_s": 0.0,
        }
    )
    cr = D.cross_rank(ck)
    assert cr.loc[0, "comm_time_min_rank_s"] == (2.0 + 3.0) / 2  # min of call 0 is rank 1's, of call 1 rank 0's
    assert cr.loc[0, "comm_time_max_rank_s"] == (10.0 + 8.0) / 2


# ---------------------------------------------------------------------------------------------
# the committed traces of a 2 x H200 run: Llama-2-7B, tp 2, decode at batch 1, context 1024


def test_committed_h200x2_traces_join_every_nccl_kernel_to_its_collective():
    traces = {r: DATA / f"h200x2_rank{r}_decode_trace.json.gz" for r in (0, 1)}
    m, w = load_model_and_workload(Path(__file__).parent.parent / "examples" / "llama-2-7b.yaml")
    w = replace(w, tp=2, phase="decode", batch_size=(1,), prompt_len=(1024,), context_len=(1024,), gen_tokens=None)
    j = comm_against_prediction(D.join_rank_traces(traces, "h200"), analyze(m, "h200", workload=w)).set_index("range")
    # one NCCL kernel per call: 1 embedding, 2 layers x (attention, MLP), 1 logits gather per step
    assert j["calls_per_step"].to_dict() == {
        "embed_all_reduce": 1,
        "attn_all_reduce": 2,
        "mlp_all_reduce": 2,
        "logits_all_gather": 1,
    }
    assert (j["n_ranks"] == 2).all()
    assert (j["comm_time_s"] > 0).all() and (j["exposed_comm_s"] <= j["comm_time_s"] + 1e-12).all()
    assert (j["comm_time_min_rank_s"] <= j["comm_time_max_rank_s"]).all()
    # 4096 bf16 values all-reduced over 2 GPUs: each sends 2(N-1)/N x 8192 B = 8192 B
    assert j.loc["attn_all_reduce", "comm_bytes"] == 8192
    assert np.allclose(j["busbw_bytes_per_s"], j["comm_bytes"] / j["comm_time_s"])
    for r, path in traces.items():  # every NCCL kernel of the trace sits in one of the four ranges
        from roofline.measure.trace import analyze_trace

        k = analyze_trace(path, "h200").kernels
        nccl = k[k["name"].str.contains("nccl", case=False)]
        assert len(nccl) == 6 and set(nccl["range"]) == set(D.COLLECTIVE_OPS), r


# ---------------------------------------------------------------------------------------------
# collective calibration: 2 gloo processes, and the merge into a spec


def test_calibrate_collectives_on_gloo_and_merge_into_a_spec(tmp_path):
    frame = calibrate_collectives(
        sizes=[1024, 4096], nproc=2, ops=("all_reduce",), backend="gloo", warmup=1, iters=2, repeats=2
    )
    assert list(frame["size_bytes"]) == [1024, 4096] and (frame["world"] == 2).all()
    assert np.allclose(frame["busbw_bytes_per_s"], frame["size_bytes"] / frame["time_s"])  # 2(N-1)/N = 1 for N = 2
    assert (frame["time_min_rank_s"] <= frame["time_s"]).all()
    shipped = load_mapping(resolve_spec_path("h200"), "hardware spec")
    raw = merge_collectives(shipped, frame)
    spec = parse_spec(raw)
    c = collective_ceilings(frame)
    assert spec.ceiling_link_bytes_per_s() == pytest.approx(c["link_busbw_gb_per_s"] * 1e9)
    assert spec.ceiling_collective_latency_s() == pytest.approx(c["collective_latency_us"] * 1e-6)
    assert [s["bytes"] for s in raw["measured"]["conditions"]["collectives"]["sizes"]] == [1024, 4096]
    assert "calibrate_collectives" in raw["sources"]["measured"]
    assert "measured" not in shipped  # the input is left as it was


def test_merge_keeps_a_calibrated_specs_figures():
    shipped = load_mapping(resolve_spec_path("h200"), "hardware spec")
    raw = dict(
        shipped,
        measured={"mem_bandwidth_gb_per_s": 4000.0, "conditions": {"gpu": "x"}},
        sources=dict(shipped["sources"], measured="calibrate on x."),
    )
    frame = pd.DataFrame(
        {
            "op": "all_reduce",
            "dtype": "bf16",
            "backend": "nccl",
            "world": 2,
            "size_bytes": [1024.0, 2**30],
            "time_s": [10e-6, 3e-3],
            "time_min_rank_s": [9e-6, 3e-3],
            "algbw_bytes_per_s": [1024 / 10e-6, 2**30 / 3e-3],
            "busbw_bytes_per_s": [1024 / 10e-6, 2**30 / 3e-3],
            "iters": 20,
            "repeats": 5,
        }
    )
    out = merge_collectives(raw, frame)
    assert out["measured"]["mem_bandwidth_gb_per_s"] == 4000.0 and out["measured"]["conditions"]["gpu"] == "x"
    assert out["measured"]["link_busbw_gb_per_s"] == 357.9  # 2^30 B / 3 ms, 4 significant figures
    assert out["measured"]["collective_latency_us"] == 10.0
    assert out["sources"]["measured"].startswith("calibrate on x. calibrate_collectives:")
