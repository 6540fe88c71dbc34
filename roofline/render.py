"""Rendering frames as text: table (SI prefixes), markdown, csv, json. Formatting happens only here;
frames and CSV/JSON hold raw SI numbers."""

import json
import math

import numpy as np
import pandas as pd

FORMATS = ("table", "csv", "json", "markdown")
_PREFIXES = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n")]


def si(value, unit: str = "", digits: int = 3) -> str:
    """1.2345e12, 'FLOP' -> '1.23 TFLOP'. NaN -> '-'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    v = float(value)
    if v == 0:
        return f"0 {unit}".strip()
    for scale, prefix in _PREFIXES:
        if abs(v) >= scale * 0.9995:
            return f"{v / scale:.{digits}g} {prefix}{unit}".strip()
    return f"{v:.{digits}g} {unit}".strip()


def percent(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"


def text_table(frame: pd.DataFrame, formats: dict, markdown: bool = False) -> str:
    """Render ``frame``'s columns named in ``formats`` (column -> (header, formatter))."""
    headers = [formats[c][0] for c in formats]
    rows = [[formats[c][1](v) for c, v in zip(formats, row)] for row in frame[list(formats)].itertuples(index=False)]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def to_records(frame: pd.DataFrame) -> list:
    """Rows as JSON-safe dicts: NaN/inf -> None, numpy scalars -> Python numbers."""
    records = []
    for row in frame.to_dict(orient="records"):
        clean = {}
        for k, v in row.items():
            if isinstance(v, (np.floating, float)):
                v = float(v)
                v = None if not math.isfinite(v) else v
            elif isinstance(v, np.integer):
                v = int(v)
            elif isinstance(v, np.bool_):
                v = bool(v)
            clean[k] = v
        records.append(clean)
    return records


def to_json(obj) -> str:
    return json.dumps(obj, indent=2, allow_nan=False)


def _f(fmt):
    return lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


OP_TABLE = {
    "op": ("op", str),
    "count": ("count", _f("{:d}")),
    "flops": ("FLOPs", lambda v: si(v, "FLOP")),
    "bytes_read": ("read", lambda v: si(v, "B")),
    "bytes_written": ("written", lambda v: si(v, "B")),
    "arithmetic_intensity": ("FLOP/B", lambda v: si(v)),
    "ridge_ratio": ("AI/ridge", lambda v: f"{v:.3g}"),
    "bound": ("bound", str),
    "time_s": ("roofline", lambda v: si(v, "s")),
    "predicted_time_s": ("predicted", lambda v: si(v, "s")),
    "host_s": ("host", lambda v: si(v, "s")),
    "total_time_s": ("x count", lambda v: si(v, "s")),
    "share": ("share", percent),
}

SWEEP_TABLE = {
    "batch_size": ("batch", _f("{:.0f}")),
    "prompt_len": ("prompt", _f("{:.0f}")),
    "context_len": ("context", _f("{:g}")),
    "prefill_time_s": ("TTFT", lambda v: si(v, "s")),
    "prefill_tokens_per_s": ("prefill tok/s", lambda v: si(v)),
    "decode_time_s": ("decode step", lambda v: si(v, "s")),
    "decode_tokens_per_s": ("decode tok/s", lambda v: si(v)),
    "decode_share_memory": ("decode mem-bound", percent),
    "decode_share_communication": ("decode comm", percent),
    "memory_bytes": ("weights+KV", lambda v: si(v, "B")),
    "fits_in_memory": ("fits", lambda v: "yes" if v else "NO"),
}

PROFILE_TABLE = {
    "rank": ("rank", _f("{:.0f}")),
    "phase": ("phase", str),
    "batch_size": ("batch", _f("{:.0f}")),
    "op": ("op", str),
    "n_kernels": ("kernels", lambda v: "-" if v != v else f"{v:.0f}"),
    "measured_time_s": ("measured", lambda v: si(v, "s")),
    "predicted_time_s": ("predicted", lambda v: si(v, "s")),
    "measured_over_predicted": ("meas/pred", lambda v: "-" if v != v else f"{v:.2f}"),
    "predicted_bound": ("predicted", str),
    "measured_bound": ("measured", str),
    "comm_time_s": ("comm", lambda v: si(v, "s")),
    "predicted_comm_s": ("comm predicted", lambda v: si(v, "s")),
    "exposed_comm_s": ("exposed", lambda v: si(v, "s")),
    "busbw_bytes_per_s": ("bus BW", lambda v: si(v, "B/s")),
    "evidence": ("evidence", str),
}
STEP_TABLE = {
    "rank": ("rank", _f("{:.0f}")),
    "phase": ("phase", str),
    "batch_size": ("batch", lambda v: f"{v:.0f}"),
    "kernel_time_full_s": ("kernels (full)", lambda v: si(v, "s")),
    "predicted_time_full_s": ("predicted", lambda v: si(v, "s")),
    "measured_over_predicted_full": ("meas/pred", lambda v: f"{v:.2f}"),
    "eager_step_ref_s": ("eager (ref)", lambda v: si(v, "s")),
    "graph_step_ref_s": ("graph (ref)", lambda v: si(v, "s")),
    "host_overhead_ref_s": ("host overhead", lambda v: si(v, "s")),
    "step_full_est_s": ("step estimate", lambda v: si(v, "s")),
}
