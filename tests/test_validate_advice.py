"""The advisor scored (validation.advice_scores) without a GPU: a fake measurer returns known step
times, so the achieved speedups and the within-25% flags are known by hand; the rendering; the
real profile pipeline on the CPU for one changed configuration."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from roofline.analysis import analyze
from roofline.errors import DeviceError
from roofline.render import si
from roofline.validation import (
    ADVICE_CASES,
    ADVICE_COLUMNS,
    MATRIX,
    QUICK_MATRIX,
    Validation,
    _case_setup,
    advice_count,
    advice_scores,
    advice_summary,
    load_validation,
    reference_measurer,
    render_advice_scores,
    repredict_advice,
    rescore,
    score_advice,
    suggestion_kind,
    write_validation,
)

SPEC = "h200"
CASES = {c[0]: c for c in MATRIX}


def predicted_times(model, w) -> dict:
    """What the analysis predicts for one configuration: the step (eager and graph) and each op per step."""
    out = {}
    for graph in (False, True):
        a = analyze(model, SPEC, workload=replace(w, cuda_graph=graph))
        for phase in w.phases:
            out.setdefault(phase, {})["graph_s" if graph else "eager_s"] = float(a.summary[f"{phase}_time_s"].iloc[0])
            if not graph:
                f = a.ops[a.ops["phase"] == phase]
                out[phase]["ops"] = {str(o): float(t) for o, t in zip(f["op"], f["count"] * f["predicted_time_s"])}
    return out


class FakeMeasurer:
    """Measures each configuration as its prediction times ``factor[key]`` (key: the changed workload
    field, 'base' for none), plus ``extra_s`` on one op of one configuration; records its calls."""

    def __init__(self, base, factor, extra=None, fail=()):
        self.base, self.factor, self.extra, self.fail, self.calls = base, factor, extra or {}, fail, []

    def key(self, w):
        for field in ("batch_size", "weight_dtype", "kv_dtype", "attn_impl"):
            if getattr(w, field) != getattr(self.base, field):
                return field if field != "weight_dtype" else f"weight_dtype {w.weight_dtype}"
        return "base"

    def __call__(self, model, w):
        key = self.key(w)
        self.calls.append(key)
        if key in self.fail:
            raise DeviceError(f"out of GPU memory running {key}")
        out = predicted_times(model, w)
        for times in out.values():
            times["eager_s"] *= self.factor.get(key, 1.0)
            times["graph_s"] *= self.factor.get(key, 1.0)
            if key in self.extra:
                op, extra_s = self.extra[key]
                times["ops"][op] += extra_s
                times["graph_s"] += extra_s
        return out


def case(label, **base):
    model, w = _case_setup(CASES[label], 2)
    return model, replace(w, **base)


def test_graph_base_scores_quantised_weights_and_explains_a_miss():
    model, w = case("gqa-decode-b1-c128", cuda_graph=True)
    # weights fp8 measured 1.2x its predicted step: achieved = predicted / 1.2, ratio 1.2 -> within 25%;
    # weights int8: its down_proj takes 300 us more than predicted: a miss, explained by down_proj
    measure = FakeMeasurer(w, {"weight_dtype fp8": 1.2}, extra={"weight_dtype int8": ("down_proj", 300e-6)})
    f = advice_scores(model, w, SPEC, measure=measure, label="gqa-decode-b1-c128")
    assert list(f.columns) == ADVICE_COLUMNS
    rows = f.set_index("change")
    assert set(rows["base"]) == {"graph, flash"}
    fp8 = rows.loc["weights fp8"]
    pred = predicted_times(model, w)["decode"]["graph_s"]
    new = predicted_times(model, replace(w, weight_dtype="fp8"))["decode"]["graph_s"]
    assert fp8["measured_base_s"] == pytest.approx(pred) and fp8["measured_new_s"] == pytest.approx(1.2 * new)
    assert fp8["achieved_speedup"] == pytest.approx(fp8["predicted_speedup"] / 1.2)  # pred / new / 1.2
    assert fp8["within_25pct"] is True and fp8["why"] == ""
    assert "torch._scaled_mm" in fp8["runs_as"] and fp8["how"] == "CUDA-graph replays with and without the change"
    int8 = rows.loc["weights int8"]
    assert int8["within_25pct"] is False
    assert "weight-only int8 has no fused kernel" in int8["runs_as"]
    # down_proj's predicted change (1-byte weights: about half its time) and the measured one, 300 us more
    before = predicted_times(model, w)["decode"]["ops"]["down_proj"]
    delta = predicted_times(model, replace(w, weight_dtype="int8"))["decode"]["ops"]["down_proj"] - before
    assert delta < 0
    expected = f"down_proj: predicted -{si(-delta, 's')} per step, measured +{si(delta + 300e-6, 's')}"
    assert expected in int8["why"]
    assert int8["why"].startswith("baseline step predicted ")
    # what the reference cannot run is listed with the reason, not measured
    assert rows.loc["weights int4", "how"].startswith("not run: weight_dtype int4: not supported by the reference")
    assert np.isnan(rows.loc["weights int4", "achieved_speedup"]) and rows.loc["weights int4", "within_25pct"] is None
    tp = [c for c in rows.index if c.startswith("tensor parallel")]
    assert all(rows.loc[c, "how"].startswith("not run: the reference model runs on one GPU") for c in tp)
    # the base once, each change once (int4 refused before measuring), the dropped ones too: the fp8 KV cache
    # predicts under 1.02x at context 128 (won't help), a prediction scored like the others
    kv = rows.loc["KV cache fp8"]
    assert not kv["suggested"] and kv["predicted_speedup"] < 1.02 and kv["achieved_speedup"] > 0
    assert rows.loc["weights fp8", "suggested"]
    assert sorted(measure.calls) == sorted(["base", "weight_dtype fp8", "weight_dtype int8", "batch_size", "kv_dtype"])


def test_eager_base_scores_cuda_graphs_a_larger_batch_and_compiled_fusion():
    model, w = case("gqa-decode-b1-c128")
    measure = FakeMeasurer(w, {"batch_size": 1.5})
    compiled = []

    def compile_step(m, workload, phase):
        compiled.append(phase)
        return predicted_times(m, workload)[phase]["eager_s"] / 1.3  # the compiled step 1.3x faster

    f = advise_rows = advice_scores(model, w, SPEC, measure=measure, compile_step=compile_step, label="x")
    rows = f.set_index("kind")
    # CUDA graphs: the base's eager step against its replay, both as predicted: achieved = predicted
    graphs = rows.loc["CUDA graphs"]
    assert graphs["achieved_speedup"] == pytest.approx(graphs["predicted_speedup"]) and graphs["within_25pct"]
    assert graphs["how"] == "eager step vs its CUDA-graph replay"
    # a larger batch: the new step measured 1.5x its prediction; tokens/s = base / new x (B' / 1)
    batch = rows.loc["larger batch"]
    b_new = json.loads(batch["overrides"])["batch_size"]
    assert batch["achieved_speedup"] == pytest.approx(batch["measured_base_s"] / batch["measured_new_s"] * b_new)
    assert batch["achieved_speedup"] == pytest.approx(batch["predicted_speedup"] / 1.5)
    assert batch["within_25pct"] is False  # ratio 1.5
    assert batch["how"].endswith(f"batch 1 to {b_new}, tokens/s") and batch["metric"] == "tokens/s"
    fusion = rows.loc["fusion"]
    assert fusion["achieved_speedup"] == pytest.approx(1.3) and compiled == ["decode"]
    assert fusion["within_25pct"] == (abs(fusion["predicted_speedup"] / 1.3 - 1) <= 0.25)
    assert "torch.compile" in fusion["runs_as"]
    assert len(advise_rows) == len(f)


def test_a_failed_run_is_a_row_with_its_reason_and_the_flash_filter():
    model, w = case("gqa-prefill-b1-s128", attn_impl="naive")
    measure = FakeMeasurer(w, {}, fail=("attn_impl",))
    f = advice_scores(model, w, SPEC, measure=measure, changes=("FlashAttention",), label="x")
    assert list(f["change"]) == ["FlashAttention"]
    assert f["how"].iloc[0] == "not run: out of GPU memory running attn_impl"
    assert np.isnan(f["achieved_speedup"].iloc[0])
    ok = advice_scores(model, w, SPEC, measure=FakeMeasurer(w, {"attn_impl": 0.5}), changes=("Flash",), label="x")
    # flash measured twice as fast as predicted: achieved = 2 x predicted, ratio 0.5 -> a miss
    assert ok["achieved_speedup"].iloc[0] == pytest.approx(2 * ok["predicted_speedup"].iloc[0])
    assert not ok["within_25pct"].iloc[0] and ok["how"].iloc[0] == "eager steps with and without the change"


def test_suggestion_kinds():
    assert suggestion_kind({}) == "fusion"
    assert suggestion_kind({"weight_dtype": "fp8", "act_dtype": "fp8"}) == "W8A8 fp8"
    assert suggestion_kind({"weight_dtype": "int8"}) == "weights int8"
    assert suggestion_kind({"kv_dtype": "fp8"}) == "KV cache fp8"
    assert suggestion_kind({"batch_size": 64}) == "larger batch"
    assert suggestion_kind({"cuda_graph": True}) == "CUDA graphs"
    assert suggestion_kind({"attn_impl": "flash"}) == "FlashAttention"
    assert suggestion_kind({"tp": 2}) == "tensor parallel"


def frame(rows):
    base = {c: np.nan if c.endswith(("_s", "speedup")) else "" for c in ADVICE_COLUMNS}
    return pd.DataFrame([{**base, **r} for r in rows], columns=ADVICE_COLUMNS)


SCORED = frame(
    [
        dict(case="a", base="eager, flash", kind="CUDA graphs", change="CUDA graphs", phase="decode", suggested=True,
             predicted_speedup=2.0, achieved_speedup=2.4, within_25pct=True, how="eager step vs its CUDA-graph replay"),
        dict(case="a", base="graph, flash", kind="weights int8", change="weights int8", phase="decode", suggested=False,
             fused_speedup=1.3,
             predicted_speedup=1.3, achieved_speedup=0.8, within_25pct=False, how="CUDA-graph replays",
             runs_as="weight-only int8 has no fused kernel", why="down_proj: predicted -10 µs per step, measured +5 µs"),
        dict(case="a", base="graph, flash", kind="weights int4", change="weights int4", phase="decode", suggested=True,
             predicted_speedup=1.4, achieved_speedup=np.nan, within_25pct=None, how="not run: weight_dtype int4"),
    ]
)  # fmt: skip


def test_count_summary_and_rendering():
    # measured: 2 rows, 1 within (2.0 / 2.4 = 0.83); 1 not run
    assert advice_count(SCORED) == "1 of 2 within 25%; 1 not run (the reason is in the row)"
    s = advice_summary(SCORED).set_index("kind")
    assert s.loc["CUDA graphs"].tolist() == [1, 1, 0] and s.loc["weights int4"].tolist() == [0, 0, 1]
    md = "\n".join(render_advice_scores(SCORED))
    assert "| a | eager, flash | CUDA graphs | decode | 2.00x | 2.40x | yes | yes | - |" in md
    assert "| a | graph, flash | weights int8 | decode | 1.30x | 0.80x | NO | no: won't help | 1.30x |" in md
    assert "| a | graph, flash | weights int4 | decode | 1.40x | - | - | yes | - | not run: weight\\_dtype int4 |" in md
    assert "1 of 2 within 25%; 1 not run" in md
    assert "- a (graph, flash), weights int8: down\\_proj: predicted -10 µs per step, measured +5 µs" in md
    assert "- weights int8: weight-only int8 has no fused kernel" in md


def test_advice_written_read_back_and_repredicted(tmp_path):
    v = Validation(ops=pd.DataFrame(), steps=pd.DataFrame(), clocks=pd.DataFrame(), device={"gpu": "x"}, advice=SCORED)
    out = write_validation(v, tmp_path / "v")
    md = (out / "summary.md").read_text()
    assert "## The advisor's suggestions measured" in md and "## Targets" not in md  # no per-op matrix ran
    back = load_validation(out)
    assert back.advice["within_25pct"].tolist() == [True, False, None]
    assert back.advice["achieved_speedup"].iloc[:2].tolist() == [2.4, 0.8]
    assert back.advice["runs_as"].tolist() == ["", "weight-only int8 has no fused kernel", ""]
    # re-predicted with the shipped spec on the real case: the same rows, advise's figures for that case
    real = SCORED.assign(case="gqa-decode-b1-c128")
    again = repredict_advice(real, SPEC)
    model, w = case("gqa-decode-b1-c128")
    eager, graph = (float(analyze(model, SPEC, workload=replace(w, cuda_graph=g)).summary["decode_time_s"].iloc[0])
                    for g in (False, True))  # fmt: skip
    assert again.loc[0, "predicted_speedup"] == pytest.approx(eager / graph)  # advise's CUDA graphs: eager / graph
    assert again.loc[0, "within_25pct"] == (abs(eager / graph / 2.4 - 1) <= 0.25)
    assert again.loc[1, "achieved_speedup"] == 0.8  # the measurement is kept


def test_score_advice_runs_the_cases_of_the_matrix_only():
    measure = lambda model, w: {"decode": {"eager_s": 1.0, "graph_s": 0.5, "ops": {}}}  # noqa: E731
    cases = [c for c in ADVICE_CASES if c[0] == "gqa-decode-b1-c128" and not c[2]]
    advice, notes = score_advice(SPEC, cases, matrix=QUICK_MATRIX, measure=measure)
    assert set(advice["case"]) == {"gqa-decode-b1-c128"} and notes == []
    assert set(advice["base"]) == {"graph, flash"}
    # every configuration measured 1.0 s eager and 0.5 s graph: each change's achieved speedup is 1x (batch: B'/B)
    measured = advice[advice["achieved_speedup"].notna() & (advice["kind"] != "larger batch")]
    assert len(measured) and (measured["achieved_speedup"] == 1.0).all()
    # quick mode: the advice cases whose case QUICK_MATRIX holds, one of them compiled
    quick = [c for c in ADVICE_CASES if c[0] in {q[0] for q in QUICK_MATRIX}]
    assert len(quick) == 3 and sum(c[2] for c in quick) == 1
    assert sum(c[2] for c in ADVICE_CASES) == 2  # torch.compile on two cases only


def test_a_changed_configuration_measured_through_the_profile_on_the_cpu():
    """reference_measurer: profile_model's steps and per-op times of a W8A8 fp8 reference, on the CPU."""
    from roofline.config import load_model

    model = replace(load_model("tests/data/tiny_llama.yaml"), num_hidden_layers=2)
    w = _case_setup(("t", "tests/data/tiny_llama.yaml", "decode", 2, 16, 24), 2)[1]
    measure = reference_measurer("h100-sxm", device="cpu", warmup=1, iters=2, timing_iters=1)
    times = measure(model, replace(w, weight_dtype="fp8", act_dtype="fp8"))
    d = times["decode"]
    assert d["eager_s"] > 0 and np.isnan(d["graph_s"])  # no CUDA graph on the CPU
    assert {"q_proj", "down_proj", "attention", "lm_head"} <= set(d["ops"]) and d["ops"]["q_proj"] > 0


