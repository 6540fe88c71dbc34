"""``compare(analysis, run)``: the one place a measurement meets a prediction.

A ``MeasuredRun`` (roofline/measure/run.py) holds what was measured; an ``Analysis`` what the
roofline predicts for the same model and point. ``compare`` joins them and derives everything that
needs both:

1. Join: each measured row (rank, phase, op) to the analytic row of the same phase and op. Every
   analytic row of the run's phases is kept, in model order, once per rank; a measured op with no
   analytic row is named in the notes.
2. Measured class: ``classify.classify_measured`` on one call of the op, with the analytic FLOPs and
   bytes of that call (the reference runs exactly the analytic op) and, in a distributed run, the
   rank's NCCL time.
3. Predicted vs measured, per call: predicted_time_s (predict.py's calibrated time, the same number
   ``analyze`` shows), roofline_time_s (the pure roofline time), datasheet_time_s (the roofline with the
   spec's datasheet figures), measured_over_predicted (measured / predicted_time_s), roofline_fraction
   (roofline_time_s / measured: how close to the roof the op ran).
4. Full model: the reference runs ``layers`` of the model's layers, so a per-call time times the
   analytic count (per-layer ops x num_hidden_layers) is the op's time in one full step
   (total_measured_time_s); summed, kernel_time_full_s. The step estimate scales the reference's
   wall-clock step (graph replay or eager, ``run.cuda_graph``) by kernel_time_full_s /
   kernel_time_ref_s.
5. Communication (distributed runs): bus bandwidth = analytic comm_bytes (what each GPU sends) /
   measured NCCL time; the prediction's collective time beside it (predicted_comm_s: the spec's
   measured per-size table where predict.py used one, else alpha + bytes / link) and alpha + bytes /
   link with datasheet figures (datasheet_comm_s).

Imports neither torch nor matplotlib.
"""

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from roofline.analysis import Analysis, analyze
from roofline.classify import CLASSES, classify_measured, roofline_time_s
from roofline.config import with_changes
from roofline.errors import ConfigError
from roofline.measure.run import MeasuredRun
from roofline.predict import COLLECTIVE_TABLE, with_host_reference
from roofline.specs import HardwareSpec

# measured columns renamed where they meet the analytic frame (per call of the op)
MEASURED_NAMES = {"calls": "ref_count", "gpu_time_s": "measured_time_s", "gpu_time_spread": "measured_time_spread"}
# the analysis' prediction meets the run as predicted_time_s (per call: predict.py's calibrated time, the
# one prediction analyze shows), its pure roofline time as roofline_time_s
PREDICTED_NAMES = {
    "time_s": "roofline_time_s",
    "bound": "predicted_bound",
    "total_time_s": "predicted_total_time_s",
    "share": "predicted_share",
}
COMM_COLUMNS = [
    "comm_time_s",
    "exposed_comm_s",
    "message_bytes",
    "predicted_comm_s",
    "datasheet_comm_s",
    "link_bytes_per_s",
    "comm_time_min_rank_s",
    "comm_time_max_rank_s",
    "busbw_bytes_per_s",
    "busbw_min_rank_bytes_per_s",
    "comm_over_predicted",
]
COMM_TABLE_COLUMNS = [
    "phase",
    "op",
    "count",
    "message_bytes",
    "comm_bytes",
    "predicted_comm_s",
    "datasheet_comm_s",
    "comm_time_s",
    "comm_time_min_rank_s",
    "comm_time_max_rank_s",
    "exposed_comm_s",
    "busbw_bytes_per_s",
    "busbw_min_rank_bytes_per_s",
    "link_bytes_per_s",
    "comm_over_predicted",
    "n_kernels",
    "measured_bound",
]


