"""Beyond one eager process: backward kernels from autograd threads, overhead judged on the device's
own timeline, CUDA-graph replays, ROCm traces, several ranks in one file. Real traces from HTA's
test data (tests/data/README.md) and hand-built ones (times in µs in the files, s in the frames)."""

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from test_trace import DATA, US, _write, row

from roofline.classify import classify_measured
from roofline.measure.trace import analyze_trace
from roofline.specs import load_spec

SPEC = load_spec(DATA / "tiny_gpu.yaml")  # launch ceiling 0.1 s: every kernel here is "short"


def test_backward_kernel_from_the_autograd_thread_lands_in_the_callers_range():
    # HTA's call_stack test trace: '## backward ##' on the main thread 3914; the autograd thread 24922
    # runs AddmmBackward0 > aten::mm and launches a cutlass GEMM; no range on 24922 itself
    a = analyze_trace(DATA / "hta_backward_thread.json", SPEC)
    k = a.kernels.iloc[0]
    assert (k["cpu_op"], k["range"], k["range_via"]) == ("aten::mm", "## backward ##", "caller thread")
    assert k["flops"] == 2 * 2048 * 2048 * 256  # [2048, 2048] @ [2048, 256], fp32
    r = a.by_range.set_index("range")
    assert r.loc["## backward ##", "gpu_time_s"] == pytest.approx(45 * US)
    assert r.loc["ProfilerStep#*", "gpu_time_s"] == pytest.approx(45 * US)
    assert "(none)" not in r.index
    assert a.summary["n_kernels_via_caller_thread"] == 1
    assert a.summary["trace_origin_us"] == 1666149715033200  # epoch microseconds read as times


def test_rocm_training_step():
    # HTA's MI250 trace (ROCm 6.2): hipLaunchKernel / hipExtModuleLaunchKernel, Tensile GEMMs, device 2
    a = analyze_trace(DATA / "hta_mi250_rocm_train.json.gz", SPEC)
    k = a.kernels
    assert len(k) == 16 and a.summary["n_orphans"] == 0 and set(k["device"]) == {2}
    assert k["range_via"].tolist().count("caller thread") == 7  # the backward pass, from the autograd thread
    assert set(k.loc[k["range_via"] == "caller thread", "range"]) == {"ProfilerStep#*"}
    mm = k[k["cpu_op"] == "aten::mm"].iloc[0]
    assert mm["name"].startswith("Cijk_") and mm["flops"] == 2 * 5 * 128 * 128  # [5, 128] @ [128, 128]
    assert np.isnan(row(k, "cpu_op", "aten::mse_loss")["flops"])  # no formula: reported, not zero
    assert np.isnan(k.loc[k["name"].str.startswith("Memcpy HtoD"), "bytes"]).all()  # host copies: no HBM bytes
    assert a.summary["costed_share"] == pytest.approx(k.loc[k["flops"].notna(), "dur_s"].sum() / k["dur_s"].sum())


def _ddp_like(tmp_path):
    """A main thread in '## backward ##' [0, 100] while an autograd thread launches 9 GEMMs by 43 µs (they
    run 10 µs each, back to back on stream 7 from 5 to 95), and a 'hook' range [60, 80] on the main thread
    that launches one 1 µs kernel on stream 20: its own kernel time is tiny but the device never waited."""
    ev = [
        {"ph": "X", "cat": "user_annotation", "name": "## backward ##", "pid": 1, "tid": 1, "ts": 0, "dur": 100},
        {"ph": "X", "cat": "user_annotation", "name": "hook", "pid": 1, "tid": 1, "ts": 60, "dur": 20},
        {"ph": "X", "cat": "cpu_op", "name": "aten::add_", "pid": 1, "tid": 1, "ts": 61, "dur": 5},
        {
            "ph": "X",
            "cat": "cuda_runtime",
            "name": "cudaLaunchKernel",
            "pid": 1,
            "tid": 1,
            "ts": 62,
            "dur": 2,
            "args": {"correlation": 100},
        },
        {
            "ph": "X",
            "cat": "kernel",
            "name": "add_kernel",
            "pid": 0,
            "tid": 20,
            "ts": 70,
            "dur": 1,
            "args": {"device": 0, "stream": 20, "correlation": 100},
        },
    ]
    for i in range(9):
        t = 1 + 5 * i
        ev += [
            {
                "ph": "X",
                "cat": "cpu_op",
                "name": "autograd::engine::evaluate_function: MmBackward0",
                "pid": 1,
                "tid": 2,
                "ts": t,
                "dur": 4,
            },
            {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 1, "tid": 2, "ts": t + 1, "dur": 2},
            {
                "ph": "X",
                "cat": "cuda_runtime",
                "name": "cudaLaunchKernel",
                "pid": 1,
                "tid": 2,
                "ts": t + 1.5,
                "dur": 1,
                "args": {"correlation": i + 1},
            },
            {
                "ph": "X",
                "cat": "kernel",
                "name": "gemm",
                "pid": 0,
                "tid": 7,
                "ts": 5 + 10 * i,
                "dur": 10,
                "args": {"device": 0, "stream": 7, "correlation": i + 1},
            },
        ]
    return _write(tmp_path / "ddp.json", ev)


