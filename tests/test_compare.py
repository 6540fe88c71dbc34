"""compare(analysis, run): tiny in-memory runs against the tiny GPU (100 FLOP/s bf16, 10 B/s, launch 0.1 s),
with every expected figure computed by hand or from the analysis it must agree with."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from roofline.advise import advise
from roofline.analysis import analyze
from roofline.compare import (
    COMM_TABLE_COLUMNS,
    Comparison,
    check_advice,
    comm_table,
    compare,
    measured_for_advice,
)
from roofline.errors import ConfigError
from roofline.measure.run import MeasuredRun

DATA = Path(__file__).parent / "data"
MODEL, GPU = DATA / "tiny_llama.yaml", DATA / "tiny_gpu.yaml"
SLOW = 3.0  # every op of the fake run takes 3x its predicted time


def _analysis(**overrides):
    return analyze(MODEL, GPU, phase="decode", **overrides)


def _run(analysis, layers=1, ranks=(0,), source="reference", cuda_graph=False, **extra_cols):
    """A run of ``layers`` reference layers whose ops take SLOW x the predicted time per call."""
    a = analysis.ops
    calls = np.where(a["count"] == analysis.model.num_hidden_layers, layers, 1)
    rows = []
    for rank in ranks:
        rows.append(
            pd.DataFrame(
                {
                    "rank": rank,
                    "phase": a["phase"].astype(str),
                    "op": a["op"].astype(str),
                    "calls": calls,
                    "gpu_time_s": SLOW * a["time_s"].to_numpy(),
                    "n_kernels": 1.0,
                    "span_s": np.nan,
                    **extra_cols,
                }
            )
        )
    ops = pd.concat(rows, ignore_index=True)
    kernel_ref = float((SLOW * a["time_s"] * calls).sum())
    steps = pd.DataFrame(
        [
            {
                "rank": r,
                "phase": "decode",
                "batch_size": 2,
                "prompt_len": 16,
                "context_len": 24,
                "kernel_time_ref_s": kernel_ref,
                "eager_step_ref_s": 2 * kernel_ref,
                "graph_step_ref_s": 1.5 * kernel_ref,
            }
            for r in ranks
        ]
    )
    return MeasuredRun(
        source=source,
        ops=ops,
        steps=steps,
        model=analysis.model,
        workload=analysis.workload,
        layers=layers,
        cuda_graph=cuda_graph,
    )


def test_join_per_call_and_full_model_scaling():
    analysis = _analysis()
    c = compare(analysis, _run(analysis))
    assert isinstance(c, Comparison) and "rank" not in c.ops.columns  # one GPU: no rank column
    assert list(c.ops["op"]) == list(analysis.ops["op"].astype(str))
    assert np.allclose(c.ops["measured_time_s"], SLOW * analysis.ops["time_s"])
    assert np.allclose(c.ops["measured_over_predicted"], SLOW)
    assert np.allclose(c.ops["roofline_fraction"], 1 / SLOW)
    assert np.allclose(c.ops["total_measured_time_s"], SLOW * analysis.ops["count"] * analysis.ops["time_s"])
    s = c.steps.iloc[0]
    # the full model's kernel time: every op at 3x, times its analytic count = 3 x the roofline sum
    decode_s = float(analysis.summary["decode_roofline_time_s"].iloc[0])
    assert s["kernel_time_full_s"] == pytest.approx(SLOW * decode_s)
    assert s["predicted_time_full_s"] == pytest.approx(decode_s)
    assert s["measured_over_predicted_full"] == pytest.approx(SLOW)
    # the step estimate scales the eager reference step (2 x its kernel time) by full / reference kernels
    assert s["step_full_est_from"] == "eager"
    assert s["step_full_est_s"] == pytest.approx(2 * SLOW * decode_s)
    assert s["tokens_per_s_est"] == pytest.approx(2 / (2 * SLOW * decode_s))  # batch 2, one token each
    # the tiny GPU: decode ops are far below a 0.1 s launch: the prediction says overhead
    assert set(c.ops["predicted_bound"]) <= {"overhead", "memory", "compute"}
    summary = c.summary.iloc[0]
    assert summary["phase"] == "decode" and summary["kernel_time_full_s"] == pytest.approx(SLOW * decode_s)
    assert summary["predicted_time_s"] == pytest.approx(float(analysis.summary["decode_time_s"].iloc[0]))
    assert summary["predicted_roofline_time_s"] == pytest.approx(decode_s)
    shares = [
        summary[f"measured_share_{cls}"]
        for cls in ("compute", "memory", "communication", "overhead", "latency", "unknown")
    ]
    assert sum(shares) == pytest.approx(1.0)
    by_class = c.ops.groupby("measured_bound")["total_measured_time_s"].sum() / (SLOW * decode_s)
    assert all(summary[f"measured_share_{k}"] == pytest.approx(v) for k, v in by_class.items())


def test_graph_replay_step_when_the_run_says_cuda_graph():
    analysis = _analysis()
    s = compare(analysis, _run(analysis, cuda_graph=True)).steps.iloc[0]
    assert s["step_full_est_from"] == "graph replay"
    # the fake run's kernels are 3x each op's roofline time: the full model's kernel time is 3x the roofline sum
    assert s["step_full_est_s"] == pytest.approx(1.5 * SLOW * float(analysis.summary["decode_roofline_time_s"].iloc[0]))


def test_measured_class_uses_the_analytic_counts_of_one_call():
    analysis = _analysis()
    c = compare(analysis, _run(analysis))
    q = c.ops.set_index("op").loc["q_proj"]
    # one call: the analytic FLOPs and bytes over the measured time
    assert q["achieved_flops_per_s"] == pytest.approx(q["flops"] / q["measured_time_s"])
    assert q["frac_of_mem_ceiling"] == pytest.approx((q["bytes_read"] + q["bytes_written"]) / q["measured_time_s"] / 10)
    assert q["measured_bound"] in {"compute", "memory"}  # 1/3 of a roof, kernels far longer than 10 µs
    assert q["datasheet_time_s"] == pytest.approx(q["roofline_time_s"])  # the tiny spec is not calibrated
    # the one prediction: the analysis' calibrated (here: datasheet roofline with a kernel floor) time
    a = analysis.ops.set_index("op").loc["q_proj"]
    assert q["predicted_time_s"] == pytest.approx(a["predicted_time_s"])
    assert q["measured_over_predicted"] == pytest.approx(q["measured_time_s"] / a["predicted_time_s"])


def test_advice_from_a_comparison_is_the_advice_with_its_measured_frame():
    analysis = _analysis()
    c = compare(analysis, _run(analysis))
    pd.testing.assert_frame_equal(advise(c, top=None), advise(analysis, measured=c.measured, top=None))
    m = c.measured
    assert np.allclose(m["measured_time_s"], c.ops["total_measured_time_s"])
    assert np.allclose(m["flops"], c.ops["flops"] * c.ops["count"])
    pd.testing.assert_frame_equal(m, measured_for_advice(c.ops))


def test_distributed_rows_keep_the_rank_and_get_bus_bandwidth():
    analysis = analyze(MODEL, GPU, phase="decode", tp=2)
    run = _run(analysis, ranks=(0, 1), source="distributed", comm_time_s=0.0, exposed_comm_s=0.0)
    coll = run.ops["op"].str.endswith(("all_reduce", "all_gather"))
    run.ops.loc[coll, "comm_time_s"] = 4.0
    run.ops.loc[coll, "exposed_comm_s"] = 1.0
    c = compare(analysis, run)
    assert list(c.ops["rank"].unique()) == [0, 1] and len(c.ops) == 2 * len(analysis.ops)
    rows = c.ops[c.ops["comm_bytes"] > 0]
    assert len(rows) == 2 * 4
    assert np.allclose(rows["busbw_bytes_per_s"], rows["comm_bytes"] / 4.0)
    assert np.allclose(rows["predicted_comm_s"], rows["time_comm_s"])
    # datasheet: 1 s latency + bytes / 2 B/s per direction of the test link
    assert np.allclose(rows["datasheet_comm_s"], 1.0 + rows["comm_bytes"] / 2.0)
    table = comm_table(c)
    assert list(table.columns) == COMM_TABLE_COLUMNS and len(table) == 4
    assert "comm_time_full_s" in c.steps.columns and list(c.steps["rank"]) == [0, 1]
    s = c.steps.iloc[0]
    cnt = rows[rows["rank"] == 0]["count"].to_numpy(float)
    assert s["comm_time_full_s"] == pytest.approx(4.0 * cnt.sum())
    assert s["exposed_comm_full_s"] == pytest.approx(1.0 * cnt.sum())


def test_rows_the_run_lacks_stay_and_extra_ones_are_noted():
    analysis = _analysis()
    run = _run(analysis)
    ops = run.ops[run.ops["op"] != "lm_head"]
    ops = pd.concat([ops, ops.iloc[[0]].assign(op="my_custom_op")], ignore_index=True)
    c = compare(analysis, replace(run, ops=ops))
    assert np.isnan(c.ops.set_index("op").loc["lm_head", "measured_time_s"])
    assert "measured ops with no analytic row, left out: decode my_custom_op" in c.notes


def test_compare_refuses_another_point_or_phase():
    analysis = _analysis()
    with pytest.raises(ConfigError, match=r"the analysis is for batch 4 and the run for batch 2; analyse the run's"):
        compare(_analysis(batch_size=4), _run(analysis))
    with pytest.raises(ConfigError, match=r"single-point analysis; this one has 2 points"):
        compare(_analysis(batch_size=[2, 4]), _run(analysis))
    prefill = analyze(MODEL, GPU, phase="prefill")
    with pytest.raises(ConfigError, match=r"the analysis has no decode phase, which the run measured"):
        compare(prefill, _run(analysis))


def test_a_run_checks_its_frames():
    with pytest.raises(ValueError, match="MeasuredRun.ops lacks column"):
        MeasuredRun(source="reference", ops=pd.DataFrame({"phase": ["decode"], "op": ["q_proj"]}))
    with pytest.raises(ValueError, match="source 'gpu' is not one of"):
        MeasuredRun(source="gpu", ops=pd.DataFrame())


def test_check_advice_sets_achieved_beside_predicted():
    analysis = _analysis(attn_impl="naive")
    c = compare(analysis, _run(analysis))
    advice = pd.DataFrame(
        {
            "change": ["CUDA graphs", "batch 8", "int4 weights"],
            "phase": "decode",
            "predicted_speedup": [1.5, 3.0, 2.0],
            "overrides": [{"cuda_graph": True}, {"batch_size": 8}, {"weight_dtype": "int4"}],
        }
    )
    measured = pd.DataFrame(
        {
            "change": advice["change"],
            "phase": "decode",
            "overrides": advice["overrides"],
            "measured": [True, True, False],
            "baseline_s": [0.4, 0.4, np.nan],
            "changed_s": [0.1, 0.8, np.nan],
            "how": ["graph", "batch", "not measured"],
        }
    )
    out = check_advice(c, advice, measured).set_index("change")
    assert out.loc["CUDA graphs", "achieved_speedup"] == pytest.approx(4.0)  # 0.4 / 0.1
    assert out.loc["batch 8", "achieved_speedup"] == pytest.approx(0.4 / 0.8 * 8 / 2)  # tokens/s
    assert np.isnan(out.loc["int4 weights", "achieved_speedup"])
    assert np.isnan(out.loc["int4 weights", "predicted_speedup_ref"])
    # predicted on the 1-layer reference: eager launch floor before, graph floor after
    ref = analyze(replace(analysis.model, num_hidden_layers=1), GPU, workload=analysis.workload)
    graph = analyze(
        replace(analysis.model, num_hidden_layers=1), GPU, workload=replace(analysis.workload, cuda_graph=True)
    )
    expected = ref.summary["decode_time_s"].iloc[0] / graph.summary["decode_time_s"].iloc[0]
    assert out.loc["CUDA graphs", "predicted_speedup_ref"] == pytest.approx(expected)
    assert list(out.reset_index().columns) == [
        "change",
        "phase",
        "predicted_speedup",
        "predicted_speedup_ref",
        "achieved_speedup",
        "baseline_s",
        "changed_s",
        "how",
    ]


def test_measure_imports_no_analysis_and_compare_no_torch():
    code = (
        "import sys, roofline.measure.profile, roofline.measure.distributed, roofline.measure.checks, "
        "roofline.measure.collectives, roofline.measure.calibrate, roofline.measure.trace; "
        "bad = [m for m in ('roofline.analysis', 'roofline.compare', 'roofline.advise') if m in sys.modules]; "
        "print(bad); sys.exit(bool(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    code = (
        "import sys, roofline.compare, roofline.measure.run; "
        "bad = [m for m in ('torch', 'matplotlib') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_report_and_chart_take_the_comparison(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from roofline import plot
    from roofline.report import write_report

    analysis = _analysis()
    c = compare(analysis, _run(analysis))
    fig = plot.figure_comparison(c)
    ax = fig.axes[0]
    measured = sum(len(col.get_offsets()) for col in ax.collections if (col.get_gid() or "").startswith("measured-"))
    assert measured == int(((c.ops["flops"] > 0) & (c.ops["total_measured_time_s"] > 0)).sum()) > 0
    path = write_report(MODEL, GPU, tmp_path / "r", comparison=c)
    text = path.read_text()
    assert "## Measured on the GPU" in text
    written = pd.read_csv(tmp_path / "r" / "measured_ops.csv")
    assert list(written["op"]) == list(c.ops["op"])
    assert np.allclose(written["measured_time_s"], c.ops["measured_time_s"])
    assert len(pd.read_csv(tmp_path / "r" / "advice.csv")) == len(advise(c))


def test_a_trace_is_a_run_that_meets_the_analysis():
    from roofline.measure.trace import STEP_RANGE, analyze_trace, trace_run

    path = DATA / "h100_decode_trace.json.gz"
    run = trace_run(path, "h100-sxm", phase="decode")
    ta = analyze_trace(path, "h100-sxm").by_range.set_index("range")
    ops = run.ops.set_index("op")
    assert run.source == "trace" and STEP_RANGE not in ops.index
    # gate_proj: 2 calls (2 reference layers); per call half the range's self time and kernels
    assert ops.loc["gate_proj", "calls"] == 2
    assert ops.loc["gate_proj", "gpu_time_s"] == pytest.approx(ta.loc["gate_proj", "self_gpu_time_s"] / 2)
    assert ops.loc["gate_proj", "n_kernels"] == ta.loc["gate_proj", "n_kernels"] / 2
    analysis = analyze(
        Path(__file__).parent.parent / "examples" / "llama-2-7b.yaml",
        "h100-sxm",
        phase="decode",
        batch_size=1,
        prompt_len=512,
        context_len=512,
    )
    c = compare(analysis, run)
    row = c.ops.set_index("op").loc["gate_proj"]
    assert row["measured_time_s"] == pytest.approx(ops.loc["gate_proj", "gpu_time_s"])
    assert row["total_measured_time_s"] == pytest.approx(32 * row["measured_time_s"])  # 32 layers in the model
    assert "measured_flops" in c.ops.columns  # the trace's own count, beside the analytic one


def test_a_trace_rows_nccl_time_makes_it_communication():
    analysis = _analysis()
    run = _run(analysis, comm_time_s=0.0)
    run.ops.loc[run.ops["op"] == "q_proj", "comm_time_s"] = run.ops.loc[run.ops["op"] == "q_proj", "gpu_time_s"]
    c = compare(analysis, replace(run, source="trace"))
    bound = c.ops.set_index("op")["measured_bound"]
    assert bound["q_proj"] == "communication" and bound["k_proj"] != "communication"


def test_check_advice_predicts_the_reference_on_the_host_the_run_timed():
    # a run that timed the host reference 1.5x the calibration's (profile_model, steptime.time_with_reference)
    # is predicted with every eager host cost x 1.5: the CUDA-graph speedup grows, the graph step does not move
    from roofline.predict import with_host_reference

    calibrated = Path(__file__).parent.parent / "reports" / "h200" / "calibration.yaml"
    analysis = analyze(MODEL, calibrated, phase="decode")
    recorded = analysis.spec.measured_kernels["host_reference_s"]
    run = replace(_run(analysis), device={"host_reference": {"eager_step_us": 1.5 * recorded * 1e6}})
    advice = pd.DataFrame(
        {"change": ["CUDA graphs"], "phase": "decode", "predicted_speedup": [2.0], "overrides": [{"cuda_graph": True}]}
    )
    measured = pd.DataFrame(
        {"change": advice["change"], "phase": "decode", "overrides": advice["overrides"], "measured": [True],
         "baseline_s": [0.4], "changed_s": [0.1], "how": ["graph"]}
    )  # fmt: skip
    ref_model = replace(analysis.model, num_hidden_layers=1)
    slow, scale = with_host_reference(analysis.spec, 1.5 * recorded)
    assert scale == pytest.approx(1.5)

    def speedup(spec):
        eager = analyze(ref_model, spec, workload=analysis.workload).summary["decode_time_s"].iloc[0]
        graph = analyze(ref_model, spec, workload=replace(analysis.workload, cuda_graph=True))
        return eager / graph.summary["decode_time_s"].iloc[0]

    got = check_advice(compare(analysis, run), advice, measured)["predicted_speedup_ref"].iloc[0]
    assert got == pytest.approx(speedup(slow)) and got > speedup(analysis.spec) * 1.2
    plain = check_advice(compare(analysis, _run(analysis)), advice, measured)["predicted_speedup_ref"].iloc[0]
    assert plain == pytest.approx(speedup(analysis.spec))
