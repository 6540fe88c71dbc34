"""What to try next: re-run the analysis with one change at a time and rank the changes.

``advise(analysis)`` takes a single-point ``Analysis`` and returns one row per suggestion. Every
predicted speedup comes from re-running ``analyze`` on the changed workload (``dataclasses.replace``
on the Workload, the flags in ``overrides`` / ``flags``), or, for kernel fusion, which no workload
flag expresses, from re-classifying the ops frame with the fused ops (``fuse_elementwise``). No
speedup is a guessed factor.

Assumptions, numbered:
1. The time of a phase is the summary's ``{phase}_time_s``: the calibrated step of predict.py, each op
   the launch queue of the ops' GPU time (kernels + launch gaps) and their host cost in the execution
   mode (eager, or nothing per op when the workload says cuda_graph). Without the host cost CUDA graphs could not be weighed against the
   rest. The shares of time per bound class quoted in ``why`` are the summary's, on the same basis.
2. ``predicted_speedup`` is baseline time / new time of the phase (``metric`` 'step time'), except
   for a larger batch, where it is the tokens/s gain (``metric`` 'tokens/s'): the step gets longer,
   so single-stream latency does not improve; ``step_time_ratio`` (new / baseline) says by how much.
   Tensor parallelism is per step on ``gpus`` GPUs; per GPU the throughput gain is speedup / gpus.
3. Changes are tried only where they apply: fp8 storage or math only on a part whose spec has an fp8
   peak (Ada, Hopper, Blackwell, MI300; the format is native there); W8A8 (8-bit weights and
   activations on 8-bit tensor cores: fp8, or int8 on a part without fp8) only for a phase that is
   at least half compute-bound; FlashAttention only for naive attention; CUDA graphs only when the
   workload is eager; tensor parallelism only when the model does not fit one GPU or decode is
   mostly memory-bound, and only for degrees the heads divide (``check_fit``).
4. A suggestion under ``MIN_SPEEDUP`` is dropped; it is named in the ``wont_help`` of a related row
   (same change in the other phase, else the same family), and all of them are kept in
   ``frame.attrs['not_helping']``.
5. Rows are ranked by whether the changed configuration fits in memory, then by predicted speedup;
   the phases are listed separately.
6. Fusion (analytic): chains of adjacent element-wise ops, residual add -> next norm (fused
   add + RMSNorm/LayerNorm) and RoPE -> KV-cache write, become one kernel. The intermediate is still
   written once (the residual stream is needed by the next residual add, the rotated k by the
   cache); what fusion saves is its re-read and one launch per pair. ``act`` sits between two
   matmuls and ``softmax`` (naive attention) inside one: those need a matmul epilogue or
   FlashAttention and are not counted here.
7. On a calibrated spec an 8-bit change is priced as the calibrated kernels run it: where the spec has
   the table ``UNFUSED_PATHS`` names (``gemm.fp8`` / ``gemm.int8`` for W8A8, ``gemm.DTYPE/weight_only``
   for weight-only fp8 / int8, ``attention.decode/kv_fp8``; roofline calibrate measures them on torch's
   own, unfused paths), ``predicted_speedup`` uses it, and ``fused_speedup`` is the same change with a
   fused kernel that reaches the 16-bit kernels' efficiency on the fewer bytes or the 8-bit peak (the
   prediction without that table). Elsewhere ``fused_speedup`` is NaN: the prediction already assumes
   the fused kernel. A change that then predicts under ``MIN_SPEEDUP`` is dropped (4); its note gives both.

A ``measured`` frame (from ``roofline profile``), if given, replaces analytic figures where it has
them. Columns: ``phase``, ``op``, ``measured_time_s`` (the op's GPU time in one step of the same
model and workload, all its occurrences summed); optional ``eager_wall_s`` and ``graph_wall_s``
(wall time of one step of the phase, eager and replayed as a CUDA graph; one value per phase).
"""

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from roofline.analysis import COST_COLUMNS, OP_COLUMNS, Analysis, analyze
from roofline.classify import BOUNDS, classify
from roofline.dtypes import DTYPE_BYTES
from roofline.errors import ConfigError, RooflineError
from roofline.predict import model_kernels, occurrence_time, predict, step_time
from roofline.render import si

if TYPE_CHECKING:  # annotations only
    from roofline.compare import Comparison
    from roofline.specs import HardwareSpec

MIN_SPEEDUP = 1.02
TP_DEGREES = (2, 4, 8)
DEFAULT_TOP = 10

COLUMNS = [
    "rank",
    "change",
    "phase",
    "applies_to",
    "predicted_speedup",
    "metric",
    "baseline_time_s",
    "new_time_s",
    "step_time_ratio",
    "gpus",
    "fits_in_memory",
    "source",
    "fused_speedup",
    "why",
    "wont_help",
    "overrides",
    "flags",
]

