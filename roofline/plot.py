"""Charts of an analysis: the roofline, where the time goes, and how a sweep scales.

The only module that imports matplotlib. Every chart function takes a DataFrame (the ``ops`` or
``summary`` frame of ``roofline.analyze``, or of a result JSON read back with ``load_result_json``),
a spec where it needs ceilings, and an Axes; it draws, and returns the Axes. The ``figure_*``
functions build whole figures from those, and ``save`` writes a figure as PNG and SVG.

Figures are built as ``matplotlib.figure.Figure`` objects without pyplot, so nothing here depends on
a display or on pyplot's global state; a chart function also accepts an Axes from pyplot.

What goes where, stated once:
  - roofline: x = arithmetic intensity (FLOP/B), y = attained FLOP/s = flops / time_s of one call.
    Datasheet ceilings are dashed, measured ones (``roofline calibrate``) solid. Ops with no FLOPs
    and collectives have no place on a FLOP/s axis: they are named in a note on the chart.
  - Layout that depends on the final size of the axes (label placement, the memory slope's angle,
    which percentages fit in a bar) is done at draw time by a hook artist, so it stays right after
    a figure is resized or laid out again.
"""

import json
import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.ticker import EngFormatter, FixedLocator, FuncFormatter, LogLocator, NullFormatter, PercentFormatter

from roofline.classify import BOUNDS
from roofline.errors import InputFileError, RooflineError
from roofline.render import si
from roofline.specs import HardwareSpec, load_spec

if TYPE_CHECKING:
    from roofline.analysis import Analysis
    from roofline.compare import Comparison
    from roofline.config import ModelConfig, Workload
    from roofline.measure.trace import TraceAnalysis

PHASES = ("prefill", "decode")
BOUND_COLORS = {  # one colour per class of classify.CLASSES, fixed, so a class looks the same in every chart
    "compute": "#d62728",
    "memory": "#1f77b4",
    "communication": "#9467bd",
    "overhead": "#7f7f7f",
    "latency": "#ff7f0e",  # neither roof reached (predict.py; measured: too little work per kernel)
    "unknown": "#bcbd22",
}
PHASE_MARKERS = {"prefill": "o", "decode": "s"}
OTHER_COLOR = "#d9d9d9"
NBSP = "\u00a0"  # joins words that a wrapped note must not split
LABEL_MIN_SHARE = 0.01  # ops below this share of their phase's time are named in the note, not labelled
SWEEP_VARIABLES = ("batch_size", "prompt_len", "context_len")
X_LABELS = {
    "batch_size": "batch size [sequences]",
    "prompt_len": "prompt length [tokens]",
    "context_len": "context length [tokens]",
}
METRIC_LABELS = {
    "decode_tokens_per_s": ("decode throughput [tokens/s]", ""),
    "prefill_tokens_per_s": ("prefill throughput [tokens/s]", ""),
    "decode_time_s": ("decode step latency [s]", "s"),
    "decode_roofline_time_s": ("decode step latency, pure roofline [s]", "s"),
    "prefill_time_s": ("time to first token [s]", "s"),
    "prefill_roofline_time_s": ("time to first token, pure roofline [s]", "s"),
    "generate_time_s": ("generation time [s]", "s"),
}


# ------------------------------------------------------------------------------------------------
# 1. the roofline