def test_overhead_is_decided_on_the_devices_timeline(tmp_path):
    a = analyze_trace(_ddp_like(tmp_path), SPEC)
    r = a.by_range.set_index("range")
    # '## backward ##': 91 µs of kernels (9 GEMMs from the autograd thread + the add) in a 100 µs span
    assert r.loc["## backward ##", "gpu_time_s"] == pytest.approx(91 * US)
    assert r.loc["## backward ##", "device_busy_share"] == pytest.approx(0.90)  # busy 5..95
    # 'hook': 1 µs of its own kernels in a 20 µs span (the old rule: "overhead, GPU idle 95%"), but the
    # device ran GEMMs on stream 7 all through [60, 80]: busy 100%, so not overhead
    assert r.loc["hook", "gpu_time_s"] == pytest.approx(1 * US) and r.loc["hook", "span_s"] == pytest.approx(20 * US)
    assert r.loc["hook", "device_busy_share"] == pytest.approx(1.0)
    assert r.loc["hook", "measured_bound"] != "overhead"
    assert (r["measured_bound"] != "overhead").all()


def test_classify_overhead_from_device_busy_share():
    frame = pd.DataFrame(
        {
            "name": ["busy device", "idle device", "unknown timeline"],
            "gpu_time_s": [0.01, 0.01, 0.01],
            "n_kernels": [1, 1, 1],
            "span_s": [0.1, 0.1, 0.1],
            "device_busy_share": [0.99, 0.2, np.nan],
        }
    )
    out = classify_measured(frame, SPEC).set_index("name")
    assert out.loc["busy device", "measured_bound"] == "unknown"  # the device never waited: not overhead
    assert out.loc["idle device", "measured_bound"] == "overhead"
    assert out.loc["idle device", "evidence"] == "kernels 10 ms in a 100 ms span; device idle 80% of it (all streams)"
    # without a timeline, the old rule: span >= 2x the row's own GPU time
    assert out.loc["unknown timeline", "measured_bound"] == "overhead"
    assert out.loc["unknown timeline", "evidence"] == "kernels 10 ms in a 100 ms span; GPU idle 90%"


def test_graph_replay_lists_its_kernels(tmp_path):
    ev = [
        {"ph": "X", "cat": "cpu_op", "name": "CUDAGraph replay", "pid": 1, "tid": 1, "ts": 0, "dur": 20},
        {
            "ph": "X",
            "cat": "cuda_runtime",
            "name": "cudaGraphLaunch_v10000",
            "pid": 1,
            "tid": 1,
            "ts": 2,
            "dur": 10,
            "args": {"correlation": 5},
        },
    ]
    for i, (name, dur) in enumerate(
        [
            ("void gemv<bf16>(float*)", 30),
            ("rms_kernel", 5),
            ("void gemv<bf16>(int)", 30),
            ("triton_poi_fused_mul_0", 4),
        ]
    ):
        ev.append(
            {
                "ph": "X",
                "cat": "kernel",
                "name": name,
                "pid": 0,
                "tid": 7,
                "ts": 20 + 40 * i,
                "dur": dur,
                "args": {"device": 0, "stream": 7, "correlation": 5},
            }
        )
    a = analyze_trace(_write(tmp_path / "g.json", ev), SPEC)
    assert a.kernels["graph"].all() and set(a.kernels["cpu_op"]) == {"CUDAGraph replay"}
    op = a.by_op.set_index("op")
    assert op.loc["(graph) gemv", "gpu_time_s"] == pytest.approx(60 * US) and op.loc["(graph) gemv", "n_kernels"] == 2
    assert op.loc["(graph) rms_kernel", "gpu_time_s"] == pytest.approx(5 * US)
    assert op.loc["(graph) triton_poi_fused_mul_0", "share"] == pytest.approx(4 / 69)
    assert op["costed_share"].eq(0).all()  # a replay carries no shapes
    assert (a.summary["n_graph_kernels"], a.summary["graph_time_s"]) == (4, pytest.approx(69 * US))
    assert any("graph replays" in x for x in a.summary["assumptions"])