@dataclass(frozen=True)
class Comparison:
    """A measurement beside its prediction.

    analysis: the single-point Analysis; run: the MeasuredRun
    ops:      the analytic ops frame of the run's phases (time_s, bound, total_time_s, share renamed
              predicted_*), once per rank, with the run's figures per call (ref_count, measured_time_s,
              measured_time_spread, n_kernels, kernels, span_s, time_source), the measured class
              (classify_measured's columns), datasheet_time_s, total_measured_time_s, roofline_fraction,
              measured_over_predicted; a distributed run adds a ``rank`` column first and COMM_COLUMNS
    steps:    the run's steps with the full-model figures: kernel_time_full_s, predicted_time_full_s,
              predicted_with_launch_full_s, step_full_est_s (and _from), measured_over_predicted_full,
              tokens_per_s_est, bytes_full, flops_full (distributed: the communication ones too)
    summary:  one row per phase: predicted and measured full-model time and the share of the measured
              time per measured class (measured_share_{class}), over rank 0
    notes:    the run's notes and the join's
    """

    analysis: Analysis
    run: MeasuredRun
    ops: pd.DataFrame
    steps: pd.DataFrame
    summary: pd.DataFrame
    notes: tuple = ()

    @property
    def spec(self) -> HardwareSpec:
        return self.analysis.spec

    @property
    def measured(self) -> pd.DataFrame:
        """Rank 0's ops as the measured frame advise() and the roofline chart take (``measured_for_advice``)."""
        ops = self.ops[self.ops["rank"] == 0] if "rank" in self.ops.columns else self.ops
        return measured_for_advice(ops)


