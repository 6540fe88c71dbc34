"""What roofline.measure.trace refuses, in one line naming the problem and the fix: special files,
oversized or gzip-bomb traces, ids and times that are not ids and times; and traces that read right
though odd: several processes reusing correlation ids, kernels days apart."""

import gzip
import json
import os

import pandas as pd
import pytest
from test_trace import DATA, US, _kernel, _launch, _op, _write

from roofline.errors import TraceError
from roofline.measure.trace import analyze_trace
from roofline.specs import load_spec

SPEC = load_spec(DATA / "tiny_gpu.yaml")


def test_a_folder_fifo_or_device_is_refused(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(TraceError) as exc:
        analyze_trace(fifo, SPEC)  # opening it would block forever
    assert str(exc.value) == (
        f"{fifo}: not a regular file (a FIFO); pass a trace file written by prof.export_chrome_trace()"
    )
    with pytest.raises(TraceError, match=r"^/dev/zero: not a regular file \(a device\); pass a trace file"):
        analyze_trace("/dev/zero", SPEC)


def test_text_over_the_limit_is_refused(tmp_path):
    p = _write(tmp_path / "t.json", [_op("aten::relu", 0), _launch(1, 2), _kernel(1, 10)])
    size = p.stat().st_size
    assert analyze_trace(p, SPEC, max_bytes=size).summary["n_kernels"] == 1  # exactly at the limit: read
    with pytest.raises(TraceError) as exc:
        analyze_trace(p, SPEC, max_bytes=size - 1)
    assert str(exc.value) == (
        f"{p}: more than {(size - 1) / 1e9:.3g} GB of JSON text; trim the trace (record "
        f"fewer steps) or raise the limit (analyze_trace(..., max_bytes=))"
    )


def test_a_gzip_bomb_stops_at_the_limit(tmp_path):
    p = tmp_path / "bomb.json.gz"
    p.write_bytes(gzip.compress(b" " * 50_000_000))  # 50 kB that expands to 50 MB
    assert p.stat().st_size < 100_000
    with pytest.raises(TraceError, match=r"bomb\.json\.gz: expands to more than 0\.001 GB of JSON text"):
        analyze_trace(p, SPEC, max_bytes=1_000_000)


@pytest.mark.parametrize(
    "key, value, what",
    [
        ("ts", True, "non-numeric 'ts' (True)"),
        ("dur", False, "non-numeric 'dur' (False)"),
        ("ts", 10**400, "out-of-range 'ts' (1000000000000"),
        ("ts", 1e300, "out-of-range 'ts' (1e+300)"),
        ("dur", 2e17, "out-of-range 'dur' (2e+17)"),
    ],
)
def test_times_that_are_not_times(tmp_path, key, value, what):
    bad = _kernel(1, 10)
    bad[key] = value
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"traceEvents": [_op("aten::relu", 0), _launch(1, 2), bad]}))
    with pytest.raises(TraceError) as exc:
        analyze_trace(p, SPEC)
    assert str(exc.value).startswith(f"{p}: event 'k1' has a {what}")
    assert str(exc.value).endswith("; the trace is malformed, export it again")


def test_events_centuries_apart(tmp_path):
    p = _write(tmp_path / "t.json", [_op("aten::relu", 0), _launch(1, 2), _kernel(1, 5e15)])
    with pytest.raises(TraceError) as exc:
        analyze_trace(p, SPEC)
    assert str(exc.value) == (
        f"{p}: events 158 years apart (ts 0 to 5e+15 µs); the trace is malformed or "
        f"merged from unrelated runs, export it again"
    )


@pytest.mark.parametrize(
    "key, value, kind", [("stream", [7, 8], "list"), ("device", {"id": 0}, "dict"), ("device", True, "bool")]
)
def test_ids_that_are_not_ids(tmp_path, key, value, kind):
    bad = _kernel(1, 10)
    bad["args"][key] = value
    p = _write(tmp_path / "t.json", [_op("aten::relu", 0), _launch(1, 2), bad])
    with pytest.raises(TraceError) as exc:
        analyze_trace(p, SPEC)
    assert str(exc.value).startswith(f"{p}: GPU event 'k1' has a '{key}' that is a {kind} (")
    assert str(exc.value).endswith("), not an id; the trace is malformed, export it again")


def test_kernels_days_apart_give_no_negative_idle(tmp_path):
    day_us = 86_400e6
    events = [
        _op("aten::relu", 0),
        _launch(1, 2),
        _kernel(1, 10),
        {**_kernel(2, 30 * day_us), "args": {"device": 1, "stream": 7, "correlation": 2}},
        _op("aten::relu", 30 * day_us - 20),
        _launch(2, 30 * day_us - 18),
    ]
    a = analyze_trace(_write(tmp_path / "t.json", events), SPEC)
    assert (a.kernels["idle_before_s"] >= 0).all()
    assert a.summary["idle_s"] == pytest.approx(0)  # one kernel per device: no gap inside either window
    assert a.summary["busy_s"] == pytest.approx(8 * US)


