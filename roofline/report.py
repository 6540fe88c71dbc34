"""A report folder from an analysis (and, with a GPU, a profile): report.md, a self-contained
report.html, the charts as PNG and SVG, the tables as CSV, and the inputs needed to reproduce it.

    out/
      report.md  report.html
      roofline.png/.svg  breakdown.png/.svg  sweep.png/.svg
      ops.csv  summary.csv  advice.csv  [measured_ops.csv  measured_steps.csv  checks.csv]
      inputs/  model.yaml  spec.yaml  command.txt  versions.json

It analyses nothing itself beyond the batch-sweep chart: the analysis, the measurement and the advice
come in (a ``roofline.compare.Comparison`` and its advice) or, without a measurement, from one
``analyze`` and one ``advise``.
"""

import base64
import json
import platform
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from roofline import io, render
from roofline.advise import advise, render_advice
from roofline.analysis import Analysis, analyze
from roofline.config import ModelConfig, resolve_model_path
from roofline.errors import InputFileError
from roofline.specs import HardwareSpec

if TYPE_CHECKING:
    from roofline.compare import Comparison

# the ops columns shown in the report's tables
OP_COLUMNS = [
    "op",
    "count",
    "flops",
    "bytes_read",
    "bytes_written",
    "arithmetic_intensity",
    "bound",
    "time_s",
    "predicted_time_s",
    "host_s",
    "total_time_s",
    "share",
]
MEASURED_COLUMNS = [
    "phase",
    "op",
    "n_kernels",
    "measured_time_s",
    "predicted_time_s",
    "measured_over_predicted",
    "predicted_bound",
    "measured_bound",
    "evidence",
]
SWEEP_BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


def write_report(
    model: ModelConfig | str | Path,
    gpu: HardwareSpec | str | Path,
    out_dir: str | Path,
    command_line: str = "",
    comparison: "Comparison | None" = None,
    advice: pd.DataFrame | None = None,
    checks: pd.DataFrame | None = None,
    advice_scores: pd.DataFrame | None = None,
    progress: Callable[[str], None] | None = None,
    settings: str = "",
    **overrides: object,
) -> Path:
    """Write the report folder of ``model`` on ``gpu`` with workload ``overrides``.

    ``comparison``: a roofline.compare.Comparison of the same model and workload (optional): its
    analysis is the report's, and its measured ops and steps get a section; without one, the report
    analyses ``model``. ``advice``: advise()'s frame for that analysis (computed here when None, for
    one point; a sweep's report has none);
    ``checks``: compare.check_advice's predicted-vs-achieved rows (optional); ``advice_scores``:
    validation.advice_scores' rows, the advisor scored on the GPU (optional). ``progress`` is called
    with the name of each stage as it starts ('analysing', 'charts 1/3', ...). ``settings``: the line
    naming every setting and where it came from (render.settings_line), shown under the title.
    Returns the path of report.md. Raises RooflineError for bad input, OSError if the folder cannot be written.
    """
    progress = progress or (lambda stage: None)
    if comparison is None:
        progress("analysing")
    analysis = comparison.analysis if comparison is not None else analyze(model, gpu, **overrides)
    measured = comparison.measured if comparison is not None else None
    if advice is None and len(analysis.summary) == 1:  # advice is for one point; a sweep's report has none
        progress("advising")
        advice = advise(comparison if comparison is not None else analysis)
    # built in a temporary folder beside out_dir and swapped in whole: a failure or a kill leaves the old
    # report; a folder holding files roofline did not write is refused (io.replace_folder)
    with io.replace_folder(out_dir, tool_version=_version()) as out:
        _write_folder(
            out, analysis, advice, measured, model, command_line, comparison, checks, progress, settings, advice_scores
        )
    return Path(out_dir) / "report.md"


def _version() -> str:
    from roofline import __version__

    return __version__


def _write_folder(
    out: Path,
    analysis,
    advice,
    measured,
    model,
    command_line,
    comparison,
    checks,
    progress,
    settings,
    advice_scores=None,
) -> None:
    from roofline import plot

    ops, summary, spec = analysis.ops, analysis.summary, analysis.spec
    who = dict(model=analysis.model, workload=analysis.workload)
    single = len(summary) == 1
    figures = {}  # name -> a function drawing it: each is drawn and written in turn
    if single:
        figures["roofline"] = lambda: plot.figure_roofline(ops, spec, measured=measured, summary=summary, **who)
        figures["breakdown"] = lambda: plot.figure_time_breakdown(ops, spec=spec, summary=summary, **who)

        def batch_sweep():
            batches = tuple(SWEEP_BATCHES)
            sweep = analyze(analysis.model, spec, workload=replace(analysis.workload, batch_size=batches))
            return plot.figure_sweep(sweep.summary, spec=spec, **who)

        figures["sweep"] = batch_sweep
    else:
        figures["sweep"] = lambda: plot.figure_sweep(summary, spec=spec, **who)
    charts = {}
    for i, (name, draw) in enumerate(figures.items()):
        progress(f"charts {i + 1}/{len(figures)} ({name})")
        charts[name] = plot.save(draw(), out / name)[0]

    progress("tables")
    tables = {"ops": ops, "summary": summary}
    if advice is not None:
        tables["advice"] = advice.drop(columns=["overrides"])
    if comparison is not None:
        tables.update(measured_ops=comparison.ops, measured_steps=comparison.steps)
    if checks is not None:
        tables["checks"] = checks
    if advice_scores is not None and len(advice_scores):
        tables["advice_scores"] = advice_scores
    for name, frame in tables.items():
        (out / f"{name}.csv").write_text(render.to_csv(frame))
    progress("inputs")
    _write_inputs(analysis, model, out / "inputs", command_line, comparison)

    sections = _sections(analysis, advice, charts, comparison, checks, command_line, settings)
    if advice_scores is not None and len(advice_scores):
        heads = (i for i, sec in enumerate(sections) if sec[0] == "h2" and str(sec[1]).startswith("Reproduce"))
        at = next(heads, len(sections))
        sections[at:at] = _advice_score_sections(advice_scores)
    progress("report.md")
    (out / "report.md").write_text(_markdown(sections))
    progress("report.html")
    (out / "report.html").write_text(_html(sections, out))