def roofline_chart(
    ops: pd.DataFrame, spec: HardwareSpec | str, ax: Axes, measured: pd.DataFrame = None, point: int = 0
) -> Axes:
    """Draw the roofline of ``ops`` on ``spec`` into ``ax``; return ``ax``.

    One horizontal roof per compute dtype in ``ops`` plus the memory slope (datasheet dashed; measured
    solid where the spec is calibrated), a marker at each ridge, and one point per op with FLOPs:
    colour by bound class, shape by phase, area by share of its phase's time. ``measured`` (columns
    phase, op, flops, measured_time_s; flops and time of the same unit of work, a call or all calls)
    adds a hollow point per op at flops / measured_time_s, joined to the analytic point.
    ``spec`` is a HardwareSpec or a shipped name. Of a sweep, only ``point`` is drawn.
    Raises SpecError when the spec lacks a dtype the ops compute in.
    """
    spec = load_spec(spec)
    ops = _one_point(ops, point)
    phases = [p for p in PHASES if p in set(ops["phase"].astype(str))]
    flops = ops["flops"].to_numpy(dtype=float)
    time_s = ops["time_s"].to_numpy(dtype=float)
    intensity = ops["arithmetic_intensity"].to_numpy(dtype=float)
    category = ops["category"].astype(str) if "category" in ops else pd.Series("", index=ops.index)
    collective = (category == "collective").to_numpy()
    plotted = (flops > 0) & (time_s > 0) & np.isfinite(intensity) & (intensity > 0) & ~collective
    pts = ops.loc[plotted].copy()
    pts["attained_flops_per_s"] = pts["flops"] / pts["time_s"]
    pts["marker_area"] = _marker_area(pts["share"].to_numpy(dtype=float))

    # roofs: datasheet always, measured where calibrated
    dtypes = list(dict.fromkeys(str(d) for d in ops["compute_dtype"]))
    roofs = [
        (
            "datasheet",
            "--",
            {d: spec.peak_flops_per_s[d] for d in dtypes if d in spec.peak_flops_per_s},
            spec.mem_bytes_per_s,
        )
    ]
    for d in dtypes:
        spec.ceiling_flops(d)  # raises SpecError, naming the fix, for a dtype the part lacks
    if spec.is_calibrated:
        roofs.append(("measured", "-", {d: spec.ceiling_flops(d) for d in dtypes}, spec.ceiling_bytes_per_s()))

    # limits first: roofs span the whole x range, labels cluster in decades of it
    ridges = [peak / bw for _, _, peaks, bw in roofs for peak in peaks.values()]
    peaks_all = [peak for _, _, peaks, _ in roofs for peak in peaks.values()]
    x_pts = pts["arithmetic_intensity"].to_numpy(dtype=float)
    y_pts = pts["attained_flops_per_s"].to_numpy(dtype=float)
    if measured is not None:
        measured = _measured_points(measured, pts)
        y_pts = np.concatenate([y_pts, measured["measured_flops_per_s"].to_numpy(dtype=float)])
    x_lo = min([0.1] + list(x_pts)) / 3
    x_hi = max(ridges + list(x_pts)) * 30
    y_lo = min(list(y_pts) + [x_lo * min(bw for *_, bw in roofs)]) / 3
    y_hi = max(peaks_all) * 6
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)

    slope_labels = []
    roof_texts = []
    for kind, style, peaks, bw in roofs:
        top_ridge = max(peak / bw for peak in peaks.values()) if peaks else x_hi
        (slope,) = ax.plot(
            [x_lo, top_ridge],
            [x_lo * bw, top_ridge * bw],
            ls=style,
            color="black",
            lw=1.2,
            gid=f"roof-memory-{kind}",
            zorder=2,
        )
        # datasheet label above its slope, measured (the lower one) below: they never collide
        slope_labels.append(
            ax.text(
                x_lo * 2.5,
                x_lo * 2.5 * bw,
                f"memory {si(bw, 'B/s')} ({kind})",
                fontsize=7.5,
                ha="left",
                va="bottom" if kind == "datasheet" else "top",
                rotation_mode="anchor",
                zorder=2,
            )
        )
        slope_labels[-1]._roof_line = slope
        for dtype, peak in sorted(peaks.items(), key=lambda kv: -kv[1]):
            ridge = peak / bw
            ax.plot([ridge, x_hi], [peak, peak], ls=style, color="black", lw=1.2, gid=f"roof-{dtype}-{kind}", zorder=2)
            ax.plot([ridge], [peak], marker="D", ms=4, color="black", ls="none", gid=f"ridge-{dtype}-{kind}", zorder=3)
            unit = "OP/s" if dtype.startswith("int") else "FLOP/s"
            # the roof's name at its right end, clear of the points near the ridge; the ridge above-left
            # of its marker, where nothing can sit (above the memory slope)
            # datasheet labels above their roof, measured (the lower roof) below theirs: no collision
            above = kind == "datasheet"
            roof_texts.append(
                ax.text(
                    x_hi / 1.15,
                    peak * 1.08 if above else peak / 1.08,
                    f"{dtype} {si(peak, unit)} ({kind})",
                    fontsize=7.5,
                    ha="right",
                    va="bottom" if above else "top",
                    zorder=2,
                )
            )
            roof_texts.append(
                ax.annotate(
                    f"ridge {ridge:.3g} FLOP/B",
                    (ridge, peak),
                    xytext=(-4, 3) if above else (4, -3),
                    textcoords="offset points",
                    fontsize=7,
                    ha="right" if above else "left",
                    va="bottom" if above else "top",
                    zorder=2,
                )
            )

    # the ops, largest first so small markers stay visible on top of large ones
    # (decode first at equal size: a prefill circle on top of a decode square leaves both visible)
    pts["_decode_first"] = (pts["phase"].astype(str) != "decode").astype(int)
    pts = pts.sort_values(["marker_area", "_decode_first"], ascending=[False, True], kind="stable")
    run_id = (pts["phase"].astype(str) != pts["phase"].astype(str).shift()).cumsum()
    for _, rows in pts.groupby(run_id, sort=False):  # one scatter per run of one phase, in drawing order
        phase = str(rows["phase"].iloc[0])
        ax.scatter(
            rows["arithmetic_intensity"],
            rows["attained_flops_per_s"],
            s=rows["marker_area"],
            c=[BOUND_COLORS[str(b)] for b in rows["bound"]],
            marker=PHASE_MARKERS[phase],
            edgecolors="white",
            linewidths=0.6,
            zorder=4,
            gid=f"ops-{phase}",
        )
    if measured is not None and len(measured):
        for phase in phases:
            rows = measured[measured["phase"] == phase]
            if not len(rows):
                continue
            for r in rows.itertuples():
                ax.plot(
                    [r.arithmetic_intensity] * 2,
                    [r.attained_flops_per_s, r.measured_flops_per_s],
                    color=BOUND_COLORS[r.bound],
                    lw=0.7,
                    alpha=0.8,
                    zorder=3,
                    gid="measured-link",
                )
            ax.scatter(
                rows["arithmetic_intensity"],
                rows["measured_flops_per_s"],
                s=rows["marker_area"],
                facecolors="none",
                edgecolors=[BOUND_COLORS[b] for b in rows["bound"]],
                linewidths=1.3,
                marker=PHASE_MARKERS[phase],
                zorder=4,
                gid=f"measured-{phase}",
            )

    # labels: coincident points of one phase share a label; small ops go to the note
    labels, unlabelled = _op_labels(pts, ax, both_phases=len(phases) > 1)
    annotations = []
    for x, y, text, radius_pt in labels:
        annotations.append(
            ax.annotate(
                text,
                (x, y),
                xytext=(radius_pt + 4, radius_pt + 4),
                textcoords="offset points",
                fontsize=7.5,
                ha="left",
                va="bottom",
                zorder=6,
                annotation_clip=False,
                bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="0.8", lw=0.5, alpha=0.85),
                arrowprops=dict(arrowstyle="-", color="0.35", lw=0.6, shrinkA=0, shrinkB=radius_pt),
            )
        )
        annotations[-1]._radius_pt = radius_pt
        annotations[-1].set_in_layout(False)

    note = _roofline_note(ops, collective, flops, unlabelled, phases)
    note_artist = None
    if note:
        note_artist = ax.text(
            0.01,
            0.99,
            note,
            transform=ax.transAxes,
            fontsize=7,
            va="top",
            ha="left",
            zorder=7,
            bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="0.8", lw=0.5, alpha=0.9),
        )

    ax.set_xlabel("arithmetic intensity [FLOP/B]")
    with_measured = measured is not None and len(measured) > 0
    ax.set_ylabel(
        "attained [FLOP/s]: predicted (filled), measured (hollow)" if with_measured else "predicted attained [FLOP/s]"
    )
    ax.xaxis.set_major_formatter(FuncFormatter(_intensity_tick))
    ax.yaxis.set_major_formatter(EngFormatter(unit="FLOP/s", places=0))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(labelsize=8)
    ax.grid(True, which="major", color="0.92", lw=0.6, zorder=0)

    legend = _roofline_legend(ax, pts, phases, spec.is_calibrated, with_measured)
    obstacles = roof_texts + [legend] + ([note_artist] if note_artist else [])
    marker_boxes = list(zip(pts["arithmetic_intensity"], pts["attained_flops_per_s"], np.sqrt(pts["marker_area"]) / 2))
    if measured is not None:
        marker_boxes += list(
            zip(
                measured["arithmetic_intensity"], measured["measured_flops_per_s"], np.sqrt(measured["marker_area"]) / 2
            )
        )
    marker_boxes += [(peak / bw, peak, 3.0) for _, _, peaks, bw in roofs for peak in peaks.values()]  # ridges
    ax.add_artist(
        _DrawHook(
            lambda renderer: (
                _place_labels(annotations, obstacles, marker_boxes, ax, renderer),  # the ops first: they matter most
                _place_slope_labels(slope_labels, marker_boxes, roof_texts + annotations, ax, renderer),
            )
        )
    )
    return ax


def _intensity_tick(value, _pos=None) -> str:
    """0.1 FLOP/B rather than 100 mFLOP/B; 1 kFLOP/B above 1000."""
    if value < 1:
        return f"{value:g} FLOP/B"
    return EngFormatter(unit="FLOP/B", places=0)(value)


def _marker_area(share: np.ndarray) -> np.ndarray:
    """Marker area in pt^2: 25 for a negligible op, ~625 for one holding all of its phase's time."""
    return 25 + 600 * np.nan_to_num(share, nan=0.0)


def _measured_points(measured: pd.DataFrame, pts: pd.DataFrame) -> pd.DataFrame:
    """Join measured rows (phase, op, flops, measured_time_s) to the plotted analytic points."""
    need = {"phase", "op", "flops", "measured_time_s"}
    missing = sorted(need - set(measured.columns))
    if missing:
        raise ValueError(f"measured frame lacks column(s) {', '.join(missing)}; it needs {', '.join(sorted(need))}")
    m = measured[list(need)].copy()
    m["phase"] = m["phase"].astype(str)
    m["op"] = m["op"].astype(str)
    m = m[(m["measured_time_s"] > 0) & (m["flops"] > 0)]
    m["measured_flops_per_s"] = m["flops"] / m["measured_time_s"]
    a = pts[["phase", "op", "arithmetic_intensity", "attained_flops_per_s", "bound", "marker_area"]].copy()
    a["phase"] = a["phase"].astype(str)
    a["op"] = a["op"].astype(str)
    a["bound"] = a["bound"].astype(str)
    return a.merge(m[["phase", "op", "measured_flops_per_s"]], on=["phase", "op"], how="inner")