# (workload field, dtype) -> (the spec's table that prices the change as the calibrated kernels run it, how
# they run it): roofline calibrate measures these on the reference's own 8-bit paths (calibrate.py), which are
# torch's, unfused (assumption 7)
UNFUSED_PATHS = {
    ("act_dtype", "fp8"): (
        ("gemm", "fp8"),
        "the calibrated path runs torch._scaled_mm and quantises the activations per call in separate kernels "
        "(abs, amax, divide, cast; gemm.fp8)",
    ),
    ("act_dtype", "int8"): (
        ("gemm", "int8"),
        "the calibrated path runs torch._int_mm and quantises the activations per call in separate kernels (gemm.int8)",
    ),
    ("weight_dtype", "int8"): (
        ("gemm", "int8/weight_only"),
        "torch has no fused weight-only int8 matmul: the calibrated path converts the weights to 16 bits, "
        "then runs a 16-bit GEMM (gemm.int8/weight_only)",
    ),
    ("weight_dtype", "fp8"): (
        ("gemm", "fp8/weight_only"),
        "the calibrated path runs torch._scaled_mm with the activations quantised to fp8 per call "
        "(gemm.fp8/weight_only)",
    ),
    ("kv_dtype", "fp8"): (
        ("attention", "decode/kv_fp8"),
        "torch's SDPA reads no fp8: the calibrated path converts the cache to 16 bits every decode step "
        "(attention.decode/kv_fp8)",
    ),
}

# Workload field -> `roofline analyze` flag
FLAGS = {
    "batch_size": "--batch",
    "weight_dtype": "--weight-dtype",
    "act_dtype": "--act-dtype",
    "kv_dtype": "--kv-dtype",
    "attn_impl": "--attn",
    "tp": "--tp",
    "cuda_graph": "--cuda-graph",
}

# Adjacent element-wise pairs fused into one kernel (assumption 6): first op, second op, how many of
# the second op's occurrences have no such predecessor (the first layer's attn_norm follows the
# embedding), and the fraction of the second op's activation reads that is the first op's output.
FUSION_PAIRS = (
    ("attn_residual", "mlp_norm", 0, 1.0),
    ("mlp_residual", "final_norm", 0, 1.0),
    ("mlp_residual", "attn_norm", 1, 1.0),
    ("rope", "kv_cache_write", 0, 0.5),  # the cache write reads k and v; rope wrote k
)


# ------------------------------------------------------------------------------------------------
# public API


def advise(
    analysis: "Analysis | Comparison", measured: pd.DataFrame | None = None, top: int = DEFAULT_TOP
) -> pd.DataFrame:
    """Ranked suggestions for a single-point analysis: a DataFrame with the columns ``COLUMNS``.

    ``analysis``: an Analysis, or a ``roofline.compare.Comparison``, whose analysis is advised with its
    measured figures (``Comparison.measured``) unless ``measured`` is given.

    ``overrides`` holds the workload settings that apply a suggestion (``analyze(model, gpu,
    workload=analysis.workload, **overrides)`` reproduces ``new_time_s``); ``flags`` is the same as
    ``roofline analyze`` flags. Both are empty for fusion, a kernel change no flag expresses.
    ``top`` keeps the best ``top`` rows (None: all). ``frame.attrs['not_helping']`` lists the
    changes tried and dropped for predicting under ``MIN_SPEEDUP``.

    Raises ConfigError for a sweep (more than one point) or a ``measured`` frame without its columns.
    """
    if not isinstance(analysis, Analysis):  # a Comparison: its analysis, with what was measured
        measured = analysis.measured if measured is None else measured
        analysis = analysis.analysis
    if len(analysis.summary) != 1:
        raise ConfigError(
            f"advise needs a single point; the analysis has {len(analysis.summary)} "
            f"(give one batch size, one prompt length and one context length)"
        )
    measured = _check_measured(measured)
    ctx = _Context(analysis)
    rows = []
    for make in (_weights, _w8a8, _kv_cache, _larger_batch, _flash, _cuda_graphs, _tensor_parallel, _fusion):
        rows.extend(make(ctx, measured))
    return _rank(rows, top)


