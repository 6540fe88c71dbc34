"""The host reference (predict.py's docstring): a calibrated spec records the eager step its host costs were
scaled to; validate times the same step beside its cases and scores the eager steps with every eager host
cost times (reference now / reference at calibration), beside the prediction as calibrated."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from roofline.analysis import analyze
from roofline.config import load_model, parse_workload
from roofline.errors import InputFileError, SpecError
from roofline.predict import describe_host_reference, host_reference_record, with_host_reference
from roofline.specs import load_spec, parse_spec
from roofline.validation import (
    MATRIX,
    STEP_TABLE,
    Validation,
    error_summary,
    load_validation,
    rescore,
    score_case,
    step_table,
    time_matrix,
    write_validation,
)

ROOT = Path(__file__).parent.parent
CALIBRATED = str(ROOT / "reports" / "h200" / "calibration.yaml")
RECORDED_US = 826.81  # reports/h200/calibration.yaml: measured.conditions.ops_measured_on.eager_step_us
CASES = {c[0]: c for c in MATRIX}


def test_the_calibrated_spec_records_its_host_reference():
    spec = load_spec(CALIBRATED)
    assert spec.measured_kernels["host_reference_s"] == pytest.approx(RECORDED_US * 1e-6)
    assert spec.host_scale == 1.0
    scaled, scale = with_host_reference(spec, 1.25 * RECORDED_US * 1e-6)
    assert scale == pytest.approx(1.25) and scaled.host_scale == pytest.approx(1.25)
    # a datasheet spec has no reference, and no timed reference leaves the spec as it is
    assert with_host_reference(load_spec("h200"), 1e-3) == (load_spec("h200"), None)
    assert with_host_reference(spec, None) == (spec, None)
    assert with_host_reference(spec, float("nan")) == (spec, None)


def test_a_bad_recorded_reference_is_a_spec_error(tmp_path):
    raw = yaml.safe_load(Path(CALIBRATED).read_text())
    raw["measured"]["conditions"]["ops_measured_on"]["eager_step_us"] = "fast"
    with pytest.raises(SpecError, match="ops_measured_on.eager_step_us"):
        parse_spec(raw, "bad.yaml")


def _analysis(spec, model="llama-3-8b", graph=False, **w):
    m = load_model(model)
    m = replace(m, num_hidden_layers=2)
    raw = {"batch_size": 1, "prompt_len": 128, "context_len": 128, "phase": "decode", **w}
    return analyze(m, spec, workload=replace(parse_workload(raw), cuda_graph=graph))


def test_every_eager_host_cost_takes_the_scale_and_a_graph_none():
    spec = load_spec(CALIBRATED)
    scaled, _ = with_host_reference(spec, 1.5 * RECORDED_US * 1e-6)
    base, slow = _analysis(spec), _analysis(scaled)
    # q_proj's host cost is the calibrated 19.729 us (reports/h200/calibration.yaml, ops.q_proj.host_eager_us)
    q = base.ops["op"] == "q_proj"
    assert base.ops.loc[q, "host_s"].iloc[0] == pytest.approx(19.729e-6)
    assert slow.ops["host_s"].to_numpy() == pytest.approx(1.5 * base.ops["host_s"].to_numpy())
    assert slow.ops["predicted_time_s"].to_numpy() == pytest.approx(base.ops["predicted_time_s"].to_numpy())
    # the step is host-bound at decode batch 1: it grows by about half of its host time
    host_sum = float((base.ops["count"] * base.ops["host_s"]).sum())
    grew = slow.summary["decode_time_s"].iloc[0] - base.summary["decode_time_s"].iloc[0]
    assert 0.45 * host_sum < grew <= 0.5 * host_sum + 1e-12
    # a CUDA graph pays no eager host cost: the same step
    g0, g1 = _analysis(spec, graph=True), _analysis(scaled, graph=True)
    assert g1.summary["decode_time_s"].iloc[0] == pytest.approx(g0.summary["decode_time_s"].iloc[0])
    # the MoE expert loop's host cost (its base and per active expert) takes it too
    m0, m1 = _analysis(spec, "mixtral-8x7b"), _analysis(scaled, "mixtral-8x7b")
    e = m0.ops["op"] == "experts"
    assert m1.ops.loc[e, "host_s"].iloc[0] == pytest.approx(1.5 * m0.ops.loc[e, "host_s"].iloc[0])
    assert m1.ops.loc[e, "sync_s"].iloc[0] > m0.ops.loc[e, "sync_s"].iloc[0]


def _fake_time_steps(monkeypatch, reference_s, case_s):
    """steptime.time_steps faked: the host reference (vocab > 32000, two layers of the small model) takes
    ``reference_s`` in turn, every other job ``case_s``; returns the jobs it was given."""
    from roofline.measure import steptime

    seen = []
    ref = iter(reference_s)

    def fake(jobs, timeout_s=0, rounds=1):
        assert rounds == 1
        seen.extend(jobs)
        return [
            {"decode": {"eager_s": next(ref)}} if j["config"].name == "calibration-small" else dict(case_s)
            for j in jobs
        ]

    monkeypatch.setattr(steptime, "time_steps", fake)
    return seen


def test_time_matrix_times_the_reference_at_the_start_of_every_round_and_at_the_end(monkeypatch):
    matrix = (CASES["gqa-decode-b1-c128"], CASES["small-decode-b1-c512"])
    case = {"decode": {"eager_s": 1e-3, "graph_s": 5e-4, "graph_pipelined_s": 4e-4, "batch_size": 1}}
    seen = _fake_time_steps(monkeypatch, [900e-6, 1100e-6, 850e-6, 1000e-6], case)
    timed, host = time_matrix(matrix, rounds=3, spec=CALIBRATED)
    names = [j["config"].name for j in seen]
    assert names[0::3] == ["calibration-small"] * 4 and len(names) == 3 * 3 + 1
    ref = seen[0]
    assert ref["layers"] == 2 and ref["timing_iters"] == 50 and ref["workload"].batch_size == (1,)
    assert ref["config"].hidden_size == 512 and ref["config"].vocab_size > 32000  # cold: the head out of the L2
    assert host == {"eager_step_us": 850.0, "samples_us": [900.0, 1100.0, 850.0, 1000.0]}  # the fastest
    assert timed == [case, case]
    # a spec without a recorded reference: no reference timed
    seen.clear()
    timed, host = time_matrix(matrix, rounds=2, spec="h200")
    assert host is None and len(seen) == 4 and timed == [case, case]


def _measured_case(label):
    """A case's ops with made-up measurements and its steps (measured 1 ms eager, 0.5 ms graph)."""
    m = analyze(*_setup(label))
    ops = pd.DataFrame(
        {"op": m.ops["op"].astype(str), "measured_time_s": 1e-5, "n_kernels": 1.0, "measured_bound": "memory"}
    )
    return ops, {"eager": 1e-3, "graph": 5e-4, "kernel": 4e-4}