def _op_labels(pts: pd.DataFrame, ax, both_phases: bool):
    """Cluster the points of each phase that sit within ~2% of the axes' log span of each other and
    build one label per cluster that holds an op of at least LABEL_MIN_SHARE. Returns
    ([(x, y, text, marker radius in points)], [(phase, op) left unlabelled])."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    tol_x = 0.025 * math.log10(x1 / x0)
    tol_y = 0.025 * math.log10(y1 / y0)
    labels, unlabelled = [], []
    for phase in PHASES:
        rows = pts[pts["phase"].astype(str) == phase].sort_values("share", ascending=False, kind="stable")
        clusters = []  # [lx, ly, [row, ...]]: seeded by the largest op
        for r in rows.itertuples():
            lx, ly = math.log10(r.arithmetic_intensity), math.log10(r.attained_flops_per_s)
            for c in clusters:
                if abs(c[0] - lx) <= tol_x and abs(c[1] - ly) <= tol_y:
                    c[2].append(r)
                    break
            else:
                clusters.append([lx, ly, [r]])
        for lx, ly, members in clusters:
            big = [r for r in members if r.share >= LABEL_MIN_SHARE]
            small = [r for r in members if r.share < LABEL_MIN_SHARE]
            if not big:
                unlabelled += [(phase, r.op) for r in small]
                continue
            unlabelled += [(phase, r.op) for r in small]  # named in the note, counted in the label
            text = _cluster_text(big, len(small))
            if both_phases:
                text = f"{phase}: {text}"
            radius = math.sqrt(max(r.marker_area for r in members)) / 2  # scatter size is an area in pt^2
            labels.append((sum(r.share for r in members), 10**lx, 10**ly, text, radius))
    labels.sort(key=lambda label: -label[0])  # the label of the most time is placed first
    labels = [label[1:] for label in labels]
    return labels, unlabelled


def _cluster_text(rows, n_small: int) -> str:
    """'gate_proj, up_proj, down_proj 21% each; q_proj 8.0%' (+ 'and 3 < 1%'), wrapped."""
    groups = {}
    for r in rows:  # ops with the same share (the same matmul shape) are named together
        groups.setdefault(f"{100 * r.share:.2g}", []).append(mathtext_safe(r.op))
    parts = [f"{', '.join(names)} {pct}%{' each' if len(names) > 1 else ''}" for pct, names in groups.items()]
    if n_small:
        parts.append(f"+{n_small} under {100 * LABEL_MIN_SHARE:g}%")
    return "\n".join(textwrap.fill(p, 44, subsequent_indent="  ") for p in parts)


def _roofline_note(ops, collective, flops, unlabelled, phases) -> str:
    """The ops that are not on the chart (no FLOPs, collectives) and the small ones left unlabelled."""
    lines = []
    names = ops["op"].astype(str).map(mathtext_safe).to_numpy()
    zero = list(dict.fromkeys(names[(flops <= 0) & ~collective]))
    if zero:
        lines.append("no FLOPs, not plotted: " + ", ".join(zero))
    coll = ops.loc[collective]
    if len(coll):
        parts = []
        for op in dict.fromkeys(coll["op"].astype(str)):
            rows = coll[coll["op"].astype(str) == op]
            shares = {str(p): s for p, s in zip(rows["phase"], rows["share"])}
            parts.append(
                f"{mathtext_safe(op)} " + " / ".join(f"{100 * shares[p]:.2g}%" if p in shares else "-" for p in phases)
            )
        parts = [p.replace(" ", NBSP) for p in parts]
        head = "collectives, not plotted (share of " + " / ".join(phases) + " time): "
        lines.append(head + ", ".join(parts))
    if unlabelled:
        small = list(dict.fromkeys(mathtext_safe(op) for _, op in unlabelled))
        lines.append(f"unlabelled, under {100 * LABEL_MIN_SHARE:g}% of phase time each: " + ", ".join(small))
    return "\n".join(textwrap.fill(line, 62, subsequent_indent="   ") for line in lines).replace(NBSP, " ")


def _roofline_legend(ax, pts, phases, calibrated: bool, with_measured: bool):
    handles = []
    present = [b for b in BOUNDS if b in set(pts["bound"].astype(str))]
    for b in present:  # the class of the filled (predicted) points
        handles.append(
            Line2D([], [], ls="none", marker="o", ms=7, mfc=BOUND_COLORS[b], mec="white", label=f"{b}-bound")
        )
    for p in phases:
        handles.append(Line2D([], [], ls="none", marker=PHASE_MARKERS[p], ms=7, mfc="white", mec="black", label=p))
    handles.append(Line2D([], [], ls="--", color="black", lw=1.2, label="datasheet ceiling"))
    if calibrated:
        handles.append(Line2D([], [], ls="-", color="black", lw=1.2, label="measured ceiling"))
    if with_measured:
        handles.append(
            Line2D([], [], ls="none", marker="o", ms=7, mfc="none", mec="0.3", mew=1.3, label="measured time")
        )
    return ax.legend(
        handles=handles,
        loc="lower right",
        fontsize=7.5,
        title="area: share of predicted phase time",
        title_fontsize=7.5,
        framealpha=0.9,
    )


# ------------------------------------------------------------------------------------------------
# 2. where the time goes


def time_breakdown(ops: pd.DataFrame, ax: Axes, by: str = "op", top: int = 8, point: int = 0) -> Axes:
    """Draw one stacked horizontal bar per phase of ``ops`` into ``ax``; return ``ax``.

    Segments are the ``top`` ops by time (the rest merged into "other") with ``by='op'``, or the bound
    classes with ``by='bound'``; widths are seconds (every call of the op: ``total_time_s``, the step's
    basis, where the frame has it; else count x time_s). Segments
    wide enough to hold it carry their percentage of the phase. Of a sweep, only ``point`` is drawn.
    Raises ValueError for another ``by``.
    """
    if by not in ("op", "bound"):
        raise ValueError(f"by must be 'op' or 'bound', got {by!r}")
    ops = _one_point(ops, point)
    phases = [p for p in PHASES if p in set(ops["phase"].astype(str))]
    seen, percent_texts = set(), []
    for i, phase in enumerate(phases):
        rows = ops[ops["phase"].astype(str) == phase]
        if "total_time_s" in rows:  # each op's part of the step (predict.py)
            total_s = rows["total_time_s"].to_numpy(dtype=float)
        else:
            total_s = rows["count"].to_numpy(dtype=float) * rows["time_s"].to_numpy(dtype=float)
        keys = rows[by].astype(str).to_numpy()
        t = pd.Series(total_s).groupby(keys, sort=False).sum()  # model order breaks ties
        if by == "op":
            rounded = (t / t.max()).round(9) if t.max() > 0 else t  # equal shapes tie despite float noise
            t = t.iloc[np.argsort(-rounded.to_numpy(), kind="stable")]
            segments = list(t.iloc[:top].items())
            rest = float(t.iloc[top:].sum())
            if rest > 0:
                segments.append(("other", rest))
        else:
            segments = [(b, float(t.get(b, 0.0))) for b in BOUNDS if t.get(b, 0.0) > 0]
        phase_total = sum(v for _, v in segments)
        left = 0.0
        for name, value in segments:
            color = (OTHER_COLOR if name == "other" else op_color(name)) if by == "op" else BOUND_COLORS[name]
            label = mathtext_safe(name) if by == "op" else f"{name}-bound"
            ax.barh(
                i,
                value,
                left=left,
                height=0.6,
                color=color,
                edgecolor="white",
                linewidth=0.8,
                label=None if name in seen else label,
                gid=f"segment-{phase}-{name}",
            )
            seen.add(name)
            share = value / phase_total if phase_total > 0 else 0.0
            if share >= 0.04:
                percent_texts.append(
                    (
                        ax.text(
                            left + value / 2,
                            i,
                            f"{100 * share:.0f}%",
                            ha="center",
                            va="center",
                            fontsize=7.5,
                            color=_text_color(color),
                            zorder=5,
                        ),
                        value,
                    )
                )
            left += value
        ax.text(left, i, f"  {si(phase_total, 's')}", ha="left", va="center", fontsize=8.5, fontweight="bold")
    ax.set_yticks(range(len(phases)))
    ax.set_yticklabels([{"prefill": "prefill\n(whole prompt)", "decode": "decode\n(one step)"}[p] for p in phases])
    ax.set_ylim(len(phases) - 0.5, -0.5)  # first phase on top
    ax.set_xlabel("predicted time [s]")
    ax.xaxis.set_major_formatter(EngFormatter(unit="s"))
    ax.set_xlim(0, ax.get_xlim()[1] * 1.12)  # room for the totals
    ax.tick_params(labelsize=8)
    ax.grid(True, axis="x", color="0.92", lw=0.6)
    ax.set_axisbelow(True)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=7.5,
        frameon=False,
        title="by op (predicted)" if by == "op" else "by predicted bound class",
        title_fontsize=8,
    )
    ax.add_artist(_DrawHook(lambda renderer: _fit_percentages(percent_texts, ax, renderer)))
    return ax


# one colour per op, the same in every chart: the ops of the shipped model families in a fixed order, each
# its own colour of tab20 (dark shades, then light), tab20b and tab20c without their greys (grey means
# "other" and "overhead" elsewhere); an op outside this list gets a colour from its name's CRC-32
KNOWN_OPS = (
    "q_proj", "k_proj", "v_proj", "attention", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head",
    "embedding", "attn_norm", "mlp_norm", "rope", "kv_cache_write", "act", "attn_residual", "mlp_residual",
    "final_norm", "router", "experts", "shared_experts", "shared_expert", "shared_expert_gate", "qkv_proj",
    "gate_up_proj", "sliding_attention", "q_norm", "k_norm", "post_attn_norm", "post_mlp_norm", "pos_embedding",
    "embed_scale", "logit_softcap", "q_a_proj", "q_a_norm", "q_b_proj", "kv_a_proj", "kv_a_norm", "kv_b_proj",
    "q_absorb", "v_absorb", "attn_all_reduce", "mlp_all_reduce", "embed_all_reduce", "logits_all_gather",
    "pp_send", "moe_dispatch", "moe_combine",
)  # fmt: skip
_PALETTE = (
    # tab20, dark shades then light, without the greys (#7f7f7f, #c7c7c7)
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
    # tab20b
    "#393b79", "#5254a3", "#6b6ecf", "#9c9ede", "#637939", "#8ca252", "#b5cf6b", "#cedb9c", "#8c6d31",
    "#bd9e39", "#e7ba52", "#e7cb94", "#843c39", "#ad494a", "#d6616b", "#e7969c", "#7b4173", "#a55194",
    "#ce6dbd", "#de9ed6",
    # tab20c without its greys
    "#3182bd", "#6baed6", "#9ecae1", "#c6dbef", "#e6550d", "#fd8d3c", "#fdae6b", "#fdd0a2", "#31a354",
    "#74c476", "#a1d99b", "#c7e9c0", "#756bb1", "#9e9ac8", "#bcbddc", "#dadaeb",
)  # fmt: skip
OP_COLORS = {name: _PALETTE[i] for i, name in enumerate(KNOWN_OPS)}


def op_color(name: str) -> str:
    """The colour of op ``name`` in every chart: fixed per name (``OP_COLORS``), never by its position in
    a chart, so q_proj is the same blue in a prefill and a decode breakdown, of any model."""
    import zlib

    name = str(name)
    return OP_COLORS.get(name) or _PALETTE[zlib.crc32(name.encode("utf-8")) % len(_PALETTE)]


def _text_color(color) -> str:
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(color)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.6 else "white"


def _fit_percentages(texts, ax, renderer):
    """Hide each percentage that is wider than its segment at the axes' current size."""
    x_to_px = ax.transData.transform([[0, 0], [1, 0]])
    px_per_s = x_to_px[1, 0] - x_to_px[0, 0]
    for text, width_s in texts:
        text.set_visible(True)
        text.set_visible(text.get_window_extent(renderer).width + 4 <= width_s * px_per_s)


