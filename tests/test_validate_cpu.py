"""roofline validate without a GPU: the pipeline on the CPU (op times from CPU time, so the errors mean
nothing there), the error summary against the targets on hand-made frames, the folder it writes."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from roofline.cli import main
from roofline.validation import (
    TARGETS,
    error_summary,
    graph_advice,
    load_validation,
    rescore,
    validate,
    write_validation,
)

DATA = Path(__file__).parent / "data"
TINY = str(DATA / "tiny_llama.yaml")
CPU_MATRIX = (("tiny-prefill", TINY, "prefill", 2, 16, None), ("tiny-decode", TINY, "decode", 2, 16, 24))


@pytest.fixture(scope="module")
def cpu_run():
    return validate(spec="h100-sxm", matrix=CPU_MATRIX, layers=2, device="cpu", warmup=1, iters=2, timing_iters=2)


def test_pipeline_on_cpu_has_every_op_and_both_modes(cpu_run):
    ops, steps = cpu_run.ops, cpu_run.steps
    # tiny_llama: embedding, 15 ops per layer (each a row, counted twice), final_norm, lm_head: 18 rows
    assert set(ops["case"]) == {"tiny-prefill", "tiny-decode"}
    assert (ops.groupby("case").size() == 18).all()
    assert (ops["measured_time_s"] > 0).all()
    assert ops["error"].to_numpy() == pytest.approx((ops["predicted_time_s"] / ops["measured_time_s"] - 1).to_numpy())
    assert list(steps["mode"]) == ["eager", "graph", "eager", "graph"]
    eager = steps[steps["mode"] == "eager"]
    assert (eager["measured_step_s"] > 0).all()
    assert steps.loc[steps["mode"] == "graph", "measured_step_s"].isna().all()  # no CUDA graph on the CPU
    # the predicted step is the summary's: the graph mode pays the smaller host cost
    assert (
        steps.loc[steps["mode"] == "graph", "predicted_step_s"].to_numpy() < eager["predicted_step_s"].to_numpy()
    ).all()


def test_write_validation_folder(cpu_run, tmp_path):
    out = write_validation(cpu_run, tmp_path / "validate-cpu", command="roofline validate (test)")
    for name in (
        "ops.csv",
        "steps.csv",
        "checks.csv",
        "clocks.csv",
        "device.json",
        "summary.md",
        "errors.png",
        "errors.svg",
    ):
        assert (out / name).is_file(), name
    md = (out / "summary.md").read_text()
    assert "## Targets" in md and "tiny-decode" in md and "roofline validate (test)" in md
    # written again: no leftovers beside it; what else the folder holds (a log, an earlier run kept in a
    # subfolder, the user's notes) stays; a file of ours this run does not write (advice.csv) is removed
    (out / "log.txt").write_text("the run's log")
    (out / "as-run").mkdir()
    (out / "as-run" / "checks.csv").write_text("kept")
    (out / "advice.csv").write_text("stale")
    before = (out / "ops.csv").read_bytes()
    write_validation(cpu_run, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["validate-cpu"]
    assert (out / "log.txt").read_text() == "the run's log" and (out / "as-run" / "checks.csv").read_text() == "kept"
    assert not (out / "advice.csv").exists() and (out / "ops.csv").read_bytes() == before


def test_error_summary_against_the_targets():
    # key ops: errors +5%, -8%, +30% -> median |e| 8% (passes 10%), worst 30% (fails 25%)
    ops = pd.DataFrame(
        {
            "op": ["q_proj", "attention", "down_proj", "rope"],
            "error": [0.05, -0.08, 0.30, 2.0],
            "roofline_error": [-0.2, -0.5, -0.1, -0.9],
        }
    )
    steps = pd.DataFrame(
        {
            "phase": ["decode", "decode", "prefill"],
            "mode": ["eager", "graph", "eager"],
            "error": [0.09, -0.12, 0.14],
            "roofline_error": [-0.3, -0.2, -0.05],
        }
    )
    s = error_summary(ops, steps).set_index("check")
    med = s.loc["projections + attention, predicted (median)"]
    assert med["n"] == 3 and med["median_abs_error"] == pytest.approx(0.08) and med["passed"]
    worst = s.loc["projections + attention, predicted (worst)"]
    assert worst["worst_abs_error"] == pytest.approx(0.30) and not worst["passed"]
    assert s.loc["projections + attention, pure roofline (median)", "median_abs_error"] == pytest.approx(0.2)
    assert s.loc["decode step, eager", "passed"] and not s.loc["decode step, graph", "passed"]  # 12% > 10%
    assert s.loc["prefill step, eager", "passed"]  # 14% <= 15%
    assert s.loc["prefill step, eager", "target"] == TARGETS["prefill_step"]
    assert "prefill step, graph" not in s.index  # no rows, no check


def test_validate_without_a_gpu_says_so(tmp_path):
    r = CliRunner().invoke(main, ["validate", "--out", str(tmp_path / "v"), "--quick"])
    assert r.exit_code == 1
    assert "no CUDA GPU found" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "v").exists()


def test_error_chart_handles_nan_errors():
    from roofline import plot

    ops = pd.DataFrame({"op": ["q_proj", "rope"], "error": [0.1, np.nan], "roofline_error": [-0.3, np.nan]})
    steps = pd.DataFrame(
        {"case": ["a", "a"], "mode": ["eager", "graph"], "error": [0.05, np.nan], "roofline_error": [-0.2, np.nan]}
    )
    fig = plot.figure_errors(ops, steps)
    assert len(fig.axes) == 2


def test_a_written_run_rescored_with_another_spec(cpu_run, tmp_path):
    out = write_validation(cpu_run, tmp_path / "v")
    back = load_validation(out)
    assert len(back.ops) == len(cpu_run.ops) and list(back.steps["case"]) == list(cpu_run.steps["case"])
    again = rescore(back, "h200", matrix=CPU_MATRIX)
    # the same measurement, another prediction: H200 has 4.8 TB/s to the H100 SXM's 3.35 TB/s
    assert again.ops["measured_time_s"].to_numpy() == pytest.approx(cpu_run.ops["measured_time_s"].to_numpy())
    q = again.ops["op"] == "q_proj"
    assert again.ops.loc[q, "time_s"].to_numpy() == pytest.approx(cpu_run.ops.loc[q, "time_s"].to_numpy() * 3350 / 4800)
    assert again.device["spec"] == "h200" and again.device["rescored"]


def test_graph_advice_scores_predicted_against_achieved_speedup():
    # case a: predicted 2.0 / 1.0 = 2x, achieved 2.4 / 1.0 = 2.4x -> ratio 0.833, within 25%
    # case b: predicted 1.0x, achieved 1.5x -> ratio 0.667, outside; case c has no graph measurement
    steps = pd.DataFrame(
        {
            "case": ["a", "a", "b", "b", "c", "c"],
            "mode": ["eager", "graph"] * 3,
            "predicted_step_s": [2.0, 1.0, 1.0, 1.0, 1.0, 0.5],
            "measured_step_s": [2.4, 1.0, 1.5, 1.0, 1.0, np.nan],
        }
    )
    a = graph_advice(steps).set_index("case")
    assert list(a.index) == ["a", "b"]
    assert a.loc["a", "predicted_speedup"] == 2.0 and a.loc["a", "achieved_speedup"] == pytest.approx(2.4)
    assert a.loc["a", "within"] and not a.loc["b", "within"]


def test_validate_scores_the_advice_of_its_cases_on_the_cpu(tmp_path):
    """validate -> score_advice -> profile_model of the base (CPU time) -> the CUDA-graph row, not run on
    the CPU (no replay), written to advice.csv and summary.md."""
    v = validate(
        spec="h100-sxm",
        matrix=CPU_MATRIX[1:],
        layers=2,
        device="cpu",
        warmup=1,
        iters=2,
        timing_iters=1,
        advice_cases=[("tiny-decode", {}, False, ("CUDA graphs",))],
    )
    a = v.advice
    assert list(a["change"]) == ["CUDA graphs"] and list(a["case"]) == ["tiny-decode"]
    assert (
        a["how"].iloc[0] == "not run: no CUDA-graph replay of this step (a CPU run, or the MoE reference's host syncs)"
    )
    out = write_validation(v, tmp_path / "v")
    assert "0 of 0 within 25%; 1 not run" in (out / "summary.md").read_text()
    assert load_validation(out).advice["change"].tolist() == ["CUDA graphs"]
    off = validate(
        spec="h100-sxm", matrix=CPU_MATRIX[1:], device="cpu", warmup=1, iters=2, timing_iters=1, advice=False
    )
    assert off.advice.empty


def _damaged(tmp_path, name, edit):
    import shutil

    folder = tmp_path / name
    shutil.copytree(Path(__file__).parent.parent / "reports" / "validate-h200" / "repeats" / "2245", folder)
    edit(folder)
    return folder


def _set_cell(path, column, value, row=0):
    frame = pd.read_csv(path)
    frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    frame.to_csv(path, index=False)


@pytest.mark.parametrize(
    "name, edit, message",
    [
        (
            "a word for a time",
            lambda f: _set_cell(f / "ops.csv", "measured_time_s", "abc", row=4),
            r"ops\.csv: row 6, column measured_time_s: 'abc' is not a number at least 0; the file is damaged",
        ),
        (
            "a negative step",
            lambda f: _set_cell(f / "steps.csv", "measured_step_s", -1.0),
            r"steps\.csv: row 2, column measured_step_s: '-1\.0' is not a number at least 0",
        ),
        (
            "a column gone",
            lambda f: pd.read_csv(f / "ops.csv").drop(columns="measured_time_s").to_csv(f / "ops.csv", index=False),
            r"ops\.csv: no column measured_time_s; pass a folder written by roofline validate",
        ),
        ("ops emptied", lambda f: (f / "ops.csv").write_text(""), r"ops\.csv: empty, but steps\.csv has 30 rows"),
        (
            "ops cut",
            lambda f: pd.read_csv(f / "ops.csv").iloc[:19].to_csv(f / "ops.csv", index=False),
            r"ops\.csv: no ops of case mha-decode-b1-c512, mha-decode-b64-c2048, mha-decode-b16-c32k and more, "
            r"which steps\.csv has; the file is cut or damaged",
        ),
        ("device.json cut", lambda f: (f / "device.json").write_text("{"), r"device\.json: not JSON"),
    ],
)
def test_a_damaged_validate_folder_is_one_clear_error(tmp_path, name, edit, message):
    folder = _damaged(tmp_path, "v", edit)
    r = CliRunner().invoke(main, ["validate", "--rescore", str(folder), "--gpu", "h200", "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert re.search(message, r.output), r.output
    assert not (tmp_path / "o").exists()


def test_validate_s_log_names_each_round_of_a_case_s_eager_step():
    from roofline.validation import _rounds_note

    times = {"decode": {"eager_s": 8.0e-4, "graph_s": 4e-4, "eager_rounds_s": [9.1e-4, 8.0e-4, None]}}
    assert _rounds_note(times) == "; eager rounds 910, 800, failed µs"
    assert _rounds_note(None) == ""  # the case timed itself
    assert _rounds_note({"decode": {"eager_s": 8.0e-4}}) == ""  # a result from before the rounds were kept
