"""Rendering frames as text: table (SI prefixes), markdown, csv, json. Formatting happens only here;
frames and CSV/JSON hold raw SI numbers. pandas and numpy are imported where a frame is rendered,
so that `roofline --help` starts without them."""

from __future__ import annotations

import html
import json
import math
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("table", "csv", "json", "markdown")
_PREFIXES = [
    (1e15, "P"),
    (1e12, "T"),
    (1e9, "G"),
    (1e6, "M"),
    (1e3, "k"),
    (1.0, ""),
    (1e-3, "m"),
    (1e-6, "µ"),
    (1e-9, "n"),
]


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


# -- escaping: names come from files a user may have downloaded; each medium gets its own escaping --
# C0 controls (newline, ESC ...), DEL, C1 controls, Unicode line/paragraph separators and bidi overrides
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_VISIBLE = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match) -> str:
    ch = match.group(0)
    return _VISIBLE.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def term_safe(text, keep_newlines: bool = False) -> str:
    """``text`` with control characters (terminal escape sequences, newlines unless ``keep_newlines``,
    bidi overrides) shown as visible escapes: '\\x1b[31m' prints as the 9 characters, not as red."""
    return (_CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL).sub(_visible, str(text))


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~$#!])")


def md_escape(text) -> str:
    """``text`` as literal inline markdown on one line: HTML special characters as entities (no raw
    HTML), markdown punctuation backslash-escaped (no links, emphasis, table cells or math), control
    characters as visible escapes."""
    text = html.escape(term_safe(text), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_fence(text: str) -> str:
    """A fenced code block holding ``text`` verbatim: the fence is longer than any run of backticks in it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{term_safe(text, keep_newlines=True)}\n{fence}"


def html_escape(text) -> str:
    """``text`` for HTML element content or a quoted attribute: &, <, >, quotes escaped, control
    characters visible."""
    return html.escape(term_safe(text, keep_newlines=True), quote=True)


_NUMERIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def csv_safe(value):
    """A CSV cell a spreadsheet will not run as a formula: a string starting with =, +, -, @, tab or CR
    gets a leading apostrophe (OWASP's advice), unless it is a plain number. Other values unchanged."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and not _NUMERIC.match(value):
        return "'" + value
    return value


def to_csv(frame: pd.DataFrame) -> str:
    """``frame`` as CSV (no index), its text cells made safe for spreadsheets with ``csv_safe``."""
    import pandas as pd

    text_cols = [
        c
        for c in frame.columns
        if not pd.api.types.is_numeric_dtype(frame[c].dtype) and not pd.api.types.is_bool_dtype(frame[c].dtype)
    ]
    if text_cols:
        frame = frame.copy()
        for col in text_cols:
            frame[col] = frame[col].astype(object).map(csv_safe)
    return frame.to_csv(index=False)


def percent(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"


def text_table(frame: pd.DataFrame, formats: dict, markdown: bool = False) -> str:
    """Render ``frame``'s columns named in ``formats`` (column -> (header, formatter))."""
    escape = md_escape if markdown else term_safe
    headers = [formats[c][0] for c in formats]
    rows = [
        [escape(formats[c][1](v)) for c, v in zip(formats, row)] for row in frame[list(formats)].itertuples(index=False)
    ]
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
    import numpy as np

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


def json_safe(obj):
    """``obj`` with every NaN/inf float (at any depth, e.g. in a spec's sources) replaced by None, and numpy
    arrays and scalars (a calibrated spec's tables) as lists and numbers."""
    if type(obj).__module__ == "numpy":  # an array or a scalar (numpy is not imported here: --help stays fast)
        return json_safe(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def to_json(obj) -> str:
    return json.dumps(json_safe(obj), indent=2, allow_nan=False)


ROWS_PER_CHUNK = 10_000


def json_chunks(obj: dict, rows_per_chunk: int = ROWS_PER_CHUNK):
    """``to_json(obj)`` as a stream of strings, with each DataFrame value of the dict ``obj`` written as
    its ``to_records`` list a slice of rows at a time: a large sweep never exists whole as Python
    objects or as one string. The concatenation equals ``to_json`` of the same dict with the frames
    replaced by their records."""
    import pandas as pd

    yield "{"
    for i, (key, value) in enumerate(obj.items()):
        yield ("," if i else "") + "\n  " + json.dumps(key) + ": "
        if not isinstance(value, pd.DataFrame):
            yield json.dumps(json_safe(value), indent=2, allow_nan=False).replace("\n", "\n  ")
            continue
        if not len(value):
            yield "[]"
            continue
        yield "["
        for start in range(0, len(value), rows_per_chunk):
            records = to_records(value.iloc[start : start + rows_per_chunk])
            yield ("," if start else "") + ",".join(
                "\n    " + json.dumps(r, indent=2, allow_nan=False).replace("\n", "\n    ") for r in records
            )
        yield "\n  ]"
    yield "\n}" if obj else "}"


def csv_chunks(frame: pd.DataFrame, rows_per_chunk: int = 100_000):
    """``to_csv(frame)`` as a stream of strings, a slice of rows at a time."""
    if not len(frame):
        yield to_csv(frame)
        return
    for start in range(0, len(frame), rows_per_chunk):
        text = to_csv(frame.iloc[start : start + rows_per_chunk])
        yield text if start == 0 else text.split("\n", 1)[1]


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