# ------------------------------------------------------------------------------------------------
# 3. a sweep


def sweep_chart(summary: pd.DataFrame, ax: Axes, x: str = "batch_size", metric: str = "decode_tokens_per_s") -> Axes:
    """Draw ``metric`` of a sweep's ``summary`` against ``x`` into ``ax`` (log x); return ``ax``.

    Where a second variable also varies, one line per value of it. With ``x='batch_size'`` and a decode
    metric, a vertical line marks ``decode_ridge_batch``, where decode's weight matmuls turn
    compute-bound. Points whose weights and KV cache do not fit in GPU memory are drawn hollow.
    Raises ValueError for a column the summary lacks.
    """
    for col in (x, metric):
        if col not in summary.columns:
            raise ValueError(f"summary has no column '{col}'; it has: {', '.join(summary.columns)}")
    others = _line_variables(summary, x)
    groups = [((), summary)] if not others else list(summary.groupby(others, sort=True))
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    any_unfit = False
    lines = []  # (rows, colour) per line
    for k, (key, rows) in enumerate(groups):
        rows = rows.sort_values(x)
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{_short(c)} {v:g}" for c, v in zip(others, key)) or None
        color = cmap(k / max(1, len(groups) - 1) * 0.9) if len(groups) > 1 else "#1f77b4"
        marker = "o" if len(rows) <= 40 else None
        ax.plot(rows[x], rows[metric], color=color, marker=marker, ms=4, lw=1.5, label=label, gid="sweep-line")
        lines.append((rows, color))
        if "fits_in_memory" in rows:
            unfit = rows[~rows["fits_in_memory"].astype(bool)]
            if len(unfit):
                any_unfit = True
                ax.plot(
                    unfit[x],
                    unfit[metric],
                    ls="none",
                    marker="o",
                    ms=7,
                    mfc="white",
                    mec=color,
                    mew=1.3,
                    gid="sweep-unfit",
                )
    ax.set_xscale("log")
    values = np.sort(summary[x].unique())
    if len(values) <= 12:
        ax.xaxis.set_major_locator(FixedLocator(values))
        ax.xaxis.set_minor_locator(FixedLocator([]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos=None: f"{v:g}"))  # 1024, not '1k'
    else:
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    label, unit = _metric_label(metric)
    y = summary[metric].to_numpy(dtype=float)
    y = y[np.isfinite(y) & (y > 0)]
    if len(y) and y.max() / y.min() > 20:
        ax.set_yscale("log")
        if y.max() / y.min() < 300:  # under ~2 decades: label 1, 2, 5 of each decade
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_ylim(0, (y.max() if len(y) else 1.0) * 1.1)  # from zero, so a flat line looks flat
    if unit == "%":
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    else:
        ax.yaxis.set_major_formatter(EngFormatter(unit=unit))
    ax.set_xlabel(X_LABELS.get(x, x))
    ax.set_ylabel("predicted " + label)

    if x == "batch_size" and "decode_ridge_batch" in summary and metric.startswith(("decode", "generate")):
        ridge = float(summary["decode_ridge_batch"].iloc[0])
        lo, hi = float(values.min()), float(values.max())
        if math.isfinite(ridge) and lo / 4 <= ridge <= hi * 4:
            ax.axvline(ridge, color=BOUND_COLORS["compute"], ls="--", lw=1.2, gid="ridge-batch")
            ax.annotate(
                f"decode compute-bound\nfrom batch {ridge:.0f}",
                (ridge, 0.0),
                xycoords=("data", "axes fraction"),
                xytext=(-4, 4),
                textcoords="offset points",
                ha="right",
                va="bottom",
                fontsize=7.5,
                color=BOUND_COLORS["compute"],
            )
        else:
            where = f"at batch {ridge:.0f}, off this chart" if math.isfinite(ridge) else "not below batch 65,536"
            ax.text(
                0.99,
                0.02,
                f"decode turns compute-bound {where}",
                transform=ax.transAxes,
                ha="right",
                va="bottom",
                fontsize=7.5,
                color=BOUND_COLORS["compute"],
            )
    if any_unfit:
        _mark_memory_limit(summary, lines, x, ax)
    handles, labels = ax.get_legend_handles_labels()
    if any_unfit:
        handles.append(Line2D([], [], ls="none", marker="o", ms=7, mfc="white", mec="0.3", mew=1.3))
        labels.append("does not fit in GPU memory")
    if handles:
        ax.legend(handles, labels, fontsize=7.5, framealpha=0.9, loc="best")
    ax.tick_params(labelsize=8)
    ax.grid(True, which="major", color="0.92", lw=0.6)
    return ax


MEMORY_LIMIT_COLOR = "#d62728"


