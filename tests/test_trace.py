"""roofline.measure.trace and .measured on tiny hand-written traces (times in µs in the files,
seconds in the frames) and on the committed real H100 traces."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from roofline.classify import MEASURED_BOUNDS, classify_measured
from roofline.errors import TraceError
from roofline.measure.trace import STEP_RANGE, analyze_trace, short_name
from roofline.specs import load_spec

DATA = Path(__file__).parent / "data"
US = 1e-6
SPEC = load_spec(DATA / "tiny_gpu.yaml")  # 100 FLOP/s bf16, 50 fp32, 200 fp8, 10 B/s, launch 0.1 s


@pytest.fixture(scope="module")
def joins():
    return analyze_trace(DATA / "tiny_joins.json", SPEC)


def row(frame, column, value):
    hit = frame[frame[column] == value]
    assert len(hit) == 1, f"{column}={value!r}: {len(hit)} rows"
    return hit.iloc[0]


# ----------------------------------------------------------------------------------------------
# joins


def test_every_gpu_event_becomes_a_row(joins):
    k = joins.kernels
    assert list(k["name"]) == [
        "gemm_kernel",
        "nvjet_gemm",
        "Memcpy HtoD (Pinned -> Device)",
        "Memset (Device)",
        "add_kernel",
        "mul_kernel",
        "graph_k1",
        "graph_k2",
        "orphan_kernel",
    ]
    assert list(k["kind"]) == ["kernel", "kernel", "memcpy", "memset"] + ["kernel"] * 5
    s = joins.summary
    assert (s["n_kernels"], s["n_memcpy"], s["n_memset"], s["n_streams"], s["n_steps"]) == (7, 1, 1, 2, 1)
    assert s["gpu_time_s"] == pytest.approx(51 * US)  # 20 + 10 + 4 + 1 + 3 + 2 + 3 + 3 + 5
    assert s["devices"] == ["Tiny GPU"]


def test_runtime_launch_joins_op_and_innermost_range(joins):
    gemm = row(joins.kernels, "name", "gemm_kernel")
    assert (gemm["cpu_op"], gemm["range"], gemm["launch_kind"]) == ("aten::mm", "attn", "runtime")
    assert gemm["correlation"] == 1
    assert (gemm["stream"], gemm["device"], gemm["step"]) == (7, 0, 3)
    assert gemm["ts_s"] == pytest.approx(40 * US) and gemm["dur_s"] == pytest.approx(20 * US)
    assert gemm["launch_end_s"] == pytest.approx(30 * US)


def test_driver_launch_on_a_second_stream(joins):
    nvjet = row(joins.kernels, "name", "nvjet_gemm")
    assert (nvjet["cpu_op"], nvjet["range"]) == ("aten::addmm", "attn")
    assert (nvjet["launch_kind"], nvjet["stream"]) == ("driver", 20)


def test_memcpy_and_memset_join_their_async_calls(joins):
    copy = row(joins.kernels, "kind", "memcpy")
    fill = row(joins.kernels, "kind", "memset")
    assert (copy["cpu_op"], copy["range"], copy["launch_kind"]) == ("aten::copy_", "block", "runtime")
    assert (fill["cpu_op"], fill["range"]) == ("aten::zero_", "block")
    assert fill["flops"] == 0 and fill["bytes"] == 4096  # a memset writes its bytes once
    assert np.isnan(copy["bytes"])  # a host copy is not HBM traffic


def test_launch_on_another_thread_ignores_this_threads_ops(joins):
    add = row(joins.kernels, "name", "add_kernel")
    # aten::mm on tid 1 spans the launch's time, but the launch ran on tid 2
    assert (add["cpu_op"], add["range"], add["step"]) == ("aten::add", "(none)", 3)


def test_runtime_call_with_nested_driver_call_of_same_correlation(joins):
    mul = row(joins.kernels, "name", "mul_kernel")
    assert (mul["cpu_op"], mul["launch_kind"]) == ("aten::mul", "runtime")
    assert mul["launch_end_s"] == pytest.approx(143 * US)  # the outer cudaLaunchKernel's end


def test_graph_launch_correlates_with_all_its_kernels(joins):
    k = joins.kernels[joins.kernels["correlation"] == 7]
    assert list(k["name"]) == ["graph_k1", "graph_k2"]
    assert set(k["cpu_op"]) == {"(cudaGraphLaunch)"} and set(k["range"]) == {"graph"}


def test_orphan_is_reported_not_dropped(joins):
    orphan = row(joins.kernels, "name", "orphan_kernel")
    assert (orphan["cpu_op"], orphan["range"], orphan["launch_kind"], orphan["step"]) == ("orphan", "orphan", "none", 3)
    assert (joins.summary["n_orphans"], joins.summary["orphan_time_s"]) == (1, pytest.approx(5 * US))
    assert row(joins.by_op, "op", "orphan")["gpu_time_s"] == pytest.approx(5 * US)
    assert row(joins.by_range, "range", "orphan")["n_kernels"] == 1


def test_idle_gaps_split_into_host_bound_and_other(joins):
    k = joins.kernels.set_index("name")
    # device ran dry at 60 (gemm); nvjet's launch ended at 62, after that: the host was late
    assert k.loc["nvjet_gemm", "idle_before_s"] == pytest.approx(2 * US) and k.loc["nvjet_gemm", "host_bound"]
    # graph_k2 waited 1 µs after graph_k1, but its launch (cudaGraphLaunch) ended at 175 < 179
    assert k.loc["graph_k2", "idle_before_s"] == pytest.approx(1 * US) and not k.loc["graph_k2", "host_bound"]
    assert k.loc["add_kernel", "idle_before_s"] == 0  # overlaps gemm on the other stream
    s = joins.summary
    assert s["window_s"] == pytest.approx(215 * US)  # 40 .. 255
    assert s["busy_s"] == pytest.approx(48 * US)  # union: gemm+add 20, 10, 4, 1, 2, 3, 3, 5
    assert s["idle_s"] == pytest.approx(167 * US)  # 2 + 28 + 17 + 18 + 34 + 1 + 67
    assert s["idle_host_bound_s"] == pytest.approx(99 * US)  # 2 + 28 + 17 + 18 + 34
    assert s["idle_other_s"] == pytest.approx(68 * US)  # 1 + 67 (before the orphan)


# ----------------------------------------------------------------------------------------------
# FLOPs and bytes


def test_mm_flops_and_bytes_from_input_dims(joins):
    gemm = row(joins.kernels, "name", "gemm_kernel")
    assert gemm["flops"] == 4194304  # 2 * 64 * 128 * 256
    assert gemm["bytes"] == 114688  # 2 B * (64*128 + 128*256 read + 64*256 written) = 2 * 57344
    assert gemm["compute_dtype"] == "bf16"
    nvjet = row(joins.kernels, "name", "nvjet_gemm")
    assert nvjet["flops"] == 4194304  # addmm: 2 * 64 * 128 * 256; the bias add is not counted
    assert nvjet["bytes"] == 115200  # 2 B * (256 bias + 8192 + 32768 read + 16384 written) = 2 * 57600
    assert np.isnan(row(joins.kernels, "name", "add_kernel")["flops"])


def test_causal_attention_counts_the_kept_scores_and_spreads_over_its_kernels():
    a = analyze_trace(DATA / "tiny_attention.json", SPEC)
    first = a.kernels.iloc[:2]
    assert list(first["cost_op"]) == ["aten::scaled_dot_product_attention"] * 2
    # causal, s_q 4 <= s_k 6: rows keep 1 + 2 + 3 + 4 = 10 scores; 2 * (1*2 heads) * 10 * (d 8 + d_v 8) = 640
    assert first["flops"].sum() == pytest.approx(640)
    assert list(first["flops"]) == pytest.approx([480, 160])  # by duration: 3 µs and 1 µs of 4
    # bytes: q 64 + k 96 + v 96 read, out 64 written = 256 elements * 2 B = 512 + 128
    assert first["bytes"].sum() == pytest.approx(640)
    # no Concrete Inputs (older PyTorch): the full 4 x 6 scores: 2 * 2 * 24 * 16 = 1536
    assert a.kernels.iloc[2]["flops"] == 1536
    sdpa = row(a.by_op, "op", "aten::scaled_dot_product_attention")
    assert (sdpa["n_kernels"], sdpa["n_calls"], sdpa["flops"]) == (3, 2, 2176)  # 640 + 1536
    assert any("1 attention calls have no recorded is_causal flag" in x for x in a.summary["assumptions"])


def test_bmm_and_baddbmm_flops(tmp_path):
    bf = "c10::BFloat16"
    events = [
        _op("aten::bmm", 0, [[4, 8, 16], [4, 16, 32]], [bf, bf]),
        _launch(1, 2),
        _kernel(1, 10),
        _op("aten::baddbmm", 20, [[4, 8, 32], [4, 8, 16], [4, 16, 32], [], []], [bf, bf, bf, "Scalar", "Scalar"]),
        _launch(2, 22),
        _kernel(2, 30),
    ]
    a = analyze_trace(_write(tmp_path / "t.json", events), SPEC)
    assert list(a.kernels["flops"]) == [32768, 32768]  # 2 * 4 * 8 * 16 * 32
    # bmm: 2 B * (512 + 2048 read + 1024 written); baddbmm also reads self [4, 8, 32]: + 2 B * 1024
    assert list(a.kernels["bytes"]) == [7168, 9216]


# ----------------------------------------------------------------------------------------------
# the per-op and per-range frames


def test_by_op_rows(joins):
    op = joins.by_op.set_index("op")
    assert op.loc["aten::mm", "gpu_time_s"] == pytest.approx(20 * US)
    assert (op.loc["aten::mm", "n_kernels"], op.loc["aten::mm", "n_calls"]) == (1, 1)
    assert op.loc["aten::mm", "span_s"] == pytest.approx(30 * US)
    assert op.loc["aten::mm", "share"] == pytest.approx(20 / 51)
    # a graph replay records no op per kernel: a row per kernel it ran, no host span
    assert op.loc["(graph) graph_k1", "n_kernels"] == 1 and op.loc["(graph) graph_k2", "n_kernels"] == 1
    assert np.isnan(op.loc["(graph) graph_k1", "span_s"])
    assert op.loc["aten::mm", "costed_share"] == 1 and op.loc["aten::add", "costed_share"] == 0
    assert op["gpu_time_s"].sum() == pytest.approx(51 * US)
    assert set(op["measured_bound"]) <= set(MEASURED_BOUNDS)


def test_by_range_inclusive_and_self(joins):
    r = joins.by_range.set_index("range")
    # block encloses the launches of gemm, nvjet, copy, set, mul and both graph kernels
    assert r.loc["block", "n_kernels"] == 7
    assert r.loc["block", "gpu_time_s"] == pytest.approx(43 * US)  # 20 + 10 + 4 + 1 + 2 + 3 + 3
    assert r.loc["block", "self_gpu_time_s"] == pytest.approx(7 * US)  # its own: copy, set, mul
    assert r.loc["attn", "gpu_time_s"] == pytest.approx(30 * US)
    assert r.loc["block", "span_s"] == pytest.approx(200 * US) and r.loc["block", "n_calls"] == 1
    assert r.loc[STEP_RANGE, "gpu_time_s"] == pytest.approx(43 * US)  # add_kernel was launched on tid 2
    assert r.loc["(none)", "gpu_time_s"] == pytest.approx(3 * US)
    assert r["self_gpu_time_s"].sum() == pytest.approx(51 * US)  # every kernel once
    assert r.loc["attn", "top_kernels"] == "gemm_kernel; nvjet_gemm"


def test_old_format_categories_and_string_threads():
    a = analyze_trace(DATA / "tiny_old_format.json", SPEC)
    k = a.kernels.iloc[0]
    assert (k["cpu_op"], k["launch_kind"], k["stream"], k["device"]) == ("aten::mm", "runtime", "stream 7", 0)
    assert k["ts_s"] == pytest.approx(50 * US)  # from the first event at 1000 µs
    assert np.isnan(k["flops"])  # no 'Input type': no count


def test_gzip_and_plain_give_the_same_frames(tmp_path):
    gz = tmp_path / "t.json.gz"
    gz.write_bytes(gzip.compress((DATA / "tiny_joins.json").read_bytes()))
    a, b = analyze_trace(gz, SPEC), analyze_trace(DATA / "tiny_joins.json", SPEC)
    pd.testing.assert_frame_equal(a.kernels, b.kernels)
    pd.testing.assert_frame_equal(a.by_range, b.by_range)


def test_short_name():
    assert short_name("void at::native::elementwise_kernel<128, 2>(int, float)") == "at::native::elementwise_kernel"
    assert short_name("nvjet_sm90_tst_64x8_64x16_1x4_h_bz_NNT") == "nvjet_sm90_tst_64x8_64x16_1x4_h_bz_NNT"


# ----------------------------------------------------------------------------------------------
# errors: one line naming the file and the fix


def test_missing_file(tmp_path):
    with pytest.raises(TraceError) as exc:
        analyze_trace(tmp_path / "nope.json", SPEC)
    path = tmp_path / "nope.json"
    assert str(exc.value) == f"{path}: no such file; pass a trace written by prof.export_chrome_trace()"


def test_not_json(tmp_path):
    p = tmp_path / "t.json"
    p.write_text("hello")
    with pytest.raises(TraceError) as exc:
        analyze_trace(p, SPEC)
    assert str(exc.value) == (
        f"{p}: not valid JSON (Expecting value; line 1); pass the complete .json or .json.gz "
        f"that prof.export_chrome_trace() wrote"
    )


def test_truncated_json(tmp_path):
    p = tmp_path / "t.json"
    p.write_text((DATA / "tiny_joins.json").read_text()[:700])
    with pytest.raises(TraceError, match=r"t\.json: not valid JSON \(.*; the text ends early: the file is truncated\)"):
        analyze_trace(p, SPEC)


def test_truncated_gzip(tmp_path):
    p = tmp_path / "t.json.gz"
    p.write_bytes(gzip.compress((DATA / "tiny_joins.json").read_bytes())[:300])
    with pytest.raises(TraceError) as exc:
        analyze_trace(p, SPEC)
    assert str(exc.value).startswith(f"{p}: the gzip stream is truncated or corrupt (")
    assert str(exc.value).endswith("); copy or export the trace again")


def test_binary_file(tmp_path):
    p = tmp_path / "t.json"
    p.write_bytes(b"\xff\xfe\x00\x81 binary")
    with pytest.raises(TraceError) as exc:
        analyze_trace(p, SPEC)
    assert str(exc.value) == f"{p}: not a JSON text (binary data); pass a Chrome trace (.json or .json.gz)"


def test_no_trace_events(tmp_path):
    p = _write(tmp_path / "t.json", None, {"schemaVersion": 1, "deviceProperties": []})
    with pytest.raises(TraceError) as exc:
        analyze_trace(p, SPEC)
    assert str(exc.value) == (
        f"{p}: no 'traceEvents' list (top-level keys: deviceProperties, schemaVersion); "
        f"is this a torch.profiler Chrome trace?"
    )


def test_event_without_ts(tmp_path):
    bad = _kernel(1, 10)
    del bad["ts"]
    p = _write(tmp_path / "t.json", [_op("aten::relu", 0), _launch(1, 2), bad])
    with pytest.raises(TraceError) as exc:
        analyze_trace(p, SPEC)
    assert str(exc.value) == (
        f"{p}: a 'kernel' event ('k1') has no 'ts'; the trace is malformed, export it again "
        f"with prof.export_chrome_trace()"
    )


def test_non_numeric_dur(tmp_path):
    bad = _kernel(1, 10)
    bad["dur"] = "long"
    p = _write(tmp_path / "t.json", [bad])
    with pytest.raises(TraceError) as exc:
        analyze_trace(p, SPEC)
    assert str(exc.value) == (
        f"{p}: event 'k1' has a non-numeric 'dur' ('long'); the trace is malformed, export it again"
    )


def test_no_kernels(tmp_path):
    p = _write(tmp_path / "t.json", [_op("aten::relu", 0), _launch(1, 2)])
    with pytest.raises(TraceError) as exc:
        analyze_trace(p, SPEC)
    assert str(exc.value) == (
        f"{p}: no GPU kernels in the trace (nothing to analyse); record it with "
        f"activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]"
    )


def test_not_an_event_list(tmp_path):
    p = _write(tmp_path / "t.json", None, {"traceEvents": {"a": 1}})
    with pytest.raises(TraceError, match="'traceEvents' is a dict, not a list of events"):
        analyze_trace(p, SPEC)


# ----------------------------------------------------------------------------------------------
# classify_measured on the tiny GPU: 100 FLOP/s bf16, 50 fp32, 10 B/s, launch 0.1 s


def test_classify_measured_rules():
    nan = np.nan
    frame = pd.DataFrame(
        [
            # name,       gpu_time_s, n_kernels, span_s, flops, bytes, dtype
            ("compute", 1.0, 1, nan, 80.0, 1.0, "bf16"),  # 80 of 100 FLOP/s
            ("memory", 1.0, 1, nan, 10.0, 9.0, None),  # 9 of 10 B/s; no dtype: bf16
            ("fp32", 1.0, 1, nan, 40.0, 1.0, "fp32"),  # 40 of the 50 FLOP/s fp32 peak
            ("latency", 1.0, 1_000_000, nan, 10.0, 1.0, "bf16"),  # 10% and 10%, 1 µs kernels
            ("nearer", 1.0, 1, nan, 40.0, 1.0, "bf16"),  # 40% of compute, long kernel
            ("overhead", 0.01, 1, 0.1, nan, nan, "bf16"),  # 10 ms kernel < 0.1 s launch, in a 100 ms span
            ("busy host", 0.01, 1, 0.015, nan, nan, "bf16"),  # span only 1.5x the kernel time
            ("ncclAllReduce", 1.0, 1, nan, nan, nan, "bf16"),
            ("no fp8 peak", 1.0, 1, nan, 1e6, 8.0, "int4"),  # the spec has no int4 peak: judged on bytes
        ],
        columns=["name", "gpu_time_s", "n_kernels", "span_s", "flops", "bytes", "compute_dtype"],
    )
    out = classify_measured(frame, SPEC).set_index("name")
    assert list(out["measured_bound"]) == [
        "compute",
        "memory",
        "compute",
        "latency",
        "compute",
        "overhead",
        "unknown",
        "communication",
        "memory",
    ]
    assert out.loc["compute", "frac_of_compute_ceiling"] == pytest.approx(0.8)
    assert out.loc["memory", "frac_of_mem_ceiling"] == pytest.approx(0.9)
    assert out.loc["fp32", "frac_of_compute_ceiling"] == pytest.approx(0.8)
    assert out.loc["compute", "achieved_flops_per_s"] == 80
    assert out.loc["overhead", "evidence"] == "kernels 10 ms in a 100 ms span; GPU idle 90%"
    assert out.loc["compute", "evidence"] == (
        "80 FLOP/s = 80% of bf16 peak; 1 B/s = 10% of memory bandwidth; 1 s per kernel"
    )
    assert out.loc["busy host", "evidence"] == "no FLOP/byte count; 10 ms per kernel"
    assert np.isnan(out.loc["no fp8 peak", "frac_of_compute_ceiling"])
    assert list(frame.columns) == ["name", "gpu_time_s", "n_kernels", "span_s", "flops", "bytes", "compute_dtype"]


def test_classify_measured_uses_costed_and_comm_time():
    frame = pd.DataFrame(
        {
            "gpu_time_s": [1.0, 1.0, 1.0],
            "n_kernels": [1, 1, 1],
            "flops": [40.0, 40.0, 0.0],
            "costed_time_s": [0.5, 0.2, 0.0],
            "comm_time_s": [0.0, 0.0, 0.6],
            "n_calls": [1, 1, 1],
        }
    )
    out = classify_measured(frame, SPEC)
    # row 0: 40 FLOP in the 0.5 s they describe = 80 FLOP/s; row 1: costs cover 20% only
    assert out["achieved_flops_per_s"][0] == 80 and out["measured_bound"][0] == "compute"
    assert out["measured_bound"][1] == "unknown"
    assert out["evidence"][1].startswith("FLOP/byte count known for 20% of its GPU time only")
    assert out["measured_bound"][2] == "communication"


def test_classify_measured_needs_times():
    with pytest.raises(ValueError, match="needs columns gpu_time_s"):
        classify_measured(pd.DataFrame({"n_kernels": [1]}), SPEC)


# ----------------------------------------------------------------------------------------------
# the real traces from an H100 (decode and prefill of a small Llama, PyTorch 2.11)

REAL = sorted(DATA.glob("h100_*_trace.json.gz"))


@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_real_trace(path):
    events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    gpu = [e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    a = analyze_trace(path, load_spec("h100-sxm"))
    k = a.kernels
    assert len(k) == len(gpu) and a.summary["n_orphans"] == 0
    assert not k["cpu_op"].str.startswith("(").any()  # every launch sits inside an aten op
    assert {"runtime", "driver"} <= set(k["launch_kind"])  # cuBLAS on Hopper launches through the driver
    assert a.by_op["gpu_time_s"].sum() == pytest.approx(k["dur_s"].sum())
    assert a.by_range["self_gpu_time_s"].sum() == pytest.approx(k["dur_s"].sum())
    # each aten::mm's FLOPs, recounted from its own Input Dims, reach its kernels exactly once (through the
    # outermost costed op: aten::linear > aten::matmul > aten::mm, which count the same FLOPs)
    mms = [e for e in events if e.get("name") == "aten::mm"]
    expected = sum(
        2 * e["args"]["Input Dims"][0][0] * e["args"]["Input Dims"][0][1] * e["args"]["Input Dims"][1][1] for e in mms
    )
    assert k.loc[k["cost_op"].isin(["aten::linear", "aten::matmul", "aten::mm"]), "flops"].sum() == pytest.approx(
        expected
    )
    assert set(a.by_op["measured_bound"]) <= set(MEASURED_BOUNDS)


def test_trace_modules_import_no_torch():
    code = (
        "import sys, roofline.measure, roofline.measure.trace, roofline.classify; "
        "bad = [m for m in ('torch', 'matplotlib') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# ----------------------------------------------------------------------------------------------
# helpers for traces built in a test


def _op(name, ts, dims=None, types=None):
    e = {"ph": "X", "cat": "cpu_op", "name": name, "pid": 1, "tid": 1, "ts": ts, "dur": 8}
    if dims is not None:
        e["args"] = {"Input Dims": dims, "Input type": types}
    return e


def _launch(corr, ts):
    return {
        "ph": "X",
        "cat": "cuda_runtime",
        "name": "cudaLaunchKernel",
        "pid": 1,
        "tid": 1,
        "ts": ts,
        "dur": 3,
        "args": {"correlation": corr},
    }


def _kernel(corr, ts):
    return {
        "ph": "X",
        "cat": "kernel",
        "name": f"k{corr}",
        "pid": 0,
        "tid": 7,
        "ts": ts,
        "dur": 4,
        "args": {"device": 0, "stream": 7, "correlation": corr},
    }


def _write(path, events, doc=None):
    path.write_text(json.dumps(doc if doc is not None else {"traceEvents": events}))
    return path


def test_kernels_carry_the_recorded_shapes_around_their_launch(joins):
    """For roofline.attribute: the innermost, outermost and cost-owning op's Input Dims, ids, host thread."""
    k = joins.kernels.set_index("name")
    assert k.loc["gemm_kernel", "op_dims"] == [[64, 128], [128, 256]]
    assert k.loc["gemm_kernel", "op_types"] == ["c10::BFloat16", "c10::BFloat16"]
    assert k.loc["nvjet_gemm", "owner_dims"] == [[256], [64, 128], [128, 256], [], []]
    assert k.loc["nvjet_gemm", "outer_op"] == "aten::addmm" and k.loc["add_kernel", "tid"] == 2
    assert k.loc["gemm_kernel", "launch_ts_s"] == pytest.approx(25 * US)
    assert k.loc["add_kernel", "op_dims"] is None  # no shapes recorded
    assert (k.loc["graph_k1", "op_id"], k.loc["orphan_kernel", "outer_id"]) == (-1, -1)
