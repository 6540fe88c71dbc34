"""``validate``: run the reference model over a matrix of cases and set the calibrated prediction
beside the measurement, per op and per step, eager and CUDA graph.

Method, per case (a model, a phase, one batch / prompt / context):
1. ``profile_model`` runs ``layers`` decoder layers (+ embedding and head) of the reference model: per
   op the kernel time per occurrence (torch.profiler kernel durations, median over steps), and the
   wall time of one step eager and replayed as a CUDA graph (CUDA events).
2. ``analyze`` predicts the same ``layers``-layer model at the same point with the same spec, once
   eager and once with ``cuda_graph``: per op ``predicted_time_s`` (kernel), per step the summary's
   ``{phase}_time_s`` (predict.py's launch queue).
3. error = predicted / measured - 1, per op (kernel against kernel) and per step (step against the
   wall-clock step of the same mode). The same like-for-like model, so no scaling is involved.

Targets (issue 10): median |error| <= 10% and worst <= 25% over the projections and attention;
decode steps within 10%, prefill steps within 15%, eager and graph.

The advisor, scored (``advice_scores``; issue 10 part 4), per case of ``ADVICE_CASES``:
4. ``advise`` runs on the analysis of the same ``layers``-layer model at the case's point, in the
   case's execution mode (eager, or a CUDA graph: a graph step has no host cost to hide the kernels'
   gains behind, so the quantisation suggestions show there).
5. Every suggestion the reference can apply is measured on it: the base step and the changed step
   (``profile_model``'s wall-clock steps: eager, or the CUDA-graph replay when the base is a graph),
   achieved = base / changed; a larger batch is a tokens/s gain (x new batch / old batch). CUDA graphs:
   the base's eager step against its replay. Fusion: the eager step against the same step under
   ``torch.compile`` (default mode), on the cases marked for it only (20-40 s of compile per shape).
6. predicted = advise's ``predicted_speedup``; within_25pct = |predicted / achieved - 1| <= 25%.
   A miss is explained by the step it comes from (baseline and changed step, predicted against
   measured) and by the op whose measured change differs most from its predicted change; where the
   reference runs the change differently from the prediction, ``runs_as`` says how
   (``reference.reference_formats``).
"""

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from roofline.analysis import analyze
from roofline.compare import compare
from roofline.config import load_model, parse_workload
from roofline.measure.steptime import STEP_WINDOW
from roofline.predict import describe_host_reference, host_reference_record, with_host_reference
from roofline.specs import data_dir, load_spec

if TYPE_CHECKING:  # annotations only
    from roofline.config import ModelConfig, Workload
    from roofline.measure.run import MeasuredRun
    from roofline.specs import HardwareSpec

    SpecLike = str | Path | HardwareSpec

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
KEY_OPS = PROJECTIONS + ("attention",)
TARGETS = {"key_ops_median": 0.10, "key_ops_worst": 0.25, "decode_step": 0.10, "prefill_step": 0.15}

# the matrix: (label, model file in examples/, phase, batch, prompt_len, context_len)
MATRIX = (
    ("mha-prefill-b1-s512", "llama-2-7b", "prefill", 1, 512, None),
    ("mha-prefill-b8-s2048", "llama-2-7b", "prefill", 8, 2048, None),
    ("mha-decode-b1-c512", "llama-2-7b", "decode", 1, 512, 512),
    ("mha-decode-b1-c512-full", "llama-2-7b", "decode", 1, 512, 512),  # all 32 layers: FULL_DEPTH
    ("mha-decode-b64-c2048", "llama-2-7b", "decode", 64, 2048, 2048),
    ("mha-decode-b16-c32k", "llama-2-7b", "decode", 16, 128, 32768),
    ("gqa-prefill-b1-s128", "llama-3-8b", "prefill", 1, 128, None),
    ("gqa-prefill-b1-s32k", "llama-3-8b", "prefill", 1, 32768, None),
    ("gqa-decode-b1-c128", "llama-3-8b", "decode", 1, 128, 128),
    ("gqa-decode-b256-c1024", "llama-3-8b", "decode", 256, 1024, 1024),
    ("gqa-decode-b8-c32k", "llama-3-8b", "decode", 8, 128, 32768),
    ("moe-prefill-b1-s512", "mixtral-8x7b", "prefill", 1, 512, None),
    ("moe-decode-b8-c1024", "mixtral-8x7b", "decode", 8, 1024, 1024),
    ("small-prefill-b4-s512", "gpt2", "prefill", 4, 512, None),
    ("small-decode-b1-c512", "gpt2", "decode", 1, 512, 512),
    ("small-decode-b64-c1024", "gpt2", "decode", 64, 512, 1024),
)
# cases run at the model's own depth, whatever ``layers`` says: every other case runs 2 layers, as the calibration's
# reference does, so a layer priced short and the step's ends priced long cancel there (reports/h200/step-depth:
# a 32-layer step predicted 11% short while every 2-layer case held); Llama-2-7B decode at 32 layers, 13.5 GB
FULL_DEPTH = frozenset({"mha-decode-b1-c512-full"})
QUICK_MATRIX = tuple(c for c in MATRIX if c[0] in ("gqa-prefill-b1-s128", "gqa-decode-b1-c128"))

ADVICE_TOLERANCE = 0.25
# (case of MATRIX, changes to its workload for the base, torch.compile the step for the fusion row,
# the suggestions to score by the start of advise's ``change`` (None: all)). validate runs the rows
# whose case is in its matrix. Compiled: gqa-decode-b1-c128 and mha-prefill-b8-s2048 (eager bases).
# each measured step of the matrix is the fastest of this many fresh-process timings (steptime.time_steps' rounds):
# the GPU host's slow episodes (5-10 s, up to 1.85x) would otherwise decide a case's eager step
TIMING_ROUNDS = 3
# each of those rounds in a fresh process of its own (time_matrix): on one lease a process ran every case 4-74%
# slow through two rounds while another, timed between them, ran within 12.1% of its fastest
# (reports/validate-h200/rounds/probe-0941); in one process such a spell can decide every round of a case
FRESH_EACH_ROUND = True
ADVICE_CASES = (
    ("gqa-decode-b1-c128", {}, True, None),  # eager: CUDA graphs, a larger batch, fusion
    ("gqa-decode-b1-c128", {"cuda_graph": True}, False, None),  # graph: weights fp8 / int8, a larger batch
    ("gqa-prefill-b1-s128", {"attn_impl": "naive"}, False, ("FlashAttention",)),
    ("mha-prefill-b8-s2048", {}, True, None),  # compute-bound prefill: W8A8 fp8, fusion
    ("mha-decode-b64-c2048", {"cuda_graph": True}, False, None),  # KV cache fp8, a larger batch, weights
    ("gqa-decode-b256-c1024", {"cuda_graph": True}, False, None),  # KV cache fp8, W8A8 fp8 in decode
    ("gqa-decode-b8-c32k", {"attn_impl": "naive", "cuda_graph": True}, False, ("FlashAttention",)),
    ("small-decode-b1-c512", {}, False, None),  # gpt2 eager: CUDA graphs, a larger batch
)
ADVICE_COLUMNS = [
    "case",
    "base",
    "kind",
    "change",
    "phase",
    "flags",
    "overrides",
    "suggested",
    "predicted_speedup",
    "achieved_speedup",
    "within_25pct",
    "fused_speedup",
    "metric",
    "predicted_base_s",
    "predicted_new_s",
    "measured_base_s",
    "measured_new_s",
    "how",
    "runs_as",
    "why",
]