def test_ranks_in_one_file_join_within_their_process(tmp_path):
    """Two ranks' events in one file, with the same correlation ids: each kernel joins its own rank's launch."""
    events = []
    for rank, pid, t in ((0, 100, 0), (1, 200, 10)):  # rank 1 runs 10 µs later than rank 0
        for corr in (1, 2, 3):
            base = t + 20 * corr
            name = f"aten::op{corr}_rank{rank}"
            events += [
                {**_op(name, base), "pid": pid, "tid": pid},
                {**_launch(corr, base + 2), "pid": pid, "tid": pid},
                {
                    "ph": "X",
                    "cat": "kernel",
                    "name": f"k{corr}",
                    "pid": rank,
                    "tid": 7,
                    "ts": base + 5,
                    "dur": 2,
                    "args": {"device": rank, "stream": 7, "correlation": corr},
                },
            ]
    a = analyze_trace(_write(tmp_path / "t.json", events), SPEC)
    k = a.kernels
    assert list(k["cpu_op"]) == [f"aten::op{c}_rank{r}" for r in (0, 1) for c in (1, 2, 3)]
    assert a.summary["n_correlation_reused"] == 6 and a.summary["n_processes"] == 2
    assert a.summary["n_gpus_process_tied"] == 0
    # GPU 1's kernel 1 at 35: rank 0's launch 1 (at 22) and rank 1's (at 32) precede it; the later, rank 1's,
    # gets the vote; GPU 0's kernel 1 at 25: rank 1's launch (at 32) comes after it, rank 0's gets the vote


@pytest.mark.parametrize("name", ["h100_decode_trace.json.gz", "hta_mi250_rocm_train.json.gz", "tiny_joins.json"])
def test_pieces_of_any_size_give_the_same_frames(name):
    """The event array parsed in pieces of 1 kB (hundreds of pieces, cut between events) or whole."""
    whole = analyze_trace(DATA / name, SPEC)
    pieces = analyze_trace(DATA / name, SPEC, piece_bytes=1000)
    pd.testing.assert_frame_equal(whole.kernels, pieces.kernels)
    pd.testing.assert_frame_equal(whole.by_op, pieces.by_op)
    assert whole.summary == pieces.summary


def test_one_line_and_multi_line_text_with_keys_after_the_events(tmp_path):
    """No newlines at all (json.dumps): parsed whole. Indented text with non-ASCII names and keys after the
    event array (as Kineto writes 'traceName'): cut into pieces, the same frames."""
    events = []
    for i in range(1, 40):
        events += [
            _op("aten::relu", 20 * i),
            _launch(i, 20 * i + 2),
            {**_kernel(i, 20 * i + 10), "name": f"k{i}}},{{µ"},
        ]
    doc = {"schemaVersion": 1, "traceEvents": events, "traceName": "µ trace", "baseTimeNanoseconds": 1}
    one = tmp_path / "one.json"
    one.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    lines = tmp_path / "lines.json"
    lines.write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
    a = analyze_trace(one, SPEC, piece_bytes=10)
    b = analyze_trace(lines, SPEC, piece_bytes=200)
    assert list(a.kernels["name"])[:2] == ["k1},{µ", "k2},{µ"] and len(a.kernels) == 39
    pd.testing.assert_frame_equal(a.kernels, b.kernels)
    assert a.summary["n_events"] == b.summary["n_events"] == 117


@pytest.mark.parametrize(
    "name",
    [
        "h100_decode_trace.json.gz",
        "hta_mi250_rocm_train.json.gz",
        "tiny_joins.json",
        "tiny_old_format.json",
        "tiny_attention.json",
        "hta_backward_thread.json",
    ],
)
def test_the_parsers_agree(name):
    """msgspec (typed, the fields used only) and orjson (a dict per event) read the same frames."""
    pytest.importorskip("msgspec")
    a = analyze_trace(DATA / name, SPEC, parser="msgspec")
    b = analyze_trace(DATA / name, SPEC, parser="orjson")
    pd.testing.assert_frame_equal(a.kernels, b.kernels)
    pd.testing.assert_frame_equal(a.by_op, b.by_op)
    pd.testing.assert_frame_equal(a.by_range, b.by_range)
    assert a.summary == b.summary


def test_an_unknown_parser():
    from roofline.measure.trace import PARSERS

    with pytest.raises(TraceError, match=f"^unknown trace parser 'simdjson'; installed: {', '.join(PARSERS)}$"):
        analyze_trace(DATA / "tiny_joins.json", SPEC, parser="simdjson")