def compare(analysis: Analysis, run: MeasuredRun) -> Comparison:
    """Join ``run`` to ``analysis`` (see the module docstring). Returns a Comparison.

    Raises ConfigError when the analysis is a sweep, lacks a phase the run measured, or was made for
    another batch size than the run's.
    """
    if len(analysis.summary) != 1:
        raise ConfigError(f"compare needs a single-point analysis; this one has {len(analysis.summary)} points")
    spec = analysis.spec
    phases = list(dict.fromkeys(run.ops["phase"].astype(str)))
    a = analysis.ops.rename(columns=PREDICTED_NAMES)
    a = a.drop(columns=[c for c in ("point",) if c in a.columns])
    for key in ("phase", "op", "predicted_bound"):
        a[key] = a[key].astype(str)
    missing = [ph for ph in phases if ph not in set(a["phase"])]
    if missing:
        raise ConfigError(
            f"the analysis has no {', '.join(missing)} phase, which the run measured; "
            f"analyse with --phase both (or the run's phase)"
        )
    notes = list(run.notes) + _point_notes(analysis, run)
    a = a[a["phase"].isin(phases)]

    distributed = run.source == "distributed"
    meas = run.ops.rename(columns=MEASURED_NAMES).copy()
    meas["phase"] = meas["phase"].astype(str)
    meas["op"] = meas["op"].astype(str)
    for col in ("flops", "bytes", "costed_time_s"):  # the run's own counts: kept, under another name
        if col in meas.columns:
            meas = meas.rename(columns={col: f"measured_{col}"})
    known = set(zip(a["phase"], a["op"]))
    extra = sorted({f"{ph} {op}" for ph, op in zip(meas["phase"], meas["op"]) if (ph, op) not in known})
    if extra:
        notes.append(f"measured ops with no analytic row, left out: {', '.join(extra)}")
    # a distributed run's communication joins in _with_comm; another run's (a trace) goes in as it is
    first = meas.drop(columns=[c for c in COMM_COLUMNS if c in meas.columns]) if distributed else meas
    frames = []
    for rank in run.ranks:
        f = a.merge(first[first["rank"] == rank].drop(columns="rank"), on=["phase", "op"], how="left")
        if distributed:
            f.insert(0, "rank", rank)
        frames.append(f)
    f = pd.concat(frames, ignore_index=True)

    f["datasheet_time_s"] = _datasheet_time_s(f, spec)
    # classify_measured reads one call of the op: gpu_time_s, n_kernels, span_s (host time of the
    # range, profiler on), flops, bytes, compute_dtype (and comm_time_s); it adds achieved rates,
    # fractions of the ceilings, measured_bound and evidence
    f["gpu_time_s"] = f["measured_time_s"]
    f["n_calls"] = 1
    f["bytes"] = f["bytes_read"] + f["bytes_written"]
    time_source = f.pop("time_source") if "time_source" in f.columns else None
    if distributed:
        f = _with_comm(f, meas, spec, run)
    f = classify_measured(f, spec)
    t = f["measured_time_s"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = t * f["count"].to_numpy(float)
        roofline_fraction = f["roofline_time_s"].to_numpy(float) / t  # max of the two fractions
        over = t / f["predicted_time_s"].to_numpy(float)
    derived = pd.DataFrame(
        {"total_measured_time_s": total, "roofline_fraction": roofline_fraction, "measured_over_predicted": over},
        index=f.index,
    )
    if time_source is not None:
        derived["time_source"] = time_source.to_numpy()
    if distributed:  # the order the distributed frames had: measured class, derived, then communication
        comm = f[COMM_COLUMNS]
        f = pd.concat([f.drop(columns=COMM_COLUMNS), derived, comm], axis=1)
    else:
        f = pd.concat([f, derived], axis=1)
    steps = _steps(f, run, distributed)
    return Comparison(
        analysis=analysis,
        run=run,
        ops=f,
        steps=steps,
        summary=_summary(f, steps, analysis),
        notes=tuple(dict.fromkeys(notes)),
    )


def measured_for_advice(ops: pd.DataFrame) -> pd.DataFrame:
    """The frame advise() and the roofline chart take from a comparison's ops (one rank): phase, op,
    flops and measured_time_s of all the op's calls in one full-model step."""
    frame = ops[["phase", "op", "flops", "count"]].copy()
    frame["measured_time_s"] = ops["total_measured_time_s"].to_numpy()
    frame["flops"] = ops["flops"].to_numpy() * ops["count"].to_numpy()
    return frame


def comm_table(comparison: Comparison) -> pd.DataFrame:
    """The collective rows of a distributed comparison, one per (phase, op): time and exposed time
    per call as the mean over ranks (busbw from that mean), with the cross-rank min / max and the
    prediction beside them. Columns COMM_TABLE_COLUMNS."""
    ops = comparison.ops
    if "comm_time_s" not in ops.columns:
        return pd.DataFrame(columns=COMM_TABLE_COLUMNS)
    f = ops[ops["comm_bytes"] > 0]
    if not len(f):
        return pd.DataFrame(columns=COMM_TABLE_COLUMNS)
    keep = [
        "count",
        "message_bytes",
        "comm_bytes",
        "predicted_comm_s",
        "datasheet_comm_s",
        "comm_time_min_rank_s",
        "comm_time_max_rank_s",
        "link_bytes_per_s",
    ]
    g = f.groupby(["phase", "op"], sort=False)
    out = g[keep].first()
    out["comm_time_s"] = g["comm_time_s"].mean()
    out["exposed_comm_s"] = g["exposed_comm_s"].mean()
    out["n_kernels"] = g["n_kernels"].mean()
    out["measured_bound"] = g["measured_bound"].agg(lambda b: "/".join(sorted(set(map(str, b)))))
    out = out.reset_index()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["busbw_bytes_per_s"] = out["comm_bytes"] / out["comm_time_s"]
        out["busbw_min_rank_bytes_per_s"] = out["comm_bytes"] / out["comm_time_min_rank_s"]
        out["comm_over_predicted"] = out["comm_time_s"] / out["predicted_comm_s"]
    return out[COMM_TABLE_COLUMNS]


def comm_against_prediction(comm: pd.DataFrame, analysis: Analysis) -> pd.DataFrame:
    """Per-range communication measured from rank traces (``measure.distributed.join_rank_traces``:
    range, comm_time_s, comm_time_min_rank_s, ...) with the analysis' comm_bytes (what each GPU
    sends), predicted_comm_s and the bus bandwidth, busbw_bytes_per_s and busbw_min_rank_bytes_per_s."""
    ops = analysis.ops
    a = ops[["op", "comm_bytes"]].rename(columns={"op": "range"})
    a["predicted_comm_s"] = predicted_comm_s(ops, "predicted_time_s")
    a["range"] = a["range"].astype(str)
    out = comm.merge(a, on="range", how="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        out["busbw_bytes_per_s"] = out["comm_bytes"] / out["comm_time_s"]
        out["busbw_min_rank_bytes_per_s"] = out["comm_bytes"] / out["comm_time_min_rank_s"]
    return out


def predicted_comm_s(ops: pd.DataFrame, calibrated: str) -> np.ndarray:
    """Per row, the prediction's collective time: the calibrated time (column ``calibrated``) where
    predict.py read it off the spec's measured collective table, else alpha + bytes / link (time_comm_s)."""
    table = ops["prediction_source"].astype(str).eq(COLLECTIVE_TABLE).to_numpy()
    return np.where(table, ops[calibrated].to_numpy(float), ops["time_comm_s"].to_numpy(float))


CHECK_COLUMNS = [
    "change",
    "phase",
    "predicted_speedup",
    "predicted_speedup_ref",
    "achieved_speedup",
    "baseline_s",
    "changed_s",
    "how",
]


def check_advice(comparison: Comparison, advice: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    """The advisor's suggestions, measured on the GPU (``measure.checks.measure_suggestions``), beside
    their predictions. One row per suggestion: change, phase, predicted_speedup (full model, the
    advisor's), predicted_speedup_ref and achieved_speedup (both on the reference model the GPU ran:
    ``run.layers`` decoder layers plus embedding and head, so like is compared with like),
    baseline_s, changed_s and how; NaN speedups where the change was not measured. ``measured`` is
    ``measure_suggestions``' frame for ``advice``, row for row.

    Predicted on the reference: the summary's step time (predict.py: host costs of the workload's
    execution mode included), before / after the change, with the eager host costs of the host the run
    measured where it timed the host reference (``run.device['host_reference']``: predict.with_host_reference);
    a larger batch is a tokens/s gain, so both speedups are multiplied by new batch / old batch."""
    a = comparison.analysis
    spec, _ = with_host_reference(a.spec, _host_reference_s(comparison.run))
    layers = comparison.run.layers or a.model.num_hidden_layers
    ref_model = replace(a.model, num_hidden_layers=min(layers, a.model.num_hidden_layers))
    base_pred = None
    rows = []
    if len(advice) != len(measured):
        raise ValueError("check_advice needs the measure_suggestions frame of the same advice, row for row")
    for (_, s), (_, m) in zip(advice.iterrows(), measured.iterrows()):
        row = {
            "change": s["change"],
            "phase": s["phase"],
            "predicted_speedup": s["predicted_speedup"],
            "predicted_speedup_ref": np.nan,
            "achieved_speedup": np.nan,
            "baseline_s": m["baseline_s"],
            "changed_s": m["changed_s"],
            "how": m["how"],
        }
        if m["measured"]:
            phase, overrides = m["phase"], m["overrides"]
            base_pred = base_pred or analyze(ref_model, spec, workload=a.workload)
            new_pred = analyze(ref_model, spec, workload=with_changes(a.workload, **overrides))
            # the summary's step (predict.py): eager host costs before, the graph's after a CUDA-graph change
            before = float(base_pred.summary[f"{phase}_time_s"].iloc[0])
            ratio = before / float(new_pred.summary[f"{phase}_time_s"].iloc[0])
            achieved = m["baseline_s"] / m["changed_s"]
            if "batch_size" in overrides:  # a throughput gain: tokens per second, not step time
                gain = overrides["batch_size"] / a.workload.batch_size[0]
                ratio, achieved = ratio * gain, achieved * gain
            row["predicted_speedup_ref"], row["achieved_speedup"] = ratio, achieved
        rows.append(row)
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


# ------------------------------------------------------------------------------------------------
# helpers


def _host_reference_s(run: MeasuredRun) -> float | None:
    """The host reference the run timed (profile_model, steptime.time_with_reference), seconds; None if none."""
    us = (run.device.get("host_reference") or {}).get("eager_step_us")
    return us * 1e-6 if isinstance(us, (int, float)) and not isinstance(us, bool) else None


def _point_notes(analysis: Analysis, run: MeasuredRun) -> list:
    """Raise for another batch size; note a decode context that differs (gen_tokens' mean context is
    rounded to a whole token for the reference)."""
    if run.workload is None:
        return []
    s = analysis.summary.iloc[0]
    if float(s["batch_size"]) != float(run.workload.batch_size[0]):
        raise ConfigError(
            f"the analysis is for batch {s['batch_size']:.0f} and the run for batch "
            f"{run.workload.batch_size[0]}; analyse the run's point (run.workload)"
        )
    notes = []
    ctx = run.workload.context_len
    if ctx and "decode" in run.workload.phases and float(s["context_len"]) != float(ctx[0]):
        notes.append(f"decode predicted at context {s['context_len']:g}, measured at {ctx[0]}")
    return notes


def _datasheet_time_s(frame: pd.DataFrame, spec) -> np.ndarray:
    peak = np.array([spec.peak_flops_per_s[d] for d in frame["compute_dtype"].astype(str)])
    moved = frame["bytes_read"].to_numpy(float) + frame["bytes_written"].to_numpy(float)
    return roofline_time_s(frame["flops"].to_numpy(float), moved, peak, spec.mem_bytes_per_s)[0]


def _with_comm(f: pd.DataFrame, meas: pd.DataFrame, spec, run: MeasuredRun) -> pd.DataFrame:
    """The communication columns of a distributed run's rows, measured and predicted."""
    cols = [
        c
        for c in ("comm_time_s", "exposed_comm_s", "comm_time_min_rank_s", "comm_time_max_rank_s")
        if c in meas.columns
    ]
    f = f.merge(meas[["rank", "phase", "op", *cols]], on=["rank", "phase", "op"], how="left")
    coll = f["category"].astype(str).eq("collective").to_numpy()
    for c in ("comm_time_s", "exposed_comm_s"):
        f[c] = f[c].fillna(0.0) if c in f.columns else 0.0
    comm_bytes = f["comm_bytes"].to_numpy(float)
    # all-reduce and all-gather both write the whole message once
    f["message_bytes"] = np.where(coll, f["bytes_written"].to_numpy(float), 0.0)
    f["predicted_comm_s"] = predicted_comm_s(f, "predicted_time_s")
    link = spec.gpu_link_bytes_per_s or spec.host_link_bytes_per_s
    f["datasheet_comm_s"] = roofline_time_s(0.0, 0.0, 1.0, 1.0, comm_bytes, spec.collective_latency_s, link)[3]
    f["link_bytes_per_s"] = np.where(coll, spec.ceiling_link_bytes_per_s(), np.nan)
    for c in ("comm_time_min_rank_s", "comm_time_max_rank_s"):
        f[c] = f[c].where(comm_bytes > 0) if c in f.columns else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        f["busbw_bytes_per_s"] = np.where(comm_bytes > 0, comm_bytes / f["comm_time_s"].to_numpy(float), np.nan)
        f["busbw_min_rank_bytes_per_s"] = np.where(
            comm_bytes > 0, comm_bytes / f["comm_time_min_rank_s"].to_numpy(float), np.nan
        )
        f["comm_over_predicted"] = np.where(
            comm_bytes > 0, f["comm_time_s"].to_numpy(float) / f["predicted_comm_s"].to_numpy(float), np.nan
        )
    return f


def _steps(ops: pd.DataFrame, run: MeasuredRun, distributed: bool) -> pd.DataFrame:
    """The run's steps with the full-model figures (module docstring, 4 and 5)."""
    steps = run.steps.copy()
    if not len(steps):
        return steps
    rows = []
    for rank, phase in zip(steps["rank"], steps["phase"].astype(str)):
        f = ops[ops["phase"] == phase]
        if distributed:
            f = f[f["rank"] == rank]
        st = steps[(steps["rank"] == rank) & (steps["phase"] == phase)].iloc[0]
        count = f["count"].to_numpy(float)
        kernel_full = float(np.nansum(f["total_measured_time_s"]))
        predicted_full = float((f["predicted_time_s"] * f["count"]).sum())
        with_launch = float((np.maximum(f["predicted_time_s"], f["launch_s"]) * count).sum())
        ref_kernel = st["kernel_time_ref_s"]
        scale = kernel_full / ref_kernel if ref_kernel > 0 else np.nan
        graph = st.get("graph_step_ref_s")
        use_graph = bool(run.cuda_graph and graph is not None and graph == graph and graph)
        headline = graph if use_graph else st["eager_step_ref_s"]
        tokens = st["batch_size"] * (st["prompt_len"] if phase == "prefill" else 1)
        full_est = headline * scale
        row = {
            "kernel_time_full_s": kernel_full,
            "predicted_time_full_s": predicted_full,
            "predicted_with_launch_full_s": with_launch,
            "step_full_est_s": full_est,
            "step_full_est_from": "graph replay" if use_graph else "eager",
            "measured_over_predicted_full": kernel_full / predicted_full if predicted_full else np.nan,
            "tokens_per_s_est": tokens / full_est if full_est else np.nan,
            "bytes_full": float(((f["bytes_read"] + f["bytes_written"]) * f["count"]).sum()),
            "flops_full": float((f["flops"] * f["count"]).sum()),
        }
        if distributed:
            c = f[f["comm_bytes"] > 0]
            cnt = c["count"].to_numpy(float)
            lo = c["comm_time_min_rank_s"].fillna(c["comm_time_s"])
            row.update(
                {
                    "comm_time_full_s": float((c["comm_time_s"] * cnt).sum()),
                    "exposed_comm_full_s": float((c["exposed_comm_s"] * cnt).sum()),
                    "comm_time_min_rank_full_s": float((lo * cnt).sum()),
                    "predicted_comm_full_s": float((c["predicted_comm_s"] * cnt).sum()),
                }
            )
        rows.append(row)
    full = pd.DataFrame(rows, index=steps.index)
    if distributed:
        with np.errstate(divide="ignore", invalid="ignore"):
            full["exposed_comm_share_full"] = full["exposed_comm_full_s"] / full["kernel_time_full_s"]
            wait_full = full["comm_time_full_s"] - full["comm_time_min_rank_full_s"]
            balanced = full["kernel_time_full_s"] - wait_full
            full["balanced_comm_share_full"] = full["comm_time_min_rank_full_s"] / balanced
    out = pd.concat([steps, full], axis=1)
    order = [c for c in STEP_ORDER if c in out.columns]
    out = out[order + [c for c in out.columns if c not in order]]
    return out if distributed else out.drop(columns="rank")


# the column order of a comparison's steps: the run's reference figures, then the full model
STEP_ORDER = [
    "rank",
    "phase",
    "batch_size",
    "prompt_len",
    "context_len",
    "attn_impl",
    "dtype",
    "ref_layers",
    "model_layers",
    "kernel_time_ref_s",
    "eager_step_ref_s",
    "graph_step_ref_s",
    "host_overhead_ref_s",
    "join",
    "profiled_steps",
    "kernels_per_step",
    "driver_launched_kernels_per_step",
    "gpu_busy_per_step_s",
    "profiled_window_per_step_s",
    "idle_host_bound_per_step_s",
    "unattributed_gpu_time_per_step_s",
    "orphan_kernels",
    "one_step_trace_bytes",
    "one_step_trace_events",
    "one_step_trace_gpu_time_s",
    "one_step_trace_kernels",
    "one_step_trace_cuLaunchKernelEx",
    "one_step_trace_cudaLaunchKernel",
    "kernel_time_full_s",
    "predicted_time_full_s",
    "predicted_with_launch_full_s",
    "step_full_est_s",
    "step_full_est_from",
    "measured_over_predicted_full",
    "tokens_per_s_est",
    "bytes_full",
    "flops_full",
    "weight_bytes_ref",
    "comm_time_ref_s",
    "exposed_comm_ref_s",
    "comm_time_min_rank_ref_s",
    "comm_time_full_s",
    "exposed_comm_full_s",
    "comm_time_min_rank_full_s",
    "predicted_comm_full_s",
    "exposed_comm_share",
    "exposed_comm_share_full",
    "skew_wait_ref_s",
    "balanced_comm_share",
    "balanced_comm_share_full",
]


def _summary(ops: pd.DataFrame, steps: pd.DataFrame, analysis: Analysis) -> pd.DataFrame:
    """One row per phase, rank 0: predicted and measured full-model time, measured time per class."""
    if "rank" in ops.columns:
        ops = ops[ops["rank"] == 0]
        steps = steps[steps["rank"] == 0] if "rank" in steps.columns else steps
    rows = []
    for phase, f in ops.groupby("phase", sort=False):
        total = f["total_measured_time_s"].to_numpy(float)
        whole = float(np.nansum(total))
        row = {
            "phase": phase,
            "predicted_time_s": float(analysis.summary[f"{phase}_time_s"].iloc[0]),
            "predicted_roofline_time_s": float(analysis.summary[f"{phase}_roofline_time_s"].iloc[0]),
            "kernel_time_full_s": whole,
        }
        st = steps[steps["phase"] == phase] if len(steps) else steps
        row["step_full_est_s"] = float(st["step_full_est_s"].iloc[0]) if len(st) else np.nan
        cls = f["measured_bound"].astype(str).to_numpy()
        for c in CLASSES:
            row[f"measured_share_{c}"] = float(np.nansum(total[cls == c])) / whole if whole > 0 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