def test_two_ranks_of_a_real_trace_in_one_file(tmp_path):
    """The committed H100 decode trace twice in one file, as two processes on two GPUs 10 ms apart, with the
    same correlation ids: every kernel joins its own copy's launch (joined by id alone, half would not)."""
    doc = json.loads(gzip.decompress((DATA / "h100_decode_trace.json.gz").read_bytes()))
    events = doc["traceEvents"]
    copy = []
    for e in events:
        e = json.loads(json.dumps(e))
        if "ts" in e:
            e["ts"] += 10_000
        if isinstance(e.get("pid"), int):
            e["pid"] += 1  # the host process id, and the GPU's pid (0 -> 1)
        if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset"):
            e["args"]["device"] = 1
        copy.append(e)
    p = tmp_path / "two.json"
    p.write_text(json.dumps({**doc, "traceEvents": events + copy}))
    one = analyze_trace(DATA / "h100_decode_trace.json.gz", load_spec("h100-sxm"))
    two = analyze_trace(p, load_spec("h100-sxm"))
    k = two.kernels
    n = len(one.kernels)
    assert len(k) == 2 * n and two.summary["n_processes"] == 2 and two.summary["n_orphans"] == 0
    for device in (0, 1):
        mine = k[k["device"] == device].sort_values("ts_s", kind="stable")
        assert list(mine["cpu_op"]) == list(one.kernels.sort_values("ts_s", kind="stable")["cpu_op"])
        assert mine["launch_end_s"].min() >= (0.010 if device else 0) - 1e-9  # its own process's launches
    assert two.summary["n_correlation_reused"] == 2 * n


def test_a_folder_of_rank_traces_is_one_run(tmp_path):
    """The 2x H200 tensor-parallel decode: one file per rank, read as one run with a row per rank."""
    for r in (0, 1):
        (tmp_path / f"rank{r}.json.gz").write_bytes((DATA / f"h200x2_rank{r}_decode_trace.json.gz").read_bytes())
    (tmp_path / "notes.txt").write_text("not a trace")
    spec = load_spec("h200")
    run = analyze_trace(tmp_path, spec)
    one = [analyze_trace(DATA / f"h200x2_rank{r}_decode_trace.json.gz", spec) for r in (0, 1)]
    assert list(run.by_rank["rank"]) == [0, 1]
    for r in (0, 1):
        got = run.by_rank.iloc[r]
        assert got["gpu_time_s"] == pytest.approx(one[r].summary["gpu_time_s"])
        assert got["comm_time_s"] == pytest.approx(
            one[r].kernels.loc[one[r].kernels["name"].str.contains("nccl", case=False), "dur_s"].sum()
        )
    assert len(run.kernels) == len(one[0].kernels) + len(one[1].kernels)
    assert set(run.kernels["rank"]) == {0, 1}
    assert run.summary["gpu_time_s"] == pytest.approx(one[0].summary["gpu_time_s"] + one[1].summary["gpu_time_s"])
    # per op: the sum over ranks
    mm = [o.by_op.set_index("op").loc["aten::mm"] for o in one]
    got = run.by_op.set_index("op").loc["aten::mm"]
    assert got["gpu_time_s"] == pytest.approx(mm[0]["gpu_time_s"] + mm[1]["gpu_time_s"])
    assert got["n_calls"] == mm[0]["n_calls"] + mm[1]["n_calls"]
    assert got["flops"] == pytest.approx(mm[0]["flops"] + mm[1]["flops"])
    assert run.by_op["gpu_time_s"].sum() == pytest.approx(run.summary["gpu_time_s"])


