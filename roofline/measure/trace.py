"""Read a torch.profiler Chrome trace and say where the GPU time went: per kernel, per op, per range.

The input is what ``prof.export_chrome_trace(path)`` writes (Kineto's JSON, plain or gzipped) for
any PyTorch program recorded with ``ProfilerActivity.CUDA``. ``analyze_trace`` returns frames of raw
SI numbers (seconds, FLOP, bytes); nothing here imports torch, so ``roofline trace`` starts fast.

The format, as Kineto writes it (checked against traces from PyTorch 2.11 on an H100):
  - ``traceEvents``: a list of Chrome events; only complete events (``ph: "X"``) are used. ``ts`` and
    ``dur`` are microseconds, floats with nanosecond decimals in recent versions, integers in old ones.
  - GPU work: ``cat`` kernel, gpu_memcpy, gpu_memset; ``pid`` is the device, ``tid`` the stream, and
    ``args`` carries ``correlation``, ``stream``, ``device`` (and ``bytes`` for copies and sets).
  - Host side: ``cuda_runtime`` (cudaLaunchKernel, cudaMemcpyAsync, cudaGraphLaunch, ...) and
    ``cuda_driver`` (cuLaunchKernel, cuLaunchKernelEx: Triton, and cuBLAS/cuDNN on Hopper) calls,
    ``cpu_op`` (aten ops, with ``Input Dims``, ``Input type`` and ``Concrete Inputs`` when recorded
    with ``record_shapes=True``) and ``user_annotation`` (``record_function`` ranges, ProfilerStep#N).
    torch.distributed also writes a ``user_annotation`` per collective call (``nccl:all_reduce``,
    ``gloo:all_reduce``: c10d's Work); those describe an op, not a user's range, and are read as
    ``cpu_op``s, so a collective's kernels stay in the ``record_function`` range that called it.
  - A GPU event and the API call that launched it share ``args.correlation``, an id counted per
    process (a file holding several ranks repeats them); the ``ac2g`` flow events repeat that link
    for viewers and are not needed. One cudaGraphLaunch (hipGraphLaunch) correlates with every
    kernel of the graph. The backward pass runs on autograd worker threads (ops named
    ``autograd::engine::evaluate_function: ...``) while the thread that called backward() waits
    inside its ranges. ROCm traces use the same categories (hipLaunchKernel, ...). Header keys
    (``deviceProperties``, ``distributedInfo``, ...) are optional.

Reading: msgspec decodes the event array, in pieces of ~16 MB cut between events, into small typed
objects holding only the fields used (every other key is skipped inside the decoder); each event of
the four roles used (GPU work, launches, ops, ranges) becomes a tuple, the rest is dropped. Without
msgspec, orjson decodes the same pieces into dicts; what neither reads (integers beyond 64 bits) the
standard library does, and it words every JSON error. Not a regular file, more than MAX_TRACE_BYTES
of text (a gzip bomb stops there), times that are booleans or beyond MAX_TIME_US, ids that are
lists: a TraceError naming the fix. About 10x faster than HolisticTraceAnalysis; see
benchmarks/bench_trace.py. The rest is columns.

How a kernel is joined (numpy searches on sorted keys, no per-event Python):
  1. kernel -> launch: equal correlation, within one process: each GPU (pid, device) belongs to the
     process whose call most often is the latest launch before its kernels start. Where a runtime
     and a driver call share an id (one nested in the other), the outer, earlier one is kept. No
     launch: an orphan.
  2. launch -> op and range: the innermost ``cpu_op`` (``user_annotation``) on the launch's thread
     whose [ts, ts + dur] contains the launch. The launch's midpoint is used, so ops that touch at
     a boundary (common with integer-microsecond traces) never capture a launch that is not theirs.
     A launch from an autograd worker thread outside its own thread's ranges takes the ranges the
     process's main thread (the one with most ranges) was in at that moment ('## backward ##').
  3. kernel -> cost: the outermost op enclosing the launch that formulas.ATEN_COSTS can cost from
     its recorded shapes. Its FLOPs and bytes are spread over its kernels in proportion to their
     durations, so any sum of kernels counts each op call exactly once. Host and peer copies carry
     no HBM bytes; a graph replay's kernels carry no cost (the replay records no shapes).
Overhead is judged on the device's own timeline: device_busy_share is the part of a row's host
span during which its process's GPUs ran anything, all streams (classify_measured reads it).
"""

import gc
import gzip
import json
import re
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

try:  # optional: the fast path (pyproject.toml installs it); without it orjson reads dicts
    import msgspec
except ImportError:
    msgspec = None

from roofline.classify import classify_measured
from roofline.errors import TraceError
from roofline.formulas import ATEN_COSTS, ATEN_DTYPE, AtenCall, aten_causal_known
from roofline.specs import load_spec

NS_PER_US = 1000
MAX_TRACE_BYTES = 4_000_000_000  # JSON text (after gunzip) read at most; analyze_trace(max_bytes=) raises it
_CHUNK = 1 << 24
PIECE_BYTES = 1 << 24  # bytes of a trace's event array parsed at once (orjson path)
PARSERS = ("msgspec", "orjson") if msgspec is not None else ("orjson",)  # available, fastest first
MAX_TIME_US = 1e17  # 3,000 years of µs: a larger timestamp or duration is not a time
MAX_SPAN_US = 4e15  # 126 years: events further apart overflow int64 nanoseconds
S_PER_NS = 1e-9
TOP_KERNELS = 3  # kernel names listed per op / range row

ORPHAN = "orphan"  # cpu_op / range of a GPU event with no launch in the trace
NONE = "(none)"  # range of a launch that no range encloses
# cpu_op of a launch that no op encloses is the call's name in brackets, e.g. "(cudaGraphLaunch)"
_STEP = re.compile(r"^ProfilerStep#(\d+)$")
_C10D_WORK = re.compile(r"^(nccl|gloo|mpi|ucc|xccl):")  # torch.distributed's per-collective annotations
STEP_RANGE = "ProfilerStep#*"  # every step's range is reported under this one name

# Kineto's categories, with the aliases older PyTorch versions wrote (lower-cased before lookup).
_GPU, _LAUNCH, _OP, _RANGE = 0, 1, 2, 3
_BUCKET = {
    "kernel": _GPU,
    "gpu_memcpy": _GPU,
    "gpu_memset": _GPU,
    "memcpy": _GPU,
    "memset": _GPU,
    "cuda_runtime": _LAUNCH,
    "cuda_driver": _LAUNCH,
    "runtime": _LAUNCH,
    "driver": _LAUNCH,
    "cpu_op": _OP,
    "operator": _OP,
    "user_annotation": _RANGE,
}
_GPU_KIND = {"kernel": "kernel", "gpu_memcpy": "memcpy", "memcpy": "memcpy", "gpu_memset": "memset", "memset": "memset"}
_LAUNCH_KIND = {"cuda_runtime": "runtime", "runtime": "runtime", "cuda_driver": "driver", "driver": "driver"}


@dataclass(frozen=True, eq=False)
class TraceAnalysis:
    """What ``analyze_trace`` found. Times in seconds from each trace's first event; see the frames' docs there."""

    path: str
    kernels: pd.DataFrame
    by_range: pd.DataFrame
    by_op: pd.DataFrame
    summary: dict
    by_rank: pd.DataFrame = None  # one row per rank (per file of a folder; one row for a single file)


TRACE_SUFFIXES = (".json", ".json.gz")


def analyze_trace(
    path, spec, max_bytes: int = MAX_TRACE_BYTES, piece_bytes: int = PIECE_BYTES, parser: str | None = None
) -> TraceAnalysis:
    """Read, join and classify one torch.profiler trace (``.json`` or ``.json.gz``), or a folder of
    them, one per rank, read as one run.

    ``spec`` is a ``HardwareSpec`` (or a name/path ``load_spec`` accepts) whose ceilings classify.
    ``max_bytes`` caps the JSON text read per file (gunzipped); ``piece_bytes`` is how much of the
    event array is parsed at once by orjson (peak memory against per-piece overhead); ``parser``
    is one of PARSERS (default the fastest installed: msgspec, which decodes only the fields used).

    Returns a ``TraceAnalysis``:
      - ``kernels``: one row per GPU event (kernel, memcpy, memset): name, kind, device, stream,
        ts_s, dur_s, cpu_op, range (innermost; ``orphan`` / ``(none)``), step, correlation,
        launch_kind (runtime / driver / none), launch_end_s, idle_before_s (device idle just
        before it), host_bound (that idle is the host's: the launch call ended after the device
        ran dry), flops, bytes, compute_dtype, cost_op, graph (ran in a CUDA/HIP graph replay),
        range_via (thread / caller thread: a backward kernel from an autograd thread takes the
        ranges of the thread that called backward() / none), rank; the recorded shapes around
        the launch (None without record_shapes): op_dims, op_types (innermost op), owner_dims
        (cost owner), outer_op, outer_dims, outer_types (outermost op); outer_id, op_id (one id
        per outermost / innermost op call, -1 for none); tid (host thread of the launch) and
        launch_ts_s.
      - ``by_op``: per cpu op: the outermost costed op enclosing the launch (an aten::mm,
        aten::scaled_dot_product_attention, ... whose FLOPs are known), else the innermost op;
        a graph replay's kernels get a row per kernel name, '(graph) name'.
        ``by_range``: per record_function range name (gpu_time_s
        counts every kernel launched while the range was open, nested ranges included;
        self_gpu_time_s only those for which it is the innermost range). Both carry gpu_time_s,
        n_kernels, n_calls, span_s (host wall time of the calls), device_busy_share (of span_s,
        the share during which the process's GPUs ran anything, all streams), top_kernels, share
        (of all GPU time), flops, bytes, costed_time_s and costed_share (the GPU time that
        flops/bytes describe), comm_time_s, compute_dtype, and the columns ``classify_measured``
        adds. top_kernels names the largest few by ``short_name``. Over a folder: sums over ranks.
      - ``summary``: counts, busy/idle time, host-bound idle, orphans, the assumptions made.
      - ``by_rank``: per rank (distributedInfo.rank, else the file's place in name order): path,
        gpu_time_s, busy_s, window_s, idle_s, idle_host_bound_s, comm_time_s, costed_share,
        n_kernels, n_orphans.

    Raises TraceError for a missing, unreadable, truncated or non-trace file, one with no GPU
    events, or a folder with no trace files or two files of one rank.
    """
    spec = load_spec(spec)
    path = str(path)
    if parser is not None and parser not in PARSERS:
        raise TraceError(f"unknown trace parser '{parser}'; installed: {', '.join(PARSERS)}")
    read = {"max_bytes": max_bytes, "piece_bytes": piece_bytes, "parser": parser}
    if Path(path).is_dir():
        return _analyze_folder(path, spec, read)
    return _analyze_file(path, spec, read)