def test_report_shows_the_advisor_scored(tmp_path):
    from roofline.report import write_report

    path = write_report("tests/data/tiny_llama.yaml", "h200", tmp_path / "r", advice_scores=SCORED, phase="decode")
    md = path.read_text()
    assert "## The advisor scored on the GPU: predicted against achieved (target: within 25%)" in md
    assert "1 of 2 within 25%; 1 not run (the reason is in the row)." in md
    assert (
        "| a | graph, flash | weights int8 | decode | 1.30x | 0.80x | NO | no: won't help | 1.30x | CUDA-graph replays |"
        in md
    )
    assert "Why weights int8 (decode) misses: down\\_proj: predicted -10 µs per step, measured +5 µs" in md
    assert md.index("## The advisor scored") < md.index("## Reproduce")
    back = pd.read_csv(tmp_path / "r" / "advice_scores.csv")
    assert back["achieved_speedup"].iloc[1] == 0.8
    assert "advisor scored on the GPU" in (tmp_path / "r" / "report.html").read_text()


def test_a_fusion_miss_is_explained_by_the_kernels_per_step():
    model, w = case("gqa-decode-b1-c128")
    fake = FakeMeasurer(w, {})

    def measure(m, workload):
        out = fake(m, workload)
        out["decode"]["kernels"] = 100.0  # the eager step's kernels, as the trace join counts them
        return out

    def compile_step(m, workload, phase):  # 3x faster than the eager step predicted, 40 kernels
        return {"step_s": predicted_times(m, workload)[phase]["eager_s"] / 3, "kernels": 40.0}

    f = advice_scores(model, w, SPEC, measure=measure, compile_step=compile_step, changes=("fuse",), label="x")
    row = f.iloc[0]
    assert row["kind"] == "fusion" and row["achieved_speedup"] == pytest.approx(3.0)
    assert not row["within_25pct"]  # advise predicts well under 2.4x for fusing element-wise pairs
    # 2 layers x 15 ops + embedding, final_norm, lm_head = 33 kernels; fused pairs: attn_residual+mlp_norm 2,
    # mlp_residual+final_norm 1, mlp_residual+attn_norm 1 (the first attn_norm follows the embedding),
    # rope+kv_cache_write 2: 6 pairs, 33 - 6 = 27
    assert "advise fuses 33 kernels per step into 27; measured: 100 kernels eager, 40 under torch.compile" in row["why"]


