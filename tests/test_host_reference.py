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
# the H200 calibration committed until stop 17 (then reports/h200/calibration.yaml): its figures are pinned here
CALIBRATED = str(ROOT / "reports" / "h200" / "calibration-2026-12-01.yaml")
RECORDED_US = 826.81  # its measured.conditions.ops_measured_on.eager_step_us
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
    raw["measured"]["conditions"]["ops_measured_on"].update(eager_step_us=800.0, reference_window=-5)
    with pytest.raises(SpecError, match="ops_measured_on.reference_window"):
        parse_spec(raw, "bad.yaml")
    raw["measured"]["conditions"]["ops_measured_on"]["reference_window"] = 5.5  # steps: a whole number
    with pytest.raises(SpecError, match="ops_measured_on.reference_window"):
        parse_spec(raw, "bad.yaml")
    raw["measured"]["conditions"]["ops_measured_on"]["reference_window"] = 5
    assert parse_spec(raw, "ok.yaml").measured_kernels["host_reference_window"] == 5
    assert load_spec(CALIBRATED).measured_kernels["host_reference_window"] == 50  # recorded none: 50 (stop 13)


def _analysis(spec, model="llama-3-8b", graph=False, **w):
    m = load_model(model)
    m = replace(m, num_hidden_layers=2)
    raw = {"batch_size": 1, "prompt_len": 128, "context_len": 128, "phase": "decode", **w}
    return analyze(m, spec, workload=replace(parse_workload(raw), cuda_graph=graph))


def test_every_eager_host_cost_takes_the_scale_and_a_graph_none():
    spec = load_spec(CALIBRATED)
    scaled, _ = with_host_reference(spec, 1.5 * RECORDED_US * 1e-6)
    base, slow = _analysis(spec), _analysis(scaled)
    # q_proj's host cost is the calibrated 19.729 us (calibration-2026-12-01.yaml, ops.q_proj.host_eager_us)
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

    seen = type("Seen", (list,), {})()  # the jobs, and .calls: the jobs of each child in turn
    seen.calls = []
    ref = iter(reference_s)

    def fake(jobs, timeout_s=0, rounds=1):
        assert rounds == 1
        seen.extend(jobs)
        seen.calls.append(len(jobs))
        return [
            {"decode": {"eager_s": next(ref)}} if j["config"].name == "calibration-small" else dict(case_s)
            for j in jobs
        ]

    monkeypatch.setattr(steptime, "time_steps", fake)
    return seen


def _with_window(tmp_path, window):
    """The committed calibration recording that its reference was timed in ``window``-step windows."""
    raw = yaml.safe_load(Path(CALIBRATED).read_text())
    raw["measured"]["conditions"]["ops_measured_on"]["reference_window"] = window
    path = tmp_path / f"window{window}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_time_matrix_times_the_reference_at_the_start_of_every_round_and_at_the_end(monkeypatch, tmp_path):
    matrix = (CASES["gqa-decode-b1-c128"], CASES["small-decode-b1-c512"])
    case = {"decode": {"eager_s": 1e-3, "graph_s": 5e-4, "graph_pipelined_s": 4e-4, "batch_size": 1}}
    seen = _fake_time_steps(monkeypatch, [900e-6, 1100e-6, 850e-6, 1000e-6], case)
    timed, host = time_matrix(matrix, rounds=3, spec=_with_window(tmp_path, 5), fresh_each_round=False)
    names = [j["config"].name for j in seen]
    assert names[0::3] == ["calibration-small"] * 4 and len(names) == 3 * 3 + 1
    ref = seen[0]
    # a calibration since stop 14 times its reference in the cases' window (5 steps: steptime.STEP_WINDOW)
    assert ref["layers"] == 2 and ref["timing_iters"] == 5 and ref["workload"].batch_size == (1,)
    assert [j["timing_iters"] for j in seen] == [5] * len(seen)
    assert ref["config"].hidden_size == 512 and ref["config"].vocab_size > 32000  # cold: the head out of the L2
    assert host == {"eager_step_us": 850.0, "samples_us": [900.0, 1100.0, 850.0, 1000.0], "window": 5}  # fastest
    with_rounds = {"decode": dict(case["decode"], eager_rounds_s=[1e-3] * 3)}  # each round's, for validate's log
    assert timed == [with_rounds, with_rounds] and seen.calls == [10]  # one process
    # each round in a fresh process of its own (validate's default since stop 17): the same jobs in the same
    # order, in three children
    seen = _fake_time_steps(monkeypatch, [900e-6, 1100e-6, 850e-6, 1000e-6], case)
    timed, host = time_matrix(matrix, rounds=3, spec=_with_window(tmp_path, 5))
    assert seen.calls == [3, 3, 4] and [j["config"].name for j in seen][0::3] == ["calibration-small"] * 4
    assert host["samples_us"] == [900.0, 1100.0, 850.0, 1000.0] and timed == [with_rounds, with_rounds]
    # the committed calibration records no window: its reference was timed in 50-step windows, and is again
    seen = _fake_time_steps(monkeypatch, [900e-6, 1100e-6, 850e-6, 1000e-6], case)
    timed, host = time_matrix(matrix, rounds=3, spec=CALIBRATED)
    assert [j["timing_iters"] for j in seen[0::3]] == [50] * 4 and host["window"] == 50
    assert {j["timing_iters"] for j in seen if j["config"].name != "calibration-small"} == {5}
    # a spec without a recorded reference: no reference timed
    seen.clear()
    timed, host = time_matrix(matrix, rounds=2, spec="h200")
    assert (
        host is None and len(seen) == 4 and timed == [{"decode": dict(case["decode"], eager_rounds_s=[1e-3] * 2)}] * 2
    )


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


