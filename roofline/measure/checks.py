"""Measure the advisor's suggestions on the GPU: the reference model with the change applied.

Measurable with the reference model (bf16/fp16 weights, one GPU): CUDA graphs (the profile measures
the eager and the graph-replayed step anyway), a larger decode batch, FlashAttention instead of
naive attention. Quantisation, tensor parallelism and fusion are listed as not measured, with why.
``roofline.compare.check_advice`` sets the achieved speedup beside the predicted one.
"""

from dataclasses import replace

import pandas as pd

from roofline.config import with_changes
from roofline.measure.profile import profile_model

MEASURABLE = {"cuda_graph", "batch_size", "attn_impl"}
NOT_MEASURED = "not measured: the reference model runs bf16/fp16 weights on one GPU, unfused"


def step_time(run, phase: str, column: str) -> float:
    """One figure of ``run.steps`` (a MeasuredRun) for ``phase``, e.g. 'eager_step_ref_s'."""
    steps = run.steps
    value = steps.loc[steps["phase"] == phase, column].iloc[0]
    return float("nan") if value is None else float(value)


def measure_suggestions(
    model, workload, spec, advice: pd.DataFrame, baseline, layers: int = 2, **profile_kw
) -> pd.DataFrame:
    """One row per suggestion of ``advice``: change, phase, overrides, measured (bool), baseline_s and
    changed_s (the reference step, s: eager, or the graph replay for CUDA graphs) and how they were
    measured; NaN times and the reason where the reference cannot run the change. ``baseline`` is
    the MeasuredRun of ``workload`` without the change; other changes are profiled here (DeviceError
    and ConfigError as profile_model raises them)."""
    ref_model = replace(model, num_hidden_layers=min(layers, model.num_hidden_layers))
    rows = []
    for _, s in advice.iterrows():
        overrides = s["overrides"] or {}
        phase = s["phase"]
        row = {
            "change": s["change"],
            "phase": phase,
            "overrides": overrides,
            "measured": False,
            "baseline_s": float("nan"),
            "changed_s": float("nan"),
            "how": NOT_MEASURED,
        }
        if overrides and set(overrides) <= MEASURABLE:
            row["measured"] = True
            row["baseline_s"] = step_time(baseline, phase, "eager_step_ref_s")
            if "cuda_graph" in overrides:
                graph = step_time(baseline, phase, "graph_step_ref_s")
                if graph != graph:  # no replay: a CPU run, or a step that could not be captured
                    row.update(
                        measured=False,
                        baseline_s=float("nan"),
                        how="not measured: the profile has no CUDA-graph replay of this step",
                    )
                else:
                    row["changed_s"] = graph
                    row["how"] = "eager step vs CUDA-graph replay of the same reference step (CUDA events)"
            else:
                changed = profile_model(
                    ref_model, with_changes(workload, phase=phase, **overrides), spec=spec, layers=layers, **profile_kw
                )
                row["changed_s"] = step_time(changed, phase, "eager_step_ref_s")
                if "batch_size" in overrides:
                    row["how"] = (
                        f"eager steps at batch {workload.batch_size[0]} and {overrides['batch_size']}, "
                        f"tokens/s (CUDA events)"
                    )
                else:
                    row["how"] = "eager steps with and without the change (CUDA events)"
        rows.append(row)
    return pd.DataFrame(rows, columns=["change", "phase", "overrides", "measured", "baseline_s", "changed_s", "how"])