def test_the_compiled_step_timer_traces_the_reference_on_the_cpu():
    """Dynamo traces the reference step whole (backend 'eager': no Inductor, so no compiler needed here)."""
    from roofline.config import load_model
    from roofline.validation import compiled_step_timer

    model = replace(load_model("tests/data/tiny_llama.yaml"), num_hidden_layers=2)
    w = _case_setup(("t", "tests/data/tiny_llama.yaml", "decode", 2, 16, 24), 2)[1]
    got = compiled_step_timer(device="cpu", iters=1, backend="eager")(model, w, "decode")
    assert got["step_s"] > 0 and np.isnan(got["kernels"])  # no GPU kernels to count on the CPU


def test_rescore_of_an_advice_only_folder_repredicts_the_advice(tmp_path):
    # the committed H200 advisor run has no per-op or step rows; rescoring it must re-predict the advice
    # and keep the measured speedups, not trip over the missing steps
    from click.testing import CliRunner

    from roofline.cli import main

    folder = Path(__file__).parent.parent / "reports" / "validate-h200" / "advice"
    r = CliRunner().invoke(
        main, ["validate", "--rescore", str(folder), "--gpu", "h200", "--out", str(tmp_path / "out")]
    )
    assert r.exit_code == 0, r.output
    measured = pd.read_csv(folder / "advice.csv")
    again = pd.read_csv(tmp_path / "out" / "advice.csv")
    assert again["achieved_speedup"].equals(measured["achieved_speedup"])
    assert f"of {int(measured['achieved_speedup'].notna().sum())} within 25%" in r.output  # 31 measured rows