def test_the_calibration_times_every_step_it_scales_host_costs_to_in_the_cases_window(monkeypatch):
    # the reference, the MoE model at two batches and the gpt2-style model: all in STEP_WINDOW-step windows, the
    # window validate times its cases in (a 50-step reference did not follow them: steptime.STEP_WINDOW)
    from roofline.measure import calibrate as C
    from roofline.measure.steptime import STEP_WINDOW

    class Stop(Exception):
        pass

    seen = {}

    def fake(jobs, rounds, what):
        seen["jobs"] = jobs
        raise Stop

    monkeypatch.setattr(C, "_timed_steps", fake)
    with pytest.raises(Stop):
        C.measure_op_costs(load_spec(CALIBRATED))
    assert STEP_WINDOW == 5 and [j["timing_iters"] for j in seen["jobs"]] == [5] * 5
    assert seen["jobs"][0] == C.host_reference_job(load_spec(CALIBRATED), graph=True)
    # the last: the same reference at DEPTH_LAYERS layers, eager only (its slope over depth prices a layer)
    deep, ref = seen["jobs"][-1], C.host_reference_job(load_spec(CALIBRATED))
    assert deep["layers"] == deep["config"].num_hidden_layers == C.DEPTH_LAYERS == 16 and not deep["graph"]
    assert deep["workload"] == ref["workload"] and deep["config"].vocab_size == ref["config"].vocab_size