def _analyze_file(path: str, spec, read: dict, default_rank: int = 0) -> TraceAnalysis:
    ev = _read_events(path, **read)
    rank = default_rank if ev.rank is None else ev.rank
    joined = _join(ev)
    idle_ns, host_bound = _idle_before(ev.gpu, joined)
    kernels = _kernels_frame(ev, joined, idle_ns, host_bound).assign(rank=rank)
    lean = _lean(kernels)
    busy = _busy_timeline(ev.gpu, joined)
    by_op = _by_op(ev, joined, kernels, lean, busy)
    by_range = _by_range(ev, joined, kernels, lean, busy)
    summary = _summary(ev, joined, kernels, path, int(idle_ns[host_bound].sum()))
    summary["rank"] = rank
    return TraceAnalysis(
        path=path,
        kernels=kernels,
        by_range=classify_measured(by_range, spec),
        by_op=classify_measured(by_op, spec),
        summary=summary,
        by_rank=_rank_row(summary, kernels),
    )


def _rank_row(summary: dict, kernels: pd.DataFrame) -> pd.DataFrame:
    keys = (
        "rank",
        "path",
        "gpu_time_s",
        "busy_s",
        "window_s",
        "idle_s",
        "idle_host_bound_s",
        "costed_share",
        "n_kernels",
        "n_orphans",
    )
    row = {k: summary[k] for k in keys}
    row["comm_time_s"] = float(kernels.loc[_is_comm(kernels["name"].to_numpy()), "dur_s"].sum())
    return pd.DataFrame([row])


def _analyze_folder(folder: str, spec, read: dict) -> TraceAnalysis:
    """Every trace file of a folder (not its subfolders), one per rank, as one run."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name.endswith(TRACE_SUFFIXES))
    if not files:
        raise TraceError(
            f"{folder}: no trace files (*.json, *.json.gz) in the folder; pass a trace file or a "
            f"folder of one trace per rank"
        )
    parts = [_analyze_file(str(f), spec, read, default_rank=i) for i, f in enumerate(files)]  # one per rank
    ranks = [p.summary["rank"] for p in parts]
    if len(set(ranks)) < len(ranks):
        dup = next(r for r in ranks if ranks.count(r) > 1)
        names = ", ".join(p.path.rsplit("/", 1)[-1] for p in parts if p.summary["rank"] == dup)
        raise TraceError(
            f"{folder}: two files say they are rank {dup} ({names}); keep one trace per rank in the folder"
        )
    kernels = pd.concat([p.kernels for p in parts], ignore_index=True)
    total = float(kernels["dur_s"].sum())
    summary = {
        "path": folder,
        "n_ranks": len(parts),
        "ranks": ranks,
        **{
            k: sum(p.summary[k] for p in parts)
            for k in (
                "n_events",
                "n_kernels",
                "n_memcpy",
                "n_memset",
                "n_devices",
                "n_streams",
                "gpu_time_s",
                "busy_s",
                "window_s",
                "idle_s",
                "idle_host_bound_s",
                "idle_other_s",
                "n_orphans",
                "orphan_time_s",
                "n_no_op",
                "n_graph_kernels",
                "graph_time_s",
                "n_kernels_via_caller_thread",
            )
        },
        "n_steps": max(p.summary["n_steps"] for p in parts),
        "devices": [d for p in parts for d in p.summary["devices"]],
    }
    known = kernels["flops"].notna() | kernels["bytes"].notna()
    summary["costed_share"] = float(kernels.loc[known, "dur_s"].sum() / total) if total > 0 else float("nan")
    summary["assumptions"] = list(dict.fromkeys(a for p in parts for a in p.summary["assumptions"]))
    return TraceAnalysis(
        path=folder,
        kernels=kernels,
        by_range=classify_measured(_over_ranks([p.by_range for p in parts], "range", total), spec),
        by_op=classify_measured(_over_ranks([p.by_op for p in parts], "op", total), spec),
        summary=summary,
        by_rank=pd.concat([p.by_rank for p in parts], ignore_index=True),
    )


def _over_ranks(frames: list, key: str, total_s: float) -> pd.DataFrame:
    """Per-rank by_op / by_range rows summed over ranks; device_busy_share weighted by span."""
    f = pd.concat(frames, ignore_index=True)
    f = f.assign(busy_s=f["device_busy_share"] * f["span_s"])
    g = f.groupby(key, sort=False)
    out = g[["gpu_time_s", "n_kernels", "n_calls", "costed_time_s", "comm_time_s"]].sum()
    for c in ("self_gpu_time_s", "span_s", "flops", "bytes", "busy_s"):
        if c in f.columns:
            out[c] = g[c].sum(min_count=1)
    out["device_busy_share"] = out.pop("busy_s") / out["span_s"]
    first = f.sort_values("gpu_time_s", ascending=False, kind="stable").drop_duplicates(key).set_index(key)
    out["top_kernels"] = first["top_kernels"].reindex(out.index)  # the rank where the row took longest
    out["compute_dtype"] = first["compute_dtype"].reindex(out.index)
    return _finish(out, key, total_s)


# ----------------------------------------------------------------------------------------------
# reading: one json.loads whose object_hook keeps the fields that matter and drops everything else


def _read_events(
    path: str, max_bytes: int = MAX_TRACE_BYTES, piece_bytes: int = PIECE_BYTES, parser: str | None = None
) -> "_Events":
    parser = parser or PARSERS[0]
    data = _read_text(path, max_bytes)
    keep = _Collector(path)
    was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived dicts: the cyclic collector would rescan the kept rows again and again
    try:
        top, n_events = _parse(data, keep, piece_bytes, typed=parser == "msgspec")
        del data  # costed calls keep copies of their recorded arguments, not views of the text
    finally:
        if was_enabled:
            gc.enable()
    info = top.get("distributedInfo")
    rank = info.get("rank") if isinstance(info, dict) else None
    return keep.columns(
        n_events, top.get("deviceProperties"), rank if isinstance(rank, int) and not isinstance(rank, bool) else None
    )


# ----------------------------------------------------------------------------------------------
# the fast path: msgspec decodes the events into small typed objects holding only the fields used
# (every other key is skipped inside the C decoder), about 5x faster than a dict per event


class _Recorded(tuple):
    """An op call's recorded 'Input Dims', 'Input type' and 'Concrete Inputs' as JSON text (b'' when absent)."""

    def __new__(cls, dims: bytes, types: bytes, concrete: bytes):
        return super().__new__(cls, (dims, types, concrete))

    def decoded(self) -> dict:
        keys = ("Input Dims", "Input type", "Concrete Inputs")
        try:
            return {k: orjson.loads(v) for k, v in zip(keys, self) if v}
        except orjson.JSONDecodeError:  # integers beyond 64 bits: not shapes the formulas read
            return {}


_ABSENT = "\x00absent"  # an args key that the event does not have (None is a value a trace may hold)

if msgspec is not None:
    _NO_RAW = msgspec.Raw()  # an absent key (an empty Raw is falsy)

    class _Args(msgspec.Struct):
        correlation: Any = -1
        stream: Any = _ABSENT
        device: Any = _ABSENT
        bytes: Any = _ABSENT
        dims: msgspec.Raw = msgspec.field(name="Input Dims", default=_NO_RAW)
        dims_old: msgspec.Raw = msgspec.field(name="Input dims", default=_NO_RAW)
        types: msgspec.Raw = msgspec.field(name="Input type", default=_NO_RAW)
        types_old: msgspec.Raw = msgspec.field(name="Input types", default=_NO_RAW)
        concrete: msgspec.Raw = msgspec.field(name="Concrete Inputs", default=_NO_RAW)

        def recorded(self) -> "_Recorded":
            """A copy of the recorded arguments' text (the Raw fields are views of the whole trace's text)."""
            return _Recorded(
                bytes(self.dims or self.dims_old), bytes(self.types or self.types_old), bytes(self.concrete)
            )

    class _Event(msgspec.Struct):
        ph: Any = "X"
        cat: Any = None
        name: Any = ""
        pid: Any = None
        tid: Any = None
        ts: Any = None
        dur: Any = None
        args: _Args | None = None

    _DECODE_EVENTS = msgspec.json.Decoder(list[_Event]).decode
    _NO_STRUCT_ARGS = _Args()


_BOUNDARY = re.compile(rb"\}[ \t\r]*,[ \t\r]*\n[ \t\r\n]*\{")  # '},' newline '{': between two events
_EVENTS_KEY = b'"traceEvents"'