def test_a_folder_without_traces_or_with_two_of_one_rank(tmp_path):
    from roofline.errors import TraceError

    with pytest.raises(TraceError) as exc:
        analyze_trace(tmp_path, SPEC)
    assert str(exc.value) == (
        f"{tmp_path}: no trace files (*.json, *.json.gz) in the folder; pass a trace file or "
        f"a folder of one trace per rank"
    )
    doc = json.loads(gzip.decompress((DATA / "h200x2_rank1_decode_trace.json.gz").read_bytes()))
    doc["distributedInfo"] = {"backend": "nccl", "rank": 1, "world_size": 2}
    for name in ("a.json.gz", "b.json.gz"):
        (tmp_path / name).write_bytes(gzip.compress(json.dumps(doc).encode()))
    with pytest.raises(TraceError) as exc:
        analyze_trace(tmp_path, SPEC)
    assert str(exc.value) == (
        f"{tmp_path}: two files say they are rank 1 (a.json.gz, b.json.gz); keep one trace per rank in the folder"
    )


def test_cli_trace_by_rank_on_a_folder(tmp_path):
    from click.testing import CliRunner

    from roofline.cli import main

    for r in (0, 1):
        (tmp_path / f"rank{r}.json.gz").write_bytes((DATA / f"h200x2_rank{r}_decode_trace.json.gz").read_bytes())
    res = CliRunner().invoke(main, ["trace", str(tmp_path), "--gpu", "h200", "--by", "rank", "--format", "csv"])
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(__import__("io").StringIO(res.stdout))
    assert list(frame["rank"]) == [0, 1] and {"busy_s", "comm_time_s", "costed_share"} <= set(frame.columns)
    res = CliRunner().invoke(main, ["trace", str(tmp_path / "nothing"), "--gpu", "h200"])
    assert res.exit_code == 1 and "no such file" in res.output and "Traceback" not in res.output


# ----------------------------------------------------------------------------------------------
# Hugging Face transformers on an H200 (PyTorch 2.11; recorded for this project, see tests/data/README.md)


def test_hf_tiny_llama_eager_costs_every_linear_once():
    path = DATA / "hf_tiny_llama_h200.json.gz"
    events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    a = analyze_trace(path, load_spec("h200"))
    k = a.kernels
    assert a.summary["n_orphans"] == 0 and a.summary["n_no_op"] == 0
    # every aten::linear's FLOPs, recounted from its Input Dims: 2 * tokens * in * out
    linears = [e["args"]["Input Dims"] for e in events if e.get("name") == "aten::linear"]
    expected = sum(2 * np.prod(x[:-1]) * w[0] * w[1] for x, w, *_ in linears)
    assert k.loc[k["cost_op"] == "aten::linear", "flops"].sum() == pytest.approx(expected)
    assert a.summary["costed_share"] > 0.85  # FLOPs/bytes known for most of the GPU time (eager decode)
    assert row(a.by_op, "op", "aten::scaled_dot_product_attention")["costed_share"] == 1


def _hf(name):
    for folder in (
        DATA.parent.parent / "reports" / "h200-hf-traces",
        DATA.parent.parent.parent / "_data" / "hf_traces",
    ):
        if (folder / name).exists():
            return folder / name
    pytest.skip(f"{name}: the recorded Hugging Face traces are not here (reports/h200-hf-traces/)")


def test_hf_cuda_graph_replays_list_their_kernels():
    a = analyze_trace(_hf("llama-3-8b-graph.json.gz"), load_spec("h200"))
    s = a.summary
    assert s["n_orphans"] == 0 and s["n_graph_kernels"] > 1000
    graph = a.by_op[a.by_op["op"].str.startswith("(graph) ")]
    assert graph["gpu_time_s"].sum() == pytest.approx(s["graph_time_s"])
    assert graph["op"].str.contains("nvjet").any()  # the replayed GEMMs, by name
    assert a.by_op["gpu_time_s"].sum() == pytest.approx(s["gpu_time_s"])


def test_hf_torch_compile_joins_triton_and_extern_kernels():
    a = analyze_trace(_hf("llama-3-8b-compile.json.gz"), load_spec("h200"))
    s = a.summary
    assert s["n_orphans"] == 0 and s["n_no_op"] == 0  # Inductor's launches sit in their kernel's op
    op = a.by_op.set_index("op")
    assert op.loc["aten::mm", "costed_share"] == 1  # extern GEMMs keep their shapes
    triton = op[op.index.str.startswith("triton_")]
    assert len(triton) > 3 and triton["flops"].isna().all()  # fused kernels: time, no count