def _mark_memory_limit(summary: pd.DataFrame, lines, x: str, ax) -> None:
    """Mark where a sweep stops fitting in GPU memory (weights + KV cache; the summary's
    ``fits_in_memory``): a dotted vertical line per line ((rows sorted by x, colour)) halfway, on the log
    axis, between its last point that fits and its first that does not, and the x range beyond the
    last of those limits shaded, labelled with the memory capacity."""
    limits = []
    for rows, color in lines:
        fits = rows["fits_in_memory"].astype(bool).to_numpy()
        xs = rows[x].to_numpy(dtype=float)
        if fits.all():
            continue
        first = int(np.argmax(~fits))
        limits.append((math.sqrt(xs[first - 1] * xs[first]) if first > 0 else xs[0] / 1.2, color))
    if not limits:
        return
    values = summary[x].to_numpy(dtype=float)
    x_lo, x_hi = float(values.min()) / 1.2, float(values.max()) * 1.2
    capacity = si(float(summary["mem_capacity_bytes"].iloc[0]), "B") if "mem_capacity_bytes" in summary else "the"
    ax.axvspan(
        max(limit for limit, _ in limits),
        x_hi,
        color=MEMORY_LIMIT_COLOR,
        alpha=0.08,
        lw=0,
        gid="memory-limit",
        label=f"beyond {capacity} of GPU memory (weights + KV cache)",
    )
    for limit, color in limits:
        ax.axvline(limit, color=MEMORY_LIMIT_COLOR if len(lines) == 1 else color, ls=":", lw=1.2, gid="memory-limit")
    ax.set_xlim(x_lo, x_hi)


def _line_variables(summary: pd.DataFrame, x: str) -> list:
    """The sweep variables other than ``x`` that vary on their own (not as a function of x or of an
    earlier one, like context_len = prompt_len + generated tokens)."""
    out = []
    for col in SWEEP_VARIABLES:
        if col == x or col not in summary or summary[col].nunique() <= 1:
            continue
        determined = any(summary.groupby(k)[col].nunique().max() <= 1 for k in [x] + out)
        if not determined:
            out.append(col)
    return out


def _short(col: str) -> str:
    return {"batch_size": "batch", "prompt_len": "prompt", "context_len": "context"}.get(col, col)


def _metric_label(metric: str):
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    name = metric.replace("_", " ")
    if "_share_" in metric:
        return f"{name} [%]", "%"
    for suffix, unit, shown in (
        ("_tokens_per_s", "", "tokens/s"),
        ("_per_s", "", "1/s"),
        ("_bytes", "B", "B"),
        ("_flops", "FLOP", "FLOP"),
        ("_s", "s", "s"),
    ):
        if metric.endswith(suffix):
            return f"{name} [{shown}]", unit
    return name, ""


# ------------------------------------------------------------------------------------------------
# 4. saving, and 5. whole figures


def trace_breakdown(by_range: pd.DataFrame, ax: Axes, top: int = 20) -> Axes:
    """GPU time of a trace's ranges (self time: kernels not inside a nested range), one horizontal
    bar each, longest first, coloured by measured class; the rest merged into "other". Returns ``ax``."""
    rows = by_range[by_range["self_gpu_time_s"] > 0].sort_values("self_gpu_time_s", ascending=False)
    shown, rest = rows.iloc[:top], float(rows["self_gpu_time_s"].iloc[top:].sum())
    names = list(shown["range"].astype(str)) + (["other"] if rest > 0 else [])
    times = list(shown["self_gpu_time_s"]) + ([rest] if rest > 0 else [])
    classes = list(shown["measured_bound"].astype(str)) + (["other"] if rest > 0 else [])
    colors = [BOUND_COLORS.get(c, OTHER_COLOR) for c in classes]
    total = sum(times)
    ax.barh(range(len(names)), times, color=colors, height=0.7)
    for i, t in enumerate(times):
        ax.text(t, i, f"  {si(t, 's')} ({100 * t / total:.0f}%)", va="center", fontsize=7.5)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([mathtext_safe(n) for n in names], fontsize=8)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel("measured GPU time [s]")
    ax.xaxis.set_major_formatter(EngFormatter(unit="s"))
    ax.set_xlim(0, max(times) * 1.35 if times else 1)
    ax.grid(True, axis="x", color="0.92", lw=0.6)
    ax.set_axisbelow(True)
    labels = {"unknown": "unknown (no FLOP/byte count)"}
    handles = [
        Patch(color=BOUND_COLORS[c], label=labels.get(c, f"{c}-bound (measured)"))
        for c in BOUND_COLORS
        if c in set(classes)
    ]
    if set(classes) - set(BOUND_COLORS):
        handles.append(Patch(color=OTHER_COLOR, label="other ranges"))
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=7.5, frameon=False)
    return ax


def figure_trace(trace: "TraceAnalysis", title: str = None) -> Figure:
    """The per-range breakdown of a measure.trace.TraceAnalysis as a Figure."""
    n = int((trace.by_range["self_gpu_time_s"] > 0).sum())
    fig = new_figure(9, 1.2 + 0.28 * min(n, 21))
    trace_breakdown(trace.by_range, fig.add_subplot())
    s = trace.summary
    fig.suptitle(
        mathtext_safe(
            title
            or f"{Path(trace.path).name} (measured): {si(s.get('gpu_time_s', 0), 's')} of kernels, "
            f"GPU idle {si(s.get('idle_s', 0), 's')} of {si(s.get('window_s', 0), 's')}",
            keep_newlines=True,
        ),
        fontsize=10,
    )
    return fig


def mathtext_safe(text: object, keep_newlines: bool = False) -> str:
    """``text`` drawn literally by matplotlib: each $ escaped (a $...$ pair would be parsed as mathtext,
    crash on bad TeX or lose its $ signs), control characters shown as escapes (render.term_safe)."""
    from roofline.render import term_safe

    return term_safe(text, keep_newlines=keep_newlines).replace("$", r"\$")