def _setup(label):
    from roofline.validation import _case_setup

    m, w = _case_setup(CASES[label], 2)
    return m, load_spec(CALIBRATED), w


def test_score_case_puts_the_host_normalised_step_beside_the_calibrated_one():
    label = "gqa-decode-b1-c128"
    ops, step = _measured_case(label)
    _, steps = score_case(CASES[label], CALIBRATED, ops, step, host_reference_us=1.2 * RECORDED_US)
    s = steps.set_index("mode")
    m, spec, w = _setup(label)
    slow, _ = with_host_reference(spec, 1.2 * RECORDED_US * 1e-6)
    expect = analyze(m, slow, workload=w).summary["decode_time_s"].iloc[0]
    assert s.at["eager", "predicted_step_host_s"] == pytest.approx(expect)
    assert s.at["eager", "predicted_step_s"] == pytest.approx(
        analyze(m, spec, workload=w).summary["decode_time_s"].iloc[0]
    )
    assert s.at["eager", "predicted_step_host_s"] > s.at["eager", "predicted_step_s"]
    assert s.at["eager", "error_host"] == pytest.approx(expect / 1e-3 - 1)
    assert s.at["graph", "predicted_step_host_s"] == s.at["graph", "predicted_step_s"]
    assert s["host_scale"].to_numpy() == pytest.approx([1.2, 1.2])
    checks = error_summary(pd.DataFrame({"op": [], "error": [], "roofline_error": []}), steps.assign(phase="decode"))
    row = checks.set_index("check").loc["decode step, eager, host-normalised"]
    assert row["worst_abs_error"] == pytest.approx(abs(expect / 1e-3 - 1))
    # no reference timed: NaN, no host-normalised check and no such columns in the printed table
    _, plain = score_case(CASES[label], CALIBRATED, ops, step)
    assert plain["predicted_step_host_s"].isna().all() and plain["error_host"].isna().all()
    assert "decode step, eager, host-normalised" not in set(error_summary(pd.DataFrame(), plain)["check"])
    assert "error_host" not in step_table(plain) and step_table(steps) == STEP_TABLE


