"""Rendering frames as text: table (SI prefixes), markdown, csv, json. Formatting happens only here;
frames and CSV/JSON hold raw SI numbers. pandas and numpy are imported where a frame is rendered,
so that `roofline --help` starts without them."""

from __future__ import annotations

import contextlib
import html
import json
import math
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from roofline.config import Workload
    from roofline.specs import HardwareSpec

# the layout of `analyze --format json` (cli.json_header; roofline plot reads it back): raise it when a key
# changes meaning or goes away
JSON_SCHEMA_VERSION = 2  # 2: advise and specs JSON are objects; predicted_time_s is the calibrated time everywhere

FORMATS = ("table", "csv", "json", "markdown")
_PREFIXES = [
    (1e18, "E"),
    (1e15, "P"),
    (1e12, "T"),
    (1e9, "G"),
    (1e6, "M"),
    (1e3, "k"),
    (1.0, ""),
    (1e-3, "m"),
    (1e-6, "µ"),
    (1e-9, "n"),
    (1e-12, "p"),
    (1e-15, "f"),
]


def si(value: float | None, unit: str = "", digits: int = 3) -> str:
    """1.2345e12, 'FLOP' -> '1.23 TFLOP'; 6.11e-10, 's' -> '611 ps'. NaN or None -> '-', infinite -> 'inf'.
    The one formatter of SI numbers for people (decimal prefixes E down to f); never an exponent."""
    special = _not_finite(value)
    if special is not None:
        return special
    v = float(value)
    if v == 0:
        return f"0 {unit}".strip()
    for scale, prefix in _PREFIXES:
        if abs(v) >= scale * 0.9995:
            return f"{_plain(v / scale, digits)} {prefix}{unit}".strip()
    return f"{_plain(v / 1e-15, digits)} f{unit}".strip()  # below 1 femto: 0.001 fs, still no exponent