REPORTS = Path(__file__).parent.parent / "reports"


# the H200 calibration committed until stop 17 (2026-12-01 22:29 UTC; then reports/h200/calibration.yaml): the
# runs of 2026-12-01 and 2026-12-02 before 08:32 were scored with it, and are pinned to it
SESSION5_CALIBRATION = REPORTS / "h200" / "calibration-2026-12-01.yaml"


def rescore_committed(folder: Path, tmp_path: Path, spec: Path = REPORTS / "h200" / "calibration.yaml") -> Path:
    """`roofline validate --rescore FOLDER` with the committed H200 calibration (or SPEC); the output folder."""
    from click.testing import CliRunner

    from roofline.cli import main

    out = tmp_path / "o"
    r = CliRunner().invoke(main, ["validate", "--rescore", str(folder), "--gpu", str(spec), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize("run", ["advice", "advice-run1", "advice-run2"])
def test_the_committed_advice_is_what_its_calibration_predicts(tmp_path, run):
    # reports/h200/README.md quotes these counts: the committed folders hold their calibration's predictions
    # beside the measured speedups; a change to the prediction that moves them must re-run this rescore
    folder = REPORTS / "validate-h200" / run
    committed, again = (
        pd.read_csv(folder / "advice.csv"),
        pd.read_csv(rescore_committed(folder, tmp_path, SESSION5_CALIBRATION) / "advice.csv"),
    )
    assert np.allclose(committed["predicted_speedup"], again["predicted_speedup"], rtol=1e-9, equal_nan=True)
    assert again["within_25pct"].tolist() == committed["within_25pct"].tolist()
    ran = again["achieved_speedup"].notna()
    assert (
        int(ran.sum()) == 31
        and int(again.loc[ran, "within_25pct"].astype(bool).sum())
        == {"advice": 31, "advice-run1": 31, "advice-run2": 27}[run]
    )
    # the committed calibration of stop 17 predicts the same measurements as well: each suggestion on the same
    # side of the 25%, run by run (reports/validate-h200/rounds/README.md)
    now = pd.read_csv(rescore_committed(folder, tmp_path / "now") / "advice.csv")
    assert now["within_25pct"].tolist() == committed["within_25pct"].tolist()
    assert not np.allclose(now["predicted_speedup"], committed["predicted_speedup"], equal_nan=True)


def test_the_committed_validation_meets_every_target_as_run(tmp_path):
    # reports/validate-h200/checks.csv (quoted in reports/h200/README.md and the README): the 08:32 run of stop 17,
    # its op costs measured in the same call (reports/h200/calibration.yaml), re-scored from its own measurements
    # with that calibration: the same errors, check by check; every target met as the GPU predicted it, the
    # full-depth Llama-2-7B decode among the eager decode steps
    folder = REPORTS / "validate-h200"
    committed, again = (
        pd.read_csv(folder / "checks.csv"),
        pd.read_csv(rescore_committed(folder, tmp_path) / "checks.csv"),
    )
    assert again["check"].tolist() == committed["check"].tolist()
    for column in ("median_abs_error", "worst_abs_error"):
        assert np.allclose(again[column], committed[column], rtol=1e-9), column
    worst = committed.set_index("check")["worst_abs_error"]
    assert round(worst["decode step, eager"], 3) == 0.078 and round(worst["decode step, graph"], 3) == 0.033
    assert round(worst["prefill step, eager"], 3) == 0.092 and round(worst["prefill step, graph"], 3) == 0.090
    assert round(worst["projections + attention, predicted (worst)"], 3) == 0.197
    ours = ~committed["check"].str.contains("pure roofline|host-normalised")
    assert committed.loc[ours, "passed"].all() and len(committed[ours]) == 6
    steps = pd.read_csv(folder / "steps.csv").set_index(["case", "mode"])
    full = steps.loc[("mha-decode-b1-c512-full", "eager")]  # 32 layers: 13.4 ms predicted, 12.8 ms measured
    assert round(full["error"], 3) == 0.042 and 12.8e-3 < full["measured_step_s"] < 12.9e-3


def test_the_session_5_validation_is_what_its_calibration_predicts(tmp_path):
    # reports/validate-h200/session5/: the committed run until stop 17, re-scored from its own measurements with
    # its calibration (reports/h200/calibration-2026-12-01.yaml): the same errors, check by check
    folder = REPORTS / "validate-h200" / "session5"
    committed, again = (
        pd.read_csv(folder / "checks.csv"),
        pd.read_csv(rescore_committed(folder, tmp_path, SESSION5_CALIBRATION) / "checks.csv"),
    )
    assert again["check"].tolist() == committed["check"].tolist()
    for column in ("median_abs_error", "worst_abs_error"):
        assert np.allclose(again[column], committed[column], rtol=1e-9), column
    worst = committed.set_index("check")["worst_abs_error"]
    assert round(worst["prefill step, graph"], 3) == 0.090 and round(worst["prefill step, eager"], 3) == 0.118
    assert round(worst["decode step, graph"], 3) == 0.029 and round(worst["decode step, eager"], 3) == 0.096
    assert round(worst["projections + attention, predicted (worst)"], 3) == 0.215
    assert committed["passed"].tolist() == [True, True, False, True, False, True, False, True, False, True, False]


# the runs of the matrix kept beside the committed one (reports/validate-h200/repeats/TIME/, each with the
# calibration whose op costs were measured in its call): which checks each passes, in CHECK order without the
# pure-roofline rows (key ops median, worst; decode eager, graph; prefill eager, graph)
REPEATS = {
    "2105": [True, True, True, True, True, True],
    "2241": [True, True, False, True, False, True],  # eager: the op costs calibrated in a slow host episode
    "2245": [True, True, False, True, True, True],  # eager decode: timed in one (gpt2 b64 979 µs, 686 at 22:35)
}


@pytest.mark.parametrize("run", sorted(REPEATS))
def test_each_repeat_is_what_its_own_calibration_predicts(tmp_path, run):
    # the graph steps and the key ops meet their targets in every run; the eager steps only where the host
    # ran at one speed through calibration and timing (reports/h200/README.md, session 5)
    folder = REPORTS / "validate-h200" / "repeats" / run
    committed = pd.read_csv(folder / "checks.csv")
    again = pd.read_csv(rescore_committed(folder, tmp_path, folder / "calibration.yaml") / "checks.csv")
    for column in ("median_abs_error", "worst_abs_error"):
        assert np.allclose(again[column], committed[column], rtol=1e-9), column
    ours = ~committed["check"].str.contains("pure roofline")
    assert committed.loc[ours, "passed"].tolist() == REPEATS[run]


def test_a_calibration_from_another_lease_meets_the_targets_on_the_committed_measurements(tmp_path):
    # reports/h200/rerun/: `roofline calibrate` run again whole on a later H200 lease (4 min 9 s,
    # calibrate_log.txt), scoring the 21:05 measurements (validate-h200/repeats/2105), taken with another:
    # the calibration is reproducible, not fitted to one run. The committed rescore is what it predicts.
    rerun = REPORTS / "h200" / "rerun"
    folder = REPORTS / "validate-h200" / "repeats" / "2105"
    again = pd.read_csv(rescore_committed(folder, tmp_path, rerun / "calibration.yaml") / "checks.csv")
    committed = pd.read_csv(rerun / "validate-rescore" / "checks.csv")
    for column in ("median_abs_error", "worst_abs_error"):
        assert np.allclose(again[column], committed[column], rtol=1e-9), column
    assert again["passed"].tolist() == [True, True, False, True, False, True, False, True, False, True, False]
    worst = again.set_index("check")["worst_abs_error"]
    assert round(worst["projections + attention, predicted (worst)"], 3) == 0.207
    assert round(worst["decode step, eager"], 3) == 0.061 and round(worst["prefill step, graph"], 3) == 0.105


# five runs of the matrix on 2026-12-02, three leases, all with the committed calibration of the day before
# (reports/validate-h200/host-reference/TIME/), each with the host reference timed beside its cases: which checks
# pass, in CHECK order without the pure-roofline rows (key ops median, worst; decode eager, eager host-normalised,
# graph; prefill eager, eager host-normalised, graph), and the decode eager worst |error| as calibrated and
# host-normalised
HOST_RUNS = {
    "0034": ([True, True, False, True, True, True, True, True], 0.101, 0.060),
    "0037": ([True, True, False, True, True, True, True, True], 0.119, 0.074),
    "0044": ([True, True, False, True, True, True, True, True], 0.101, 0.078),
    "0048": ([True, True, False, False, True, True, True, True], 0.178, 0.110),  # MoE decode in its slow mode
    # timed with the reference before every case (reverted: as-run/ holds that scoring); rescored with the run's
    # fastest sample, as the others: the host slow through the run (gpt2 b1 666 us, 567-572 in the four above)
    "0101": ([True, True, False, False, True, True, True, True], 0.181, 0.121),
}


def check_pinned_run(folder: Path, spec: Path, tmp_path: Path, pinned: tuple) -> None:
    """``folder``'s committed checks are what ``spec`` predicts from its measurements, and they pass or miss as
    ``pinned`` says: (passed, in CHECK order without the pure-roofline rows; decode eager worst |error| as
    calibrated; host-normalised)."""
    committed = pd.read_csv(folder / "checks.csv")
    again = pd.read_csv(rescore_committed(folder, tmp_path, spec) / "checks.csv")
    for column in ("median_abs_error", "worst_abs_error"):
        assert np.allclose(again[column], committed[column], rtol=1e-9, equal_nan=True), column
    ours = ~committed["check"].str.contains("pure roofline")
    passed, raw, host = pinned
    assert committed.loc[ours, "passed"].tolist() == passed
    worst = committed.set_index("check")["worst_abs_error"]
    assert round(worst["decode step, eager"], 3) == raw
    assert round(worst["decode step, eager, host-normalised"], 3) == host


@pytest.mark.parametrize("run", sorted(HOST_RUNS))
def test_each_host_reference_run_is_what_the_committed_calibration_predicts(tmp_path, run):
    folder = REPORTS / "validate-h200" / "host-reference" / run
    check_pinned_run(folder, SESSION5_CALIBRATION, tmp_path, HOST_RUNS[run])


# runs of the matrix on 2026-12-02 with every eager step timed in 5-step windows, the host reference too
# (steptime.STEP_WINDOW), scored with the calibration whose op costs were measured that way in 0218's call
# (reports/validate-h200/window5/calibration.yaml): which checks pass, in CHECK order without the pure-roofline
# rows, and the decode eager worst |error| as calibrated and host-normalised. 0218 and 0223: the calibration's
# lease; 0232: another; 0244: another, the decode cases and MoE prefill only, with the MoE routing counted
WINDOW5_RUNS = {
    "0218": ([True, True, False, False, True, True, True, True], 0.145, 0.152),  # MoE decode 4.20 ms
    "0223": ([True, True, False, False, True, False, False, True], 0.165, 0.176),  # MoE decode 4.30, prefill 4.94
    "0232": ([True, True, True, False, True, True, True, True], 0.097, 0.108),  # MoE decode 3.98 ms
    "0244": ([True, True, False, False, True, False, False, False], 0.147, 0.160),  # gqa b1 1.27 ms; no graph prefill
}


@pytest.mark.parametrize("run", sorted(WINDOW5_RUNS))
def test_each_five_step_window_run_is_what_its_calibration_predicts(tmp_path, run):
    window5 = REPORTS / "validate-h200" / "window5"
    folder = window5 / run
    check_pinned_run(folder, window5 / "calibration.yaml", tmp_path, WINDOW5_RUNS[run])
    steps = pd.read_csv(folder / "steps.csv")
    if run == "0244":  # the routing the reference ran: 7.0 experts a layer at decode batch 8, all 8 at prefill
        routed = steps.drop_duplicates("case").set_index("case")["routed_experts"]
        assert routed["moe-decode-b8-c1024"] == 7.0 and routed["moe-prefill-b1-s512"] == 8.0
        assert routed.drop(["moe-decode-b8-c1024", "moe-prefill-b1-s512"]).isna().all()


# runs of the matrix on 2026-12-02 (stop 15) with the split-K keys measured (reports/validate-h200/split-k): 0418
# and 0425 scored with calibration.yaml (gemm kernels grid, split_kernel_host_us 3.98 us), re-scored after the run
# with the routed experts' split-K priced (the as-run tables are each folder's as-run.txt); 0438 and 0443 with
# calibration-routed.yaml (op costs measured again, the expert-loop keys divided by the routing the runs measured:
# 2 and 7.5 experts). Pinned as WINDOW5_RUNS: which checks pass, the decode eager worst, as calibrated and
# host-normalised. The MoE decode step is the eager miss in every run: 4.12-4.33 ms against 3.61-3.67 predicted.
SPLITK_RUNS = {
    "0418": ("calibration.yaml", [True, True, False, True, True, False, False, True], 0.159, 0.099),
    "0425": ("calibration.yaml", [True, True, False, False, True, True, True, True], 0.125, 0.133),
    "0438": ("calibration-routed.yaml", [True, True, False, True, True, True, True, True], 0.152, 0.082),
    "0443": ("calibration-routed.yaml", [True, True, False, True, True, True, True, True], 0.109, 0.089),
}


@pytest.mark.parametrize("run", sorted(SPLITK_RUNS))
def test_each_split_k_run_is_what_its_calibration_predicts(tmp_path, run):
    folder = REPORTS / "validate-h200" / "split-k"
    spec, *pinned = SPLITK_RUNS[run]
    check_pinned_run(folder / run, folder / spec, tmp_path, tuple(pinned))
    steps = pd.read_csv(folder / run / "steps.csv")
    eager = steps[steps["mode"] == "eager"].set_index("case")
    # every dense eager decode step within the 10% target in these four runs; the MoE one short by 10.9-15.9%
    dense = eager[(eager["phase"] == "decode") & ~eager.index.str.startswith("moe")]
    assert dense["error"].abs().max() < 0.10
    assert -0.16 < eager.at["moe-decode-b8-c1024", "error"] < -0.10


# runs of the matrix on 2026-12-02 (stop 16) with the op costs measured again with the layers' host costs split
# by the reference's slope over depth and the MoE model's own ops scaled to its step (calibrate.split_layer_hosts,
# _own_hosts; reports/validate-h200/depth/calibration.yaml), one lease, six minutes apart. Each misses eager decode
# on cases its host ran slower than in any of stop 15's four runs: 0648 Llama-3-8B's decode at batch 1 and at 8 x
# 32k (13% and 18% over their slowest there), 0654 the MoE decode (23% over) and the gpt2-style model's two
# (672 and 835 us, 1-2.5% over their slowest; 586 and 741 us in 0648)
DEPTH_RUNS = {
    "0648": ([True, True, False, False, True, True, False, True], 0.206, 0.213),
    "0654": ([True, True, False, False, True, True, True, True], 0.254, 0.237),
}
DEPTH_MISSES = {
    "0648": {"gqa-decode-b1-c128": 0.13, "gqa-decode-b8-c32k": 0.18},
    "0654": {"moe-decode-b8-c1024": 0.22, "small-decode-b1-c512": 0.0, "small-decode-b64-c1024": 0.0},
}


@pytest.mark.parametrize("run", sorted(DEPTH_RUNS))
def test_each_depth_run_is_what_its_calibration_predicts(tmp_path, run):
    folder = REPORTS / "validate-h200" / "depth"
    check_pinned_run(folder / run, folder / "calibration.yaml", tmp_path, DEPTH_RUNS[run])
    eager = pd.read_csv(folder / run / "steps.csv").query("mode == 'eager' and phase == 'decode'").set_index("case")
    before = pd.concat([pd.read_csv(REPORTS / "validate-h200" / "split-k" / r / "steps.csv") for r in SPLITK_RUNS])
    slowest = before[before["mode"] == "eager"].groupby("case")["measured_step_s"].max()
    misses = eager.index[eager["error"].abs() > 0.10]
    assert sorted(misses) == sorted(DEPTH_MISSES[run])
    for case, over in DEPTH_MISSES[run].items():
        assert eager.at[case, "measured_step_s"] / slowest[case] - 1 > over


def test_the_depth_calibration_scores_stop_15_s_measurements_closer():
    # the four split-K runs' measurements (stop 15), scored with the calibration they were predicted with and with
    # the depth calibration (measured on another lease): the MoE decode step from 10.9-15.2% short to 3.6-8.3%, and
    # every eager decode step within 10% in three of the four. 0418's worst, 11.6% (8.4% before), is the gpt2-style
    # model's decode at batch 64, measured at 815 us there against 741-757 us in the other three
    folder = REPORTS / "validate-h200" / "split-k"
    depth = REPORTS / "validate-h200" / "depth" / "calibration.yaml"
    moe, worst = {}, {}
    for run, (spec, *_) in SPLITK_RUNS.items():
        v = load_validation(folder / run)
        for name, s in (("old", folder / spec), ("new", depth)):
            steps = rescore(v, str(s)).steps.query("mode == 'eager' and phase == 'decode'").set_index("case")
            moe[run, name] = steps.at["moe-decode-b8-c1024", "error"]
            worst[run, name] = steps["error"].abs().max()
    assert all(moe[r, "new"] - moe[r, "old"] > 0.035 for r in SPLITK_RUNS)
    assert all(-0.09 < moe[r, "new"] < -0.03 for r in SPLITK_RUNS)
    assert [round(worst[r, "new"], 3) for r in sorted(SPLITK_RUNS)] == [0.116, 0.041, 0.083, 0.057]


def test_the_full_depth_case_runs_the_model_s_own_layers():
    # every case runs the layers validate is given, but the FULL_DEPTH one: Llama-2-7B decode at all 32 layers,
    # where a layer's host cost priced short shows (reports/h200/step-depth); the 2-layer case at the same point
    # beside it
    from roofline.validation import FULL_DEPTH, _case_setup

    assert FULL_DEPTH == {"mha-decode-b1-c512-full"} and FULL_DEPTH <= set(CASES)
    deep, w = _case_setup(CASES["mha-decode-b1-c512-full"], 2)
    shallow, w2 = _case_setup(CASES["mha-decode-b1-c512"], 2)
    assert deep.num_hidden_layers == 32 and shallow.num_hidden_layers == 2 and w == w2
    assert replace(deep, num_hidden_layers=2) == shallow
    assert _case_setup(CASES["mha-decode-b1-c512-full"], 1)[0].num_hidden_layers == 32
    # predicted with the depth calibration: 954.2 us at 2 layers and 13,576.0 at 32, 420.7 us for each of the 30
    # more (host-bound: the reference's 402.8 us a layer, layer_host_us, and Llama-2-7B's split-K launches and
    # larger attention), the figure reports/h200/step-depth/0652 checks at c128 (467.6 us measured on that lease)
    spec = REPORTS / "validate-h200" / "depth" / "calibration.yaml"
    t2 = analyze(shallow, str(spec), workload=w).summary["decode_time_s"].iloc[0]
    t32 = analyze(deep, str(spec), workload=w).summary["decode_time_s"].iloc[0]
    assert t2 == pytest.approx(954.2e-6, rel=1e-4) and t32 == pytest.approx(13576.0e-6, rel=1e-4)
    assert (t32 - t2) / 30 == pytest.approx(420.7e-6, rel=1e-3)


def test_the_second_run_of_stop_17_meets_every_target_with_each_round_in_a_fresh_process(tmp_path):
    # reports/validate-h200/rounds/0837: the committed calibration's own lease, six minutes after the committed run,
    # each timing round in a fresh process (--fresh-each-round); the host 5% faster than at calibration
    folder = REPORTS / "validate-h200" / "rounds" / "0837"
    check_pinned_run(folder, REPORTS / "h200" / "calibration.yaml", tmp_path, ([True] * 8, 0.094, 0.063))
    eager = pd.read_csv(folder / "steps.csv").query("mode == 'eager'").set_index("case")["error"]
    assert (eager > 0).sum() == 9 and round(eager["mha-decode-b1-c512-full"], 3) == 0.075


def test_the_probe_s_slow_rounds_are_the_host_s_episodes_not_a_process_s():
    # reports/validate-h200/rounds/probe-0835: processes A and B took turns (A1 B1 A2 B2 A3 B3). Each case's fastest round
    # in A and in B agree within 2.6% for 8 of the 9 cases; the slow rounds bunch in time (A2: 6 cases over 10%);
    # no case is slow (over 10%) in every round of one process
    d = pd.read_csv(REPORTS / "validate-h200" / "rounds" / "probe-0835" / "process_rounds.csv")
    cases = d[d["case"] != "host-reference"]
    best = cases.pivot_table(index="case", columns="process", values="eager_us", aggfunc="min")
    assert len(best) == 9 and ((best["B"] / best["A"] - 1).abs() < 0.026).sum() == 8
    rel = cases["eager_us"] / cases.groupby("case")["eager_us"].transform("min")
    slow = cases[rel > 1.10]
    assert slow.groupby(["process", "round"]).size().to_dict() == {("A", 2): 6, ("A", 3): 2, ("B", 2): 1, ("B", 3): 1}
    assert slow.groupby(["case", "process"]).size().max() < 3


def test_the_second_probe_s_slow_rounds_are_one_process_s():
    # reports/validate-h200/rounds/probe-0941, another lease: process B ran every case 4-74% slow in its first two
    # rounds (its host reference too), while A, timed between them, ran each within 12.1% of its fastest; B's third
    # round was the fastest of all six for 6 of the 9 cases, and within 5.3% of the fastest for every one. Why
    # validate times each round in a fresh process
    d = pd.read_csv(REPORTS / "validate-h200" / "rounds" / "probe-0941" / "process_rounds.csv")
    d["rel"] = d["eager_us"] / d.groupby("case")["eager_us"].transform("min")
    rel = d.pivot_table(index="case", columns=["process", "round"], values="rel")
    slow_b = rel[[("B", 1), ("B", 2)]]
    assert round(slow_b.min().min(), 2) == 1.04 and round(slow_b.max().max(), 2) == 1.74
    assert round(rel[[("A", 2)]].max().max(), 3) == 1.121 and rel.loc["host-reference", ("B", 2)] > 1.45
    cases = rel.drop(index="host-reference")
    assert (cases[("B", 3)] == 1.0).sum() == 6 and round(cases[("B", 3)].max(), 3) == 1.053