def test_a_written_reference_is_rescored_against_the_new_spec(tmp_path):
    label = "small-decode-b1-c512"
    ops, step = _measured_case(label)
    o, s = score_case(CASES[label], CALIBRATED, ops, step, host_reference_us=0.9 * RECORDED_US)
    record = host_reference_record({"eager_step_us": 0.9 * RECORDED_US, "samples_us": [1.0]}, load_spec(CALIBRATED))
    assert record["calibrated_us"] == RECORDED_US and record["scale"] == pytest.approx(0.9)
    assert "this host takes 0.90x the calibration's eager host time" in describe_host_reference(record)
    v = Validation(ops=o, steps=s, clocks=pd.DataFrame(), device={"spec": "h200", "host_reference": record})
    folder = write_validation(v, tmp_path / "v")
    assert json.loads((folder / "device.json").read_text())["host_reference"]["scale"] == pytest.approx(0.9)
    assert "host-normalised" in (folder / "summary.md").read_text()
    back = rescore(load_validation(folder), CALIBRATED, matrix=MATRIX)
    assert back.steps["error_host"].to_numpy() == pytest.approx(s["error_host"].to_numpy())
    # against a spec without a reference, the record keeps the measurement and says there is no scale
    plain = rescore(load_validation(folder), "h200", matrix=MATRIX)
    assert plain.device["host_reference"]["scale"] is None and plain.steps["error_host"].isna().all()
    assert "records none" in describe_host_reference(plain.device["host_reference"])
    # a damaged reference is one clear error
    d = json.loads((folder / "device.json").read_text())
    d["host_reference"]["eager_step_us"] = -3
    (folder / "device.json").write_text(json.dumps(d))
    with pytest.raises(InputFileError, match="host_reference.eager_step_us"):
        rescore(load_validation(folder), CALIBRATED, matrix=MATRIX)


def test_the_calibration_s_reference_is_the_job_validate_times():
    # measure_op_costs times host_reference_job(spec, graph=True) first and records its eager step: the same
    # model and point as validate's (graph only adds the replay after the eager windows)
    from roofline.measure.calibrate import cold_vocab, host_reference_job

    spec = load_spec(CALIBRATED)
    a, b = host_reference_job(spec), host_reference_job(spec, graph=True)
    assert a["config"] == b["config"] and a["workload"] == b["workload"] and not a["graph"] and b["graph"]
    assert a["config"].vocab_size == cold_vocab(spec, 512)
    assert np.isclose(a["config"].vocab_size, 234496)  # the calibration's recorded vocab (ops_measured_on.vocab)