def _parse(data: bytes, keep, piece_bytes: int, typed: bool) -> tuple:
    """(the top-level object without its events, the number of events), every event passed to ``keep``.

    The event array is decoded in pieces of about piece_bytes cut between two events (a newline
    can only sit between JSON tokens, so '},' newline '{' never cuts a string), so only one piece
    of decoded events is alive at a time: by msgspec into _Event objects when ``typed``, else by
    orjson into dicts. Text laid out otherwise (one line) is decoded whole; anything msgspec
    refuses is read again by orjson, any error worded by the standard library's parser."""
    if typed:
        decode, add, errors = (
            _DECODE_EVENTS,
            keep.add_struct,
            (orjson.JSONDecodeError, msgspec.DecodeError, msgspec.ValidationError),
        )
    else:
        decode, add, errors = orjson.loads, keep, (orjson.JSONDecodeError,)
    start = data.find(_EVENTS_KEY)
    bracket = data.find(b"[", start + len(_EVENTS_KEY)) if start >= 0 else -1
    if bracket < 0 or data[start + len(_EVENTS_KEY) : bracket].strip() != b":":
        return _parse_whole(data, keep)
    n, pos = 0, bracket + 1
    while True:  # one turn per piece of ~16 MB
        cut = _BOUNDARY.search(data, pos + piece_bytes) if len(data) - pos > 2 * piece_bytes else None
        end = cut.start() + 1 if cut else len(data)
        try:
            events = decode(b"[" + data[pos:end] + b"]") if cut else None
            if events is None:  # the last piece: the array's end, then the rest of the top-level object
                events, rest = _last_piece(data, pos, decode)
        except errors:
            events = None
        if events is None:
            return _parse_whole(data, keep) if n == 0 else _parse_error_after(data, keep)
        for e in events:
            if typed or isinstance(e, dict):
                add(e)
        n += len(events)
        del events
        if not cut:
            break
        pos = cut.end() - 1
    try:
        top = orjson.loads(data[:bracket] + b"[]" + rest)
    except orjson.JSONDecodeError:
        return _parse_error_after(data, keep)
    if not isinstance(top, dict):
        return _parse_whole(data, keep)
    return top, n


def _last_piece(data: bytes, pos: int, decode):
    """(events, the text after the array) of the array's last piece starting at pos, or (None, None)."""
    piece = b"[" + data[pos:]
    try:
        orjson.loads(piece)
        return None, None  # the text ends with the array: not a trace object
    except orjson.JSONDecodeError as exc:
        if not exc.msg.startswith(("unexpected content after document", "trailing")):
            return None, None
        at = exc.pos  # a character index: the first one after the array
    try:
        end = len(piece.decode("utf-8")[:at].encode("utf-8"))  # as a byte index
    except UnicodeDecodeError:
        return None, None
    return decode(piece[:end]), piece[end:]


def _parse_error_after(data, keep):
    keep.reset()
    return _parse_whole(data, keep)


def _parse_whole(data: bytes, keep) -> tuple:
    """Parse all of it at once (orjson), errors worded by json.loads."""
    path = keep.path
    try:
        top = orjson.loads(data)
    except orjson.JSONDecodeError:
        top = _loads_slowly(data, path)
    if isinstance(top, dict):
        events = top.get("traceEvents")
        if events is None:
            keys = ", ".join(sorted(map(str, top))[:6]) or "none"
            raise TraceError(
                f"{path}: no 'traceEvents' list (top-level keys: {keys}); is this a torch.profiler Chrome trace?"
            )
        if not isinstance(events, list):
            raise TraceError(f"{path}: 'traceEvents' is a {type(events).__name__}, not a list of events")
    elif isinstance(top, list):  # the Chrome trace format also allows a bare array of events
        events, top = top, {}
    else:
        raise TraceError(f"{path}: the JSON holds a {type(top).__name__}, not a Chrome trace object")
    for e in events:
        if isinstance(e, dict):
            keep(e)
    return top, len(events)


def _loads_slowly(data: bytes, path: str):
    """The standard library's parse, for what orjson refuses (integers beyond 64 bits, deep nesting)
    and for its account of what is wrong with the text, as a TraceError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TraceError(f"{path}: not a JSON text (binary data); pass a Chrome trace (.json or .json.gz)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = "the text ends early: the file is truncated" if exc.pos >= len(text) - 1 else f"line {exc.lineno}"
        raise TraceError(
            f"{path}: not valid JSON ({exc.msg}; {where}); pass the complete .json or .json.gz that "
            f"prof.export_chrome_trace() wrote"
        ) from None
    except RecursionError:
        raise TraceError(f"{path}: JSON nested too deeply to be a Chrome trace") from None


def _read_text(path: str, max_bytes: int = MAX_TRACE_BYTES) -> bytes:
    """The trace's JSON text. Refuses what is not a regular file (a FIFO would block, a device never
    ends) and text over ``max_bytes``, also when a small gzip would expand past it."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file; pass a trace written by prof.export_chrome_trace()") from None
    except OSError as exc:
        raise TraceError(
            f"{path}: cannot read it ({exc.strerror or exc}); check the path and its permissions"
        ) from None
    if not stat.S_ISREG(mode):
        what = (
            "a folder"
            if stat.S_ISDIR(mode)
            else "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket or other special file"
        )
        raise TraceError(
            f"{path}: not a regular file ({what}); pass a trace file written by prof.export_chrome_trace()"
        )
    too_big = (
        f"{path}: more than {max_bytes / 1e9:.3g} GB of JSON text; trim the trace (record fewer steps) "
        f"or raise the limit (analyze_trace(..., max_bytes=))"
    )
    try:
        with open(p, "rb") as fh:
            magic = fh.read(2)
            fh.seek(0)
            if magic == b"\x1f\x8b":
                chunks, total = [], 0
                with gzip.GzipFile(fileobj=fh) as gz:
                    while chunk := gz.read(_CHUNK):  # bounded reads: a gzip bomb stops at the limit
                        total += len(chunk)
                        if total > max_bytes:
                            raise TraceError(too_big.replace(": more than", ": expands to more than", 1))
                        chunks.append(chunk)
                data = b"".join(chunks)
                del chunks
            else:
                data = fh.read(max_bytes + 1)
                if len(data) > max_bytes:
                    raise TraceError(too_big)
        return data
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise TraceError(
            f"{path}: the gzip stream is truncated or corrupt ({exc}); copy or export the trace again"
        ) from None
    except OSError as exc:
        raise TraceError(
            f"{path}: cannot read it ({exc.strerror or exc}); check the path and its permissions"
        ) from None