@dataclass(frozen=True)
class Validation:
    """Frames of one ``validate`` run (raw floats, SI units).

    ops:    one row per (case, op): predicted_time_s, time_s (pure roofline), host_s, prediction_source,
            bound, measured_time_s, n_kernels, error (predicted / measured - 1)
    steps:  one row per (case, mode): predicted_step_s, measured_step_s, error; mode 'eager' | 'graph'
    device: GPU, spec, clocks summary, versions
    advice: one row per (case, suggestion): predicted beside achieved speedup (``advice_scores``)
    """

    ops: pd.DataFrame
    steps: pd.DataFrame
    clocks: pd.DataFrame
    device: dict = field(default_factory=dict)
    notes: tuple = ()
    advice: pd.DataFrame = field(default_factory=pd.DataFrame)  # advice_scores' rows, ADVICE_COLUMNS


def _case_setup(case, layers: int):
    """(reference ModelConfig of ``layers`` layers, or all of the model's for a FULL_DEPTH case, Workload) of one
    case."""
    label, model, phase, batch, prompt, context = case
    m = load_model(model if str(model).endswith((".yaml", ".json")) else data_dir("examples") / f"{model}.yaml")
    raw = {"batch_size": batch, "prompt_len": prompt, "phase": phase}
    if context:
        raw["context_len"] = context
    n = m.num_hidden_layers if label in FULL_DEPTH else min(layers, m.num_hidden_layers)
    return replace(m, num_hidden_layers=n), parse_workload(raw)


def measure_case(
    case: tuple,
    spec: "SpecLike",
    layers: int = 2,
    device: str = "cuda",
    warmup: int = 3,
    iters: int = 5,
    timing_iters: int = STEP_WINDOW,
    step_times: dict | None = None,
) -> tuple:
    """(measured ops frame: op, measured_time_s, n_kernels, measured_bound; measured step dict: eager, graph,
    kernel, routed_experts, the routed experts with tokens per MoE layer of the run, NaN for a dense model) of
    one case. ``step_times``: the case's step times already measured (``time_matrix``), else timed here."""
    ref, w = _case_setup(case, layers)
    run = _profile_reference(ref, w, spec, device, warmup, iters, timing_iters, step_times)
    prof = compare(analyze(ref, spec, workload=w), run)  # per call: measured_time_s and the measured class
    step = prof.steps.iloc[0]
    measured = prof.ops[["op", "measured_time_s", "n_kernels", "measured_bound", "span_s"]].copy()
    graph = step["graph_step_ref_s"]
    routed = run.steps.iloc[0].get("routed_experts_ref")
    return measured, {
        "eager": step["eager_step_ref_s"],
        "graph": graph if graph else np.nan,
        "kernel": step["kernel_time_ref_s"],
        "routed_experts": float(routed) if routed is not None and routed == routed else np.nan,
    }