def test_an_moe_case_is_predicted_at_the_routing_its_run_measured(tmp_path):
    # a case is scored at the routing its run counted (the reference's router: 7.0 experts a layer for Mixtral's 8
    # decode tokens, reports/validate-h200/window5/0244), not uniform routing's 7.2; 8 here moves it more
    # (8 (1 - (6/8)^8) = 7.199): the case is scored at the run's count, and rescore reads it back
    label = "moe-decode-b8-c1024"
    ops, step = _measured_case(label)
    _, expected = score_case(CASES[label], CALIBRATED, ops, step)
    _, routed = score_case(CASES[label], CALIBRATED, ops, dict(step, routed_experts=8.0))
    e, r = expected.set_index("mode"), routed.set_index("mode")
    assert np.isnan(e.at["eager", "routed_experts"]) and r.at["eager", "routed_experts"] == 8.0
    m, spec, w = _setup(label)
    at8 = analyze(m, spec, workload=replace(w, routed_experts=8.0)).summary["decode_time_s"].iloc[0]
    assert r.at["eager", "predicted_step_s"] == pytest.approx(at8)
    assert r.at["eager", "predicted_step_s"] > 1.04 * e.at["eager", "predicted_step_s"]  # 0.8 more experts x 2
    # the expectation given as a count is the default prediction
    same = analyze(m, spec, workload=replace(w, routed_experts=8 * (1 - 0.75**8))).summary["decode_time_s"].iloc[0]
    assert same == pytest.approx(e.at["eager", "predicted_step_s"], rel=1e-9)
    # a dense case ignores a count
    dense_ops, dense_step = _measured_case("gqa-decode-b1-c128")
    _, d = score_case(CASES["gqa-decode-b1-c128"], CALIBRATED, dense_ops, dict(dense_step, routed_experts=8.0))
    assert d["routed_experts"].isna().all()
    # written and rescored: the count is read back from steps.csv and the prediction is the same
    o, s = score_case(CASES[label], CALIBRATED, ops, dict(step, routed_experts=8.0))
    folder = write_validation(
        Validation(ops=o, steps=s, clocks=pd.DataFrame(), device={"spec": "h200"}), tmp_path / "v"
    )
    back = rescore(load_validation(folder), CALIBRATED, matrix=MATRIX)
    assert back.steps["routed_experts"].tolist() == [8.0, 8.0]
    assert back.steps["predicted_step_s"].to_numpy() == pytest.approx(s["predicted_step_s"].to_numpy(), rel=1e-12)


def _with_split_kernels(tmp_path, host_us=4.0):
    """The committed calibration with a kernels grid on its bf16 and bf16/tall_k tables, two kernels per call
    where cuBLAS runs split-K on an H200 (reports/h200/host-kernels/projection_host.csv: hidden 4096 -> 4096 or
    1024 and the down projections, at up to 8 tokens), and ``host_us`` per extra kernel."""
    raw = yaml.safe_load(Path(CALIBRATED).read_text())
    for key, split in (("bf16", {4096 * 1024, 4096 * 4096}), ("bf16/tall_k", None)):
        t = raw["measured"]["gemm"][key]
        t["kernels"] = [
            [2.0 if m <= 8 and (split is None or kn in split) else 1.0 for kn in t["weight_elements"]]
            for m in t["tokens"]
        ]
    if host_us is not None:
        raw["measured"]["split_kernel_host_us"] = host_us
    path = tmp_path / "split.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_a_split_k_projection_pays_its_second_kernel_s_launch(tmp_path):
    # Llama-2-7B at decode batch 1: q, k, v, o (4096 x 4096) and down (11008 -> 4096) run two kernels a call,
    # gate and up (4096 -> 11008) one; the op costs hold one (the small model's): 4 us more host for each of the
    # five, and one more launch gap
    m = replace(load_model("llama-2-7b"), num_hidden_layers=2)
    w = parse_workload({"batch_size": 1, "prompt_len": 512, "context_len": 512, "phase": "decode"})
    base = analyze(m, load_spec(CALIBRATED), workload=w).ops.set_index("op")
    split = analyze(m, load_spec(_with_split_kernels(tmp_path)), workload=w).ops.set_index("op")
    for op in ("q_proj", "k_proj", "v_proj", "o_proj", "down_proj"):
        assert split.at[op, "host_s"] == pytest.approx(base.at[op, "host_s"] + 4e-6, rel=1e-9)
        gap = load_spec(CALIBRATED).measured_kernels["kernel_gap_s"]
        assert split.at[op, "launch_gap_s"] == pytest.approx(base.at[op, "launch_gap_s"] + gap, rel=1e-9)
    for op in ("gate_proj", "up_proj", "attention", "rope", "lm_head"):  # lm_head: its own head's entry, no cell
        assert split.at[op, "host_s"] == base.at[op, "host_s"]
        assert split.at[op, "launch_gap_s"] == base.at[op, "launch_gap_s"]
    # the step is host-bound: up to 10 projections x 4 us more (2 layers), less what the queue overlaps with the
    # GPU (here one: 36 us)
    a = analyze(m, load_spec(CALIBRATED), workload=w).summary["decode_time_s"].iloc[0]
    b = analyze(m, load_spec(_with_split_kernels(tmp_path)), workload=w).summary["decode_time_s"].iloc[0]
    assert 8 * 4e-6 <= b - a <= 10 * 4e-6 + 1e-12
    # in a CUDA graph no host cost; a count without split_kernel_host_us moves only the launch gaps
    graph = analyze(m, load_spec(_with_split_kernels(tmp_path)), workload=replace(w, cuda_graph=True)).ops
    assert graph.set_index("op").at["q_proj", "host_s"] == 0.0
    counted = analyze(m, load_spec(_with_split_kernels(tmp_path, host_us=None)), workload=w).ops.set_index("op")
    assert counted.at["q_proj", "host_s"] == base.at["q_proj", "host_s"]
    # at 64 tokens every projection runs one kernel: nothing added
    w64 = replace(w, batch_size=(64,))
    one = analyze(m, load_spec(_with_split_kernels(tmp_path)), workload=w64).ops.set_index("op")
    assert (
        one.at["q_proj", "host_s"]
        == analyze(m, load_spec(CALIBRATED), workload=w64).ops.set_index("op").at["q_proj", "host_s"]
    )