# formats written as the one file asked for; a .png or .svg name (or none) gets both PNG and SVG
SINGLE_FILE_FORMATS = (".pdf", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")


def save(fig: Figure, path_stem: str | Path) -> list:
    """Write ``fig`` as PATH_STEM.png (150 dpi) and PATH_STEM.svg; return the paths written.

    A stem ending in .png or .svg has that suffix replaced, so `--plot out.png` writes out.png and out.svg;
    one ending in .pdf, .jpg, .eps, .tiff or .webp is written as that one file (`-o x.pdf` writes a PDF).
    Missing parent folders are created. Each file is written atomically (roofline.io.atomic_write): a
    failure leaves the old file; it raises OutputError naming the file.
    """
    from roofline import io

    stem = Path(path_stem)
    suffix = stem.suffix.lower()
    if suffix in SINGLE_FILE_FORMATS:
        targets = [(stem, {"dpi": 150} if suffix not in (".pdf", ".eps", ".ps") else {})]
    else:
        if suffix in (".png", ".svg"):
            stem = stem.with_suffix("")
        targets = [(stem.parent / (stem.name + ".png"), {"dpi": 150}), (stem.parent / (stem.name + ".svg"), {})]
    written = []
    for path, kwargs in targets:
        with io.atomic_write(path, "wb") as fh:
            fig.savefig(fh, format=path.suffix[1:].lower(), **kwargs)
        written.append(path)
    return written


def new_figure(width_in: float, height_in: float) -> Figure:
    """A Figure with constrained layout and an Agg canvas: no pyplot, no display needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_roofline(
    ops: pd.DataFrame,
    spec: HardwareSpec | str,
    measured: pd.DataFrame | None = None,
    point: int = 0,
    title: str | None = None,
    model: "ModelConfig | str | None" = None,
    workload: "Workload | dict | None" = None,
    summary: pd.DataFrame | None = None,
) -> Figure:
    """The roofline of one point of ``ops`` (both phases on one chart) as a Figure, titled by
    ``chart_title`` (``model``, ``workload``; with ``summary``, whether the point fits in memory)."""
    spec = load_spec(spec)
    fig = new_figure(10, 6.8)
    ax = fig.add_subplot()
    roofline_chart(ops, spec, ax, measured=measured, point=point)
    default = chart_title(ops, spec, point, model, workload, summary, measured=measured is not None)
    ax.set_title(_titled(title, default, summary, point), fontsize=10, color=_title_color(summary, point))
    return fig


def _titled(title: str | None, default: str, summary: pd.DataFrame | None, point: int | None) -> str:
    """A caller's ``title`` (with the fit note below it: an unfit configuration always says so) or
    ``default``, drawn literally."""
    if title:
        note = fit_note(summary, point)
        title = title + ("\n" + note if note and note not in title else "")
    return mathtext_safe(title or default, keep_newlines=True)


def _title_color(summary: pd.DataFrame | None, point: int | None) -> str:
    return MEMORY_LIMIT_COLOR if fit_note(summary, point) else "black"


def figure_comparison(comparison: "Comparison", title: str | None = None) -> Figure:
    """The roofline of a ``roofline.compare.Comparison``: its analysis, and each op's measured time
    (rank 0, all calls of one full-model step) as a hollow point joined to the predicted one."""
    a = comparison.analysis
    return figure_roofline(
        a.ops,
        comparison.spec,
        measured=comparison.measured,
        title=title,
        model=a.model,
        workload=a.workload,
        summary=a.summary,
    )


def figure_analysis_measured(analysis: "Analysis", measured: pd.DataFrame) -> Figure:
    """The roofline of a ``roofline.analysis.Analysis`` (one point) with ``measured`` points (columns
    phase, op, flops, measured_time_s) beside the predicted ones, titled with its model and workload."""
    return figure_roofline(
        analysis.ops,
        analysis.spec,
        measured=measured,
        model=analysis.model,
        workload=analysis.workload,
        summary=analysis.summary,
    )


def figure_time_breakdown(
    ops: pd.DataFrame,
    by: str = "op",
    top: int = 8,
    point: int = 0,
    title: str | None = None,
    spec: HardwareSpec | str | None = None,
    model: "ModelConfig | str | None" = None,
    workload: "Workload | dict | None" = None,
    summary: pd.DataFrame | None = None,
) -> Figure:
    """Where the predicted time of each phase goes, one panel per phase (each with its own time scale),
    titled by ``chart_title``."""
    sel = _one_point(ops, point)
    phases = [p for p in PHASES if p in set(sel["phase"].astype(str))]
    fig = new_figure(9, 1.2 + 1.5 * len(phases))
    for phase in phases:
        time_breakdown(
            sel[sel["phase"].astype(str) == phase], fig.add_subplot(len(phases), 1, len(fig.axes) + 1), by=by, top=top
        )
    default = chart_title(ops, spec, point, model, workload, summary)
    fig.suptitle(_titled(title, default, summary, point), fontsize=10, color=_title_color(summary, point))
    return fig


def figure_sweep(
    summary: pd.DataFrame,
    x: str | None = None,
    title: str | None = None,
    spec: HardwareSpec | str | None = None,
    model: "ModelConfig | str | None" = None,
    workload: "Workload | dict | None" = None,
) -> Figure:
    """Predicted throughput and latency of a sweep against its main variable, one row per phase present;
    the memory limit marked on each chart, and named in the title when points do not fit."""
    x = x or _sweep_x(summary)
    phases = [p for p in PHASES if f"{p}_time_s" in summary]
    fig = new_figure(11, 0.8 + 3.6 * len(phases))
    for i, phase in enumerate(phases):
        sweep_chart(summary, fig.add_subplot(len(phases), 2, 2 * i + 1), x=x, metric=f"{phase}_tokens_per_s")
        sweep_chart(summary, fig.add_subplot(len(phases), 2, 2 * i + 2), x=x, metric=f"{phase}_time_s")
    default = chart_title(summary, spec, None, model, workload)
    fig.suptitle(_titled(title, default, summary, None), fontsize=10, color=_title_color(summary, None))
    return fig


def figure_result(
    ops: pd.DataFrame,
    summary: pd.DataFrame,
    spec: HardwareSpec | str,
    measured: pd.DataFrame | None = None,
    title: str | None = None,
    model: "ModelConfig | str | None" = None,
    workload: "Workload | dict | None" = None,
) -> Figure:
    """The figure for a result as `roofline analyze --plot` writes it: for one point, the roofline above
    the time breakdown by op; for a sweep, ``figure_sweep``. ``spec`` is a HardwareSpec or a name, as
    ``load_result_json`` returns it; ``model`` and ``workload`` name the configuration in the title
    (default: the frames' attrs). Raises RooflineError for one point without ops (a --summary
    result), UnknownHardware for a spec name that is not shipped."""
    if len(summary) > 1:
        return figure_sweep(summary, title=title, spec=spec, model=model, workload=workload)
    if not len(ops):
        raise RooflineError(
            "the result holds no ops (it was written with --summary), so it has no roofline; "
            "run `roofline analyze` without --summary"
        )
    spec = load_spec(spec)
    phases = [p for p in PHASES if p in set(ops["phase"].astype(str))]
    fig = new_figure(10, 7.2 + 1.3 * len(phases))
    grid = fig.add_gridspec(1 + len(phases), 1, height_ratios=[6.6] + [1.3] * len(phases))
    for i, phase in enumerate(phases):
        time_breakdown(ops[ops["phase"].astype(str) == phase], fig.add_subplot(grid[1 + i]), by="op")
    ax = fig.add_subplot(grid[0])
    roofline_chart(ops, spec, ax, measured=measured)
    default = chart_title(ops, spec, 0, model, workload, summary, measured=measured is not None)
    ax.set_title(_titled(title, default, summary, 0), fontsize=10, color=_title_color(summary, 0))
    return fig


def load_result_json(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Read what `roofline analyze --format json` writes. Returns (ops, summary, gpu name): the two
    frames with the analysis' columns (``ops`` is empty for a --summary file), with the model's name in
    ``frame.attrs['model']``. Raises InputFileError naming the problem and how to make a valid file."""
    from roofline import io
    from roofline.validate import parse_json

    path = Path(path)
    fix = f"write one with `roofline analyze MODEL --gpu GPU --format json --output {path.name}`"
    text = io.read_text(path, "result", MAX_RESULT_BYTES)
    try:
        data = parse_json(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}; {fix}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise InputFileError(
            f"{path}: {str(exc).splitlines()[0] if str(exc) else 'nested too deeply'}; {fix}"
        ) from None
    if not isinstance(data, dict) or "summary" not in data or "gpu" not in data:
        raise InputFileError(f"{path}: not a roofline result (needs keys gpu, summary and ops); {fix}")
    for key in ("summary", "ops"):
        rows = data.get(key) or []
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InputFileError(f"{path}: '{key}' must be a list of row objects; {fix}")
    if not isinstance(data["gpu"], str) or not data["gpu"]:
        raise InputFileError(f"{path}: 'gpu' must be the name of a spec, got {data['gpu']!r:.40}; {fix}")
    from roofline.render import JSON_SCHEMA_VERSION

    version = data.get("schema_version")
    if version is not None and (not isinstance(version, int) or not 1 <= version <= JSON_SCHEMA_VERSION):
        raise InputFileError(
            f"{path}: schema_version {version!r:.20} is not one this roofline reads (1-{JSON_SCHEMA_VERSION}): "
            f"written by a newer roofline, or edited; {fix}"
        )
    _check_result_columns(data, path, fix)
    summary = _numeric(pd.DataFrame(data["summary"]), keep={"fits_in_memory"}, where=f"{path}: summary", fix=fix)
    ops = _numeric(
        pd.DataFrame(data.get("ops") or []),
        keep={"phase", "op", "category", "compute_dtype", "bound"},
        where=f"{path}: ops",
        fix=fix,
    )
    if len(ops):
        ops["phase"] = pd.Categorical(ops["phase"], categories=[p for p in PHASES if p in set(ops["phase"])])
        ops["bound"] = pd.Categorical(ops["bound"], categories=BOUNDS)
        for col in ("op", "category", "compute_dtype"):
            if col in ops:
                ops[col] = pd.Categorical(ops[col], categories=list(dict.fromkeys(ops[col])))
        if "count" in ops:
            ops["count"] = ops["count"].astype(np.int64)
    if "fits_in_memory" in summary:
        summary["fits_in_memory"] = summary["fits_in_memory"].astype(bool)
    for frame in (ops, summary):
        frame.attrs["model"] = data.get("model")
        frame.attrs["workload"] = data.get("workload")
    return ops, summary, str(data["gpu"])


MAX_RESULT_BYTES = 100_000_000  # a 100 MB result JSON parses to about 1 GB of Python objects
# the columns the charts read, and the values their text columns may take
RESULT_OPS_COLUMNS = (
    "phase",
    "op",
    "count",
    "flops",
    "time_s",
    "arithmetic_intensity",
    "share",
    "bound",
    "compute_dtype",
)


def _check_result_columns(data: dict, path, fix: str) -> None:
    """Raise InputFileError naming the first column the charts need that a result's rows lack."""
    summary, ops = data["summary"], data.get("ops") or []
    if not summary:
        raise InputFileError(f"{path}: the result's summary is empty; {fix}")
    needed = {"batch_size"} | {f"{p}_tokens_per_s" for p in PHASES if f"{p}_time_s" in summary[0]}
    for what, rows, columns in (("summary", summary, needed), ("ops", ops, RESULT_OPS_COLUMNS)):
        for i, row in enumerate(rows):
            missing = [c for c in columns if c not in row]
            if missing:
                raise InputFileError(f"{path}: {what} row {i} has no '{missing[0]}' column; {fix}")
    for column, allowed in (("phase", PHASES), ("bound", BOUNDS)):
        bad = next((r[column] for r in ops if r[column] not in allowed), None)
        if bad is not None:
            raise InputFileError(f"{path}: ops {column} {bad!r:.40} is not one of {', '.join(allowed)}; {fix}")


def _numeric(frame: pd.DataFrame, keep, where: str = "result", fix: str = "") -> pd.DataFrame:
    """JSON nulls (NaN/inf written as null) back to NaN: every column not in ``keep`` as float. A value that is
    not a number (text, a list) or a negative count, time, FLOP or byte figure raises InputFileError naming the
    row and column: a chart of it would be silently wrong."""
    for col in frame.columns:
        if col in keep:
            continue
        values = pd.to_numeric(frame[col], errors="coerce").astype(float)
        # a column of numbers with a non-number in it (text columns such as prediction_source stay as they are)
        bad = (values.isna() & frame[col].notna()) if values.notna().any() else values.notna()
        if col.endswith(NON_NEGATIVE_SUFFIXES) or col in NON_NEGATIVE_COLUMNS:
            bad |= values < 0
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            shown = str(frame[col].iloc[row])[:40]
            raise InputFileError(f"{where}[{row}].{col}: '{shown}' is not a number this figure can take; {fix}")
        frame[col] = values
    return frame


NON_NEGATIVE_SUFFIXES = ("_s", "flops", "bytes", "_bytes_read", "_written", "share")
NON_NEGATIVE_COLUMNS = ("count", "arithmetic_intensity", "batch_size", "prompt_len", "context_len")


# ------------------------------------------------------------------------------------------------
# helpers


def _one_point(frame: pd.DataFrame, point: int) -> pd.DataFrame:
    """The rows of sweep point ``point`` (all rows when the frame has no point column)."""
    if "point" not in frame or frame["point"].nunique() <= 1:
        return frame
    rows = frame[frame["point"] == point]
    if not len(rows):
        raise ValueError(
            f"no point {point} in the frame; it has points {int(frame['point'].min())}..{int(frame['point'].max())}"
        )
    return rows


def _sweep_x(summary) -> str:
    for col in SWEEP_VARIABLES:
        if col in summary and summary[col].nunique() > 1:
            return col
    return "batch_size"


def _spec_name(spec):
    if spec is None:
        return None
    return spec.name if isinstance(spec, HardwareSpec) else str(spec)


def _setting(workload, key: str):
    """A workload setting from a Workload or from the dict a result JSON holds (None when absent)."""
    if workload is None:
        return None
    return workload.get(key) if isinstance(workload, dict) else getattr(workload, key, None)


def _model_name(model, frame):
    if model is None:
        return frame.attrs.get("model")
    return getattr(model, "name", None) or str(model)


def _parallel_text(workload) -> list:
    """'tp 4', 'pp 2 x 8 micro-batches', 'ep 8': the parallel settings above 1."""
    parts = []
    for key in ("tp", "pp", "ep"):
        value = _setting(workload, key)
        if value is not None and value > 1:
            extra = f" x {_setting(workload, 'microbatches')} micro-batches" if key == "pp" else ""
            parts.append(f"{key} {value}{extra}")
    return parts


def chart_title(
    frame: pd.DataFrame,
    spec: HardwareSpec | str | None,
    point: int | None = 0,
    model: "ModelConfig | str | None" = None,
    workload: "Workload | dict | None" = None,
    summary: pd.DataFrame | None = None,
    measured: bool = False,
) -> str:
    """The title of a chart: '{model} on {gpu}: {phases}, batch B, prompt P, context C, tp N; predicted',
    then a second line when the configuration does not fit in GPU memory (``fit_note``).

    ``frame``: the ops (one point of it, ``point``) or, with ``point=None``, a sweep's summary, whose
    varying columns are shown as ranges. ``model`` (a ModelConfig or a name) and ``workload`` (a
    Workload or a result JSON's dict) default to ``frame.attrs`` (``load_result_json`` sets them).
    ``measured``: the chart shows measured figures beside the predicted ones."""
    workload = workload if workload is not None else frame.attrs.get("workload")
    head = " on ".join(p for p in (_model_name(model, frame), _spec_name(spec)) if p)
    sel = frame if point is None else _one_point(frame, point)
    parts = []
    if "phase" in sel:
        phases = [p for p in PHASES if p in set(sel["phase"].astype(str))]
        parts.append(" + ".join(phases))
    elif summary is None and point is None:
        parts.append(" + ".join(p for p in PHASES if f"{p}_time_s" in sel))
    for col, word in (("batch_size", "batch"), ("prompt_len", "prompt"), ("context_len", "context")):
        if col in sel and len(sel):
            lo, hi = float(sel[col].min()), float(sel[col].max())
            parts.append(f"{word} {lo:g}" if lo == hi else f"{word} {lo:g}-{hi:g}")
    parts += _parallel_text(workload)
    text = (head + ": " if head else "") + ", ".join(p for p in parts if p)
    text += "; predicted and measured" if measured else "; predicted"
    note = fit_note(summary if summary is not None else (frame if point is None else None), point)
    return text + ("\n" + note if note else "")


def fit_note(summary: pd.DataFrame | None, point: int | None = 0) -> str:
    """'' when every point of ``summary`` (or sweep point ``point``) fits in GPU memory, else what does
    not fit: 'DOES NOT FIT in GPU memory: weights + KV cache 30 GB of 24 GB' for one point, 'N of M
    points do not fit in 24 GB of GPU memory (weights + KV cache)' for a sweep."""
    if summary is None or "fits_in_memory" not in summary or not len(summary):
        return ""
    rows = summary
    if point is not None and "point" in summary and summary["point"].nunique() > 1:
        rows = summary[summary["point"] == point]
    unfit = rows[~rows["fits_in_memory"].astype(bool)]
    if not len(unfit):
        return ""
    capacity = si(float(unfit["mem_capacity_bytes"].iloc[0]), "B")
    if len(rows) == 1:
        return f"DOES NOT FIT in GPU memory: weights + KV cache {si(float(unfit['memory_bytes'].iloc[0]), 'B')} of {capacity}"
    return f"{len(unfit)} of {len(rows)} points do not fit in {capacity} of GPU memory (weights + KV cache)"


class _DrawHook(Artist):
    """An invisible artist that runs ``fn(renderer)`` first when its Axes draws (lowest zorder), after
    the figure's layout is final: for placement that depends on the size of the axes in pixels."""

    def __init__(self, fn):
        super().__init__()
        self._fn = fn
        self.set_zorder(-1e9)
        self.set_in_layout(False)

    def draw(self, renderer):
        self._fn(renderer)

    def get_window_extent(self, renderer=None):
        from matplotlib.transforms import Bbox

        return Bbox.null()


def _place_slope_labels(texts, marker_boxes, obstacles, ax, renderer):
    """Rotate each memory-slope label to the slope's angle on screen and slide it along the slope to
    the leftmost place where it covers no marker (ops, ridges) and no other text."""
    markers = _marker_bboxes(marker_boxes, ax, renderer) + [a.get_window_extent(renderer) for a in obstacles]
    for text in texts:
        xs, ys = text._roof_line.get_data()
        (px0, py0), (px1, py1) = ax.transData.transform([[xs[0], ys[0]], [xs[1], ys[1]]])
        text.set_rotation(math.degrees(math.atan2(py1 - py0, px1 - px0)))
        best = None
        for t in np.linspace(0.02, 0.75, 25):
            x = xs[0] * (xs[1] / xs[0]) ** t
            text.set_position((x, x * ys[0] / xs[0]))
            box = text.get_window_extent(renderer)
            cost = sum(_overlap(box, m) for m in markers)
            if best is None or cost < best[0]:
                best = (cost, text.get_position())
            if cost == 0:
                break
        text.set_position(best[1])
        markers.append(text.get_window_extent(renderer))  # the next slope's label keeps clear of this one


def _marker_bboxes(marker_boxes, ax, renderer):
    """Screen boxes of the op markers: (x, y, radius in points) -> Bbox in pixels."""
    from matplotlib.transforms import Bbox

    scale = renderer.points_to_pixels(1.0)
    out = []
    for x, y, r in marker_boxes:
        px, py = ax.transData.transform((x, y))
        out.append(Bbox.from_extents(px - r * scale, py - r * scale, px + r * scale, py + r * scale))
    return out


def _place_labels(annotations, obstacles, marker_boxes, ax, renderer):
    """Greedy label placement: for each label (largest share first) try offsets around its point and
    keep the one that overlaps least with labels already placed, the other artists, the markers, and
    the outside of the axes."""
    frame = ax.get_window_extent(renderer)
    fixed = [a.get_window_extent(renderer) for a in obstacles if a is not None and a.get_visible()]
    markers = _marker_bboxes(marker_boxes, ax, renderer)
    pad = renderer.points_to_pixels(2.5)  # the label's rounded box around its text
    placed = []
    for ann in annotations:
        r = ann._radius_pt + 3
        best = None
        for d in (0, 10, 22, 38, 58, 84):
            for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)):
                dx, dy = sx * (r + d), sy * (r + d * 0.7)
                ann.set_position((dx, dy))
                ann.set_ha({1: "left", -1: "right", 0: "center"}[sx])
                ann.set_va({1: "bottom", -1: "top", 0: "center"}[sy])
                ann.update_positions(renderer)
                box = Text.get_window_extent(ann, renderer).padded(pad)  # the text and its box, no line
                cost = 5 * sum(_overlap(box, b) for b in placed)
                cost += sum(_overlap(box, b) for b in fixed) * 3 + sum(_overlap(box, b) for b in markers)
                cost += 10 * (box.width * box.height - _overlap(box, frame))
                cost += d * 2  # prefer labels close to their point
                if best is None or cost < best[0]:
                    best = (cost, (dx, dy), ann.get_ha(), ann.get_va(), box)
            if best[0] <= d * 2:  # nothing overlapped at this distance
                break
        _, pos, ha, va, box = best
        ann.set_position(pos)
        ann.set_ha(ha)
        ann.set_va(va)
        placed.append(box)


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