def _not_finite(value: float | None) -> str | None:
    """What ``si`` and ``number`` print for a value that is not a finite number: None or NaN -> '-', an
    infinity -> 'inf' / '-inf'; None for a finite value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(float(value)):
        return "inf" if float(value) > 0 else "-inf"
    return None


def _plain(v: float, digits: int) -> str:
    """``v`` to ``digits`` significant figures in positional notation: 1234.5 -> '1235', 0.00012 -> '0.00012'."""
    text = f"{v:.{digits}g}"
    if "e" not in text:
        return text
    return f"{float(text):,.0f}" if abs(v) >= 1 else f"{float(text):.{digits - 1 - math.floor(math.log10(abs(v)))}f}"


def number(value: float | None, digits: int = 3) -> str:
    """A plain number for people, no prefix: 0.6667 -> '0.667', 12.34 -> '12.3', 1234.5 -> '1,235'
    (an intensity in FLOP/B, a ratio). NaN or None -> '-'."""
    special = _not_finite(value)
    if special is not None:
        return special
    v = float(value)
    if v == 0:
        return "0"
    if abs(v) >= 10 ** (digits - 1):
        return f"{v:,.0f}"
    return _plain(v, digits)


# -- escaping: names come from files a user may have downloaded; each medium gets its own escaping --
# C0 controls (newline, ESC ...), DEL, C1 controls, Unicode line/paragraph separators and bidi overrides
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_VISIBLE = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match) -> str:
    ch = match.group(0)
    return _VISIBLE.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def term_safe(text: object, keep_newlines: bool = False) -> str:
    """``text`` with control characters (terminal escape sequences, newlines unless ``keep_newlines``,
    bidi overrides) shown as visible escapes: '\\x1b[31m' prints as the 9 characters, not as red."""
    return (_CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL).sub(_visible, str(text))


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~$#!])")


def md_escape(text: object) -> str:
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


def html_escape(text: object) -> str:
    """``text`` for HTML element content or a quoted attribute: &, <, >, quotes escaped, control
    characters visible."""
    return html.escape(term_safe(text, keep_newlines=True), quote=True)


_NUMERIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def csv_safe(value: object) -> object:
    """A CSV cell a spreadsheet will not run as a formula: a string starting with =, +, -, @, tab or CR
    gets a leading apostrophe (OWASP's advice), unless it is a plain number. Other values unchanged."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and not _NUMERIC.match(value):
        return "'" + value
    return value


# columns that count whole things: written as integers in CSV and JSON when every value is whole
# (context_len is fractional at the mean context of a generation, and then stays a float)
INTEGER_COLUMNS = frozenset(
    {
        "point",
        "rank",
        "batch_size",
        "prompt_len",
        "context_len",
        "count",
        "calls",
        "n_calls",
        "n_kernels",
        "n_passes",
        "passes",
        "gpus",
        "params",
        "tp",
        "pp",
        "ep",
        "microbatches",
        "layers",
        "decode_ridge_batch",
    }
)


def integer_columns(frame: pd.DataFrame) -> list:
    """The columns of ``frame`` named in INTEGER_COLUMNS whose finite values are all whole numbers of at
    most 2**53 (held exactly by a float); NaN stays empty (CSV) or null (JSON)."""
    import numpy as np
    import pandas as pd

    out = []
    for col in frame.columns:
        if col not in INTEGER_COLUMNS or not pd.api.types.is_float_dtype(frame[col].dtype):
            continue
        v = frame[col].to_numpy(dtype=float)
        v = v[~np.isnan(v)]
        if np.isfinite(v).all() and (np.abs(v) <= 2.0**53).all() and (v == np.round(v)).all():
            out.append(col)
    return out


def cell_text(value: object) -> object:
    """A CSV cell: a list, tuple or dict as compact JSON (never a Python repr), made safe for
    spreadsheets with ``csv_safe``; other values unchanged."""
    if isinstance(value, (list, tuple, dict)):
        value = json.dumps(json_safe(value), separators=(",", ":"), default=str)
    return csv_safe(value)


def to_csv(frame: pd.DataFrame) -> str:
    """``frame`` as CSV (no index): whole-number count columns as integers (``integer_columns``),
    lists and dicts as JSON, text cells made safe for spreadsheets (``csv_safe``)."""
    import pandas as pd

    text_cols = [
        c
        for c in frame.columns
        if not pd.api.types.is_numeric_dtype(frame[c].dtype) and not pd.api.types.is_bool_dtype(frame[c].dtype)
    ]
    ints = integer_columns(frame)
    if text_cols or ints:
        frame = frame.copy()
        for col in text_cols:
            frame[col] = frame[col].astype(object).map(cell_text)
        for col in ints:
            frame[col] = frame[col].astype("Int64")
    return frame.to_csv(index=False)


def figure(name: str, value: object) -> str:
    """A named figure for people, by the unit its name ends in: '_s' seconds and '_us' microseconds with
    an SI prefix, '_bytes' bytes, '_share' a percentage, '_per_s' a rate; other floats plain
    (``number``), anything else as text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if name.endswith("_share"):
        return percent(value)
    for suffix, scale, unit in (("_per_s", 1.0, "/s"), ("_us", 1e-6, "s"), ("_s", 1.0, "s"), ("_bytes", 1.0, "B")):
        if name.endswith(suffix):  # the first match: _per_s before _s
            return si(value * scale, unit)
    return str(value) if isinstance(value, int) else number(value)


def percent(value: float | None) -> str:
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
    """Rows as JSON-safe dicts: NaN/inf -> None, numpy scalars -> Python numbers, whole-number count
    columns (``integer_columns``) as ints."""
    import numpy as np

    ints = set(integer_columns(frame))
    records = []
    for row in frame.to_dict(orient="records"):
        clean = {}
        for k, v in row.items():
            if isinstance(v, (np.floating, float)):
                v = float(v)
                v = None if not math.isfinite(v) else (int(v) if k in ints else v)
            elif isinstance(v, np.integer):
                v = int(v)
            elif isinstance(v, np.bool_):
                v = bool(v)
            clean[k] = v
        records.append(clean)
    return records


def json_safe(obj: object) -> object:
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


def to_json(obj: object) -> str:
    return json.dumps(json_safe(obj), indent=2, allow_nan=False)


ROWS_PER_CHUNK = 10_000


def json_chunks(obj: dict, rows_per_chunk: int = ROWS_PER_CHUNK) -> Iterator[str]:
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
        yield from _rows_json(value, True, rows_per_chunk)
        yield "\n  ]"
    yield "\n}" if obj else "}"


def _rows_json(frame: pd.DataFrame, first: bool, rows_per_chunk: int = ROWS_PER_CHUNK):
    """The rows of ``frame`` as the inside of a JSON list at depth 2, a slice at a time; ``first``: no
    comma before the first row (it starts the list)."""
    for start in range(0, len(frame), rows_per_chunk):
        records = to_records(frame.iloc[start : start + rows_per_chunk])
        yield ("" if first and start == 0 else ",") + ",".join(
            "\n    " + json.dumps(r, indent=2, allow_nan=False).replace("\n", "\n    ") for r in records
        )


def json_sections(
    head: dict, names: tuple, chunks: Iterable[tuple], rows_per_chunk: int = ROWS_PER_CHUNK
) -> Iterator[str]:
    """The JSON object ``head`` + {name: rows, ...} as a stream of strings, where each item of
    ``chunks`` is a tuple of DataFrames, one per name (a sweep's summary and ops of a slice of its
    points). The first name's rows are yielded as their chunk comes; the others' are spooled to
    temporary files and copied after, so memory holds one chunk at a time. The text equals
    ``json_chunks`` of ``head`` with each name's frames put together."""
    import tempfile

    with contextlib.ExitStack() as stack:
        spools = [stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8")) for _ in names[1:]]
        yield "{"
        for i, (key, value) in enumerate(head.items()):
            yield ("," if i else "") + "\n  " + json.dumps(key) + ": "
            yield json.dumps(json_safe(value), indent=2, allow_nan=False).replace("\n", "\n  ")
        yield ("," if head else "") + "\n  " + json.dumps(names[0]) + ": "
        empty = [True] * len(names)
        for frames in chunks:
            for k, frame in enumerate(frames):
                if not len(frame):
                    continue
                pieces = _rows_json(frame, empty[k], rows_per_chunk)
                if k == 0:
                    yield from (("[" if empty[0] and n == 0 else "") + p for n, p in enumerate(pieces))
                else:
                    for piece in pieces:
                        spools[k - 1].write(piece)
                empty[k] = False
        yield "[]" if empty[0] else "\n  ]"
        for k, spool in enumerate(spools, start=1):
            yield ",\n  " + json.dumps(names[k]) + ": "
            if empty[k]:
                yield "[]"
                continue
            yield "["
            spool.seek(0)
            while block := spool.read(1 << 20):
                yield block
            yield "\n  ]"
        yield "\n}"


def csv_chunks(frame: pd.DataFrame, rows_per_chunk: int = 100_000) -> Iterator[str]:
    """``to_csv(frame)`` as a stream of strings, a slice of rows at a time."""
    return csv_frames([frame], rows_per_chunk)


def csv_frames(frames: Iterable[pd.DataFrame], rows_per_chunk: int = 100_000) -> Iterator[str]:
    """The frames of the iterable ``frames`` (same columns; a sweep's chunks) as one CSV stream: one
    header, then every frame's rows a slice at a time (``to_csv``'s cells)."""
    header = True
    for frame in frames:
        if not len(frame):
            if header:
                yield to_csv(frame)
                header = False
            continue
        for start in range(0, len(frame), rows_per_chunk):
            text = to_csv(frame.iloc[start : start + rows_per_chunk])
            yield text if header else text.split("\n", 1)[1]
            header = False


# the CLI flag of each workload setting, where it is not --name-with-dashes
FLAGS = {"batch_size": "--batch", "attn_impl": "--attn", "mla_form": "--mla", "cuda_graph": "--cuda-graph/--eager"}
SETTING_NAMES = {
    "batch_size": "batch",
    "prompt_len": "prompt",
    "context_len": "context",
    "gen_tokens": "generated tokens",
    "weight_dtype": "weights",
    "act_dtype": "activations",
    "kv_dtype": "KV cache",
    "attn_impl": "attention",
    "mla_form": "MLA",
    "cuda_graph": "launches",
    "routed_experts": "routed experts",
}


def settings_line(
    workload: Workload, sources: dict, spec: HardwareSpec | None = None, is_mla: bool = False, is_moe: bool = False
) -> str:
    """Every setting that shapes a result, grouped by where it came from: 'settings: --phase decode,
    --tp 2; from the model file: prompt 512, weights bf16; defaults: batch 1, ...; spec a10 (hardware_specs/a10.yaml)'.

    ``sources`` is config.workload_sources' {field: '--flag' | 'the model file' | 'default'}; the
    weight and KV dtypes' own sources (a checkpoint's quantization_config) win where they say more.
    MLA's form is shown for MLA models, ep for MoE models, micro-batches with pipeline stages, and
    each only where it applies or was set."""
    sources = dict(sources)
    for key in ("weight_dtype", "kv_dtype"):
        own = getattr(workload, f"{key}_source", "default")
        if own not in ("default", "the model file", f"workload.{key} in the model file") and not own.startswith("--"):
            sources[key] = own  # from the checkpoint
    keys = ["batch_size", "prompt_len"]
    keys += ["context_len"] if workload.context_len else ["gen_tokens"] if workload.gen_tokens else []
    keys += ["phase", "weight_dtype", "act_dtype", "kv_dtype", "attn_impl"]
    keys += ["mla_form"] if is_mla or sources.get("mla_form", "default") != "default" else []
    keys += ["tp", "pp"]
    keys += ["microbatches"] if workload.pp > 1 or sources.get("microbatches", "default") != "default" else []
    keys += ["ep"] if is_moe or workload.ep > 1 else []
    keys += ["routed_experts"] if workload.routed_experts is not None else []
    keys += ["cuda_graph"]

    def value(key):
        v = getattr(workload, key)
        if key == "cuda_graph":
            return "CUDA graph" if v else "eager"
        if key == "routed_experts":
            return f"{v:g} per layer (in place of uniform routing's expectation)"
        return ",".join(f"{x:g}" for x in v) if isinstance(v, tuple) else str(v)

    flags, groups = [], {}
    for key in keys:
        source = sources.get(key, "default")
        if source.startswith("--"):
            flag = FLAGS.get(key, "--" + key.replace("_", "-"))
            flags.append(
                f"--{'cuda-graph' if workload.cuda_graph else 'eager'}"
                if key == "cuda_graph"
                else f"{flag} {value(key)}"
            )
        else:
            groups.setdefault(source, []).append(f"{SETTING_NAMES.get(key, key)} {value(key)}")
        if key == "prompt_len" and not workload.context_len and not workload.gen_tokens:
            groups.setdefault("default", []).append("decode context = prompt")
    parts = [", ".join(flags)] if flags else []
    for source, items in groups.items():
        head = "defaults" if source == "default" else f"from {source}"
        parts.append(f"{head}: {', '.join(items)}")
    if spec is not None:
        parts.append(f"--gpu {spec.name} ({spec.path or 'built in Python'})")
    return "settings: " + "; ".join(parts)


def _f(fmt):
    return lambda v: "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


OP_TABLE = {
    "op": ("op", str),
    "count": ("count", _f("{:d}")),
    "flops": ("FLOPs", lambda v: si(v, "FLOP")),
    "bytes_read": ("read", lambda v: si(v, "B")),
    "bytes_written": ("written", lambda v: si(v, "B")),
    "arithmetic_intensity": ("FLOP/B", number),
    "ridge_ratio": ("AI/ridge", number),
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
