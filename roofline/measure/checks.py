"""Check the advisor's suggestions on the GPU: measure the reference model with the change applied
and set the achieved speedup beside the predicted one.

Measurable with the reference model (bf16/fp16 weights, one GPU): CUDA graphs (the profile measures
the eager and the graph-replayed step anyway), a larger decode batch, FlashAttention instead of
naive attention. Quantisation, tensor parallelism and fusion are listed as not measured, with why.

Both speedups are on the reference model (``layers`` decoder layers + embedding + head), so they
compare like with like; the advisor's full-model figure is kept beside them.
"""

from dataclasses import replace

import pandas as pd

from roofline.analysis import analyze
from roofline.measure.profile import profile_model

MEASURABLE = {"cuda_graph", "batch_size", "attn_impl"}


def _phase_time(result, phase: str) -> float:
    """The summary's step time: predict.py's, in the workload's execution mode (eager or CUDA graph)."""
    return float(result.summary[f"{phase}_time_s"].iloc[0])


def _step(profile, phase: str, column: str) -> float:
    steps = profile.steps
    return float(steps.loc[steps["phase"] == phase, column].iloc[0])


def check_suggestions(model, workload, spec, advice: pd.DataFrame, baseline, layers: int = 2, **profile_kw):
    """One row per suggestion: change, phase, predicted_speedup (full model, from the advisor),
    predicted_speedup_ref and achieved_speedup (both on the reference model), baseline_s,
    changed_s and how it was measured; NaN achieved with the reason where it cannot be measured.
    ``baseline`` is the ProfileResult of ``workload`` without the change."""
    ref_model = replace(model, num_hidden_layers=min(layers, model.num_hidden_layers))
    rows = []
    for _, s in advice.iterrows():
        overrides = s["overrides"] or {}
        phase = s["phase"]
        row = {"change": s["change"], "phase": phase, "predicted_speedup": s["predicted_speedup"],
               "predicted_speedup_ref": float("nan"), "achieved_speedup": float("nan"),
               "baseline_s": float("nan"), "changed_s": float("nan"), "how": ""}
        if not overrides or not set(overrides) <= MEASURABLE:
            row["how"] = "not measured: the reference model runs bf16/fp16 weights on one GPU, unfused"
            rows.append(row)
            continue
        base_pred = analyze(ref_model, spec, workload=workload)
        new_pred = analyze(ref_model, spec, workload=replace(workload, **_as_workload(overrides)))
        if "cuda_graph" in overrides:
            row["predicted_speedup_ref"] = _phase_time(base_pred, phase) / _phase_time(new_pred, phase)
            row["baseline_s"] = _step(baseline, phase, "eager_step_ref_s")
            row["changed_s"] = _step(baseline, phase, "graph_step_ref_s")
            row["how"] = "eager step vs CUDA-graph replay of the same reference step (CUDA events)"
        else:
            changed = profile_model(ref_model, replace(workload, phase=phase, **_as_workload(overrides)), spec=spec,
                                    layers=layers, **profile_kw)
            row["baseline_s"] = _step(baseline, phase, "eager_step_ref_s")
            row["changed_s"] = _step(changed, phase, "eager_step_ref_s")
            ratio_pred = _phase_time(base_pred, phase) / _phase_time(new_pred, phase)
            if "batch_size" in overrides:  # a throughput gain: tokens per second, not step time
                b0, b1 = workload.batch_size[0], overrides["batch_size"]
                row["predicted_speedup_ref"] = ratio_pred * b1 / b0
                row["achieved_speedup"] = (b1 / row["changed_s"]) / (b0 / row["baseline_s"])
                row["how"] = f"eager steps at batch {b0} and {b1}, tokens/s (CUDA events)"
            else:
                row["predicted_speedup_ref"] = ratio_pred
                row["how"] = "eager steps with and without the change (CUDA events)"
        if row["achieved_speedup"] != row["achieved_speedup"]:
            row["achieved_speedup"] = row["baseline_s"] / row["changed_s"]
        rows.append(row)
    return pd.DataFrame(rows)


def _as_workload(overrides: dict) -> dict:
    """Advisor overrides -> Workload fields (sweepable fields are tuples)."""
    out = dict(overrides)
    for key in ("batch_size", "prompt_len", "context_len"):
        if key in out and not isinstance(out[key], tuple):
            out[key] = (out[key],)
    return out