# ------------------------------------------------------------------------------------------------
# roofline validate: where the prediction misses (roofline/validation.py's frames)


def error_distribution(
    ops: pd.DataFrame,
    ax: Axes,
    key_ops: tuple = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "attention"),
) -> Axes:
    """Histogram of per-op errors (predicted / measured - 1, in %) over every case: the projections and
    attention beside the other ops, and the pure roofline's errors of the same key ops as an outline."""
    err = ops["error"].to_numpy(dtype=float) * 100
    roof = ops["roofline_error"].to_numpy(dtype=float) * 100
    key = ops["op"].isin(key_ops).to_numpy()
    finite = np.isfinite(err)
    both = np.concatenate([err[finite], roof[np.isfinite(roof)]])
    lo, hi = max(np.nanmin(both), -100.0), min(np.nanmax(both), 300.0)
    bins = np.linspace(min(lo, -30.0), max(hi, 30.0), 41)
    ax.hist(
        np.clip(err[finite & key], bins[0], bins[-1]),
        bins=bins,
        color="#1f77b4",
        alpha=0.8,
        label="projections + attention, predicted",
        gid="errors-key",
    )
    ax.hist(
        np.clip(err[finite & ~key], bins[0], bins[-1]),
        bins=bins,
        color="#ff7f0e",
        alpha=0.5,
        label="other ops, predicted",
        gid="errors-other",
    )
    ax.hist(
        np.clip(roof[np.isfinite(roof) & key], bins[0], bins[-1]),
        bins=bins,
        histtype="step",
        color="k",
        lw=1.0,
        label="projections + attention, pure roofline",
        gid="errors-roofline",
    )
    for x in (-25, -10, 10, 25):
        ax.axvline(x, color="#999999", lw=0.6, ls="--" if abs(x) == 10 else ":")
    ax.set_xlabel("predicted / measured - 1 [%] (clipped at the ends)")
    ax.set_ylabel("op occurrences (cases x ops)")
    ax.legend(fontsize=7, loc="upper right")
    return ax