class _Collector:
    """``json.loads`` object_hook: every event of a role we use becomes a tuple in that role's rows,
    and every event dict is dropped as soon as it is parsed, so the parsed trace never sits in
    memory whole. Dicts that are not events (args, the header) pass through unchanged."""

    def __init__(self, path: str):
        self.path = path
        self.rows = ([], [], [], [])  # per role: tuples, see _add
        self.costed = []  # (op row, args) of ops that have a cost formula
        self.shapes = []  # per op row: (Input Dims, Input type) as read, a _Recorded, or None
        self.strings = {}  # one str object per distinct name
        self.roles = dict(_BUCKET)  # category -> role, learning other capitalisations as they come

    def reset(self):
        self.__init__(self.path)

    def _role(self, cat):
        """The role of a Kineto category (None: not used), learning other capitalisations as they come."""
        try:
            return self.roles[cat]
        except (KeyError, TypeError):  # a new spelling, or a category that is not even a string
            role = _BUCKET.get(cat.lower()) if isinstance(cat, str) else None
            if isinstance(cat, str):
                self.roles[cat] = role
            return role

    def __call__(self, d: dict):
        cat = d.get("cat")
        role = self._role(cat)
        if role is None:
            return None if "ph" in d else d  # other events go; args and header dicts stay
        if d.get("ph", "X") != "X":
            return None
        try:
            self._add(role, d, cat)
        except KeyError as exc:
            raise TraceError(
                f"{self.path}: a '{cat}' event ('{str(d.get('name'))[:60]}') has no {exc}; the trace is "
                f"malformed, export it again with prof.export_chrome_trace()"
            ) from None
        except AttributeError:  # args is not an object
            raise TraceError(
                f"{self.path}: a '{cat}' event has 'args' that is not an object; the trace is malformed"
            ) from None
        return None

    def _add(self, role, d, cat):
        name = d.get("name", "")
        name = self.strings.setdefault(name, name) if isinstance(name, str) else str(name)
        if role == _RANGE and _C10D_WORK.match(name):
            role = _OP  # a collective call, not a range (module docstring)
        if role == _GPU:
            a = d.get("args") or _NO_ARGS
            self.rows[0].append(
                (
                    name,
                    _GPU_KIND[cat.lower()],
                    d["ts"],
                    d["dur"],
                    a.get("correlation", -1),
                    a.get("stream", d.get("tid")),
                    a.get("device", d.get("pid")),
                    a.get("bytes", np.nan),
                    d.get("pid"),
                )
            )
        elif role == _LAUNCH:
            a = d.get("args") or _NO_ARGS
            self.rows[1].append(
                (
                    name,
                    _LAUNCH_KIND[cat.lower()],
                    d["ts"],
                    d["dur"],
                    d.get("pid"),
                    d.get("tid"),
                    a.get("correlation", -1),
                )
            )
        else:
            rows = self.rows[role]
            if role == _OP:
                a = d.get("args") or _NO_ARGS
                if name in ATEN_COSTS:
                    self.costed.append((len(rows), a))
                dims = a.get("Input Dims", a.get("Input dims")) if isinstance(a, dict) else None
                self.shapes.append(None if dims is None else (dims, a.get("Input type", a.get("Input types"))))
            rows.append((name, d["ts"], d["dur"], d.get("pid"), d.get("tid")))

    def add_struct(self, e):
        """The same as calling with a dict, for an event decoded by msgspec into an _Event."""
        cat = e.cat
        role = self._role(cat)
        if role is None or e.ph != "X":
            return
        if e.ts is None or e.dur is None:
            raise TraceError(
                f"{self.path}: a '{cat}' event ('{str(e.name)[:60]}') has no '{'ts' if e.ts is None else 'dur'}'; the "
                f"trace is malformed, export it again with prof.export_chrome_trace()"
            )
        name = e.name
        name = self.strings.setdefault(name, name) if isinstance(name, str) else str(name)
        if role == _RANGE and _C10D_WORK.match(name):
            role = _OP
        a = e.args or _NO_STRUCT_ARGS
        if role == _GPU:
            self.rows[0].append(
                (
                    name,
                    _GPU_KIND[cat.lower()],
                    e.ts,
                    e.dur,
                    a.correlation,
                    e.tid if a.stream is _ABSENT else a.stream,
                    e.pid if a.device is _ABSENT else a.device,
                    np.nan if a.bytes is _ABSENT else a.bytes,
                    e.pid,
                )
            )
        elif role == _LAUNCH:
            self.rows[1].append((name, _LAUNCH_KIND[cat.lower()], e.ts, e.dur, e.pid, e.tid, a.correlation))
        else:
            rows = self.rows[role]
            if role == _OP:
                recorded = a.recorded() if a.dims or a.dims_old else None
                if name in ATEN_COSTS:
                    self.costed.append((len(rows), recorded or a.recorded()))
                self.shapes.append(recorded)
            rows.append((name, e.ts, e.dur, e.pid, e.tid))

    def columns(self, n_events: int, devices, rank=None) -> "_Events":
        gpu_rows, launch_rows, op_rows, rng_rows = self.rows
        if not gpu_rows:
            raise TraceError(
                f"{self.path}: no GPU kernels in the trace (nothing to analyse); record it with "
                f"activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]"
            )
        g = _transpose(gpu_rows, 9)
        la = _transpose(launch_rows, 7)
        op = _transpose(op_rows, 5)
        rn = _transpose(rng_rows, 5)
        self.rows = None
        ts_us = [self._numbers(c[i], c[0], "ts") for c, i in ((g, 2), (la, 2), (op, 1), (rn, 1))]
        t0 = min(float(t.min()) for t in ts_us if len(t))
        t1 = max(float(t.max()) for t in ts_us if len(t))
        if t1 - t0 > MAX_SPAN_US:
            raise TraceError(
                f"{self.path}: events {(t1 - t0) / 3.156e13:.3g} years apart (ts {t0:.6g} to {t1:.6g} µs); the trace "
                f"is malformed or merged from unrelated runs, export it again"
            )

        def ns(us):
            return np.rint((us - t0) * NS_PER_US).astype(np.int64)

        def dur(values, names):
            return np.maximum(np.rint(self._numbers(values, names, "dur") * NS_PER_US).astype(np.int64), 0)

        gpu = {
            "name": np.array(g[0], dtype=object),
            "kind": np.array(g[1], dtype=object),
            "ts": ns(ts_us[0]),
            "dur": dur(g[3], g[0]),
            "corr": _ints(g[4]),
            "stream": _ids(g[5], self.path, g[0], "stream"),
            "device": _ids(g[6], self.path, g[0], "device"),
            "bytes_arg": np.array(
                [
                    b if isinstance(b, (int, float)) and not isinstance(b, bool) and abs(b) < 1e18 else np.nan
                    for b in g[7]
                ],
                dtype=float,
            ),
        }
        thread = _threads((la[4], la[5]), (op[3], op[4]), (rn[3], rn[4]))
        gpu["unit"] = _codes(g[8], g[6])  # (pid, device) of a GPU event: one GPU as the trace names it
        process = _codes(la[4] + op[3] + rn[3])  # host process of each launch, op, range
        n_la = len(la[4])
        launch = {
            "name": np.array(la[0], dtype=object),
            "kind": np.array(la[1], dtype=object),
            "ts": ns(ts_us[1]),
            "dur": dur(la[3], la[0]),
            "thread": thread[0],
            "corr": _ints(la[6]),
            "process": process[:n_la],
            "tid": _objects(la[5]),
        }
        n_la, n_op = len(la[4]), len(op[3])
        ops = {
            "name": np.array(op[0], dtype=object),
            "ts": ns(ts_us[2]),
            "dur": dur(op[2], op[0]),
            "thread": thread[1],
            "process": process[n_la : n_la + n_op],
            "shape": _objects(self.shapes),
        }
        rng = {
            "name": np.array(rn[0], dtype=object),
            "ts": ns(ts_us[3]),
            "dur": dur(rn[2], rn[0]),
            "thread": thread[2],
            "process": process[n_la + n_op :],
        }
        costs = _op_costs(self.costed, ops["name"])
        span = 2 + max(int((c["ts"] + c["dur"]).max(initial=0)) for c in (gpu, launch, ops, rng))
        names = [d.get("name") for d in devices if isinstance(d, dict)] if isinstance(devices, list) else []
        return _Events(t0, span, gpu, launch, ops, rng, costs, n_events, names, rank)

    def _numbers(self, values, names, key) -> np.ndarray:
        """Times in µs as floats; a boolean, a string, a non-finite or an absurd value is an error."""
        try:
            if not any(v is True or v is False for v in values):
                out = np.array(values, dtype=float)
                if np.isfinite(out).all() and (np.abs(out) < MAX_TIME_US).all():
                    return out
        except (TypeError, ValueError, OverflowError):
            pass
        i = next(
            i
            for i, v in enumerate(values)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not abs(v) < MAX_TIME_US
        )
        what = (
            "non-numeric" if isinstance(values[i], bool) or not isinstance(values[i], (int, float)) else "out-of-range"
        )
        raise TraceError(
            f"{self.path}: event '{str(names[i])[:60]}' has a {what} '{key}' ({repr(values[i])[:40]}); "
            f"the trace is malformed, export it again"
        )


def _ids(values, path, names, key) -> np.ndarray:
    """A device or stream id per event as an object array of ints or strings; a list, an object or
    a boolean is an error (it would group nothing right)."""
    bad = next(
        (i for i, v in enumerate(values) if v is not None and (isinstance(v, bool) or not isinstance(v, (int, str)))),
        None,
    )
    if bad is not None:
        raise TraceError(
            f"{path}: GPU event '{str(names[bad])[:60]}' has a '{key}' that is a {type(values[bad]).__name__} "
            f"({str(values[bad])[:40]}), not an id; the trace is malformed, export it again"
        )
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


_NO_ARGS = {}


def _transpose(rows, width):
    """List of equal-length tuples -> tuple of columns (empty columns for no rows)."""
    return tuple(zip(*rows)) if rows else ((),) * width


@dataclass(frozen=True, eq=False)
class _Events:
    """Columns of the events that matter, by role. Times are int64 ns from the trace's first event."""

    t0_us: float
    span: int  # ns: every time in the columns is below it
    gpu: dict
    launch: dict
    op: dict
    rng: dict
    costs: dict  # op index -> (flops, bytes, compute_dtype, complete): complete is False when is_causal was unknown
    n_events: int
    device_names: list
    rank: object  # distributedInfo.rank, None when the trace names none


def _ints(values) -> np.ndarray:
    try:
        return np.array(values, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):  # a stray string or None: treat as absent
        return np.array([v if isinstance(v, int) and not isinstance(v, bool) else -1 for v in values], dtype=np.int64)


def _objects(values) -> np.ndarray:
    """A 1-D object array holding each value as it is (nested lists are not turned into dimensions)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values) if not isinstance(values, list) else values
    return out


def _shapes_of(ev: "_Events", index: np.ndarray):
    """(Input Dims, Input type) of the ops at ``index`` (-1: none) as object arrays, None where not
    recorded; each op's recorded text decoded once."""
    dims = np.full(len(index), None, dtype=object)
    types = np.full(len(index), None, dtype=object)
    hit = np.flatnonzero(index >= 0)
    uniq, back = np.unique(index[hit], return_inverse=True)
    got_d, got_t = np.full(len(uniq), None, dtype=object), np.full(len(uniq), None, dtype=object)
    for n, i in enumerate(uniq):  # one turn per op call that launched a kernel
        sh = ev.op["shape"][i]
        if isinstance(sh, _Recorded):
            sh = sh.decoded()
            sh = (sh.get("Input Dims"), sh.get("Input type"))
        if sh is not None:
            got_d[n], got_t[n] = sh
    dims[hit], types[hit] = got_d[back], got_t[back]
    return dims, types


def _codes(*columns) -> np.ndarray:
    """0..n-1 per distinct row of the given equal-length columns (ints, strings or None)."""
    code = np.zeros(len(columns[0]), dtype=np.int64)
    for values in columns:
        col = np.empty(len(values), dtype=object)
        col[:] = values
        try:
            c, uniques = pd.factorize(col, use_na_sentinel=False)
        except TypeError:  # an unhashable id (a list): compare its text
            c, uniques = pd.factorize(pd.Series(col, dtype=object).map(repr).to_numpy(), use_na_sentinel=False)
        code = pd.factorize(code * max(len(uniques), 1) + c)[0].astype(np.int64)
    return code


