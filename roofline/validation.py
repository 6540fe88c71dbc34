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
"""

import json
import math
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from roofline.analysis import analyze
from roofline.compare import compare
from roofline.config import load_model, parse_workload
from roofline.specs import data_dir, load_spec

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
KEY_OPS = PROJECTIONS + ("attention",)
TARGETS = {"key_ops_median": 0.10, "key_ops_worst": 0.25, "decode_step": 0.10, "prefill_step": 0.15}

# the matrix: (label, model file in examples/, phase, batch, prompt_len, context_len)
MATRIX = (
    ("mha-prefill-b1-s512", "llama-2-7b", "prefill", 1, 512, None),
    ("mha-prefill-b8-s2048", "llama-2-7b", "prefill", 8, 2048, None),
    ("mha-decode-b1-c512", "llama-2-7b", "decode", 1, 512, 512),
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
QUICK_MATRIX = tuple(c for c in MATRIX if c[0] in ("gqa-prefill-b1-s128", "gqa-decode-b1-c128"))


@dataclass(frozen=True)
class Validation:
    """Frames of one ``validate`` run (raw floats, SI units).

    ops:    one row per (case, op): predicted_time_s, time_s (pure roofline), host_s, prediction_source,
            bound, measured_time_s, n_kernels, error (predicted / measured - 1)
    steps:  one row per (case, mode): predicted_step_s, measured_step_s, error; mode 'eager' | 'graph'
    device: GPU, spec, clocks summary, versions
    """

    ops: pd.DataFrame
    steps: pd.DataFrame
    clocks: pd.DataFrame
    device: dict = field(default_factory=dict)
    notes: tuple = ()


def _case_setup(case, layers: int):
    """(reference ModelConfig of ``layers`` layers, Workload) of one case."""
    _, model, phase, batch, prompt, context = case
    m = load_model(model if str(model).endswith((".yaml", ".json")) else data_dir("examples") / f"{model}.yaml")
    raw = {"batch_size": batch, "prompt_len": prompt, "phase": phase}
    if context:
        raw["context_len"] = context
    return replace(m, num_hidden_layers=min(layers, m.num_hidden_layers)), parse_workload(raw)


def measure_case(
    case, spec, layers: int = 2, device: str = "cuda", warmup: int = 3, iters: int = 5, timing_iters: int = 5
) -> tuple:
    """(measured ops frame: op, measured_time_s, n_kernels, measured_bound; measured step dict) of one case."""
    from roofline.measure.profile import profile_model

    ref, w = _case_setup(case, layers)
    with tempfile.TemporaryDirectory(prefix="roofline-validate-") as tmp:
        run = profile_model(
            ref,
            w,
            spec=spec,
            layers=ref.num_hidden_layers,
            warmup=warmup,
            iters=iters,
            timing_iters=timing_iters,
            trace_dir=tmp,
            device=device,
        )
    prof = compare(analyze(ref, spec, workload=w), run)  # per call: measured_time_s and the measured class
    step = prof.steps.iloc[0]
    measured = prof.ops[["op", "measured_time_s", "n_kernels", "measured_bound", "span_s"]].copy()
    graph = step["graph_step_ref_s"]
    return measured, {
        "eager": step["eager_step_ref_s"],
        "graph": graph if graph else np.nan,
        "kernel": step["kernel_time_ref_s"],
    }


def score_case(case, spec, measured: pd.DataFrame, measured_step: dict, layers: int = 2) -> tuple:
    """(op rows, step rows) of one case: the prediction with ``spec`` beside the measurement, with errors.
    Needs no GPU: a saved measurement can be re-scored with another spec (``rescore``)."""
    label, _, phase, batch, prompt, context = case
    ref, w = _case_setup(case, layers)
    spec = load_spec(spec)
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
        step_rows.append(
            {
                **key,
                "mode": mode,
                "layers": ref.num_hidden_layers,
                "predicted_step_s": float(a.summary[f"{phase}_time_s"].iloc[0]),
                "roofline_step_s": float(a.summary[f"{phase}_roofline_time_s"].iloc[0]),
                "measured_step_s": measured_step[mode],
                "predicted_kernel_time_s": float((a.ops["count"] * a.ops["predicted_time_s"]).sum()),
                "measured_kernel_time_s": measured_step["kernel"],
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
        steps["roofline_error"] = steps["roofline_step_s"] / steps["measured_step_s"] - 1.0
    return ops, steps


def run_case(case, spec, layers: int = 2, device: str = "cuda", **kw) -> tuple:
    """(op rows, step rows) of one case of the matrix: measured, then scored."""
    measured, step = measure_case(case, spec, layers=layers, device=device, **kw)
    return score_case(case, spec, measured, step, layers=layers)


def rescore(v: "Validation", spec, matrix=MATRIX) -> "Validation":
    """The measurements of ``v`` (a run, or ``load_validation`` of a written folder) scored with ``spec``:
    the same measured ops and steps, the prediction of another spec (the datasheet, a new calibration)."""
    spec = load_spec(spec)
    cases = {c[0]: c for c in matrix}
    ops, steps = [], []
    for label in dict.fromkeys(v.steps["case"]):
        case = cases.get(label)
        if case is None:
            continue
        s = v.steps[v.steps["case"] == label].set_index("mode")
        measured_step = {
            "eager": s.at["eager", "measured_step_s"],
            "graph": s.at["graph", "measured_step_s"],
            "kernel": s.at["eager", "measured_kernel_time_s"],
        }
        o, st = score_case(case, spec, v.ops[v.ops["case"] == label], measured_step, layers=int(s["layers"].iloc[0]))
        ops.append(o)
        steps.append(st)
    device = dict(
        v.device, spec=spec.name, spec_path=spec.path, spec_calibrated=bool(spec.measured_kernels), rescored=True
    )
    return Validation(
        ops=pd.concat(ops, ignore_index=True),
        steps=pd.concat(steps, ignore_index=True),
        clocks=v.clocks,
        device=device,
        notes=v.notes,
    )


def load_validation(folder) -> "Validation":
    """A Validation read back from a folder ``write_validation`` wrote."""
    from roofline.errors import InputFileError

    folder = Path(folder)
    for name in ("ops.csv", "steps.csv", "device.json"):
        if not (folder / name).is_file():
            raise InputFileError(f"{folder}: no {name}; pass a folder written by roofline validate")
    try:
        clocks = pd.read_csv(folder / "clocks.csv")
    except pd.errors.EmptyDataError:
        clocks = pd.DataFrame()
    return Validation(
        ops=pd.read_csv(folder / "ops.csv"),
        steps=pd.read_csv(folder / "steps.csv"),
        clocks=clocks,
        device=json.loads((folder / "device.json").read_text()),
    )


def validate(spec=None, matrix=MATRIX, layers: int = 2, device: str = "cuda", log=None, **kw) -> Validation:
    """Run ``matrix`` (see MATRIX) on the GPU with ``spec`` (name, path or HardwareSpec; default the
    shipped spec of the detected GPU, calibrated or not) and return a Validation. ``log``: a callable
    taking one line per case. A case that fails (out of memory, a model the reference cannot run) is
    recorded in ``notes`` and skipped. Raises DeviceError without a CUDA GPU (on ``device='cuda'``)."""
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
        for case in matrix:
            t0 = time.perf_counter()
            try:
                o, s = run_case(case, spec, layers=layers, device=device, **kw)
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
                    f"{o.loc[o['op'].isin(KEY_OPS), 'error'].abs().median():.1%}"
                )
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
    )


def error_summary(ops: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """The targets, measured: one row per check with n, median |error|, worst |error|, target and pass.

    Checks: the projections and attention (per op, median and worst), then the steps per phase and
    mode (worst), and for reference the same with the pure roofline time."""
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


ADVICE_TOLERANCE = 0.25


def write_validation(v: Validation, out_dir, command: str = "") -> Path:
    """Write ``out_dir``: ops.csv, steps.csv, checks.csv, summary.md, errors.png/.svg (the error
    distribution), device.json, clocks.csv. Built in a sibling folder and swapped in. Returns the path."""
    import shutil

    from roofline import plot

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    checks = error_summary(v.ops, v.steps)
    v.ops.to_csv(tmp / "ops.csv", index=False)
    v.steps.to_csv(tmp / "steps.csv", index=False)
    checks.to_csv(tmp / "checks.csv", index=False)
    if len(v.steps):
        graph_advice(v.steps).to_csv(tmp / "advice.csv", index=False)
    v.clocks.to_csv(tmp / "clocks.csv", index=False)
    (tmp / "device.json").write_text(json.dumps(v.device, indent=2, default=str) + "\n")
    if len(v.ops):
        figure = plot.figure_errors(v.ops, v.steps)
        plot.save(figure, tmp / "errors.png")
    (tmp / "summary.md").write_text(render_summary(v, checks, command))
    if out.exists():
        old = out.with_name(f".{out.name}-old")
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
    return out


def render_summary(v: Validation, checks: pd.DataFrame, command: str = "") -> str:
    """summary.md: device, the checks against the targets, the steps, the key ops."""
    from roofline import render

    d = v.device
    head = (
        f"spec: {d.get('spec_path') or d.get('spec')} (kernel model: {'yes' if d.get('spec_calibrated') else 'no'}); "
        f"torch {d.get('torch')}, CUDA {d.get('cuda')}, driver {d.get('driver', '?')}; reference model of "
        f"{d.get('layers')} layers + embedding + head per case"
    )
    lines = [f"# roofline validate on {d.get('gpu')}", "", head, ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += ["## Targets", "", render.text_table(checks, CHECK_TABLE, markdown=True), ""]
    if len(v.steps):
        lines += [
            "## Steps (predicted against the measured wall-clock step of the same model)",
            "",
            render.text_table(v.steps, STEP_TABLE, markdown=True),
            "",
        ]
    advice = graph_advice(v.steps) if len(v.steps) else pd.DataFrame()
    if len(advice):
        lines += [
            "## The advisor's CUDA-graph suggestion, predicted against achieved (target: within 25%)",
            "",
            render.text_table(advice, ADVICE_TABLE, markdown=True),
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
    "roofline_step_s": ("roofline", _si_s),
    "roofline_error": ("roofline error", _pct),
}
ADVICE_TABLE = {
    "case": ("case", str),
    "change": ("change", str),
    "predicted_speedup": ("predicted", lambda v: f"{v:.2f}x"),
    "achieved_speedup": ("achieved", lambda v: f"{v:.2f}x"),
    "within": ("within 25%", lambda v: "yes" if v else "NO"),
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