def test_a_routed_expert_s_split_down_matrix_pays_its_second_kernel(tmp_path):
    # Mixtral at decode batch 8, 7 experts with tokens a layer (as validate's run routed them), about 2.3 tokens
    # each: every expert's down matrix (14336 -> 4096, tall_k) runs two kernels, gate and up (4096 -> 14336) one.
    # Per layer: 7 more kernels, 7 x 4 us more host, 7 more launch gaps (reports/h200/moe_kernels.csv: 125 kernels
    # a layer measured)
    m = replace(load_model("mixtral-8x7b"), num_hidden_layers=2)
    w = parse_workload(
        {"batch_size": 8, "prompt_len": 1024, "context_len": 1024, "phase": "decode", "routed_experts": 7}
    )
    gap = load_spec(CALIBRATED).measured_kernels["kernel_gap_s"]
    base = analyze(m, load_spec(CALIBRATED), workload=w).ops.set_index("op").loc["experts"]
    split = analyze(m, load_spec(_with_split_kernels(tmp_path)), workload=w).ops.set_index("op").loc["experts"]
    assert split["host_s"] == pytest.approx(base["host_s"] + 7 * 4e-6, rel=1e-9)
    assert split["launch_gap_s"] == pytest.approx(base["launch_gap_s"] + 7 * gap, rel=1e-9)
    assert split["predicted_time_s"] == pytest.approx(base["predicted_time_s"], rel=1e-9)  # the table has both
    assert split["sync_s"] > base["sync_s"]  # each segment's queue launches one more kernel
    # the calibration's own small MoE (hidden 512, experts 1408 wide) ran one kernel per matrix: its 720,896
    # elements are 3.3x under tall_k's smallest measured matrix, so no count is carried down to it
    from roofline.config import parse_model
    from roofline.measure.calibrate import SMALL_MODEL

    small = parse_model(
        dict(SMALL_MODEL, name="small-moe", model_type="mixtral", num_local_experts=8, num_experts_per_tok=2),
        "small-moe",
    )
    ws = parse_workload({"batch_size": 16, "prompt_len": 128, "context_len": 128, "phase": "decode"})
    a = analyze(small, load_spec(CALIBRATED), workload=ws).ops.set_index("op").loc["experts"]
    b = analyze(small, load_spec(_with_split_kernels(tmp_path)), workload=ws).ops.set_index("op").loc["experts"]
    assert b["host_s"] == a["host_s"] and b["launch_gap_s"] == a["launch_gap_s"]


def test_a_bad_kernels_grid_is_a_spec_error(tmp_path):
    raw = yaml.safe_load(Path(_with_split_kernels(tmp_path)).read_text())
    raw["measured"]["gemm"]["bf16"]["kernels"] = [[1.0]]
    with pytest.raises(SpecError, match=r"gemm\.bf16\.kernels must be a list of 15 rows"):
        parse_spec(raw, "bad.yaml")
    raw = yaml.safe_load(Path(_with_split_kernels(tmp_path)).read_text())
    raw["measured"]["split_kernel_host_us"] = -1
    with pytest.raises(SpecError, match="split_kernel_host_us"):
        parse_spec(raw, "bad.yaml")