def _threads(*groups):
    """One integer per host thread (pid, tid), shared by all groups; pids/tids may be ints or strings."""
    pids = [p for g in groups for p in g[0]]
    tids = [t for g in groups for t in g[1]]
    try:  # the usual case: both are integers
        p, t = np.array(pids, dtype=np.int64), np.array(tids, dtype=np.int64)
        t_codes, t_values = pd.factorize(t)
        p_codes = pd.factorize(p)[0]
    except (TypeError, ValueError, OverflowError):
        p_codes = pd.factorize(np.array(pids, dtype=object), use_na_sentinel=False)[0]
        t_codes, t_values = pd.factorize(np.array(tids, dtype=object), use_na_sentinel=False)
    code = pd.factorize(p_codes.astype(np.int64) * max(len(t_values), 1) + t_codes)[0].astype(np.int64)  # 0..n-1
    out, start = [], 0
    for g in groups:
        out.append(code[start : start + len(g[0])])
        start += len(g[0])
    return out


# ----------------------------------------------------------------------------------------------
# FLOPs and minimum bytes: formulas.ATEN_COSTS, one function per aten op, from the recorded shapes

COSTED_OPS = tuple(ATEN_COSTS)


def _op_costs(costed, names) -> dict:
    """op index -> (flops, bytes, compute_dtype, complete) for the (index, args) given; ops whose
    shapes were not recorded (record_shapes=False) or do not fit the formula are left out (and
    reported uncosted). ``complete`` is False for attention whose is_causal was not recorded.
    ``args`` is the event's args dict or msgspec's _Args; calls with the same name and recorded
    arguments (every layer, every step) are costed once."""
    out, seen = {}, {}
    for i, args in costed:
        name = names[i]
        if isinstance(args, dict):
            key = (
                name,
                repr(args.get("Input Dims", args.get("Input dims"))),
                repr(args.get("Input type", args.get("Input types"))),
                repr(args.get("Concrete Inputs")),
            )
        elif isinstance(args, _Recorded):
            key = (name, *args)
        else:
            continue  # args that are not an object: no shapes
        if key not in seen:
            seen[key] = _op_cost(name, args if isinstance(args, dict) else args.decoded())
        if seen[key] is not None:
            out[int(i)] = seen[key]
    return out


def _op_cost(name: str, args: dict):
    """(flops, bytes, compute_dtype, complete) of one call, or None."""
    dims = args.get("Input Dims", args.get("Input dims"))
    types = args.get("Input type", args.get("Input types"))
    if not isinstance(dims, list) or not isinstance(types, list) or len(dims) != len(types):
        return None
    concrete = args.get("Concrete Inputs")
    call = AtenCall(dims, types, concrete if isinstance(concrete, list) else ())
    try:
        cost = ATEN_COSTS[name](call)
        flops, nbytes = float(cost.flops), float(cost.bytes_read + cost.bytes_written)
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError):
        return None  # shapes not of the form the formula reads (AtenShapeError is a ValueError)
    if not (np.isfinite(flops) and np.isfinite(nbytes)):
        return None
    dtype = ATEN_DTYPE.get(types[0]) if types and isinstance(types[0], str) else None
    return flops, nbytes, dtype, aten_causal_known(name, call)


# ----------------------------------------------------------------------------------------------
# joins: sorted intervals and np.searchsorted, no per-event loops