def score_case(
    case: tuple,
    spec: "SpecLike",
    measured: pd.DataFrame,
    measured_step: dict,
    layers: int = 2,
    host_reference_us: float | None = None,
) -> tuple:
    """(op rows, step rows) of one case: the prediction with ``spec`` beside the measurement, with errors.
    Needs no GPU: a saved measurement can be re-scored with another spec (``rescore``). ``host_reference_us``:
    the host reference timed with the measurement (``time_matrix``); the steps then also carry the
    host-normalised prediction (``predict.with_host_reference``: the eager host costs times host_scale, the
    reference now over the spec's recorded one) and its error; NaN without one. An MoE case is predicted at the
    routing its run measured (``measured_step['routed_experts']``: config.Workload.routed_experts), where
    recorded: the cost model is checked, not one random router against the uniform expectation."""
    label, _, phase, batch, prompt, context = case
    ref, w = _case_setup(case, layers)
    routed = measured_step.get("routed_experts", np.nan)
    if routed == routed and ref.is_moe:
        w = replace(w, routed_experts=float(routed))
    spec = load_spec(spec)
    host_spec, host_scale = with_host_reference(spec, None if host_reference_us is None else host_reference_us * 1e-6)
    meas = measured.drop_duplicates("op").set_index("op")
    key = {
        "case": label,
        "model": ref.name,
        "phase": phase,
        "batch_size": batch,
        "prompt_len": prompt,
        "context_len": context,
    }
    op_rows, step_rows = [], []
    for mode in ("eager", "graph"):
        a = analyze(ref, spec, workload=replace(w, cuda_graph=mode == "graph"))
        predicted_step = float(a.summary[f"{phase}_time_s"].iloc[0])
        host_step = np.nan  # a CUDA graph's step has no eager host cost to scale: the same prediction
        if host_scale is not None:
            host_step = predicted_step
            if mode == "eager":
                host_step = float(analyze(ref, host_spec, workload=w).summary[f"{phase}_time_s"].iloc[0])
        step_rows.append(
            {
                **key,
                "mode": mode,
                "layers": ref.num_hidden_layers,
                "predicted_step_s": predicted_step,
                "host_scale": np.nan if host_scale is None else host_scale,
                "predicted_step_host_s": host_step,
                "roofline_step_s": float(a.summary[f"{phase}_roofline_time_s"].iloc[0]),
                "measured_step_s": measured_step[mode],
                "predicted_kernel_time_s": float((a.ops["count"] * a.ops["predicted_time_s"]).sum()),
                "measured_kernel_time_s": measured_step["kernel"],
                "routed_experts": w.routed_experts if w.routed_experts is not None else np.nan,
            }
        )
        if mode != "eager":
            continue
        for r in a.ops.itertuples(index=False):
            name = str(r.op)
            hit = name in meas.index
            op_rows.append(
                {
                    **key,
                    "op": name,
                    "category": str(r.category),
                    "count": int(r.count),
                    "flops": r.flops,
                    "bytes": r.bytes_read + r.bytes_written,
                    "time_s": r.time_s,
                    "predicted_time_s": r.predicted_time_s,
                    "host_s": r.host_s,
                    "prediction_source": str(r.prediction_source),
                    "bound": str(r.bound),
                    "measured_time_s": float(meas.at[name, "measured_time_s"]) if hit else np.nan,
                    "n_kernels": float(meas.at[name, "n_kernels"]) if hit else np.nan,
                    "measured_bound": str(meas.at[name, "measured_bound"]) if hit else "",
                    "span_s": float(meas.at[name, "span_s"]) if hit and "span_s" in meas.columns else np.nan,
                }
            )
    ops = pd.DataFrame(op_rows)
    steps = pd.DataFrame(step_rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        ops["error"] = ops["predicted_time_s"] / ops["measured_time_s"] - 1.0
        ops["roofline_error"] = ops["time_s"] / ops["measured_time_s"] - 1.0
        steps["error"] = steps["predicted_step_s"] / steps["measured_step_s"] - 1.0
        steps["error_host"] = steps["predicted_step_host_s"] / steps["measured_step_s"] - 1.0
        steps["roofline_error"] = steps["roofline_step_s"] / steps["measured_step_s"] - 1.0
    return ops, steps


def run_case(
    case: tuple,
    spec: "SpecLike",
    layers: int = 2,
    device: str = "cuda",
    host_reference_us: float | None = None,
    **kw: object,
) -> tuple:
    """(op rows, step rows) of one case of the matrix: measured, then scored (``host_reference_us``: score_case)."""
    measured, step = measure_case(case, spec, layers=layers, device=device, **kw)
    return score_case(case, spec, measured, step, layers=layers, host_reference_us=host_reference_us)


def case_job(case: tuple, layers: int = 2, timing_iters: int = STEP_WINDOW) -> dict:
    """One case of the matrix as a ``steptime.time_steps`` job: its reference model (``_case_setup``) at its
    point, ``timing_iters`` steps per timing window; what ``time_matrix`` times, round after round."""
    m, w = _case_setup(case, layers)
    return {"config": m, "workload": w, "layers": m.num_hidden_layers, "timing_iters": timing_iters}


def time_matrix(
    matrix: tuple,
    layers: int = 2,
    timing_iters: int = STEP_WINDOW,
    rounds: int = TIMING_ROUNDS,
    spec: "SpecLike | None" = None,
    fresh_each_round: bool = FRESH_EACH_ROUND,
) -> tuple:
    """(the step times of every case of ``matrix``, the host reference). Step times: one ``steptime.time_steps``
    result per case (None where its timing failed: the case then times itself and reports its own error), each
    the fastest of ``rounds`` rounds over the whole matrix, each round in a fresh process of its own
    (``fresh_each_round`` False: all in one). The rounds of one case lie about a minute apart, where a case
    timing its own rounds back to back took them within 15 s, all inside one of the host's slow episodes when it
    fell in one (reports/h200/README.md, session 4: three eager prefill steps 1.4-2.5x their other runs' in one
    run). The host reference (predict.py's docstring), where ``spec`` records one:
    ``calibrate.recorded_reference_job`` (in the window the spec records) timed at the start of every round and
    once after the last, {"eager_step_us": the fastest, as the cases take theirs, "samples_us": each, "window"};
    else None."""
    from roofline.measure.steptime import TIMEOUT_S, time_with_reference

    jobs = [case_job(case, layers, timing_iters) for case in matrix]
    reference = None
    if spec is not None:
        from roofline.measure.calibrate import recorded_reference_job

        reference = recorded_reference_job(load_spec(spec))
    # the child's time limit: a quarter of steptime's per-call limit for each job (a case takes 3-30 s here)
    timeout = TIMEOUT_S * (len(jobs) + 1) * rounds / 4
    cases, host = time_with_reference(
        jobs, reference, timeout_s=timeout, rounds=rounds, fresh_each_round=fresh_each_round
    )
    return [None if "error" in t else t for t in cases], host


def _rounds_note(times: dict | None) -> str:
    """'; eager rounds a, b, c µs' of one case's ``time_matrix`` result (each round's eager step, in order), for
    validate's log: a case slow in every round is not the host's episode of a minute; '' where it has none."""
    rounds = [r for phase in (times or {}).values() for r in phase.get("eager_rounds_s") or ()]
    if not rounds:
        return ""
    return "; eager rounds " + ", ".join("failed" if r is None else f"{r * 1e6:.0f}" for r in rounds) + " µs"


def rescore(v: "Validation", spec: "SpecLike", matrix: tuple = MATRIX) -> "Validation":
    """The measurements of ``v`` (a run, or ``load_validation`` of a written folder) scored with ``spec``:
    the same measured ops and steps, the prediction of another spec (the datasheet, a new calibration)."""
    spec = load_spec(spec)
    cases = {c[0]: c for c in matrix}
    ops, steps = [], []
    host_us = (v.device.get("host_reference") or {}).get("eager_step_us")
    if host_us is not None and (isinstance(host_us, bool) or not isinstance(host_us, (int, float)) or not host_us > 0):
        from roofline.errors import InputFileError

        raise InputFileError(
            f"device.json: host_reference.eager_step_us is {host_us!r}, not a time in µs; "
            f"write the folder again with roofline validate"
        )
    labels = v.steps["case"] if "case" in v.steps.columns else []  # an advice-only folder has no steps
    for label in dict.fromkeys(labels):
        case = cases.get(label)
        if case is None:
            continue
        s = v.steps[v.steps["case"] == label].set_index("mode")
        measured_step = {
            "eager": s.at["eager", "measured_step_s"],
            "graph": s.at["graph", "measured_step_s"],
            "kernel": s.at["eager", "measured_kernel_time_s"],
            "routed_experts": s.at["eager", "routed_experts"] if "routed_experts" in s.columns else np.nan,
        }
        o, st = score_case(
            case,
            spec,
            v.ops[v.ops["case"] == label],
            measured_step,
            layers=int(s["layers"].iloc[0]),
            host_reference_us=host_us,
        )
        ops.append(o)
        steps.append(st)
    device = dict(
        v.device, spec=spec.name, spec_path=spec.path, spec_calibrated=bool(spec.measured_kernels), rescored=True
    )
    if host_us is not None:
        device["host_reference"] = host_reference_record(v.device["host_reference"], spec)
    layers = int(v.steps["layers"].iloc[0]) if len(v.steps) and "layers" in v.steps else 2
    return Validation(
        ops=pd.concat(ops, ignore_index=True) if ops else pd.DataFrame(),
        steps=pd.concat(steps, ignore_index=True) if steps else pd.DataFrame(),
        clocks=v.clocks,
        device=device,
        notes=v.notes,
        advice=repredict_advice(v.advice, spec, matrix=matrix, layers=layers),
    )


def repredict_advice(advice: pd.DataFrame, spec: "SpecLike", matrix: tuple = MATRIX, layers: int = 2) -> pd.DataFrame:
    """``advice`` (advice_scores' rows) with the predictions of ``spec``: advise re-run on each case's base,
    its row of the same change and phase taken, the measured speedups kept. A row advise no longer
    suggests with ``spec`` keeps NaN predicted and says so."""
    from roofline.advise import advise, every_change

    if not len(advice):
        return advice
    cases = {c[0]: c for c in matrix}
    out = advice.copy()
    for c in ("suggested", "fused_speedup"):  # written from stop 9 on
        if c not in out:
            out[c] = np.nan
    out["suggested"] = out["suggested"].astype(object)
    for c in ("predicted_speedup", "predicted_base_s", "predicted_new_s", "fused_speedup"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    out["within_25pct"] = out["within_25pct"].astype(object)
    out["why"] = out["why"].astype(object)
    for (label, base), idx in out.groupby(["case", "base"], sort=False).groups.items():
        if label not in cases:
            continue
        model, w = _case_setup(cases[label], layers)
        graph, attn = (t.strip() for t in str(base).split(","))
        adv = every_change(
            advise(analyze(model, spec, workload=replace(w, cuda_graph=graph == "graph", attn_impl=attn)), top=None)
        )
        by_change = {(str(c), str(p)): r for c, p, r in zip(adv["change"], adv["phase"], adv.itertuples(index=False))}
        for i in idx:
            r = by_change.get((str(out.at[i, "change"]), str(out.at[i, "phase"])))
            if r is None:
                out.loc[i, ["predicted_speedup", "predicted_base_s", "predicted_new_s"]] = np.nan
                out.at[i, "within_25pct"] = None
                out.at[i, "why"] = f"not priced with {spec.name}'s prediction"
                continue
            out.at[i, "predicted_speedup"] = float(r.predicted_speedup)
            out.at[i, "suggested"], out.at[i, "fused_speedup"] = bool(r.suggested), float(r.fused_speedup)
            out.at[i, "predicted_base_s"], out.at[i, "predicted_new_s"] = float(r.baseline_time_s), float(r.new_time_s)
            achieved = out.at[i, "achieved_speedup"]
            if achieved == achieved:
                within = bool(abs(float(r.predicted_speedup) / achieved - 1.0) <= ADVICE_TOLERANCE)
                out.at[i, "within_25pct"] = within
                # the per-op figures are not stored: a miss is explained by its steps (and how the reference runs it)
                out.at[i, "why"] = "" if within else _miss_reason(out.loc[i].to_dict(), None, spec, None, {}, {}, {})
    return out


def load_validation(folder: str | Path) -> "Validation":
    """A Validation read back from a folder ``write_validation`` wrote."""
    from roofline.errors import InputFileError

    folder = Path(folder)
    for name in ("ops.csv", "steps.csv", "device.json"):
        if not (folder / name).is_file():
            raise InputFileError(f"{folder}: no {name}; pass a folder written by roofline validate")

    def read(name, needed=()):  # an advice-only run writes empty ops, steps and clocks
        path = folder / name
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            return pd.DataFrame()
        except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
            raise InputFileError(f"{path}: not a CSV roofline validate wrote ({str(exc).splitlines()[0]})") from None
        if len(frame):
            missing = [c for c in needed if c not in frame.columns]
            if missing:
                raise InputFileError(
                    f"{path}: no column {', '.join(missing)}; pass a folder written by roofline validate"
                )
            for c in needed:
                if c in LOADED_NUMBERS:
                    values = pd.to_numeric(frame[c], errors="coerce")
                    bad = (values.isna() & frame[c].notna()) | (values < 0)
                    if bad.any():
                        row = int(np.flatnonzero(bad.to_numpy())[0])
                        raise InputFileError(
                            f"{path}: row {row + 2}, column {c}: '{frame[c].iloc[row]}' is not a number "
                            f"at least 0; the file is damaged: write it again with roofline validate"
                        )
                    frame[c] = values
        return frame

    clocks = read("clocks.csv")
    ops = read("ops.csv", OPS_COLUMNS_NEEDED)
    steps = read("steps.csv", STEPS_COLUMNS_NEEDED)
    if len(steps) and not len(ops):
        raise InputFileError(
            f"{folder / 'ops.csv'}: empty, but steps.csv has {len(steps)} rows; the folder is damaged: "
            f"write it again with roofline validate"
        )
    if len(steps):  # a cut ops.csv: cases of the steps without their ops would be scored on fewer ops, silently
        missing = [c for c in dict.fromkeys(steps["case"]) if c not in set(ops["case"])]
        if missing:
            raise InputFileError(
                f"{folder / 'ops.csv'}: no ops of case {', '.join(map(str, missing[:3]))}"
                f"{' and more' if len(missing) > 3 else ''}, which steps.csv has; the file is cut or damaged: "
                f"write it again with roofline validate"
            )
    try:
        device = json.loads((folder / "device.json").read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputFileError(
            f"{folder / 'device.json'}: not JSON ({exc}); pass a folder written by roofline validate"
        ) from None
    advice = pd.DataFrame(columns=ADVICE_COLUMNS)
    if (folder / "advice.csv").is_file():
        rows = pd.read_csv(folder / "advice.csv", keep_default_na=False, na_values=[""])
        if "within_25pct" in rows.columns:  # advice_scores' rows (earlier runs wrote the CUDA-graph rows only)
            within = rows["within_25pct"].map({True: True, False: False, "True": True, "False": False})
            rows["within_25pct"] = within.astype(object).where(within.notna(), None)  # None: not run
            advice = rows.reindex(columns=ADVICE_COLUMNS)
            for c in ("flags", "how", "runs_as", "why"):
                advice[c] = advice[c].astype(object).where(advice[c].notna(), "")
    return Validation(ops=ops, steps=steps, clocks=clocks, device=device, advice=advice)


# what rescore reads of a written folder, checked on load (a damaged file is one clear error, not a traceback)
OPS_COLUMNS_NEEDED = ("case", "op", "measured_time_s", "n_kernels", "measured_bound")
STEPS_COLUMNS_NEEDED = ("case", "mode", "layers", "measured_step_s", "measured_kernel_time_s")
LOADED_NUMBERS = ("measured_time_s", "n_kernels", "measured_step_s", "measured_kernel_time_s", "layers")


def validate(
    spec: "SpecLike | None" = None,
    matrix: tuple = MATRIX,
    layers: int = 2,
    device: str = "cuda",
    log: Callable[[str], None] | None = None,
    advice: bool = True,
    advice_cases: tuple = ADVICE_CASES,
    timed: list | None = None,
    host_reference: dict | None = None,
    **kw: object,
) -> Validation:
    """Run ``matrix`` (see MATRIX) on the GPU with ``spec`` (name, path or HardwareSpec; default the
    shipped spec of the detected GPU, calibrated or not) and return a Validation. ``log``: a callable
    taking one line per case. A case that fails (out of memory, a model the reference cannot run) is
    recorded in ``notes`` and skipped. ``advice``: also score the advisor (``score_advice``) on the
    ``advice_cases`` whose case is in ``matrix`` (QUICK_MATRIX: two of them, one compiled; MATRIX:
    ADVICE_CASES, about 2-3 minutes on an H200). ``timed``: the cases' step times (``time_matrix`` of a larger
    matrix, one entry per case here), else the matrix is timed first; ``host_reference``: the host reference
    timed with them (``time_matrix``'s second value). Raises DeviceError without a CUDA GPU (on ``device='cuda'``)."""
    import torch

    from roofline.errors import DeviceError, RooflineError
    from roofline.measure.nvml import NvmlSampler, gpu_info, spec_name_for_gpu

    cuda = torch.device(device).type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise DeviceError(
            "no CUDA GPU found (torch.cuda.is_available() is False); roofline validate needs an "
            "NVIDIA GPU with a CUDA build of PyTorch"
        )
    if spec is None:
        spec = spec_name_for_gpu(torch.cuda.get_device_name(0))
    spec = load_spec(spec)
    ops, steps, notes = [], [], []
    sampler = NvmlSampler(0) if cuda else None
    if sampler:
        sampler.start()
    try:
        timed_here = timed is None and cuda
        if timed_here:
            t0 = time.perf_counter()
            try:
                timed, host_reference = time_matrix(
                    matrix, layers=layers, timing_iters=int(kw.get("timing_iters", STEP_WINDOW)), spec=spec
                )
            except RooflineError as exc:  # each case times itself instead
                notes.append(
                    f"timing the matrix in fresh processes failed ({str(exc).splitlines()[0]}); each case timed alone"
                )
            if log:
                log(f"step times of {len(matrix)} cases, {TIMING_ROUNDS} rounds: {time.perf_counter() - t0:.1f} s")
        if host_reference is not None:
            host_reference = host_reference_record(host_reference, spec)
            if log and timed_here:  # a caller that timed the matrix logs its reference once, itself
                log(describe_host_reference(host_reference))
        host_us = (host_reference or {}).get("eager_step_us")
        timed = timed or [None] * len(matrix)
        for case, times in zip(matrix, timed):
            t0 = time.perf_counter()
            try:
                o, s = run_case(
                    case, spec, layers=layers, device=device, step_times=times, host_reference_us=host_us, **kw
                )
            except (RooflineError, torch.cuda.OutOfMemoryError) as exc:
                notes.append(f"{case[0]}: skipped: {str(exc).splitlines()[0]}")
                if log:
                    log(notes[-1])
                continue
            finally:
                if cuda:
                    torch.cuda.empty_cache()
            ops.append(o)
            steps.append(s)
            if log:
                e = s.set_index("mode")["error"]
                log(
                    f"{case[0]}: {time.perf_counter() - t0:.1f} s; step error eager {e.get('eager', np.nan):+.1%}, "
                    f"graph {e.get('graph', np.nan):+.1%}; key ops median |error| "
                    f"{o.loc[o['op'].isin(KEY_OPS), 'error'].abs().median():.1%}{_rounds_note(times)}"
                )
        scored = pd.DataFrame(columns=ADVICE_COLUMNS)
        if advice:
            measure = reference_measurer(spec, device=device, **kw)
            scored, advice_notes = score_advice(
                spec, advice_cases, matrix=matrix, layers=layers, measure=measure, log=log, device=device
            )
            notes.extend(advice_notes)
    finally:
        if sampler:
            sampler.stop()
    info = {
        "gpu": torch.cuda.get_device_name(0) if cuda else "cpu",
        "spec": spec.name,
        "spec_path": spec.path,
        "spec_calibrated": bool(spec.measured_kernels),
        "torch": str(torch.__version__),
        "cuda": str(torch.version.cuda) if cuda else None,
        "layers": layers,
    }
    if host_reference is not None:
        info["host_reference"] = host_reference
    if cuda:
        info.update({k: v for k, v in gpu_info(0).items() if k != "name"})
        info["clocks"] = sampler.summary()
        notes.extend(sampler.notes)
    clocks = sampler.samples if sampler else pd.DataFrame()
    return Validation(
        ops=pd.concat(ops, ignore_index=True) if ops else pd.DataFrame(),
        steps=pd.concat(steps, ignore_index=True) if steps else pd.DataFrame(),
        clocks=clocks,
        device=info,
        notes=tuple(notes),
        advice=scored,
    )


def error_summary(ops: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """The targets, measured: one row per check with n, median |error|, worst |error|, target and pass.

    Checks: the projections and attention (per op, median and worst), then the steps per phase and
    mode (worst), the eager steps host-normalised where a host reference was timed (score_case), and for
    reference the same with the pure roofline time."""
    rows = []
    key = ops[ops["op"].isin(KEY_OPS)] if len(ops) else ops

    def add(check, errors, target, stat):
        e = np.abs(np.asarray(errors, dtype=float))
        e = e[np.isfinite(e)]
        med = float(np.median(e)) if len(e) else np.nan
        worst = float(e.max()) if len(e) else np.nan
        value = med if stat == "median" else worst
        rows.append(
            {
                "check": check,
                "n": len(e),
                "median_abs_error": med,
                "worst_abs_error": worst,
                "target": target,
                "on": stat,
                "passed": bool(value <= target) if len(e) else False,
            }
        )

    if len(key):
        add("projections + attention, predicted (median)", key["error"], TARGETS["key_ops_median"], "median")
        add("projections + attention, predicted (worst)", key["error"], TARGETS["key_ops_worst"], "worst")
        add(
            "projections + attention, pure roofline (median)",
            key["roofline_error"],
            TARGETS["key_ops_median"],
            "median",
        )
    for phase in ("decode", "prefill"):
        for mode in ("eager", "graph"):
            sel = steps[(steps["phase"] == phase) & (steps["mode"] == mode)] if len(steps) else steps
            if len(sel):
                add(f"{phase} step, {mode}", sel["error"], TARGETS[f"{phase}_step"], "worst")
                if mode == "eager" and "error_host" in sel and sel["error_host"].notna().any():
                    add(f"{phase} step, eager, host-normalised", sel["error_host"], TARGETS[f"{phase}_step"], "worst")
                add(f"{phase} step, {mode}, pure roofline", sel["roofline_error"], TARGETS[f"{phase}_step"], "worst")
    return pd.DataFrame(rows)


def graph_advice(steps: pd.DataFrame) -> pd.DataFrame:
    """The advisor's "CUDA graphs" suggestion scored on every case that ran both modes: predicted speedup
    (predicted eager step / predicted graph step, the summary's steps) beside the achieved one (measured
    eager / measured graph), and whether the prediction is within ADVICE_TOLERANCE of it."""
    rows = []
    for case, g in steps.groupby("case", sort=False):
        s = g.set_index("mode")
        if not {"eager", "graph"} <= set(s.index):
            continue
        achieved = s.at["eager", "measured_step_s"] / s.at["graph", "measured_step_s"]
        if not np.isfinite(achieved):
            continue
        predicted = s.at["eager", "predicted_step_s"] / s.at["graph", "predicted_step_s"]
        rows.append(
            {
                "case": case,
                "change": "CUDA graphs",
                "predicted_speedup": predicted,
                "achieved_speedup": achieved,
                "ratio": predicted / achieved,
                "within": abs(predicted / achieved - 1) <= ADVICE_TOLERANCE,
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# the advisor, scored (module docstring, 4-6)


def suggestion_kind(overrides: dict) -> str:
    """The kind of an advise row from its overrides: 'CUDA graphs', 'larger batch', 'FlashAttention',
    'W8A8 fp8', 'weights int8', 'KV cache fp8', 'tensor parallel', or 'fusion' (no overrides)."""
    o = overrides or {}
    if not o:
        return "fusion"
    if "cuda_graph" in o:
        return "CUDA graphs"
    if "batch_size" in o:
        return "larger batch"
    if "attn_impl" in o:
        return "FlashAttention" if o["attn_impl"] == "flash" else f"{o['attn_impl']} attention"
    if "tp" in o:
        return "tensor parallel"
    if "act_dtype" in o and o.get("weight_dtype") == o["act_dtype"]:
        return f"W8A8 {o['act_dtype']}"
    if "weight_dtype" in o:
        return f"weights {o['weight_dtype']}"
    if "kv_dtype" in o:
        return f"KV cache {o['kv_dtype']}"
    return ", ".join(f"{k} {v}" for k, v in o.items())


def _base_text(w) -> str:
    return f"{'graph' if w.cuda_graph else 'eager'}, {w.attn_impl}"


def advice_scores(
    model: "ModelConfig",
    workload: "Workload",
    spec: "SpecLike",
    *,
    measure: Callable,
    compile_step: Callable | None = None,
    label: str = "",
    changes: dict | None = None,
    baseline: dict | None = None,
) -> pd.DataFrame:
    """The advisor's suggestions for ``model`` (the reference model: its few layers) at the single
    point of ``workload``, measured: one row per suggestion (ADVICE_COLUMNS), predicted beside achieved.

    ``measure(model, workload)`` -> {phase: {'eager_s', 'graph_s' (NaN: no replay), 'ops': {op: GPU
    seconds per step}}} measures one configuration (``reference_measurer``: profile_model on the GPU);
    ``compile_step(model, workload, phase)`` -> seconds of the eager step under torch.compile (or a dict
    {'step_s', 'kernels': GPU kernels per step}), or None not to measure fusion. ``changes``: score only the rows whose ``change`` starts with one of these.
    ``baseline``: ``measure``'s result for ``workload`` when already measured. A change the reference
    cannot run, or whose run fails (RooflineError: out of memory, a dtype; a RuntimeError of a kernel
    torch refuses on this GPU), is a row with NaN achieved
    and the reason in ``how``. Raises RooflineError for a workload advise refuses (a sweep)."""
    from roofline.advise import advise, every_change
    from roofline.errors import RooflineError

    spec = load_spec(spec)
    a = analyze(model, spec, workload=workload)
    adv = every_change(advise(a, top=None))  # those it dropped as not helping are predictions too
    if changes:
        adv = adv[adv["change"].astype(str).str.startswith(tuple(changes))]
    mode = "graph_s" if workload.cuda_graph else "eager_s"
    rows = []
    base_error = None
    if len(adv) and baseline is None:
        try:
            baseline = measure(model, workload)
        except (RooflineError, RuntimeError) as exc:  # RuntimeError: a kernel torch refuses on this GPU
            base_error = f"not run: the base step failed: {_first_line(exc)}"
    measured = {}  # (overrides, phase) -> measure's result
    for r in adv.itertuples(index=False):
        overrides = dict(r.overrides or {})
        kind = suggestion_kind(overrides)
        row = {
            "case": label,
            "base": _base_text(workload),
            "kind": kind,
            "change": r.change,
            "phase": r.phase,
            "flags": r.flags,
            "overrides": json.dumps(overrides, sort_keys=True),
            "suggested": bool(r.suggested),
            "predicted_speedup": float(r.predicted_speedup),
            "achieved_speedup": np.nan,
            "within_25pct": None,
            "fused_speedup": float(r.fused_speedup),
            "metric": r.metric,
            "predicted_base_s": float(r.baseline_time_s),
            "predicted_new_s": float(r.new_time_s),
            "measured_base_s": np.nan,
            "measured_new_s": np.nan,
            "how": "",
            "runs_as": "",
            "why": "",
        }
        rows.append(row)
        base_phase = (baseline or {}).get(r.phase, {})
        changed = changed_phase = None
        if base_error:
            row["how"] = base_error
            continue
        if "tp" in overrides:
            row["how"] = "not run: the reference model runs on one GPU here (roofline profile --tp measures tp)"
            continue
        if kind == "fusion":
            if workload.cuda_graph:
                row["how"] = "not run: the compiled step is measured eager only"
                continue
            if compile_step is None:
                row["how"] = "not run: torch.compile is measured on a few cases only (20-40 s of compile per shape)"
                continue
            row["runs_as"] = (
                "torch.compile (default mode) fuses every chain Inductor can, not only the pairs advise counts "
                "(residual add + norm, rope + cache write)"
            )
            base_s, how = base_phase.get("eager_s", np.nan), "eager step vs the same step under torch.compile"
            try:
                got = compile_step(model, workload, r.phase)
            except RooflineError as exc:
                row["how"] = f"not run: {_first_line(exc)}"
                continue
            changed_phase = got if isinstance(got, dict) else {"step_s": got}
            new_s = float(changed_phase["step_s"])
        elif kind == "CUDA graphs":
            base_s, new_s = base_phase.get("eager_s", np.nan), base_phase.get("graph_s", np.nan)
            how = "eager step vs its CUDA-graph replay"
            if not np.isfinite(new_s):
                row["how"] = "not run: no CUDA-graph replay of this step (a CPU run, or the MoE reference's host syncs)"
                continue
        else:
            changed_w = replace(_with_overrides(workload, overrides), phase=r.phase)  # only the row's phase
            try:
                from roofline.measure.reference import reference_formats

                row["runs_as"] = "; ".join(reference_formats(changed_w).differs)
                key = (json.dumps(overrides, sort_keys=True), r.phase)
                if key not in measured:
                    measured[key] = measure(model, changed_w)
                changed = measured[key]
            except (RooflineError, RuntimeError) as exc:  # RuntimeError: e.g. torch._scaled_mm on a GPU without fp8
                row["how"] = f"not run: {_first_line(exc)}"
                continue
            changed_phase = changed.get(r.phase, {})
            base_s, new_s = base_phase.get(mode, np.nan), changed_phase.get(mode, np.nan)
            what = "CUDA-graph replays" if workload.cuda_graph else "eager steps"
            how = f"{what} with and without the change"
        row["measured_base_s"], row["measured_new_s"] = float(base_s), float(new_s)
        achieved = base_s / new_s
        if kind == "larger batch":
            gain = overrides["batch_size"] / workload.batch_size[0]
            achieved *= gain
            how = f"{how}: batch {workload.batch_size[0]} to {overrides['batch_size']}, tokens/s"
        row["how"] = how
        if not np.isfinite(achieved):
            row["how"] = f"not run: {how} gave no time"
            continue
        row["achieved_speedup"] = float(achieved)
        row["within_25pct"] = bool(abs(row["predicted_speedup"] / achieved - 1.0) <= ADVICE_TOLERANCE)
        if not row["within_25pct"]:
            row["why"] = _miss_reason(row, a, spec, workload, overrides, base_phase, changed_phase)
    return pd.DataFrame(rows, columns=ADVICE_COLUMNS)


def _with_overrides(w, overrides: dict):
    fields = {k: ((v,) if k == "batch_size" else v) for k, v in overrides.items()}
    return replace(w, **fields)


def _first_line(exc) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _miss_reason(row, a, spec, workload, overrides, base_phase, changed_phase) -> str:
    """Why a prediction missed: the step it comes from (baseline and changed, predicted against measured),
    the op whose measured change per step differs most from its predicted change, and how the reference
    runs the change where that differs from the prediction."""
    from roofline.render import si

    pb, pn, mb, mn = (row[k] for k in ("predicted_base_s", "predicted_new_s", "measured_base_s", "measured_new_s"))
    parts = [
        f"baseline step predicted {si(pb, 's')} against {si(mb, 's')} measured ({pb / mb - 1:+.0%}), changed step "
        f"{si(pn, 's')} against {si(mn, 's')} ({pn / mn - 1:+.0%})"
    ]
    if row["kind"] == "CUDA graphs":
        kernels = sum((base_phase.get("ops") or {}).values())
        parts.append(
            f"host cost per step (eager - graph): predicted {si(pb - pn, 's')}, measured {si(mb - mn, 's')}"
            + (f"; kernels take {si(kernels, 's')}" if kernels else "")
        )
    elif row["kind"] == "fusion":
        from roofline.advise import fuse_elementwise
        from roofline.predict import model_kernels

        ops = a.ops[a.ops["phase"] == row["phase"]]
        fused = fuse_elementwise(ops, spec, workload.cuda_graph, model_kernels(a.model, a.workload))
        text = f"advise fuses {int(ops['count'].sum())} kernels per step into {int(fused['count'].sum())}"
        eager_k, compiled_k = base_phase.get("kernels", np.nan), (changed_phase or {}).get("kernels", np.nan)
        if eager_k == eager_k and compiled_k == compiled_k:
            text += f"; measured: {eager_k:.0f} kernels eager, {compiled_k:.0f} under torch.compile"
        parts.append(text)
    elif base_phase.get("ops") and (changed_phase or {}).get("ops"):
        phase = row["phase"]
        new = analyze(a.model, spec, workload=_with_overrides(workload, overrides))
        pred = {}
        for sign, frame in ((-1.0, a.ops), (1.0, new.ops)):
            f = frame[frame["phase"] == phase]
            for op, t in zip(f["op"].astype(str), f["count"] * f["predicted_time_s"]):
                pred[op] = pred.get(op, 0.0) + sign * float(t)
        meas = {}
        for sign, ops in ((-1.0, base_phase["ops"]), (1.0, changed_phase["ops"])):
            for op, t in ops.items():
                meas[op] = meas.get(op, 0.0) + sign * float(t)
        gap = {op: meas.get(op, 0.0) - pred.get(op, 0.0) for op in set(pred) | set(meas)}
        if gap:
            op = max(gap, key=lambda k: abs(gap[k]))
            parts.append(
                f"{op}: predicted {_signed_si(pred.get(op, 0.0))} per step, measured {_signed_si(meas.get(op, 0.0))}"
            )
    if row["runs_as"]:
        parts.append(f"the reference differs: {row['runs_as']}")
    return "; ".join(parts)


def _signed_si(v: float) -> str:
    from roofline.render import si

    return ("+" if v >= 0 else "-") + si(abs(v), "s")


def advice_summary(advice: pd.DataFrame) -> pd.DataFrame:
    """Per suggestion kind: n measured, n within 25%, n not run."""
    if not len(advice):
        return pd.DataFrame(columns=["kind", "measured", "within_25pct", "not_run"])
    ran = advice["achieved_speedup"].notna()
    within = advice["within_25pct"].fillna(False).astype(bool)
    out = (
        pd.DataFrame({"kind": advice["kind"], "measured": ran, "within_25pct": within & ran, "not_run": ~ran})
        .groupby("kind", sort=False)
        .sum()
        .reset_index()
    )
    return out


def reference_measurer(
    spec: "SpecLike", device: str = "cuda", warmup: int = 3, iters: int = 5, timing_iters: int = STEP_WINDOW
) -> Callable:
    """``advice_scores``' ``measure`` on this machine's GPU: ``profile_model`` of the configuration (its
    wall-clock steps, eager and CUDA-graph replay, and per-op kernel times)."""

    def measure(model, workload) -> dict:
        return run_times(_profile_reference(model, workload, spec, device, warmup, iters, timing_iters))

    return measure


def _profile_reference(
    model, workload, spec, device, warmup, iters, timing_iters, step_times: dict | None = None
) -> "MeasuredRun":
    """``profile_model`` of every layer of ``model`` (the case's few) at ``workload``, its traces in a temporary
    folder, each step time the fastest of TIMING_ROUNDS fresh-process timings (or ``step_times``, measured
    before): what validate and the advisor measure."""
    from roofline.measure.profile import profile_model

    with tempfile.TemporaryDirectory(prefix="roofline-validate-") as tmp:
        return profile_model(
            model,
            workload,
            spec=spec,
            layers=model.num_hidden_layers,
            warmup=warmup,
            iters=iters,
            timing_iters=timing_iters,
            trace_dir=tmp,
            device=device,
            timing_rounds=TIMING_ROUNDS,
            step_times=step_times,
        )


def run_times(run: "MeasuredRun") -> dict:
    """A MeasuredRun as ``advice_scores``' measurements: {phase: {'eager_s', 'graph_s', 'ops': {op: s per step},
    'kernels': GPU kernels per step (NaN on the CPU)}}."""
    out = {}
    for st in run.steps.itertuples(index=False):
        ops = run.ops[run.ops["phase"] == st.phase]
        graph = st.graph_step_ref_s
        kernels = getattr(st, "kernels_per_step", None)  # the trace join's count (GPU runs)
        out[str(st.phase)] = {
            "eager_s": float(st.eager_step_ref_s),
            "graph_s": np.nan if graph is None or graph != graph else float(graph),
            "ops": {str(o): float(t) * float(c) for o, t, c in zip(ops["op"], ops["gpu_time_s"], ops["calls"])},
            "kernels": np.nan if kernels is None else float(kernels),
        }
    return out


def compiled_step_timer(device: str = "cuda", iters: int = 5, backend: str = "inductor") -> Callable:
    """``advice_scores``' ``compile_step``: {'step_s': seconds per call of the reference step under
    ``torch.compile`` (default mode: Inductor's fused kernels, launched eagerly), timed as profile_model
    times its eager step: in a fresh process (roofline.measure.steptime; the first call compiles), synced
    after every step, the fastest window; 'kernels': GPU kernels per call (torch.profiler over 3 calls,
    in that process after the timing)}. ``backend``:
    torch.compile's backend (tests on the CPU pass 'eager': Dynamo's tracing without Inductor)."""

    def timer(model, workload, phase: str) -> dict:
        from roofline.errors import DeviceError
        from roofline.measure.steptime import time_steps

        job = {"config": model, "workload": replace(workload, phase=phase), "layers": model.num_hidden_layers}
        job.update(device=device, timing_iters=iters, compile=backend, count_kernels=True)
        result = time_steps([job])[0]
        if "error" in result:
            raise DeviceError(f"torch.compile of the {phase} step: {result['error']}")
        return {"step_s": float(result[phase]["eager_s"]), "kernels": result[phase].get("kernels", np.nan)}

    return timer


def score_advice(
    spec: "SpecLike",
    cases: tuple = ADVICE_CASES,
    matrix: tuple = MATRIX,
    layers: int = 2,
    measure: Callable | None = None,
    compile_step: Callable | None = None,
    log: Callable[[str], None] | None = None,
    device: str = "cuda",
) -> tuple:
    """(advice_scores' rows of every case of ``cases`` whose label is in ``matrix``, notes). ``measure``
    and ``compile_step`` default to the GPU's (``reference_measurer``, ``compiled_step_timer``); a case
    marked for compiling gets ``compile_step``. A case that fails is a note."""
    from roofline.errors import RooflineError

    spec = load_spec(spec)
    measure = measure or reference_measurer(spec, device=device)
    by_label = {c[0]: c for c in matrix}
    frames, notes = [], []
    for label, base, compiled, changes in cases:
        if label not in by_label:
            continue
        if compiled and compile_step is None:
            compile_step = compiled_step_timer(device=device)
        t0 = time.perf_counter()
        model, w = _case_setup(by_label[label], layers)
        w = replace(w, **base)
        try:
            f = advice_scores(
                model,
                w,
                spec,
                measure=measure,
                compile_step=compile_step if compiled else None,
                label=label,
                changes=changes,
            )
        except RooflineError as exc:
            notes.append(f"advice {label} ({_base_text(w)}): skipped: {_first_line(exc)}")
            if log:
                log(notes[-1])
            continue
        frames.append(f)
        if log:
            ran = f["achieved_speedup"].notna()
            log(
                f"advice {label} ({_base_text(w)}): {time.perf_counter() - t0:.1f} s; "
                + ", ".join(
                    f"{c} {p:.2f}x vs {x:.2f}x" if x == x else f"{c} not run"
                    for c, p, x in zip(f["change"], f["predicted_speedup"], f["achieved_speedup"])
                )
                + f"; {int(f.loc[ran, 'within_25pct'].astype(bool).sum())} of {int(ran.sum())} within 25%"
            )
    advice = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ADVICE_COLUMNS)
    return advice, notes


def write_validation(v: Validation, out_dir: str | Path, command: str = "") -> Path:
    """Write ``out_dir``: ops.csv, steps.csv, checks.csv, summary.md, errors.png/.svg (the error
    distribution), device.json, clocks.csv (advice.csv, graph_advice.csv where there are rows). Built in a
    sibling folder, then moved in file by file (each replace atomic): the folder's other files and folders (a
    log, earlier runs kept beside) stay, and a file of ours this run does not write is removed, so nothing
    stale is read as this run's. Returns the path."""
    import shutil

    from roofline import plot

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    checks = error_summary(v.ops, v.steps)
    v.ops.to_csv(tmp / "ops.csv", index=False)
    v.steps.to_csv(tmp / "steps.csv", index=False)
    checks.to_csv(tmp / "checks.csv", index=False)
    if len(v.advice):
        v.advice.to_csv(tmp / "advice.csv", index=False)
    if len(v.steps):
        graph_advice(v.steps).to_csv(tmp / "graph_advice.csv", index=False)
    v.clocks.to_csv(tmp / "clocks.csv", index=False)
    (tmp / "device.json").write_text(json.dumps(v.device, indent=2, default=str) + "\n")
    if len(v.ops):
        figure = plot.figure_errors(v.ops, v.steps)
        plot.save(figure, tmp / "errors.png")
    (tmp / "summary.md").write_text(render_summary(v, checks, command))
    out.mkdir(exist_ok=True)
    for name in VALIDATION_FILES:
        if (tmp / name).exists():
            os.replace(tmp / name, out / name)
        elif (out / name).is_file():
            (out / name).unlink()
    shutil.rmtree(tmp)
    return out


# the files write_validation owns in its folder (anything else there is left alone)
VALIDATION_FILES = (
    "ops.csv",
    "steps.csv",
    "checks.csv",
    "advice.csv",
    "graph_advice.csv",
    "clocks.csv",
    "device.json",
    "errors.png",
    "errors.svg",
    "summary.md",
)


def render_summary(v: Validation, checks: pd.DataFrame, command: str = "") -> str:
    """summary.md: device, the checks against the targets, the steps, the key ops."""
    from roofline import render

    d = v.device
    head = (
        f"spec: {d.get('spec_path') or d.get('spec')} (kernel model: {'yes' if d.get('spec_calibrated') else 'no'}); "
        f"torch {d.get('torch')}, CUDA {d.get('cuda')}, driver {d.get('driver', '?')}; reference model of "
        f"{d.get('layers')} layers + embedding + head per case"
    )
    deep = v.steps.iloc[:0]
    if "layers" in v.steps and d.get("layers") is not None:
        deep = v.steps[v.steps["layers"] != d["layers"]]
    if len(deep):
        head += " (" + ", ".join(f"{c}: {n}" for c, n in deep.drop_duplicates("case")[["case", "layers"]].values) + ")"
    lines = [f"# roofline validate on {d.get('gpu')}", "", head, ""]
    if d.get("host_reference"):
        lines += [
            describe_host_reference(d["host_reference"])
            + " (samples: "
            + ", ".join(f"{x:.1f}" for x in d["host_reference"].get("samples_us", []))
            + " µs)",
            "",
        ]
    if command:
        lines += ["```", command, "```", ""]
    if len(checks):
        lines += ["## Targets", "", render.text_table(checks, CHECK_TABLE, markdown=True), ""]
    if len(v.steps):
        lines += [
            "## Steps (predicted against the measured wall-clock step of the same model)",
            "",
            render.text_table(v.steps, step_table(v.steps), markdown=True),
            "",
        ]
    if len(v.advice):
        lines += render_advice_scores(v.advice, heading="##")
    advice = graph_advice(v.steps) if len(v.steps) else pd.DataFrame()
    if len(advice):
        lines += [
            "## CUDA graphs over the whole matrix: the eager / graph step ratio, predicted against measured",
            "",
            render.text_table(advice, GRAPH_ADVICE_TABLE, markdown=True),
            "",
            f"{int(advice['within'].sum())} of {len(advice)} within 25%.",
            "",
        ]
    if len(v.ops):
        key = v.ops[v.ops["op"].isin(KEY_OPS)]
        lines += [
            "## Projections and attention, per occurrence (kernel time)",
            "",
            render.text_table(key, OP_TABLE, markdown=True),
            "",
        ]
        by_op = (
            v.ops.assign(abs_error=v.ops["error"].abs())
            .groupby("op", sort=False)["abs_error"]
            .agg(["median", "max"])
            .reset_index()
        )
        lines += [
            "## Every op: abs error over the cases",
            "",
            render.text_table(
                by_op,
                {"op": ("op", str), "median": ("median", render.percent), "max": ("worst", render.percent)},
                markdown=True,
            ),
            "",
        ]
    if v.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in v.notes] + [""]
    return "\n".join(lines)


def advice_count(advice: pd.DataFrame) -> str:
    """'N of M within 25%' over the measured rows (and how many were not run)."""
    ran = advice["achieved_speedup"].notna()
    within = int(advice.loc[ran, "within_25pct"].astype(bool).sum())
    text = f"{within} of {int(ran.sum())} within 25%"
    if (~ran).any():
        text += f"; {int((~ran).sum())} not run (the reason is in the row)"
    return text


def render_advice_scores(advice: pd.DataFrame, heading: str = "##") -> list:
    """Markdown lines: advice_scores' table, the count, the count per kind and the misses' reasons."""
    from roofline import render

    lines = [
        f"{heading} The advisor's suggestions measured on the reference model: predicted against achieved "
        f"(target: within 25%)",
        "",
        "Both speedups are for the model the GPU ran (its few decoder layers plus embedding and lm_head) at the "
        "case's point; a larger batch is a tokens/s gain. 'base' is the execution mode and attention of the "
        "step the change is applied to. 'advised' no: the advisor priced the change under 1.02x and listed it "
        "as won't help, a prediction scored like the others. 'with a fused kernel': the advisor's second figure "
        "where the calibrated spec prices an 8-bit path as torch runs it (unfused; advise.py assumption 7).",
        "",
        render.text_table(advice, ADVICE_TABLE, markdown=True),
        "",
        f"{advice_count(advice)}.",
        "",
        render.text_table(advice_summary(advice), ADVICE_KIND_TABLE, markdown=True),
        "",
    ]
    ran = advice["achieved_speedup"].notna()
    misses = advice[ran & ~advice["within_25pct"].fillna(False).astype(bool)]
    if len(misses):
        lines += ["Why the misses miss:", ""]
        lines += [
            render.md_escape(f"- {r.case} ({r.base}), {r.change}: {r.why}") for r in misses.itertuples(index=False)
        ]
        lines.append("")
    differs = advice.loc[ran & (advice["runs_as"].fillna("") != ""), ["kind", "runs_as"]].drop_duplicates("kind")
    if len(differs):
        lines += ["How the reference runs a change where it differs from the prediction:", ""]
        lines += [render.md_escape(f"- {r.kind}: {r.runs_as}") for r in differs.itertuples(index=False)]
        lines.append("")
    return lines


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _pct(v):
    return "-" if _missing(v) else f"{100 * v:+.1f}%"


def _si_s(v):
    from roofline.render import si

    return "-" if _missing(v) else si(v, "s")


CHECK_TABLE = {
    "check": ("check", str),
    "n": ("n", lambda v: f"{v:d}"),
    "median_abs_error": ("median abs error", lambda v: "-" if _missing(v) else f"{100 * v:.1f}%"),
    "worst_abs_error": ("worst abs error", lambda v: "-" if _missing(v) else f"{100 * v:.1f}%"),
    "target": ("target", lambda v: f"{100 * v:.0f}%"),
    "on": ("on", str),
    "passed": ("passed", lambda v: "yes" if v else "NO"),
}
STEP_TABLE = {
    "case": ("case", str),
    "mode": ("mode", str),
    "predicted_step_s": ("predicted", _si_s),
    "measured_step_s": ("measured", _si_s),
    "error": ("error", _pct),
    "predicted_step_host_s": ("predicted, host-normalised", _si_s),
    "error_host": ("error, host-normalised", _pct),
    "roofline_step_s": ("roofline", _si_s),
    "roofline_error": ("roofline error", _pct),
}
HOST_COLUMNS = ("predicted_step_host_s", "error_host")


def step_table(steps: pd.DataFrame) -> dict:
    """STEP_TABLE for ``steps``: the host-normalised columns only where a host reference was timed."""
    host = all(c in steps for c in HOST_COLUMNS) and steps["error_host"].notna().any()
    return {k: v for k, v in STEP_TABLE.items() if host or k not in HOST_COLUMNS}


GRAPH_ADVICE_TABLE = {
    "case": ("case", str),
    "change": ("change", str),
    "predicted_speedup": ("predicted", lambda v: f"{v:.2f}x"),
    "achieved_speedup": ("achieved", lambda v: f"{v:.2f}x"),
    "within": ("within 25%", lambda v: "yes" if v else "NO"),
}


def _speedup(v) -> str:
    return "-" if _missing(v) else f"{v:.2f}x"


def _within(v) -> str:
    return "-" if v is None or _missing(v) else ("yes" if v else "NO")


ADVICE_TABLE = {
    "case": ("case", str),
    "base": ("base", str),
    "change": ("change", str),
    "phase": ("phase", str),
    "predicted_speedup": ("predicted", _speedup),
    "achieved_speedup": ("achieved", _speedup),
    "within_25pct": ("within 25%", _within),
    "suggested": ("advised", lambda v: "-" if _missing(v) else ("yes" if v else "no: won't help")),
    "fused_speedup": ("with a fused kernel", _speedup),
    "how": ("measured as", str),
}
ADVICE_KIND_TABLE = {
    "kind": ("suggestion", str),
    "measured": ("measured", lambda v: f"{int(v)}"),
    "within_25pct": ("within 25%", lambda v: f"{int(v)}"),
    "not_run": ("not run", lambda v: f"{int(v)}"),
}
OP_TABLE = {
    "case": ("case", str),
    "op": ("op", str),
    "bound": ("bound", str),
    "time_s": ("roofline", _si_s),
    "predicted_time_s": ("predicted", _si_s),
    "measured_time_s": ("measured", _si_s),
    "error": ("error", _pct),
    "roofline_error": ("roofline error", _pct),
}