def step_errors(steps: pd.DataFrame, ax: Axes) -> Axes:
    """Per case, the step error eager and CUDA graph (points), the targets as bands (10% decode, 15% prefill)."""
    cases = list(dict.fromkeys(steps["case"]))
    y = {c: i for i, c in enumerate(cases)}
    for mode, marker, color in (("eager", "o", "#1f77b4"), ("graph", "s", "#2ca02c")):
        s = steps[steps["mode"] == mode]
        ax.scatter(
            s["error"] * 100,
            [y[c] for c in s["case"]],
            marker=marker,
            color=color,
            label=mode,
            zorder=3,
            gid=f"steps-{mode}",
        )
        ax.scatter(
            s["roofline_error"] * 100,
            [y[c] for c in s["case"]],
            marker=marker,
            facecolors="none",
            edgecolors="#999999",
            zorder=2,
            label=f"{mode}, pure roofline",
        )
    ax.axvspan(-10, 10, color="#2ca02c", alpha=0.08)
    ax.axvspan(-15, 15, color="#2ca02c", alpha=0.05)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_yticks(range(len(cases)))
    ax.set_yticklabels(cases, fontsize=7)
    ax.set_xlabel("step: predicted / measured - 1 [%]")
    ax.legend(fontsize=7, loc="lower right")
    return ax


def figure_errors(ops: pd.DataFrame, steps: pd.DataFrame, title: str = None) -> Figure:
    """The error distribution of a validate run: per-op histogram and per-step errors side by side."""
    fig = new_figure(12, 5)
    error_distribution(ops, fig.add_subplot(1, 2, 1))
    if len(steps):
        step_errors(steps, fig.add_subplot(1, 2, 2))
    if title:
        fig.suptitle(title)
    return fig