class _Nest:
    """Properly nested intervals per thread (a call stack), for 'which interval encloses time t'.

    Each interval gets its depth on its thread: its rank in (start, longest-first) order minus the
    intervals that ended at or before it started. Intervals of one depth on one thread are
    disjoint, so the one enclosing t at depth k is the last of them starting at or before t.
    Searches run on one sorted int64 key, (thread, depth) * span + time, so a single
    np.searchsorted answers every query. Zero-length intervals enclose nothing and are left out.
    """

    def __init__(self, thread, start, end, span: int):
        keep = np.flatnonzero(end > start)
        order = keep[np.lexsort((-end[keep], start[keep], thread[keep]))]
        th, s, e = thread[order], start[order], end[order]
        self.span = span
        self.n_threads = int(thread.max(initial=-1)) + 1
        base = th * span
        self.starts = base + s  # sorted: by thread, then start
        self.ends = np.sort(base + e)
        rank = np.arange(len(th)) - np.searchsorted(th, th, "left")
        ended = np.searchsorted(self.ends, base + s, "right") - np.searchsorted(self.ends, base, "left")
        depth = rank - ended
        self.levels = int(depth.max(initial=-1)) + 1
        if max(self.n_threads, 1) * max(self.levels, 1) * span >= 2**62:
            raise TraceError("trace too long to index (days of nanoseconds on many threads); trim it")
        by_level = np.lexsort((s, depth, th))
        self.index = order[by_level]
        self.keys = (th[by_level] * self.levels + depth[by_level]) * span + s[by_level]
        self.s, self.e = s[by_level], e[by_level]

    def count(self, thread, t) -> np.ndarray:
        """How many intervals on ``thread`` contain time ``t``."""
        base = thread * self.span
        started = np.searchsorted(self.starts, base + t, "right") - np.searchsorted(self.starts, base, "left")
        ended = np.searchsorted(self.ends, base + t, "left") - np.searchsorted(self.ends, base, "left")
        return started - ended

    def at_depth(self, thread, t, depth) -> np.ndarray:
        """Index (into the arrays given) of the interval at ``depth`` enclosing t on thread, or -1."""
        out = np.full(len(t), -1, dtype=np.int64)
        ok = np.flatnonzero((depth >= 0) & (depth < self.levels) & (thread >= 0) & (thread < self.n_threads))
        if not len(ok):
            return out
        group = thread[ok] * self.levels + depth[ok]
        pos = np.searchsorted(self.keys, group * self.span + t[ok], "right") - 1
        p = np.maximum(pos, 0)
        hit = (pos >= 0) & (self.keys[p] // self.span == group) & (self.s[p] <= t[ok]) & (t[ok] <= self.e[p])
        out[ok[hit]] = self.index[p[hit]]
        return out

    def innermost(self, thread, t) -> np.ndarray:
        return self.at_depth(thread, t, self.count(thread, t) - 1)


@dataclass(frozen=True, eq=False)
class _Joined:
    launch: np.ndarray  # per GPU event: index into launch columns, -1 for an orphan
    op: np.ndarray  # per GPU event: innermost op index, -1 for none
    rng: np.ndarray  # per GPU event: innermost range index, -1 for none
    rng_pairs: tuple  # (GPU event index, range index) for every range enclosing its launch
    owner: np.ndarray  # per GPU event: index of the op whose cost it carries, -1 for none
    launch_end: np.ndarray  # per GPU event: launch end (ns), -1 for orphans
    step: np.ndarray  # per GPU event: ProfilerStep number, -1 for none
    n_cross: tuple  # GPU events whose correlation id another process also used; GPUs whose process was a tie
    via_caller: np.ndarray  # per GPU event: its ranges are those of the thread that called backward()
    unit_process: pd.Series  # GPU unit code -> host process code (the join's vote)
    outer: np.ndarray  # per GPU event: outermost op index, -1 for none


def _launch_of(gpu: dict, launch: dict):
    """Per GPU event: the index of its launch call, -1 for an orphan; and (the number of GPU events
    whose correlation id was also used by another process, the number of GPUs for which two
    processes had as many matching launches: the join is then a guess, and the summary says so)."""
    n = len(gpu["ts"])
    out = np.full(n, -1, dtype=np.int64)
    has = np.flatnonzero(launch["corr"] >= 0)
    order = has[np.lexsort((launch["ts"][has], launch["corr"][has]))]  # by correlation, then start
    corr = launch["corr"][order]
    lo = np.searchsorted(corr, gpu["corr"], "left")
    hi = np.searchsorted(corr, gpu["corr"], "right")
    hi[gpu["corr"] < 0] = lo[gpu["corr"] < 0]
    count = hi - lo
    if not count.sum():
        return out, (0, 0), pd.Series(dtype=np.int64)
    k = np.repeat(np.arange(n), count)  # every (GPU event, candidate launch) pair
    cand = order[np.arange(len(k)) - np.repeat(np.cumsum(count) - count, count) + np.repeat(lo, count)]
    proc = launch["process"][cand]
    unit = gpu["unit"][k]
    # each GPU unit's process: per kernel, a vote for the process of the latest call launched before the
    # kernel started (a launch precedes its kernel, usually closely); the process with most votes wins
    causal = np.flatnonzero(launch["ts"][cand] <= gpu["ts"][k])
    latest = causal[np.lexsort((launch["ts"][cand[causal]], k[causal]))]
    last = np.ones(len(latest), dtype=bool)
    last[:-1] = k[latest][1:] != k[latest][:-1]
    vote = latest[last]
    votes = pd.DataFrame({"unit": unit[vote], "proc": proc[vote]}).value_counts().reset_index()
    owner = votes.drop_duplicates("unit").set_index("unit")["proc"]
    second = votes[votes.duplicated("unit")].drop_duplicates("unit").set_index("unit")["count"]
    tied = int((second == votes.drop_duplicates("unit").set_index("unit")["count"].reindex(second.index)).sum())
    mine = proc == owner.reindex(unit).to_numpy()
    first = np.ones(int(mine.sum()), dtype=bool)
    km = k[mine]
    first[1:] = km[1:] != km[:-1]  # candidates are in start order: the first is the outer call
    out[km[first]] = cand[mine][first]
    n_procs = pd.Series(proc).groupby(k).nunique()
    return out, (int((n_procs > 1).sum()), tied), owner


AUTOGRAD_OP = "autograd::engine::evaluate_function"  # the op an autograd worker thread runs per node


def _backward_threads(ev: _Events) -> np.ndarray:
    """Thread codes that run autograd nodes (the backward pass) and are not a process's main thread."""
    names = ev.op["name"]
    is_node = _per_name(names, lambda n: n.startswith(AUTOGRAD_OP), dtype=bool) if len(names) else np.zeros(0, bool)
    threads = np.unique(ev.op["thread"][is_node])
    return np.setdiff1d(threads, _main_threads(ev).to_numpy())


def _main_threads(ev: _Events) -> pd.Series:
    """Per host process code: the thread with the most ranges (the one running the training loop)."""
    if not len(ev.rng["thread"]):
        return pd.Series(dtype=np.int64)
    per = pd.DataFrame({"p": ev.rng["process"], "t": ev.rng["thread"]}).value_counts().reset_index()
    return per.drop_duplicates("p").set_index("p")["t"]


def _join(ev: _Events) -> _Joined:
    gpu, launch, op, rng = ev.gpu, ev.launch, ev.op, ev.rng
    n, span = len(gpu["ts"]), ev.span
    none = np.full(n, -1, dtype=np.int64)

    # 1. GPU event -> launch by correlation, within one process: correlation ids count per process, so
    #    a file holding several ranks repeats them. Each GPU (pid, device) is given the host process
    #    whose launches share the most of its correlation ids; of that process's calls sharing a
    #    kernel's id, the earliest (the outer call, where a runtime call wraps a driver call) is kept.
    k_launch, cross, unit_process = _launch_of(gpu, launch)
    f = np.flatnonzero(k_launch >= 0)
    li = k_launch[f]
    thread = launch["thread"][li]
    mid = launch["ts"][li] + launch["dur"][li] // 2
    launch_end = none.copy()
    launch_end[f] = launch["ts"][li] + launch["dur"][li]

    # 2. launch -> innermost op, and every enclosing range (innermost last), on its thread
    k_op, k_rng, owner = none.copy(), none.copy(), none.copy()
    op_nest = _Nest(op["thread"], op["ts"], op["ts"] + op["dur"], span)
    k_op[f] = op_nest.innermost(thread, mid)
    outer = none.copy()
    outer[f] = op_nest.at_depth(thread, mid, np.zeros(len(f), dtype=np.int64))
    rngs = _Nest(rng["thread"], rng["ts"], rng["ts"] + rng["dur"], span)
    pairs_k, pairs_r = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for depth in range(rngs.levels):  # one turn per nesting level, outermost first
        hit = rngs.at_depth(thread, mid, np.full(len(f), depth))
        sel = hit >= 0
        pairs_k.append(f[sel])
        pairs_r.append(hit[sel])
        k_rng[f[sel]] = hit[sel]  # deeper levels overwrite: the innermost remains
    # 2b. a launch from an autograd worker thread (backward), outside every range of its own thread,
    #     takes the ranges its process's main thread (the one with most ranges) was in at that moment:
    #     the thread that called backward() waits in them ('## backward ##', ProfilerStep#N)
    via_caller = np.zeros(n, dtype=bool)
    worker = _backward_threads(ev)
    lost = np.flatnonzero((k_rng[f] < 0) & np.isin(thread, worker))
    if len(lost) and len(rng["ts"]):
        main = _main_threads(ev)
        caller = main.reindex(launch["process"][li[lost]]).fillna(-1).to_numpy(dtype=np.int64)
        for depth in range(rngs.levels):
            hit = rngs.at_depth(caller, mid[lost], np.full(len(lost), depth))
            sel = hit >= 0
            pairs_k.append(f[lost][sel])
            pairs_r.append(hit[sel])
            k_rng[f[lost][sel]] = hit[sel]
            via_caller[f[lost][sel]] = True

    # 3. cost owner: the outermost costed op enclosing the launch
    costed = np.fromiter(ev.costs, dtype=np.int64, count=len(ev.costs))
    if len(costed):
        end = op["ts"][costed] + op["dur"][costed]
        sub = _Nest(op["thread"][costed], op["ts"][costed], end, span)
        hit = sub.at_depth(thread, mid, np.zeros(len(f), dtype=np.int64))
        owner[f] = np.where(hit >= 0, costed[np.maximum(hit, 0)], -1)
    owner[(gpu["kind"] == "memcpy") & ~_is_dtod(gpu["name"])] = -1  # a host or peer copy is not HBM traffic

    # ProfilerStep#N: a range (an op in old traces); launches from any thread count, orphans by start
    step = none.copy()
    found_s, found_e, found_n = [], [], []
    for cols in (rng, op):
        number = _per_name(cols["name"], _step_number, dtype=np.int64)
        m = number >= 0
        found_s.append(cols["ts"][m])
        found_e.append(cols["ts"][m] + cols["dur"][m])
        found_n.append(number[m])
    s_ns = np.concatenate(found_s)
    if len(s_ns):
        when = gpu["ts"].copy()
        when[f] = mid
        zeros = np.zeros(len(s_ns), dtype=np.int64)
        steps = _Nest(zeros, s_ns, np.concatenate(found_e), span)
        hit = steps.at_depth(np.zeros(n, np.int64), when, np.zeros(n, np.int64))
        step = np.where(hit >= 0, np.concatenate(found_n)[np.maximum(hit, 0)], -1)

    return _Joined(
        launch=k_launch,
        op=k_op,
        rng=k_rng,
        rng_pairs=(np.concatenate(pairs_k), np.concatenate(pairs_r)),
        owner=owner,
        launch_end=launch_end,
        step=step,
        n_cross=cross,
        via_caller=via_caller,
        outer=outer,
        unit_process=unit_process,
    )


# ----------------------------------------------------------------------------------------------
# frames


def _per_name(names: np.ndarray, fn, dtype=object) -> np.ndarray:
    """fn applied to each distinct name, spread back over ``names``."""
    codes, uniques = pd.factorize(names, use_na_sentinel=False)
    return np.array([fn(str(u)) for u in uniques], dtype=dtype)[codes] if len(names) else np.array([], dtype=dtype)


def _step_number(name: str) -> int:
    m = _STEP.match(name)
    return int(m.group(1)) if m else -1


def _range_names(names: np.ndarray) -> np.ndarray:
    """Range names with every ProfilerStep#N folded into one."""
    return _per_name(names, lambda n: STEP_RANGE if _STEP.match(n) else n)


def short_name(kernel: str) -> str:
    """A demangled kernel name without return type, template arguments and parameters:
    'void at::native::elementwise_kernel<128, 2, ...>(int, ...)' -> 'at::native::elementwise_kernel'."""
    name = str(kernel)
    name = name[5:] if name.startswith("void ") else name
    cut = min((i for i in (name.find("<"), name.find("(")) if i > 0), default=len(name))
    return name[:cut]


def _is_dtod(names: np.ndarray) -> np.ndarray:
    """Device-to-device copies (CUDA 'Memcpy DtoD', ROCm 'CopyDeviceToDevice')."""
    return _per_name(names, lambda n: "DtoD" in n or "DeviceToDevice" in n, dtype=bool)


def _is_comm(names: np.ndarray) -> np.ndarray:
    return _per_name(names, lambda n: "nccl" in n.lower(), dtype=bool)


def _pick(values: np.ndarray, index: np.ndarray, default) -> np.ndarray:
    """values[index] as an object array, ``default`` where index is -1."""
    out = np.full(len(index), default, dtype=object)
    hit = index >= 0
    out[hit] = values[index[hit]]
    return out


def _kernels_frame(ev: _Events, j: _Joined, idle: np.ndarray, host_bound: np.ndarray) -> pd.DataFrame:
    gpu = ev.gpu
    n = len(gpu["ts"])
    orphan = j.launch < 0
    op_name = _pick(_range_names(ev.op["name"]), j.op, None)  # old traces record ProfilerStep#N as an op
    bare = (j.op < 0) & ~orphan
    op_name[bare] = "(" + pd.Series(ev.launch["name"][j.launch[bare]], dtype=object).astype(str) + ")"
    op_name[orphan] = ORPHAN
    rng_name = _pick(_range_names(ev.rng["name"]), j.rng, NONE)
    rng_name[orphan] = ORPHAN
    kind = _pick(ev.launch["kind"], j.launch, "none")

    flops, nbytes, dtype, cost_op = _kernel_costs(ev, j)
    op_dims, op_types = _shapes_of(ev, j.op)
    outer_dims, outer_types = _shapes_of(ev, j.outer)
    return pd.DataFrame(
        {
            "name": gpu["name"],
            "kind": gpu["kind"],
            "device": gpu["device"],
            "stream": gpu["stream"],
            "ts_s": gpu["ts"] * S_PER_NS,
            "dur_s": gpu["dur"] * S_PER_NS,
            "cpu_op": op_name,
            "range": rng_name,
            "step": j.step,
            "correlation": gpu["corr"],
            "launch_kind": kind,
            "launch_end_s": np.where(orphan, np.nan, j.launch_end * S_PER_NS),
            "idle_before_s": idle * S_PER_NS,
            "host_bound": host_bound,
            "flops": flops,
            "bytes": nbytes,
            "compute_dtype": dtype,
            "cost_op": cost_op,
            "graph": _is_graph(ev, j),
            "range_via": np.where(j.via_caller, "caller thread", np.where(j.rng >= 0, "thread", "none")),
            # recorded shapes of the ops around the launch (None without record_shapes), for roofline.attribute
            "op_dims": op_dims,
            "op_types": op_types,
            "owner_dims": _shapes_of(ev, j.owner)[0],
            "outer_op": _pick(ev.op["name"], j.outer, None),
            "outer_dims": outer_dims,
            "outer_types": outer_types,
            "outer_id": j.outer,  # one id per outermost op call (-1 for none): its kernels share it
            "op_id": j.op,  # the same for the innermost op call
            "tid": _pick(ev.launch["tid"], j.launch, None),
            "launch_ts_s": np.where(orphan, np.nan, _pick(ev.launch["ts"], j.launch, -1).astype(float) * S_PER_NS),
        },
        index=pd.RangeIndex(n),
    )


GRAPH_LAUNCHES = ("cudaGraphLaunch", "cuGraphLaunch", "hipGraphLaunch")  # with _v10000-style suffixes too
GRAPH_ROW = "(graph) "  # by_op key prefix of a graph replay's kernels


def _is_graph(ev: _Events, j: _Joined) -> np.ndarray:
    """Per GPU event: launched by a CUDA/HIP graph replay."""
    is_graph = _per_name(ev.launch["name"], lambda n: n.startswith(GRAPH_LAUNCHES), dtype=bool)
    return np.where(j.launch >= 0, is_graph[np.maximum(j.launch, 0)] if len(is_graph) else False, False)


def _idle_before(gpu: dict, j: _Joined):
    """Per GPU event: the device's idle time just before it, and whether the host caused it.

    Events of a device are taken in start order across its streams; the device ran dry at the
    latest end of all earlier events. The gap is the host's when the event's launch call ended
    after that moment: the GPU had nothing queued because the host had not yet asked.
    """
    ts, end = gpu["ts"], gpu["ts"] + gpu["dur"]
    device = pd.factorize(pd.Series(gpu["device"], dtype=object), use_na_sentinel=False)[0]
    order = np.lexsort((ts, device))
    d, t, e = device[order], ts[order], end[order]
    # running max of end within each device (no key arithmetic: far-apart kernels cannot overflow it)
    ran_dry = pd.Series(e).groupby(d).cummax().to_numpy()
    prev = np.empty_like(ran_dry)
    prev[1:] = ran_dry[:-1]
    first = np.ones(len(d), dtype=bool)
    first[1:] = d[1:] != d[:-1]
    gap = np.where(first, 0, np.maximum(t - prev, 0))
    launch_end = j.launch_end[order]
    host = (gap > 0) & (launch_end >= 0) & (launch_end > prev)
    idle = np.empty_like(gap)
    idle[order] = gap
    host_bound = np.empty(len(d), dtype=bool)
    host_bound[order] = host
    return idle, host_bound


def _kernel_costs(ev: _Events, j: _Joined):
    """Each costed op's FLOPs and bytes spread over its kernels by duration; memset/DtoD copies alone."""
    gpu = ev.gpu
    n = len(gpu["ts"])
    flops = np.full(n, np.nan)
    nbytes = np.full(n, np.nan)
    dtype = np.full(n, None, dtype=object)
    cost_op = np.full(n, None, dtype=object)
    has = j.owner >= 0
    if has.any():
        owners = j.owner[has]
        table = pd.DataFrame.from_dict(ev.costs, orient="index", columns=["flops", "bytes", "dtype", "causal"])
        c = table.loc[owners]
        dur = gpu["dur"][has].astype(float)
        codes, uniq = pd.factorize(owners)
        total = np.bincount(codes, weights=dur)[codes]
        count = np.bincount(codes)[codes]
        share = np.where(total > 0, dur / np.where(total > 0, total, 1), 1.0 / count)
        flops[has] = c["flops"].to_numpy() * share
        nbytes[has] = c["bytes"].to_numpy() * share
        dtype[has] = c["dtype"].to_numpy()
        cost_op[has] = ev.op["name"][owners]
    alone = ~has
    memset = alone & (gpu["kind"] == "memset")
    dtod = alone & (gpu["kind"] == "memcpy") & _is_dtod(gpu["name"])
    flops[memset | dtod] = 0.0
    nbytes[memset] = gpu["bytes_arg"][memset]  # written once
    nbytes[dtod] = 2 * gpu["bytes_arg"][dtod]  # read and written
    return flops, nbytes, dtype, cost_op


def _lean(kernels: pd.DataFrame) -> pd.DataFrame:
    """The columns the per-op and per-range tables sum, with NCCL time and costed time per kernel."""
    dur = kernels["dur_s"].to_numpy()
    known = kernels["flops"].notna().to_numpy() | kernels["bytes"].notna().to_numpy()
    return pd.DataFrame(
        {
            "name": kernels["name"],
            "dur_s": dur,
            "flops": kernels["flops"],
            "bytes": kernels["bytes"],
            "compute_dtype": kernels["compute_dtype"],
            "costed_s": np.where(known, dur, 0.0),
            "comm_s": np.where(_is_comm(kernels["name"].to_numpy()), dur, 0.0),
        }
    )


def _group_stats(f: pd.DataFrame, key) -> pd.DataFrame:
    """Per value of ``key`` (an array beside the lean frame f): GPU time, kernel count, cost sums, top kernels."""
    f = f.assign(key=key)
    g = f.groupby("key", sort=False)
    out = pd.DataFrame(
        {
            "gpu_time_s": g["dur_s"].sum(),
            "n_kernels": g["dur_s"].size(),
            "flops": g["flops"].sum(min_count=1),
            "bytes": g["bytes"].sum(min_count=1),
            "costed_time_s": g["costed_s"].sum(),
            "comm_time_s": g["comm_s"].sum(),
        }
    )
    by_name = f.groupby(["key", "name"], sort=False)["dur_s"].sum().reset_index()
    by_name = by_name.sort_values("dur_s", ascending=False, kind="stable")
    top = by_name.groupby("key", sort=False).head(TOP_KERNELS)
    out["top_kernels"] = top.groupby("key", sort=False)["name"].agg(lambda names: "; ".join(map(short_name, names)))
    costed = f[f["compute_dtype"].notna()]
    out["compute_dtype"] = None
    if len(costed):
        per = costed.groupby(["key", "compute_dtype"])["dur_s"].sum().reset_index()
        per = per.sort_values("dur_s", ascending=False, kind="stable").drop_duplicates("key")
        out["compute_dtype"] = per.set_index("key")["compute_dtype"].reindex(out.index)
    return out


def _by_op(ev: _Events, j: _Joined, kernels: pd.DataFrame, lean: pd.DataFrame, busy: dict) -> pd.DataFrame:
    """Kernels are charged to the op that carries their cost (e.g. a memset inside cuDNN attention
    to aten::scaled_dot_product_attention), else to their innermost op; the kernels of a CUDA/HIP
    graph replay get a row per kernel name ('(graph) name'): the replay records no op per kernel."""
    inst = np.where(j.owner >= 0, j.owner, j.op)
    op = np.where(j.owner >= 0, kernels["cost_op"].to_numpy(), kernels["cpu_op"].to_numpy())
    graph = kernels["graph"].to_numpy() & (j.owner < 0)
    op = op.astype(object)
    op[graph] = GRAPH_ROW + _per_name(kernels["name"].to_numpy()[graph], short_name)  # a row per kernel it ran
    out = _group_stats(lean, op)
    calls = pd.DataFrame({"op": op, "inst": inst})
    calls = calls[calls["inst"] >= 0].drop_duplicates("inst")
    idx = calls["inst"].to_numpy()
    calls["span_s"] = ev.op["dur"][idx] * S_PER_NS
    calls["busy_s"] = _busy_within(busy, ev.op["process"][idx], ev.op["ts"][idx], ev.op["dur"][idx]) * S_PER_NS
    per = calls.groupby("op")[["span_s", "busy_s"]].agg(["size", "sum"])
    out["n_calls"] = per[("span_s", "size")].reindex(out.index).fillna(0).astype(np.int64)
    out["span_s"] = per[("span_s", "sum")].reindex(out.index)
    out["device_busy_share"] = (per[("busy_s", "sum")] / per[("span_s", "sum")]).reindex(out.index)
    return _finish(out, "op", kernels["dur_s"].sum())


def _by_range(ev: _Events, j: _Joined, kernels: pd.DataFrame, lean: pd.DataFrame, busy: dict) -> pd.DataFrame:
    names = _range_names(ev.rng["name"])
    codes, uniques = pd.factorize(names, use_na_sentinel=False)
    k, r = j.rng_pairs
    # a kernel counts once per range name, however many instances of that name enclose it
    pair = np.unique(k * max(len(uniques), 1) + codes[r])
    k, c = pair // max(len(uniques), 1), pair % max(len(uniques), 1)
    incl = _group_stats(lean.iloc[k].reset_index(drop=True), np.asarray(uniques, dtype=object)[c])
    own = kernels["range"].to_numpy()
    outside = np.isin(own, [NONE, ORPHAN])
    if outside.any():  # kernels outside every range, and orphans, so the rows account for all GPU time
        incl = pd.concat([incl, _group_stats(lean[outside].reset_index(drop=True), own[outside])])
    incl["self_gpu_time_s"] = kernels.groupby("range", sort=False)["dur_s"].sum().reindex(incl.index).fillna(0.0)
    busy_ns = _busy_within(busy, ev.rng["process"], ev.rng["ts"], ev.rng["dur"])
    inst = pd.DataFrame({"name": names, "span_s": ev.rng["dur"] * S_PER_NS, "busy_s": busy_ns * S_PER_NS})
    per = inst.groupby("name")[["span_s", "busy_s"]].agg(["size", "sum"])
    incl["n_calls"] = per[("span_s", "size")].reindex(incl.index).fillna(0).astype(np.int64)
    incl["span_s"] = per[("span_s", "sum")].reindex(incl.index)
    incl["device_busy_share"] = (per[("busy_s", "sum")] / per[("span_s", "sum")]).reindex(incl.index)
    return _finish(incl, "range", kernels["dur_s"].sum())


def _finish(out: pd.DataFrame, key: str, total_s: float) -> pd.DataFrame:
    out["share"] = out["gpu_time_s"] / total_s if total_s > 0 else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        out["costed_share"] = np.where(out["gpu_time_s"] > 0, out["costed_time_s"] / out["gpu_time_s"], np.nan)
    out = out.rename_axis(key).reset_index().sort_values("gpu_time_s", ascending=False, kind="stable")
    cols = [
        key,
        "gpu_time_s",
        "self_gpu_time_s",
        "n_kernels",
        "n_calls",
        "span_s",
        "device_busy_share",
        "share",
        "top_kernels",
        "flops",
        "bytes",
        "costed_time_s",
        "costed_share",
        "comm_time_s",
        "compute_dtype",
    ]
    return out[[c for c in cols if c in out.columns]].reset_index(drop=True)


def _busy_timeline(gpu: dict, j: _Joined) -> dict:
    """Per host process code: (starts, ends, busy before each start) of the merged busy intervals of
    the GPUs it drives, all streams together: when any of its GPU work ran."""
    proc = j.unit_process.reindex(gpu["unit"]).fillna(-1).to_numpy(dtype=np.int64)
    out = {}
    for p in np.unique(proc[proc >= 0]):  # one turn per host process
        m = proc == p
        s, e = _merged(gpu["ts"][m], gpu["ts"][m] + gpu["dur"][m])
        out[int(p)] = (s, e, np.concatenate([[0], np.cumsum(e - s)[:-1]]))
    return out


def _merged(start: np.ndarray, end: np.ndarray):
    """The union of intervals as sorted disjoint (starts, ends)."""
    order = np.argsort(start, kind="stable")
    s, e = start[order], end[order]
    reach = np.maximum.accumulate(e)
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] > reach[:-1]
    return s[new], reach[np.append(np.flatnonzero(new)[1:] - 1, len(s) - 1)]