def every_change(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows ``advise`` ranked and those it dropped for predicting under MIN_SPEEDUP (assumption 4), with
    ``suggested`` True / False: every change it priced, for scoring the predictions against measurements."""
    dropped = frame.attrs.get("dropped")
    parts = [frame.assign(suggested=True)]
    if dropped is not None and len(dropped):
        parts.append(dropped.assign(suggested=False))
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)


# the workload fields that change which tokens an MoE layer routes (config.Workload.routed_experts)
ROUTING_FIELDS = {"batch_size", "prompt_len", "context_len", "gen_tokens", "phase", "ep"}


def apply_changes(analysis: Analysis, overrides: dict) -> Analysis:
    """Re-run ``analyze`` on ``analysis``'s model and GPU with workload fields replaced by ``overrides``.

    Raises ConfigError (e.g. a tensor-parallel degree the heads do not divide) or SpecError (a dtype the
    part has no peak for).
    """
    fields = {k: ((v,) if k == "batch_size" and not isinstance(v, tuple) else v) for k, v in overrides.items()}
    if analysis.workload.routed_experts is not None and fields.keys() & ROUTING_FIELDS:
        fields["routed_experts"] = None  # a measured routing is the step's as it ran: a changed step routes as expected
    return analyze(analysis.model, analysis.spec, workload=replace(analysis.workload, **fields))


def flags_of(overrides: dict) -> str:
    """Workload overrides as `roofline analyze` flags: {'weight_dtype': 'int4'} -> '--weight-dtype int4'."""
    out = []
    for key, value in overrides.items():
        if key == "cuda_graph":
            out.append("--cuda-graph" if value else "--eager")
        else:
            out.append(f"{FLAGS[key]} {value}")
    return " ".join(out)


def fuse_elementwise(
    ops: pd.DataFrame, spec: "HardwareSpec", cuda_graph: bool = False, kernels: tuple = (None, None)
) -> pd.DataFrame:
    """The classified ops frame of one point and phase with ``FUSION_PAIRS`` fused (assumption 6).

    Each fused pair becomes one row named 'first+second' with the FLOPs and bytes of both, less the
    re-read of the intermediate; the two ops keep the occurrences that were not fused. Adds
    ``saved_bytes`` (per occurrence) to the fused rows. ``kernels``: predict.model_kernels of the model (the
    kernel variants the unfused ops keep, the MoE expert loop). Raises ConfigError for several points/phases.
    """
    if ops["point"].nunique() > 1 or ops["phase"].nunique() > 1:
        raise ConfigError("fuse_elementwise takes the ops of one point and one phase")
    base = ops[OP_COLUMNS].copy()  # the analysis' columns, before classify added its own
    base["phase"] = base["phase"].astype(str)
    base["op"] = base["op"].astype(str)
    base["category"] = base["category"].astype(str)
    base["compute_dtype"] = base["compute_dtype"].astype(str)
    base["saved_bytes"] = 0.0
    by_name = {name: i for i, name in zip(base.index, base["op"])}
    left = base["count"].astype(np.int64).to_dict()
    fused = []
    for first, second, reserved, share in FUSION_PAIRS:
        if first not in by_name or second not in by_name:
            continue
        i, j = by_name[first], by_name[second]
        n = min(left[i], left[j] - reserved)
        if n <= 0:
            continue
        a, b = base.loc[i], base.loc[j]
        saved = share * b["act_bytes_read"]  # the second op's re-read of the first op's output
        row = a.copy()
        row["op"], row["count"], row["saved_bytes"] = f"{first}+{second}", n, saved
        row["category"], row["compute_dtype"] = "elementwise", a["compute_dtype"]
        for key in COST_COLUMNS:
            row[key] = a[key] + b[key]
        row["bytes_read"] -= saved
        row["act_bytes_read"] -= saved
        fused.append(row)
        left[i] -= n
        left[j] -= n
    base["count"] = pd.Series(left)
    frame = pd.concat([base[base["count"] > 0], pd.DataFrame(fused)], ignore_index=True)
    frame["count"] = frame["count"].astype(np.int64)
    out = predict(classify(frame, spec, cuda_graph=cuda_graph), spec, cuda_graph, *kernels)
    out["total_time_s"] = out["count"] * occurrence_time(out)
    return out


def render_advice(frame: pd.DataFrame) -> str:
    """A short numbered list for the terminal or a report, one suggestion a line."""
    lines = []
    for row in frame.itertuples(index=False):
        gain = f"{row.predicted_speedup:.2f}x {'tokens/s' if row.metric == 'tokens/s' else 'faster'}"
        flags = f" [{row.flags}]" if row.flags else ""
        line = f"{row.rank}. {row.change} ({row.phase}): {gain} predicted{flags} — {row.why}"
        if row.wont_help:
            line += f"; won't help: {row.wont_help}"
        lines.append(line)
    if not lines:
        lines.append(f"no change tried predicts a {MIN_SPEEDUP:.2f}x speedup or more")
    dropped = frame.attrs.get("not_helping", [])
    if dropped and not len(frame):
        lines += ["won't help:"] + [f"  - {note}" for note in dropped]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# the facts every suggestion draws on


class _Context:
    """The baseline analysis and per-phase figures the suggestions are built from."""

    def __init__(self, analysis: Analysis):
        self.analysis = analysis
        self.w = analysis.workload
        self.spec = analysis.spec
        self.s = analysis.summary.iloc[0]
        self.phases = {p: _PhaseFacts(analysis, p) for p in self.w.phases}

    def time(self, result: Analysis, phase: str) -> float:
        return float(result.summary[f"{phase}_time_s"].iloc[0])

    def rerun(self, overrides: dict):
        """The changed analysis, or None where the model or the part cannot take the change."""
        try:
            return apply_changes(self.analysis, overrides)
        except RooflineError:
            return None

    def unfused(self, overrides: dict) -> tuple:
        """(how the calibrated kernels run an 8-bit change, the changed analysis with a fused kernel in their
        place) where the spec prices ``overrides`` with one of UNFUSED_PATHS' tables, else ("", None)
        (assumption 7)."""
        tables = getattr(self.spec, "measured_kernels", None) or {}
        for (field, dtype), ((section, key), how) in UNFUSED_PATHS.items():
            if overrides.get(field) != dtype:
                continue
            if key not in tables.get(section, {}):
                return "", None
            fused = {**tables, section: {k: v for k, v in tables[section].items() if k != key}}
            if section == "gemm" and key in tables.get("projection_host_s", {}):  # a fused kernel is one launch
                fused["projection_host_s"] = {k: v for k, v in tables["projection_host_s"].items() if k != key}
            fused_spec = replace(self.spec, measured_kernels=fused)
            try:
                return how, analyze(self.analysis.model, fused_spec, workload=replace(self.w, **overrides))
            except RooflineError:
                return how, None
        return "", None

    def fused_note(self, how: str, fused, phase: str, kernel: str) -> str:
        """'; HOW; KERNEL: N.NNx', the fused kernel's speedup of ``phase`` beside how the calibrated kernels
        run the change (``unfused``); '' without a fused analysis."""
        if fused is None:
            return ""
        return f"; {how}; {kernel}: {self.time(self.analysis, phase) / self.time(fused, phase):.2f}x"

    def row(
        self,
        change,
        family,
        phase,
        applies_to,
        result,
        overrides,
        why,
        wont_help=(),
        *,
        metric="step time",
        speedup=None,
        gpus=None,
        source="analysis",
        baseline=None,
        new=None,
        fused=None,
    ):
        base = self.time(self.analysis, phase) if baseline is None else baseline
        new_t = self.time(result, phase) if new is None else new
        summary = (self.analysis if result is None else result).summary.iloc[0]
        notes = list(wont_help)
        if not summary["fits_in_memory"]:
            notes.append(
                f"still does not fit: {si(summary['memory_bytes'], 'B')} per GPU of "
                f"{si(summary['mem_capacity_bytes'], 'B')}"
            )
        return {
            "change": change,
            "family": family,
            "phase": phase,
            "applies_to": applies_to,
            "predicted_speedup": base / new_t if speedup is None else speedup,
            "metric": metric,
            "baseline_time_s": base,
            "new_time_s": new_t,
            "step_time_ratio": new_t / base,
            "gpus": gpus or self.w.tp,
            "fits_in_memory": bool(summary["fits_in_memory"]),
            "source": source,
            "fused_speedup": base / self.time(fused, phase) if fused is not None else np.nan,
            "why": why,
            "notes": notes,
            "overrides": dict(overrides),
            "flags": flags_of(overrides),
            "bound": self.phases[phase].bound,
        }


class _PhaseFacts:
    """One phase of the baseline: its dominant bound class and where its bytes and time go."""

    def __init__(self, analysis: Analysis, phase: str):
        s = analysis.summary.iloc[0]
        ops = analysis.ops[analysis.ops["phase"] == phase]
        self.name = phase
        # shares and step time: the summary's (assumption 1)
        self.shares = {cls: float(s[f"{phase}_share_{cls}"]) for cls in BOUNDS}
        self.bound = max(self.shares, key=self.shares.get)
        self.time_s = float(s[f"{phase}_time_s"])
        self.roofline_time_s = float(s[f"{phase}_roofline_time_s"])
        count = ops["count"].to_numpy()
        read = float((count * ops["bytes_read"]).sum())
        self.weight_share = float((count * ops["weight_bytes_read"]).sum()) / read
        self.kv_share = float((count * ops["kv_bytes_read"]).sum()) / read
        linear = ops["category"].isin(["matmul"]) & ~ops["op"].isin(["lm_head", "router"])
        self.linear_ops = list(ops.loc[linear, "op"].astype(str))
        self.linear_dtype = str(ops.loc[linear, "compute_dtype"].iloc[0])
        self.linear_time_share = _with_launch(ops[linear]) / self.time_s
        flops = count * ops["flops"]
        self.linear_flop_share = float(flops[linear].sum()) / float(flops.sum())
        self.kernels = int(count.sum())
        self.short_kernels = int(count[(ops["predicted_time_s"] < ops["host_s"]).to_numpy()].sum())

    @property
    def bound_text(self) -> str:
        return f"{self.name} is {_pct(self.shares[self.bound])} {self.bound}-bound"


# ------------------------------------------------------------------------------------------------
# the candidates, one function each; each returns a list of rows (dicts)


def _weights(ctx: _Context, measured):
    """Weight-only quantisation: int8, int4, fp8 (fp8 only where the part has fp8)."""
    rows = []
    current = DTYPE_BYTES[ctx.w.weight_dtype]
    for dtype in ("int8", "int4", "fp8"):
        if DTYPE_BYTES[dtype] >= current or (dtype == "fp8" and not ctx.spec.has_dtype("fp8")):
            continue
        overrides = {"weight_dtype": dtype}
        result = ctx.rerun(overrides)
        if result is None:
            continue
        how, fused = ctx.unfused(overrides)
        for phase, p in ctx.phases.items():
            why = f"{p.bound_text}; weights are {_pct(p.weight_share)} of bytes read"
            wont = []
            if p.kv_share > 0.05:
                wont.append(f"the KV cache ({_pct(p.kv_share)} of bytes read) stays {ctx.w.kv_dtype}")
            if p.bound == "compute":
                wont.append("compute stays in 16-bit (weight-only quantisation dequantises before the matmul)")
            why += ctx.fused_note(how, fused, phase, "a fused weight-only kernel")
            if fused is None and "gemm" in (getattr(ctx.spec, "measured_kernels", None) or {}):
                why += f"; no calibrated {dtype} kernel: priced as a fused one at the 16-bit GEMM's measured efficiency"
            rows.append(
                ctx.row(
                    f"weights {dtype}",
                    "quantising weights",
                    phase,
                    _linear_text(p),
                    result,
                    overrides,
                    why,
                    wont,
                    fused=fused,
                )
            )
    return rows


def _w8a8(ctx: _Context, measured):
    """8-bit tensor cores for phases at least half compute-bound: weights and activations in fp8, or in
    int8 on a part without fp8 (where both exist their peaks are equal and fp8 needs no SmoothQuant)."""
    dtype = "fp8" if ctx.spec.has_dtype("fp8") else "int8"
    if not ctx.spec.has_dtype(dtype) or ctx.w.act_dtype in ("fp8", "int8"):
        return []
    overrides = {"weight_dtype": dtype, "act_dtype": dtype}
    result = ctx.rerun(overrides)
    if result is None:
        return []
    rows = []
    how, fused = ctx.unfused(overrides)
    for phase, p in ctx.phases.items():
        if p.shares["compute"] < 0.5:
            continue
        new_peak, old_peak = ctx.spec.ceiling_flops(dtype), ctx.spec.ceiling_flops(p.linear_dtype)
        why = (
            f"{p.bound_text}; the linear layers are {_pct(p.linear_flop_share)} of FLOPs; {dtype} peak "
            f"{si(new_peak, 'FLOP/s')} vs {p.linear_dtype} {si(old_peak, 'FLOP/s')}"
        )
        wont = ["attention and element-wise ops stay in 16-bit; needs calibrated activation scales"]
        why += ctx.fused_note(how, fused, phase, "quantisation fused into the previous kernel")
        rows.append(
            ctx.row(
                f"W8A8 {dtype}",
                "quantising weights",
                phase,
                f"{_linear_text(p)} on {dtype} tensor cores",
                result,
                overrides,
                why,
                wont,
                fused=fused,
            )
        )
    return rows


def _kv_cache(ctx: _Context, measured):
    """KV cache in int8, or fp8 where the part has fp8."""
    rows = []
    for dtype in ("fp8", "int8"):
        if DTYPE_BYTES[dtype] >= DTYPE_BYTES[ctx.w.kv_dtype] or (dtype == "fp8" and not ctx.spec.has_dtype("fp8")):
            continue
        overrides = {"kv_dtype": dtype}
        result = ctx.rerun(overrides)
        if result is None:
            continue
        how, fused_decode = ctx.unfused(overrides) if "decode" in ctx.phases else ("", None)
        for phase, p in ctx.phases.items():
            why = (
                f"{p.bound_text}; the KV cache is {_pct(p.kv_share)} of bytes read at context {ctx.s['context_len']:g}"
            )
            wont = [f"weights ({_pct(p.weight_share)} of bytes read) are untouched"] if p.weight_share > 0.05 else []
            fused = fused_decode if phase == "decode" else None  # the table is decode attention's
            why += ctx.fused_note(how, fused, phase, "an attention kernel reading fp8")
            rows.append(
                ctx.row(
                    f"KV cache {dtype}",
                    "quantising the KV cache",
                    phase,
                    "attention, kv_cache_write",
                    result,
                    overrides,
                    why,
                    wont,
                    fused=fused,
                )
            )
    return rows


def max_batch_that_fits(analysis: Analysis) -> int:
    """The largest batch whose weights and KV cache fit one GPU at the analysis's lengths (0 if none).

    KV bytes are linear in the batch; the figure is checked with ``analyze`` at it and one above.
    """
    s = analysis.summary.iloc[0]
    per_sequence = float(s["kv_cache_bytes"]) / float(s["batch_size"])
    free = float(s["mem_capacity_bytes"]) - float(s["weight_bytes"])
    if free <= 0:
        return 0
    n = max(int(free // per_sequence), 1)
    fits = apply_changes(analysis, {"batch_size": (n, n + 1)}).summary["fits_in_memory"].to_numpy()
    while n > 0 and not fits[0]:  # rounding at the boundary
        n -= 1
        fits = apply_changes(analysis, {"batch_size": (max(n, 1),)}).summary["fits_in_memory"].to_numpy()
    return n


def _larger_batch(ctx: _Context, measured):
    """Decode at a larger batch: up to the ridge batch of the weight matmuls, or what memory holds."""
    if "decode" not in ctx.phases:
        return []
    p = ctx.phases["decode"]
    b = int(ctx.w.batch_size[0])
    ridge = float(ctx.s["decode_ridge_batch"])
    fit = max_batch_that_fits(ctx.analysis)
    target = min(fit, int(ridge)) if ridge == ridge else fit
    if target <= b:
        return []
    overrides = {"batch_size": target}
    result = ctx.rerun(overrides)
    base_t, new_t = p.time_s, ctx.time(result, "decode")
    gain = (target / new_t) / (b / base_t)
    limit = "the ridge" if ridge == ridge and target == int(ridge) else "the memory limit"
    ridge_text = f"batch {ridge:.0f}" if ridge == ridge else "no batch up to 65536"
    why = (
        f"{p.bound_text} at batch {b}: each step streams {si(ctx.s['decode_bytes_read'], 'B')} for {b} "
        f"token{'s' if b > 1 else ''}; the weight matmuls reach the ridge at {ridge_text}, memory holds "
        f"batch {fit}; batch {target} ({limit}) gives {si(target / new_t)} tokens/s vs {si(b / base_t)}"
    )
    wont = [
        f"single-stream latency: a step takes {new_t / base_t:.2f}x as long ({si(base_t, 's')} -> "
        f"{si(new_t, 's')}); the gain needs {target} concurrent sequences"
    ]
    return [
        ctx.row(
            f"batch {target}",
            "a larger batch",
            "decode",
            "whole step",
            result,
            overrides,
            why,
            wont,
            metric="tokens/s",
            speedup=gain,
        )
    ]


def _flash(ctx: _Context, measured):
    """FlashAttention in place of naive attention (qk_matmul, softmax, sv_matmul)."""
    if ctx.w.attn_impl != "naive":
        return []
    overrides = {"attn_impl": "flash"}
    result = ctx.rerun(overrides)
    if result is None:
        return []
    rows = []
    ops = ctx.analysis.ops
    for phase, p in ctx.phases.items():
        naive = ops[(ops["phase"] == phase) & ops["op"].isin(["qk_matmul", "softmax", "sv_matmul"])]
        moved = float((naive["count"] * (naive["bytes_read"] + naive["bytes_written"])).sum())
        share = _with_launch(naive) / p.time_s
        why = (
            f"naive attention writes the score matrix and reads it back: qk_matmul, softmax and sv_matmul move "
            f"{si(moved, 'B')} per step, {_pct(share)} of the {phase} time"
        )
        wont = [f"the linear layers ({_pct(p.linear_time_share)} of the step) are untouched"]
        rows.append(
            ctx.row(
                "FlashAttention", "FlashAttention", phase, "qk_matmul, softmax, sv_matmul", result, overrides, why, wont
            )
        )
    return rows


def _cuda_graphs(ctx: _Context, measured):
    """CUDA graphs / torch.compile's cudagraph mode: the per-kernel launch floor drops to the graph figure."""
    if ctx.w.cuda_graph:
        return []
    overrides = {"cuda_graph": True}
    result = ctx.rerun(overrides)
    rows = []
    launch = ctx.spec.ceiling_launch_s(False)
    for phase, p in ctx.phases.items():
        gap = p.time_s - p.roofline_time_s
        why = (
            f"{p.short_kernels} of {p.kernels} kernels per step are shorter than the {si(launch, 's')} eager "
            f"launch; launches add {si(gap, 's')} ({_pct(gap / p.time_s)}) to the "
            f"{si(p.roofline_time_s, 's')} roofline time"
        )
        wont = [f"the roofline time itself ({si(p.roofline_time_s, 's')}) is unchanged"]
        kw = {}
        walls = _measured_walls(measured, phase)
        if walls is not None:
            eager, graph, gpu_busy = walls
            new = graph if graph == graph else gpu_busy
            what = "replayed as a CUDA graph" if graph == graph else "GPU busy time (a graph removes the host gaps)"
            why = f"measured: a step takes {si(eager, 's')} eager and {si(new, 's')} {what}"
            kw = dict(baseline=eager, new=new, source="measured")
        rows.append(ctx.row("CUDA graphs", "a CUDA graph", phase, "whole step", result, overrides, why, wont, **kw))
    return rows


def _tensor_parallel(ctx: _Context, measured):
    """Tensor parallelism where the model does not fit one GPU, or decode is mostly memory-bound. Each degree
    is re-analysed, so its collectives take predict.py's collective model (a calibrated spec's measured
    table at that world size, else alpha + bytes / link), which the row names."""
    fits = bool(ctx.s["fits_in_memory"])
    decode_memory = "decode" in ctx.phases and ctx.phases["decode"].shares["memory"] >= 0.5
    if fits and not decode_memory:
        return []
    tried = {}
    for degree in TP_DEGREES:
        tp = ctx.w.tp * degree
        if tp > max(TP_DEGREES):
            break
        result = ctx.rerun({"tp": tp})
        if result is not None:
            tried[tp] = result
    if not tried:
        return []
    fitting = [tp for tp, r in tried.items() if bool(r.summary["fits_in_memory"].iloc[0])]
    link = ctx.spec.gpu_link_name or ctx.spec.host_link_name
    rows = []
    for phase, p in ctx.phases.items():
        if fits and phase != "decode":
            continue
        speedups = {tp: p.time_s / ctx.time(r, phase) for tp, r in tried.items()}
        if not fits:
            tp = min(fitting) if fitting else max(tried)
        else:
            tp = max(speedups, key=speedups.get)
        result = tried[tp]
        ops = result.ops[result.ops["phase"] == phase]
        collectives = ops[ops["category"] == "collective"]
        comm = _with_launch(collectives) / _with_launch(ops)
        # predict.py's collective model: the spec's measured table at this tp, or alpha + bytes / link
        model = ", ".join(sorted(set(collectives["prediction_source"].astype(str))))
        others = ", ".join(f"tp {t}: {x:.2f}x" for t, x in speedups.items())
        if not fits:
            s_new = result.summary.iloc[0]
            why = (
                f"weights {si(ctx.s['weight_bytes'], 'B')} + KV {si(ctx.s['kv_cache_bytes'], 'B')} do not fit one "
                f"{ctx.spec.name}'s {si(ctx.spec.mem_capacity_bytes, 'B')}; tp {tp} puts "
                f"{si(s_new['memory_bytes'], 'B')} on each GPU ({others})"
            )
        else:
            why = f"{p.bound_text}; each GPU streams 1/tp of the weights ({others})"
        wont = [
            f"costs {tp} GPUs for a {speedups[tp]:.2f}x step ({speedups[tp] * ctx.w.tp / tp:.2f}x per GPU); "
            f"communication is {_pct(comm)} of the step over {link} (collective time: {model})"
        ]
        rows.append(
            ctx.row(
                f"tensor parallel {tp}",
                "tensor parallelism",
                phase,
                "whole step (Megatron split)",
                result,
                {"tp": tp},
                why,
                wont,
                gpus=tp,
            )
        )
    return rows


def _fusion(ctx: _Context, measured):
    """Fuse residual add + norm and RoPE + KV-cache write (assumption 6)."""
    rows = []
    a = ctx.analysis
    for phase, p in ctx.phases.items():
        ops = a.ops[a.ops["phase"] == phase]
        fused = fuse_elementwise(ops, ctx.spec, ctx.w.cuda_graph, model_kernels(a.model, a.workload))
        pairs = fused[fused["saved_bytes"] > 0]
        if pairs.empty:
            continue
        names = sorted(set(str(n) for pair in pairs["op"] for n in pair.split("+")))
        chain = ops[ops["op"].isin(names)]
        chain_time = _with_launch(chain)
        fused_time = _with_launch(fused[fused["op"].isin(names) | (fused["saved_bytes"] > 0)])
        saved_bytes = float((pairs["count"] * pairs["saved_bytes"]).sum())
        launches = int(pairs["count"].sum())
        new = _with_launch(fused)
        kw = {}
        why = (
            f"{', '.join(names)} take {si(chain_time, 's')} ({_pct(chain_time / p.time_s)} of the step); fusing "
            f"{launches} adjacent pairs saves {si(saved_bytes, 'B')} of re-reads and {launches} launches"
        )
        m = None if measured is None else measured[measured["phase"] == phase]
        if m is not None and m["op"].isin(names).any():
            got = m[m["op"].isin(names)].groupby("op")["measured_time_s"].sum()
            absent = chain[~chain["op"].isin(got.index)]  # ops not measured: their analytic time
            measured_chain = float(got.sum()) + float(step_time(absent))
            base = float(m["measured_time_s"].sum())
            new = base - max(measured_chain - fused_time, 0.0)
            why = (
                f"measured: {', '.join(got.index)} take {si(measured_chain, 's')} against "
                f"{si(fused_time, 's')} ideal fused ({measured_chain / fused_time:.1f}x)"
            )
            kw = dict(baseline=base, source="measured")
        wont = [f"the other ops ({_pct(1.0 - chain_time / p.time_s)} of the step) are untouched"]
        rows.append(
            ctx.row(
                "fuse element-wise ops",
                "fusing element-wise ops",
                phase,
                ", ".join(str(n) for n in pairs["op"]),
                None,
                {},
                why,
                wont,
                new=new,
                **kw,
            )
        )
    return rows


# ------------------------------------------------------------------------------------------------
# ranking and the dropped changes


def _rank(rows: list, top) -> pd.DataFrame:
    kept = [r for r in rows if r["predicted_speedup"] >= MIN_SPEEDUP]
    dropped = [r for r in rows if r["predicted_speedup"] < MIN_SPEEDUP]
    notes = _dropped_notes(dropped)
    not_helping = []
    for (family, phase), text in notes.items():
        not_helping.append(text)
        target = (
            next(
                (
                    r
                    for r in kept
                    if r["family"] == family
                    and r["phase"] != phase
                    and any(d["change"] == r["change"] and d["phase"] == phase for d in dropped)
                ),
                None,
            )
            or next((r for r in kept if r["family"] == family and r["phase"] == phase), None)
            or next((r for r in kept if r["family"] == family), None)
        )
        if target is not None:
            target["notes"].insert(0, text)
    kept.sort(key=lambda r: (not r["fits_in_memory"], -r["predicted_speedup"]))
    if top is not None:
        kept = kept[:top]
    for i, r in enumerate(kept, 1):
        r["rank"] = i
        r["wont_help"] = "; ".join(r["notes"])
    frame = pd.DataFrame(kept, columns=COLUMNS)
    frame.attrs["not_helping"] = not_helping
    for r in dropped:
        r["rank"], r["wont_help"] = None, "; ".join(r["notes"])
    frame.attrs["dropped"] = pd.DataFrame(dropped, columns=COLUMNS)  # the rows behind not_helping
    return frame


def _dropped_notes(dropped: list) -> dict:
    """(family, phase) -> "quantising weights does little for the compute-bound prefill: int4 1.00x, ..."."""
    groups = {}
    for r in dropped:
        groups.setdefault((r["family"], r["phase"]), []).append(r)
    out = {}
    for (family, phase), rs in groups.items():
        if len(rs) == 1:
            figures = f"{rs[0]['predicted_speedup']:.2f}x"
        else:
            figures = ", ".join(f"{r['change']} {r['predicted_speedup']:.2f}x" for r in rs)
        fused = [r for r in rs if r["fused_speedup"] > 0]  # NaN where the prediction has no unfused path
        if fused:
            figures += " as the calibrated kernels run " + ("it" if len(rs) == 1 else "them") + "; with a fused kernel "
            figures += ", ".join(f"{r['change']} {r['fused_speedup']:.2f}x" for r in fused)
        verb = "slows" if all(r["predicted_speedup"] < 1 / MIN_SPEEDUP for r in rs) else "does little for"
        out[(family, phase)] = f"{family} {verb} the {rs[0]['bound']}-bound {phase}: {figures}"
    return out


# ------------------------------------------------------------------------------------------------
# helpers


def _check_measured(measured):
    if measured is None:
        return None
    missing = [c for c in ("phase", "op", "measured_time_s") if c not in measured.columns]
    if missing:
        raise ConfigError(
            f"the measured frame lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; it needs "
            f"phase, op and measured_time_s (the op's GPU time in one step)"
        )
    out = measured.copy()
    out["phase"] = out["phase"].astype(str)
    out["op"] = out["op"].astype(str)
    return out


def _measured_walls(measured, phase):
    """(eager wall, graph wall or NaN, GPU busy time) of one step of ``phase``, or None when not measured."""
    if measured is None or "eager_wall_s" not in measured.columns:
        return None
    m = measured[measured["phase"] == phase]
    eager = m["eager_wall_s"].dropna()
    if eager.empty:
        return None
    graph = m["graph_wall_s"].dropna() if "graph_wall_s" in m.columns else pd.Series(dtype=float)
    return float(eager.iloc[0]), float(graph.iloc[0]) if len(graph) else math.nan, float(m["measured_time_s"].sum())


def _with_launch(ops: pd.DataFrame) -> float:
    """Time of these op rows run on their own: predict.step_time (the launch queue)."""
    return step_time(ops)


def _linear_text(p: _PhaseFacts) -> str:
    names = [n.replace("_proj", "") for n in p.linear_ops]
    return f"linear layers ({'/'.join(names)})"


def _pct(x: float) -> str:
    """0.9994 -> '99.9%', 0.96 -> '96%': one decimal only where it matters."""
    v = 100 * x
    if 99 < v < 100 or 0 < v < 1:
        return f"{v:.1f}%"
    return f"{v:.0f}%"