def _write_inputs(analysis: Analysis, model, folder: Path, command_line: str, comparison) -> None:
    folder.mkdir(exist_ok=True)
    # copies of the files as read (a report re-run from its own inputs/ reads them before the swap)
    if isinstance(model, (str, Path)):
        path = resolve_model_path(model)  # a shipped name or a checkpoint folder -> the file read
        (folder / ("model" + path.suffix)).write_bytes(io.read_bytes(path, "model"))
    if analysis.spec.path:
        (folder / "spec.yaml").write_bytes(io.read_bytes(analysis.spec.path, "hardware spec"))
    (folder / "command.txt").write_text(command_line + "\n")
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("roofline", "numpy", "pandas", "matplotlib", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    if comparison is not None:
        versions["device"] = comparison.run.device
    (folder / "versions.json").write_text(json.dumps(versions, indent=2, default=str) + "\n")


def _sections(analysis, advice, charts, comparison, checks, command_line, settings="") -> list:
    """The report as a list of (kind, payload): ('h1'|'h2'|'p'|'pre', text), ('table', frame, formats),
    ('img', path). A configuration that does not fit in GPU memory says so under the title and in the
    heading of every section."""
    from roofline.plot import fit_note

    m, w, spec, s = analysis.model, analysis.workload, analysis.spec, analysis.summary
    unfit = fit_note(s, None)
    short = "does not fit in GPU memory" if len(s) == 1 else unfit.split(" (")[0]  # '2 of 3 points do not fit ...'
    out = [("h1", f"{m.name} on {spec.name}" + (f": {short}" if unfit else ""))]
    if unfit:
        out.append(
            (
                "p",
                f"Warning: {unfit}. Use more GPUs (--tp, --pp), a smaller batch or context, or quantised weights or KV cache.",
            )
        )
    if settings:
        out.append(("p", settings))
    out.append(
        (
            "p",
            f"{spec.full_name}; weights {w.weight_dtype}, activations {w.act_dtype}, KV cache {w.kv_dtype}; "
            f"{w.attn_impl} attention; tensor parallel {w.tp}; ceilings "
            f"{'measured (calibrated spec)' if spec.is_calibrated else 'from the datasheet'}.",
        )
    )
    for what, dtype, source in (
        ("Weights", w.weight_dtype, w.weight_dtype_source),
        ("KV cache", w.kv_dtype, w.kv_dtype_source),
    ):
        if source != "default":
            out.append(("p", f"{what} {dtype} from {source}."))
    out.append(("h2", "Summary"))
    out.append(("table", s, {k: v for k, v in render.SWEEP_TABLE.items() if k in s.columns}))
    if len(s) == 1:
        row = s.iloc[0]
        out.append(
            (
                "p",
                f"Weights {render.si(row['weight_bytes'], 'B')} + KV cache {render.si(row['kv_cache_bytes'], 'B')} "
                f"of {render.si(row['mem_capacity_bytes'], 'B')}; decode weight matmuls reach the ridge at "
                f"batch {row['decode_ridge_batch']:.0f}.",
            )
        )
    for name in ("roofline", "breakdown", "sweep"):
        if name in charts:
            out.append(("img", charts[name]))
    if len(s) == 1:
        for phase in w.phases:
            out.append(("h2", f"Ops, {phase}"))
            rows = analysis.ops[analysis.ops["phase"] == phase]
            out.append(("table", rows, {k: render.OP_TABLE[k] for k in OP_COLUMNS}))
    out.append(("h2", "What to try next"))
    if advice is None:
        out.append(
            ("p", "Advice is for one point: run `roofline advise` (or this report) at one batch, prompt and context.")
        )
    else:
        out.append(("pre", render_advice(advice) or "no change predicts a speedup of 2% or more"))
    if comparison is not None:
        out.append(("h2", "Measured on the GPU"))
        dev = comparison.run.device
        clocks = dev.get("clocks", {}).get("sm_clock_mhz", {})
        device = (
            f"{dev.get('gpu')}, driver {dev.get('driver')}, torch {dev.get('torch')} (CUDA {dev.get('cuda')}), "
            f"{dev.get('layers_run')} reference layers, SM clock median {clocks.get('median', '?')} MHz"
        )
        out.append(
            (
                "p",
                f"Device: {device}. Per-op times are the "
                "median over profiled iterations of the sum of the op's kernels, per occurrence; predicted "
                "is the analytic roofline time against the same spec.",
            )
        )
        steps, ops = comparison.steps, comparison.ops
        out.append(("table", steps, {k: v for k, v in render.STEP_TABLE.items() if k in steps}))
        out.append(("table", ops, {k: v for k, v in render.PROFILE_TABLE.items() if k in ops}))
        for note in comparison.notes:
            out.append(("p", f"Note: {note}"))
    if checks is not None and len(checks):
        out.append(("h2", "Suggestions checked on the GPU: predicted against achieved"))
        out.append(
            (
                "p",
                "Both speedups in the middle columns are for the reference model the GPU ran (its few "
                "decoder layers plus embedding and lm_head), so they compare like with like; the last "
                "column is the advisor's figure for the whole model. A larger batch is a tokens/s gain.",
            )
        )
        speedup = lambda v: "-" if v != v else f"{v:.2f}x"  # noqa: E731
        out.append(
            (
                "table",
                checks,
                {
                    "change": ("change", str),
                    "phase": ("phase", str),
                    "predicted_speedup_ref": ("predicted (ref)", speedup),
                    "achieved_speedup": ("achieved (ref)", speedup),
                    "predicted_speedup": ("predicted (full model)", speedup),
                    "baseline_s": ("baseline", lambda v: render.si(v, "s")),
                    "changed_s": ("with change", lambda v: render.si(v, "s")),
                    "how": ("how measured", str),
                },
            )
        )
    out.append(("h2", "Reproduce"))
    out.append(("pre", command_line or "(called from Python)"))
    out.append(
        (
            "p",
            "inputs/ holds the model file, the spec, this command line and the software versions; "
            "ops.csv and summary.csv hold every number above in SI units.",
        )
    )
    if unfit:  # every section's heading says so
        out = [("h2", f"{text} ({short})") if kind == "h2" else (kind, text, *rest) for kind, text, *rest in out]
    return out


def _advice_score_sections(scores: pd.DataFrame) -> list:
    """The advisor scored on the GPU (validation.advice_scores): its table, the count, the misses' reasons."""
    from roofline.validation import ADVICE_TABLE, advice_count

    out = [
        ("h2", "The advisor scored on the GPU: predicted against achieved (target: within 25%)"),
        (
            "p",
            "Each suggestion the reference model can run, applied to it and measured (profile_model's wall-clock "
            "steps); both speedups are for the reference model the GPU ran. " + advice_count(scores) + ".",
        ),
        ("table", scores, ADVICE_TABLE),
    ]
    ran = scores["achieved_speedup"].notna()
    for r in scores[ran & ~scores["within_25pct"].fillna(False).astype(bool)].itertuples(index=False):
        out.append(("p", f"Why {r.change} ({r.phase}) misses: {r.why}"))
    return out


def _markdown(sections) -> str:
    lines = []
    for kind, *payload in sections:
        if kind == "h1":
            lines += [f"# {render.md_escape(payload[0])}", ""]
        elif kind == "h2":
            lines += [f"## {render.md_escape(payload[0])}", ""]
        elif kind == "p":
            lines += [render.md_escape(payload[0]), ""]
        elif kind == "pre":
            lines += [render.md_fence(payload[0]), ""]
        elif kind == "table":
            lines += [render.text_table(payload[0], payload[1], markdown=True), ""]
        elif kind == "img":
            path = Path(payload[0])
            lines += [f"![{path.stem}]({path.name})", f"([SVG]({path.with_suffix('.svg').name}))", ""]
    return "\n".join(lines)


def _html(sections, folder: Path) -> str:
    body = []
    for kind, *payload in sections:
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{render.html_escape(payload[0])}</{kind}>")
        elif kind == "pre":
            body.append(f"<pre>{render.html_escape(payload[0])}</pre>")
        elif kind == "table":
            frame, formats = payload
            head = "".join(f"<th>{render.html_escape(h)}</th>" for h, _ in formats.values())
            rows = []
            for row in frame[list(formats)].itertuples(index=False):
                cells = "".join(f"<td>{render.html_escape(fmt(v))}</td>" for (_, fmt), v in zip(formats.values(), row))
                rows.append(f"<tr>{cells}</tr>")
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
        elif kind == "img":
            path = Path(payload[0])
            if not path.exists():
                raise InputFileError(f"chart {path} was not written")
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            body.append(f'<img alt="{render.html_escape(path.stem)}" src="data:image/png;base64,{data}">')
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}pre{white-space:pre-wrap}"
    )
    title = next((payload[0] for kind, *payload in sections if kind == "h1"), "roofline report")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{render.html_escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