def _busy_within(timeline: dict, process: np.ndarray, start: np.ndarray, dur: np.ndarray) -> np.ndarray:
    """ns of [start, start + dur] during which the process's GPUs were busy (0 for a process with none)."""
    out = np.zeros(len(start), dtype=np.int64)
    for p, blocks in timeline.items():
        m = np.flatnonzero(process == p)
        out[m] = _busy_upto(blocks, start[m] + dur[m]) - _busy_upto(blocks, start[m])
    return out


def _busy_upto(blocks, t: np.ndarray) -> np.ndarray:
    """Busy ns from the first block to each t."""
    s, e, before = blocks
    i = np.searchsorted(s, t, "right") - 1
    k = np.maximum(i, 0)
    return np.where(i >= 0, before[k] + np.minimum(t, e[k]) - s[k], 0)


def _union_ns(start: np.ndarray, end: np.ndarray) -> int:
    """Total length of the union of intervals."""
    if not len(start):
        return 0
    order = np.argsort(start, kind="stable")
    s, e = start[order], end[order]
    reach = np.maximum.accumulate(e)
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] > reach[:-1]
    block_start = s[new]
    block_end = reach[np.append(np.flatnonzero(new)[1:] - 1, len(s) - 1)]
    return int((block_end - block_start).sum())


def _summary(ev: _Events, j: _Joined, kernels: pd.DataFrame, path: str, idle_host: int) -> dict:
    gpu = ev.gpu
    start, end = gpu["ts"], gpu["ts"] + gpu["dur"]
    devices = pd.factorize(pd.Series(gpu["device"], dtype=object), use_na_sentinel=False)[0]
    busy = window = 0
    for d in np.unique(devices):  # one loop turn per GPU
        m = devices == d
        busy += _union_ns(start[m], end[m])
        window += int(end[m].max() - start[m].min())
    orphan = kernels["launch_kind"] == "none"
    incomplete = {i for i, c in ev.costs.items() if not c[3]}
    n_causal_unknown = int(pd.Series(np.unique(j.owner[j.owner >= 0])).isin(incomplete).sum())
    assumptions = [
        f"FLOPs and minimum bytes are counted for the {len(COSTED_OPS)} aten ops of formulas.ATEN_COSTS "
        "(matmuls, attention, element-wise, norms, reductions, copies, gathers) when the trace has their "
        "shapes (record_shapes=True); one multiply-add = 2 FLOP; other kernels are reported with their "
        "time and no count; host and peer copies carry no HBM bytes",
    ]
    if n_causal_unknown:
        assumptions.append(
            f"{n_causal_unknown} attention calls have no recorded is_causal flag: their FLOPs count the "
            f"full s_q x s_k score matrix (a causal mask would halve it)"
        )
    graph = kernels["graph"].to_numpy()
    if graph.any():
        assumptions.append(
            f"{int(graph.sum())} kernels ({kernels.loc[graph, 'dur_s'].sum() / kernels['dur_s'].sum():.0%} of GPU "
            f"time) ran in CUDA/HIP graph replays: each is listed by name ('(graph) name' rows per op) with its time; "
            f"a replay records no op, shapes or range per kernel, so they carry no FLOPs and take the replay call's "
            f"op and ranges"
        )
    caller = kernels["range_via"].to_numpy() == "caller thread"
    if caller.any():
        assumptions.append(
            f"{int(caller.sum())} kernels launched by autograd worker threads (backward) outside their thread's "
            f"ranges are counted in the ranges the process's main thread was in at launch ('## backward ##', steps)"
        )
    if j.n_cross[1]:
        assumptions.append(
            f"{j.n_cross[1]} GPUs: launches of two processes matched their correlation ids equally often; the "
            f"kernel-to-launch join there is a guess (split the trace per rank)"
        )
    dur = kernels["dur_s"].to_numpy()
    known = kernels["flops"].notna().to_numpy() | kernels["bytes"].notna().to_numpy()
    step_ids = np.unique(j.step[j.step >= 0])
    return {
        "path": path,
        "devices": ev.device_names,
        "n_events": ev.n_events,
        "n_kernels": int((gpu["kind"] == "kernel").sum()),
        "n_memcpy": int((gpu["kind"] == "memcpy").sum()),
        "n_memset": int((gpu["kind"] == "memset").sum()),
        "n_devices": int(len(np.unique(devices))),
        "n_streams": int(kernels[["device", "stream"]].astype(str).drop_duplicates().shape[0]),
        "n_steps": int(len(step_ids)),
        "gpu_time_s": float(kernels["dur_s"].sum()),
        "busy_s": busy * S_PER_NS,
        "window_s": window * S_PER_NS,
        "idle_s": (window - busy) * S_PER_NS,
        "idle_host_bound_s": idle_host * S_PER_NS,
        "idle_other_s": (window - busy - idle_host) * S_PER_NS,
        "n_orphans": int(orphan.sum()),
        "orphan_time_s": float(kernels.loc[orphan, "dur_s"].sum()),
        "n_no_op": int(((j.op < 0) & (j.launch >= 0)).sum()),
        "n_processes": len(np.unique(ev.launch["process"])),
        "n_correlation_reused": j.n_cross[0],
        "n_gpus_process_tied": j.n_cross[1],
        "costed_share": float(dur[known].sum() / dur.sum()) if dur.sum() > 0 else float("nan"),
        "n_graph_kernels": int(graph.sum()),
        "graph_time_s": float(dur[graph].sum()),
        "n_kernels_via_caller_thread": int(caller.sum()),
        "trace_origin_us": ev.t0_us,
        "assumptions": assumptions,
    }


def trace_run(path, spec, phase: str = "decode", by: str = "range"):
    """The trace at ``path`` as a ``MeasuredRun`` (source 'trace', rank 0, every row in ``phase``):
    one row per record_function range (``by='range'``; the ProfilerStep ranges left out) or per CPU
    op (``by='op'``), figures per call: gpu_time_s (a range: its self time, the kernels for which it
    is the innermost range, as the profile joins them), n_kernels, span_s, flops, bytes,
    costed_time_s and comm_time_s over ``n_calls``; calls = n_calls. ``spec`` as analyze_trace takes
    it. Raises TraceError as analyze_trace does, ValueError for another ``by``."""
    from roofline.measure.run import MeasuredRun

    if by not in ("range", "op"):
        raise ValueError(f"by must be 'range' or 'op', not {by!r}")
    ta = analyze_trace(path, spec)
    f = ta.by_range[ta.by_range["range"] != STEP_RANGE] if by == "range" else ta.by_op
    calls = f["n_calls"].to_numpy(float)
    gpu = (f["self_gpu_time_s"] if by == "range" else f["gpu_time_s"]).to_numpy(float)
    ops = pd.DataFrame(
        {
            "rank": 0,
            "phase": phase,
            "op": f[by].astype(str).to_numpy(),
            "calls": calls,
            "gpu_time_s": gpu / calls,
            "n_kernels": f["n_kernels"].to_numpy(float) / calls,
            "span_s": f["span_s"].to_numpy(float) / calls,
            "kernels": f["top_kernels"].to_numpy(),
            "time_source": "cuda kernels",
        }
    )
    for col in ("flops", "bytes", "costed_time_s", "comm_time_s"):
        ops[col] = f[col].to_numpy(float) / calls
    summary = {k: v for k, v in ta.summary.items() if not isinstance(v, (dict, list))}
    return MeasuredRun(
        source="trace",
        ops=ops,
        kernels=ta.kernels,
        traces={phase: str(path)},
        device={"spec": load_spec(spec).name, "trace": summary},
    )
