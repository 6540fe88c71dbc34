"""Hostile and careless inputs (issue 11, parts 1-5): one test per bullet, each asserting the exit code,
the exact one-line message, that no traceback appears, and that old files survive.

1. never lose a user's data   2. nothing injected   3. bounded on any input
4. one clear line, never a traceback   5. no silently wrong number
"""

import errno
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from roofline import io, render
from roofline.cli import main
from roofline.config import FAMILIES
from roofline.errors import InputFileError, OutputError

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
TINY_MODEL = DATA / "tiny_llama.yaml"
TINY_GPU = DATA / "tiny_gpu.yaml"
LLAMA = ROOT / "examples" / "llama-2-7b.yaml"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def fails(result, code: int, message: str):
    """Exit ``code``, ``message`` on the last line of the output, no traceback, nothing else after it."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    last = result.output.strip().splitlines()[-1]
    assert last == message, last


def leftovers(folder: Path) -> list:
    """Temporary files or folders roofline left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def model_file(tmp_path, text: str | None = None, filename="m.yaml", **changes) -> Path:
    path = tmp_path / filename
    if text is None:
        data = yaml.safe_load(TINY_MODEL.read_text())
        data.update(changes)
        text = yaml.safe_dump(data, sort_keys=False)
    path.write_text(text)
    return path


# ================================================================================================
# 1. never lose a user's data

OLD = "the user's old result\n"


@pytest.mark.parametrize(
    "errno_, reason",
    [
        (errno.ENOSPC, "No space left on device; free some space or write elsewhere"),
        (errno.EROFS, "Read-only file system; choose a folder you can write to"),
        (errno.EACCES, "Permission denied; choose a folder you can write to"),
    ],
)
def test_a_failed_write_keeps_the_old_output(tmp_path, monkeypatch, errno_, reason):
    out = tmp_path / "out.csv"
    out.write_text(OLD)

    def fail(*_args):
        raise OSError(errno_, os.strerror(errno_))

    monkeypatch.setattr(io.os, "replace", fail)  # the rename that would publish the new file fails
    r = run("analyze", TINY_MODEL, "--gpu", TINY_GPU, "--format", "csv", "--output", out)
    fails(r, 1, f"Error: cannot write {out}: {reason}")
    assert out.read_text() == OLD
    assert leftovers(tmp_path) == []


def test_ctrl_c_during_a_write_keeps_the_old_output(tmp_path, monkeypatch):
    out = tmp_path / "out.json"
    out.write_text(OLD)

    def interrupt(_fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(io.os, "fsync", interrupt)
    r = run("analyze", TINY_MODEL, "--gpu", TINY_GPU, "--format", "json", "--output", out)
    assert r.exit_code == 1 and "Aborted!" in r.output and "Traceback" not in r.output
    assert out.read_text() == OLD
    assert leftovers(tmp_path) == []


def test_a_killed_write_leaves_the_old_file_or_the_new_one(tmp_path):
    """A real process, killed with SIGKILL in the middle of a streamed write."""
    out = tmp_path / "big.txt"
    out.write_text(OLD)
    script = (
        "import sys, time\n"
        "from roofline import io\n"
        "def chunks():\n"
        "    yield 'x' * 1000\n"
        "    print('started', flush=True)\n"
        "    time.sleep(60)\n"
        "    yield 'never'\n"
        f"io.write_chunks({str(out)!r}, chunks())\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        assert proc.stdout.readline().strip() == "started"
        assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # the new content goes aside
        proc.kill()
        proc.wait(timeout=10)
    finally:
        proc.kill()
    assert out.read_text() == OLD


def test_analyze_refuses_to_overwrite_its_model(tmp_path):
    model = model_file(tmp_path)
    before = model.read_text()
    r = run("analyze", model, "--gpu", TINY_GPU, "--output", model)
    fails(r, 2, f"Error: the output {model} is the model file; write the result to another file")
    assert model.read_text() == before


def test_analyze_refuses_to_overwrite_its_spec(tmp_path):
    spec = tmp_path / "gpu.yaml"
    spec.write_text(TINY_GPU.read_text())
    r = run("analyze", TINY_MODEL, "--gpu", spec, "--plot", spec)
    fails(r, 2, f"Error: the output {spec} is the spec file; write the result to another file")
    assert spec.read_text() == TINY_GPU.read_text()


def report(out, *extra, model=TINY_MODEL, gpu=TINY_GPU):
    return run("report", model, "--gpu", gpu, "--out", out, *extra)


def test_report_never_overwrites_a_users_files(tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "report.md").write_text("my own notes\n")
    (out / "ops.csv").write_text("mine\n")
    r = report(out)
    fails(
        r,
        1,
        f"Error: {out} already holds files roofline did not write (ops.csv, report.md); "
        "choose another --out folder, or move those files away",
    )
    assert (out / "report.md").read_text() == "my own notes\n" and sorted(os.listdir(out)) == ["ops.csv", "report.md"]
    assert leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def built_report(tmp_path_factory):
    """One report folder, built once (a report takes seconds); tests take a copy."""
    out = tmp_path_factory.mktemp("built") / "rep"
    r = report(out)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def old_report(built_report, tmp_path):
    out = tmp_path / "rep"
    shutil.copytree(built_report, out)
    return out


def test_report_rerun_replaces_its_own_folder_whole(old_report, tmp_path):
    """A second run, from the report's own inputs/, replaces the first run's files, stale ones included
    (an earlier --profile run's measured_ops.csv)."""
    out = old_report
    manifest = json.loads((out / io.MANIFEST).read_text())
    assert "roofline.png" in manifest["files"] and "inputs/model.yaml" in manifest["files"]
    assert manifest["files"]["report.md"] == io.sha256_file(out / "report.md")
    (out / "measured_ops.csv").write_text("from an earlier --profile run\n")
    io.write_manifest(out)  # as that run would have listed it
    r = report(out, "--phase", "decode", model=out / "inputs" / "model.yaml", gpu=out / "inputs" / "spec.yaml")
    assert r.exit_code == 0, r.output
    assert not (out / "measured_ops.csv").exists() and (out / "roofline.png").exists()
    assert "--phase decode" in (out / "inputs" / "command.txt").read_text()
    assert (out / "inputs" / "model.yaml").read_text() == TINY_MODEL.read_text()
    assert leftovers(tmp_path) == []


def test_report_refuses_a_file_it_wrote_that_was_changed(old_report):
    out = old_report
    (out / "report.md").write_text("edited by hand\n")
    fails(
        report(out),
        1,
        f"Error: {out}: report.md changed since roofline wrote it; "
        "choose another --out folder, or move those files away",
    )
    assert (out / "report.md").read_text() == "edited by hand\n"


def test_report_killed_halfway_keeps_the_old_report(old_report, tmp_path, monkeypatch):
    out = old_report
    before = {p: (out / p).read_bytes() for p in ("report.md", "ops.csv", "roofline.png", io.MANIFEST)}
    from roofline import report as report_module

    def interrupt(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_module, "_html", interrupt)  # after the new charts and CSVs were written
    r = report(out, "--phase", "decode")
    assert r.exit_code == 1 and "Aborted!" in r.output
    assert {p: (out / p).read_bytes() for p in before} == before  # the old report, whole
    assert leftovers(tmp_path) == []


def test_report_out_is_a_file(tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    fails(report(target), 2, f"Error: Invalid value for '--out' / '-o' / '--output': Directory '{target}' is a file.")
    with pytest.raises(
        OutputError,
        match=f"cannot write the report folder {target}: it is a file or a link, not a folder; choose another --out",
    ):
        io.check_replaceable(target)


# ================================================================================================
# 2. nothing injected

HOSTILE = "<script>alert(1)</script>\n# injected $\\frac{$ | =1+1 \x1b[31mred"


@pytest.fixture
def hostile_model(tmp_path):
    return model_file(tmp_path, filename="h.yaml", name=HOSTILE)


def test_report_escapes_names(tmp_path, hostile_model):
    out = tmp_path / "rep"
    r = report(out, model=hostile_model)
    assert r.exit_code == 0, r.output
    md = (out / "report.md").read_text()
    assert "<script>" not in md and "\x1b" not in md
    assert not any(line.startswith("# injected") for line in md.splitlines())
    first = md.splitlines()[0].removesuffix(": does not fit in GPU memory")  # the tiny GPU holds 1 kB
    assert first == (
        r"# &lt;script&gt;alert(1)&lt;/script&gt;\\n\# injected \$\\frac{\$ \| =1+1 \\x1b\[31mred "
        "on tiny"
    )
    html = (out / "report.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_terminal_output_shows_escape_sequences(hostile_model):
    r = run("analyze", hostile_model, "--gpu", TINY_GPU)
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output
    assert r.stdout.splitlines()[0].startswith(r"<script>alert(1)</script>\n# injected $\frac{$ | =1+1 \x1b[31mred on ")


def test_errors_show_escape_sequences(tmp_path):
    path = model_file(tmp_path, **{"\x1b[2Jhidden_size": 64})
    r = run("analyze", path, "--gpu", TINY_GPU)
    assert "\x1b" not in r.output
    fails(r, 1, f"Error: {path}: unknown key '\\x1b[2Jhidden_size' (did you mean 'hidden_size'?)")


def test_csv_cells_cannot_start_a_formula(tmp_path):
    spec = yaml.safe_load(TINY_GPU.read_text())
    spec["sources"]["peak_tflops"] = '=HYPERLINK("http://x","click")'
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = run("specs", "show", path, "--format", "csv")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[1] == 'bf16,100.0,,10.0,"\'=HYPERLINK(""http://x"",""click"")"'


@pytest.mark.parametrize(
    "value, safe",
    [
        ("=1+1", "'=1+1"),
        ("+cmd", "'+cmd"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("-1.5", "-1.5"),
        ("q_proj", "q_proj"),
        (3.0, 3.0),
    ],
)
def test_csv_safe(value, safe):
    assert render.csv_safe(value) == safe


def test_charts_draw_dollar_signs_literally(tmp_path, hostile_model):
    chart = tmp_path / "c.png"
    r = run("analyze", hostile_model, "--gpu", TINY_GPU, "--plot", chart)
    assert r.exit_code == 0, r.output
    assert chart.read_bytes()[:4] == b"\x89PNG"
    from roofline.plot import mathtext_safe

    assert mathtext_safe("$\\frac{$ x\n") == r"\$\frac{\$ x\n"


# ================================================================================================
# 3. bounded on any input


@pytest.mark.parametrize("path, kind", [("/dev/zero", "a character device"), ("/dev/urandom", "a character device")])
@pytest.mark.parametrize("role", ["model", "spec", "result"])
def test_devices_are_refused(role, path, kind, tmp_path):
    if role == "model":
        r, what = run("analyze", path, "--gpu", TINY_GPU), "model"
    elif role == "spec":
        r, what = run("analyze", TINY_MODEL, "--gpu", path), "hardware spec"
    else:
        r, what = run("plot", path, "--output", tmp_path / "x.png"), "result"
    fails(r, 1, f"Error: {what} path {path} is {kind}, not a regular file; give a file")


def test_a_fifo_does_not_block(tmp_path):
    fifo = tmp_path / "m.yaml"
    os.mkfifo(fifo)
    start = time.monotonic()
    fails(
        run("analyze", fifo, "--gpu", TINY_GPU),
        1,
        f"Error: model path {fifo} is a FIFO (named pipe), not a regular file; give a file",
    )
    assert time.monotonic() - start < 5


def test_a_huge_model_file_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "wb") as fh:
        fh.truncate(io.MAX_MAPPING_BYTES + 1)  # sparse: costs no disk
    start = time.monotonic()
    fails(
        run("analyze", path, "--gpu", TINY_GPU),
        1,
        f"Error: model file {path} is larger than 8 MB, the limit for a model file; check that it is the right file",
    )
    assert time.monotonic() - start < 5


def test_a_huge_result_file_is_refused(tmp_path):
    from roofline import plot

    path = tmp_path / "big.json"
    with open(path, "wb") as fh:
        fh.truncate(plot.MAX_RESULT_BYTES + 1)
    fails(
        run("plot", path, "--output", tmp_path / "x.png"),
        1,
        f"Error: result file {path} is larger than 100 MB, the limit for a result file; check that it is the right file",
    )


def test_gzip_bomb_stops_at_the_cap(tmp_path):
    path = tmp_path / "t.json.gz"
    path.write_bytes(gzip.compress(b"0" * 5_000_000))  # 5 MB of zeros in ~5 kB
    assert path.stat().st_size < 10_000
    with pytest.raises(InputFileError) as err:
        io.read_maybe_gzip(path, "trace", max_bytes=io.MB, max_decompressed_bytes=io.MB)
    assert str(err.value) == (
        f"trace file {path} is larger than 1 MB once decompressed, the limit for a trace file; "
        "check that it is the right file"
    )
    two = gzip.compress(b"a" * 10) + gzip.compress(b"b" * 10)  # concatenated members, as gzip.open reads them
    path.write_bytes(two)
    assert io.read_maybe_gzip(path, "trace", io.MB, io.MB) == b"a" * 10 + b"b" * 10
    path.write_bytes(two[:-5])
    with pytest.raises(InputFileError, match="the gzip stream is truncated; copy or export the trace again"):
        io.read_maybe_gzip(path, "trace", io.MB, io.MB)


def test_a_result_gpu_path_is_not_opened(tmp_path):
    result = tmp_path / "r.json"
    assert run("analyze", TINY_MODEL, "--gpu", TINY_GPU, "--format", "json", "--output", result).exit_code == 0
    data = json.loads(result.read_text())
    data["gpu"] = "/dev/zero"
    result.write_text(json.dumps(data))
    fails(
        run("plot", result, "--output", tmp_path / "x.png"),
        1,
        f"Error: {result}: its gpu field '/dev/zero' is a path; roofline does not open a path read from a data "
        "file: pass --gpu with the spec's name or the path you trust",
    )
    r = run("plot", result, "--gpu", TINY_GPU, "--output", tmp_path / "x.png")
    assert r.exit_code == 0, r.output


def test_yaml_aliases_are_refused(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b]\n"
    path = model_file(tmp_path, bomb)
    fails(
        run("analyze", path, "--gpu", TINY_GPU),
        1,
        f"Error: {path}: anchors and aliases (&name / *name) are not supported (line 1); write the value out",
    )


# ================================================================================================
# 4. one clear line, never a traceback


@pytest.mark.parametrize(
    "target, message",
    [
        ("/dev/full", "Error: cannot write /dev/full: No space left on device; free some space or write elsewhere"),
        (
            "{model}/below",
            (
                "Error: cannot write {model}/below: Not a directory; check the path: a part of it is "
                "missing or is a file, not a folder"
            ),
        ),
        ("{tmp}", "Error: Invalid value for '--output' / '-o': File '{tmp}' is a directory."),
    ],
)
def test_write_errors(tmp_path, target, message):
    model = model_file(tmp_path)
    target = target.format(model=model, tmp=tmp_path)
    fails(
        run("analyze", model, "--gpu", TINY_GPU, "--output", target),
        2 if "Invalid" in message else 1,
        message.format(model=model, tmp=tmp_path),
    )


def test_plot_write_error_keeps_the_old_chart(tmp_path, monkeypatch):
    chart = tmp_path / "c.png"
    chart.write_bytes(b"old")

    def fail(*_args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io.os, "replace", fail)
    fails(
        run("analyze", TINY_MODEL, "--gpu", TINY_GPU, "--plot", chart),
        1,
        f"Error: cannot write {chart}: No space left on device; free some space or write elsewhere",
    )
    assert chart.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_a_folder_as_model(tmp_path):
    fails(
        run("analyze", tmp_path, "--gpu", TINY_GPU),
        1,  # a folder is a checkpoint: it needs its config.json
        f"Error: model folder {tmp_path} holds no config.json; pass the checkpoint folder or a model file",
    )
    fails(
        run("analyze", TINY_MODEL, "--gpu", str(tmp_path) + "/"),
        1,
        f"Error: hardware spec path {tmp_path} is a folder, not a file; give the file inside it",
    )


BIG = "9" * 400


@pytest.mark.parametrize("flag", ["--tp", "--pp", "--gen-tokens", "--microbatches"])
def test_400_digit_flags(flag):
    r = run("analyze", TINY_MODEL, "--gpu", TINY_GPU, flag, BIG)
    fails(r, 2, f"Error: Invalid value for '{flag}': {BIG} is not in the range 1<=x<=9007199254740992.")


def test_400_digit_sweep_flag():
    fails(
        run("analyze", TINY_MODEL, "--gpu", TINY_GPU, "--batch", BIG),
        2,
        "Error: Invalid value for '--batch': 99999999999999999999...99999999 (400 characters) is too large; "
        "at most 9,007,199,254,740,992",
    )


def test_400_digit_yaml_integer(tmp_path):
    path = model_file(tmp_path, TINY_MODEL.read_text().replace("num_hidden_layers: 2", f"num_hidden_layers: {BIG}"))
    fails(
        run("analyze", path, "--gpu", TINY_GPU),
        1,
        f"Error: {path}: num_hidden_layers: 99999999999999999999...99999999 (400 characters) is too large; "
        "at most 9,007,199,254,740,992",
    )


def test_model_type_that_is_a_list(tmp_path):
    path = model_file(tmp_path, model_type=["llama"])
    fails(
        run("analyze", path, "--gpu", TINY_GPU),
        1,
        f"Error: {path}: model_type must be a name (one of: {', '.join(FAMILIES)}), got a list",
    )


def test_denormal_bandwidth(tmp_path):
    path = tmp_path / "gpu.yaml"
    path.write_text(TINY_GPU.read_text().replace("mem_bandwidth_gb_per_s: 1.0e-8", "mem_bandwidth_gb_per_s: 1.0e-310"))
    fails(
        run("analyze", TINY_MODEL, "--gpu", path),
        1,
        f"Error: {path}: mem_bandwidth_gb_per_s: 1e-310 is too small to compute with; at least 1e-30",
    )


@pytest.mark.parametrize("section, column", [("summary", "batch_size"), ("ops", "flops"), ("ops", "bound")])
def test_result_json_missing_a_column(tmp_path, section, column):
    result = tmp_path / "r.json"
    assert run("analyze", TINY_MODEL, "--gpu", TINY_GPU, "--format", "json", "--output", result).exit_code == 0
    data = json.loads(result.read_text())
    del data[section][0][column]
    result.write_text(json.dumps(data))
    fails(
        run("plot", result, "--gpu", TINY_GPU, "--output", tmp_path / "x.png"),
        1,
        f"Error: {result}: {section} row 0 has no '{column}' column; write one with "
        f"`roofline analyze MODEL --gpu GPU --format json --output r.json`",
    )


# ================================================================================================
# 5. no silently wrong number


def test_yaml_range_is_not_sexagesimal(tmp_path):
    """YAML 1.1 reads 1:32 as 1 * 60 + 32 = 92; by YAML 1.2 it is the range 1..32."""
    path = model_file(tmp_path, TINY_MODEL.read_text().replace("batch_size: 2", "batch_size: 1:32"))
    r = run("analyze", path, "--gpu", TINY_GPU, "--format", "json", "--summary")
    assert r.exit_code == 0, r.output
    assert [row["batch_size"] for row in json.loads(r.stdout)["summary"]] == list(range(1, 33))


def test_leading_zero_integer_is_refused(tmp_path):
    path = model_file(tmp_path, TINY_MODEL.read_text().replace("num_hidden_layers: 2", "num_hidden_layers: 032"))
    fails(
        run("analyze", path, "--gpu", TINY_GPU),
        1,
        f"Error: {path}: not valid YAML (line 5, column 20): '032' has a leading zero, which YAML 1.1 reads "
        "as octal 26 and YAML 1.2 as 32; write it without the zero",
    )


@pytest.mark.parametrize(
    "name, text, line",
    [
        (
            "m.yaml",
            TINY_MODEL.read_text() + "hidden_size: 128\n",
            "key 'hidden_size' is given twice (line 15); keep one",
        ),
        ("m.json", '{"model_type": "llama", "model_type": "gpt2"}', "key 'model_type' is given twice; keep one"),
    ],
)
def test_duplicate_keys_are_refused(tmp_path, name, text, line):
    path = model_file(tmp_path, text, filename=name)
    fails(run("analyze", path, "--gpu", TINY_GPU), 1, f"Error: {path}: {line}")


def test_json_nan_is_refused(tmp_path):
    path = model_file(tmp_path, '{"model_type": "llama", "hidden_size": NaN}', filename="config.json")
    fails(run("analyze", path, "--gpu", TINY_GPU), 1, f"Error: {path}: NaN is not a number JSON allows; write a number")


def test_a_nan_in_a_specs_sources_is_written_as_null(tmp_path):
    path = tmp_path / "gpu.yaml"
    path.write_text(TINY_GPU.read_text().replace("l2_cache_mb: made up for tests", "l2_cache_mb: [.nan]"))
    r = run("specs", "show", path, "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["sources"]["l2_cache_mb"] == [None]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("mem_bandwidth_gb_per_s", "1.0e+300", "1e+300 is too large; at most 1e+30"),
        ("mem_capacity_gb", "1.0e+40", "1e+40 is too large; at most 1e+30"),
    ],
)
def test_spec_values_that_would_overflow(tmp_path, key, value, message):
    text = TINY_GPU.read_text()
    old = next(line for line in text.splitlines() if line.startswith(key + ":"))
    path = tmp_path / "gpu.yaml"
    path.write_text(text.replace(old, f"{key}: {value}"))
    fails(run("analyze", TINY_MODEL, "--gpu", path), 1, f"Error: {path}: {key}: {message}")


def test_huge_batch_flag():
    fails(
        run("analyze", TINY_MODEL, "--gpu", TINY_GPU, "--batch", "1.7e308"),
        2,
        "Error: Invalid value for '--batch': 1.7e+308 is too large; at most 9,007,199,254,740,992",
    )


def test_largest_accepted_values_give_finite_results():
    """At the caps every figure is still finite (no inf printed as a time)."""
    r = run("analyze", TINY_MODEL, "--gpu", TINY_GPU, "--batch", str(2**53), "--format", "json", "--summary")
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)["summary"][0]
    assert all(v is not None for k, v in row.items() if k.endswith("_time_s"))


def test_output_error_is_a_roofline_error():
    with pytest.raises(OutputError, match="it is a folder; give a file name"):
        io.write_text(ROOT, "x")


def test_write_rows_writes_one_column_per_key_in_first_seen_order(tmp_path):
    # the benchmarks' CSV writer: csv.DictWriter's rows, a key missing from a row an empty cell
    path = tmp_path / "rows.csv"
    io.write_rows(path, [{"a": 1, "b": 2.5}, {"b": None, "c": "x"}])
    assert path.read_bytes() == b"a,b,c\r\n1,2.5,\r\n,,x\r\n"


def test_an_infinite_derived_figure_is_refused():
    """The guard behind the input ranges: an analysis whose arithmetic overflowed is not printed."""
    from roofline.analysis import analyze
    from roofline.cli import check_finite
    from roofline.errors import RooflineError

    result = analyze(TINY_MODEL, TINY_GPU)
    check_finite(result)  # the normal case passes
    result.summary["decode_time_s"] = float("inf")
    with pytest.raises(
        RooflineError,
        match="^the analysis gives an infinite decode_time_s: a value of the model, "
        "the spec or the workload is too large or too small for it; check them$",
    ):
        check_finite(result)


def test_streamed_json_equals_the_whole_document():
    import pandas as pd

    frame = pd.DataFrame({"a": [1.5, float("nan"), 3.0], "b": ['x"y', "\x1b", "z"]})
    obj = {"model": "m", "workload": {"batch_size": [1, 2]}, "summary": frame, "ops": frame.iloc[:0]}
    whole = render.to_json({**obj, "summary": render.to_records(frame), "ops": []})
    assert "".join(render.json_chunks(obj, rows_per_chunk=2)) == whole
    assert json.loads(whole)["summary"][1] == {"a": None, "b": "\x1b"}
    assert "".join(render.csv_chunks(frame, rows_per_chunk=2)) == render.to_csv(frame)


# ================================================================================================
# 6. the command line: python -m roofline, --version, -o everywhere, format from the extension


def test_python_dash_m_and_version():
    out = subprocess.run(
        [sys.executable, "-m", "roofline", "--version"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    from roofline import __version__

    assert out.stdout.strip() == f"roofline, version {__version__}"


def test_help_does_not_import_pandas():
    code = (
        "import sys\nfrom roofline.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'matplotlib', 'torch') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "name, fmt, check",
    [
        ("r.json", None, lambda text: json.loads(text)["summary"][0]["batch_size"] == 2),
        ("r.csv", None, lambda text: text.startswith("point,batch_size,prompt_len,context_len,phase,op")),
        ("r.md", None, lambda text: "| op | count |" in text),
        ("r.txt", None, lambda text: text.startswith("tiny-llama on tiny (Tiny test GPU): batch 2")),
        ("r.csv", "json", lambda text: json.loads(text)["gpu"] == "tiny"),
    ],
)
def test_format_follows_the_output_extension(tmp_path, name, fmt, check):
    out = tmp_path / name
    r = run("analyze", TINY_MODEL, "--gpu", TINY_GPU, "-o", out, *(["--format", fmt] if fmt else []))
    assert r.exit_code == 0, r.output
    assert check(out.read_text())


def test_json_carries_versions_and_the_resolved_inputs():
    r = run("analyze", TINY_MODEL, "--gpu", TINY_GPU, "--format", "json", "--summary")
    data = json.loads(r.stdout)
    from roofline import __version__

    assert (data["schema_version"], data["roofline_version"]) == (2, __version__)
    assert data["model_config"]["hidden_size"] == 64 and data["model_config"]["num_key_value_heads"] == 2
    assert data["spec"]["mem_bytes_per_s"] == pytest.approx(10.0)  # 1e-8 GB/s = 10 B/s
    assert data["workload"]["batch_size"] == [2]


def test_plot_writes_the_format_its_name_asks_for(tmp_path):
    result = tmp_path / "r.json"
    assert run("analyze", TINY_MODEL, "--gpu", TINY_GPU, "-o", result).exit_code == 0
    r = run("plot", result, "--gpu", TINY_GPU, "-o", tmp_path / "x.pdf")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "x.pdf").read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "x.pdf"]


@pytest.mark.parametrize("command", ["analyze", "trace"])
def test_a_plot_that_cannot_be_written_leaves_the_output_file_alone(tmp_path, command):
    # -o is written before --plot: a plot path that cannot be written (here its folder is a file) is found
    # before -o is replaced, one line, exit 1; the old -o keeps its content
    out = tmp_path / "old.json"
    out.write_text("OLDCONTENT")
    (tmp_path / "afile").write_text("x")
    args = {
        "analyze": ["analyze", str(LLAMA), "--gpu", "a10"],
        "trace": ["trace", str(DATA / "h100_decode_trace.json.gz"), "--gpu", "h100-sxm"],
    }[command]
    r = run(*args, "--plot", tmp_path / "afile" / "p.png", "-o", out)
    fails(
        r,
        1,
        f"Error: cannot write {tmp_path / 'afile' / 'p.png'}: File exists; check the path: a part of it is missing "
        "or is a file, not a folder",
    )
    assert out.read_text() == "OLDCONTENT"


@pytest.mark.parametrize(
    "flags, positions",
    [
        (["--prompt-len", "8192"], "8,192"),
        (["--gen-tokens", "100000"], "100,512"),  # the last generated token, not the mean context
        (["--phase", "decode", "--context-len", "5000"], "5,000"),
    ],
)
def test_a_workload_past_the_model_s_positions_is_warned(flags, positions):
    # Llama-2-7B has max_position_embeddings 4096: a longer run is analysed (RoPE scaling may allow it) but said
    r = run("analyze", LLAMA, "--gpu", "a10", *flags)
    assert r.exit_code == 0, r.output
    assert (
        f"warning: the workload reaches {positions} positions but llama-2-7b has max_position_embeddings 4,096"
    ) in r.output
    assert "max_position_embeddings" not in run("analyze", LLAMA, "--gpu", "a10", "--prompt-len", "4096").output


def test_trace_of_a_file_that_is_not_json_says_so_before_asking_for_gpu(tmp_path):
    # without --gpu the spec comes from the trace's deviceProperties; a YAML or binary file has none, and the
    # error is that it is not a trace at all, not that --gpu is missing
    binary = tmp_path / "b.trace"
    binary.write_bytes(b"\x00\x01binary")
    for path in (binary, LLAMA):
        fails(
            run("trace", path),
            1,
            f"Error: {path}: not a JSON trace (it starts with neither '{{' nor '['); pass a trace written by "
            "prof.export_chrome_trace() (.json or .json.gz)",
        )
    fails(
        run("trace", DATA / "hta_backward_thread.json"),
        1,
        f"Error: {DATA / 'hta_backward_thread.json'}: the trace names no device (no deviceProperties); pass --gpu "
        "with the spec of the GPU it ran on",
    )


def test_workload_flags_that_would_be_ignored_or_misread():
    # an empty list item is refused (it was read as 1,8); micro-batches without a pipeline are refused (they
    # were ignored); an MLA form for a model without MLA is analysed with a warning
    r = run("analyze", LLAMA, "--gpu", "a10", "--batch", "1,,8")
    assert r.exit_code == 2 and "Error: Invalid value for '--batch': an empty item in '1,,8'" in r.output
    fails(
        run("analyze", LLAMA, "--gpu", "a10", "--microbatches", "4"),
        1,
        f"Error: {LLAMA}: workload: microbatches 4 needs pp > 1 (micro-batches fill a pipeline of stages); give pp, "
        "or leave microbatches out",
    )
    r = run("analyze", LLAMA, "--gpu", "a10", "--mla", "absorbed")
    assert r.exit_code == 0 and "warning: mla absorbed: llama-2-7b has no multi-head latent attention" in r.output
    assert (
        "warning: mla"
        not in run("analyze", ROOT / "examples" / "deepseek-v2-lite.yaml", "--gpu", "h200", "--mla", "absorbed").output
    )


def test_a_spec_with_a_unit_slip_is_warned_at_analysis(tmp_path):
    # A10's 600 GB/s written as 600000 (a TB/s slip the other way): bf16 ridge 125e12 / 600e12 = 0.21 FLOP/byte
    text = (ROOT / "hardware_specs" / "a10.yaml").read_text()
    slip = tmp_path / "slip.yaml"
    slip.write_text(text.replace("mem_bandwidth_gb_per_s: 600\n", "mem_bandwidth_gb_per_s: 600000\n", 1))
    r = run("analyze", LLAMA, "--gpu", slip)
    assert r.exit_code == 0
    assert "warning: a10: the bf16 ridge is 0.21 FLOP/byte, outside the 30-700 of every part surveyed" in r.output
    assert "ridge is" not in run("analyze", LLAMA, "--gpu", "a10").output


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["ops"][0].update(flops="lots"), "ops[0].flops: 'lots' is not a number this figure can take"),
        (lambda d: d["ops"][0].update(time_s=-1), "ops[0].time_s: '-1.0' is not a number this figure can take"),
        (lambda d: d.update(schema_version=99), "schema_version 99 is not one this roofline reads (1-2)"),
    ],
)
def test_plot_refuses_a_result_it_would_draw_wrongly(tmp_path, edit, message):
    good = tmp_path / "r.json"
    assert run("analyze", LLAMA, "--gpu", "a10", "-o", good).exit_code == 0
    data = json.loads(good.read_text())
    edit(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    r = run("plot", bad, "-o", tmp_path / "p.png")
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "p.png").exists()
    assert run("plot", good, "-o", tmp_path / "p.png").exit_code == 0


def test_plot_against_another_gpu_says_the_points_are_the_result_s(tmp_path):
    result = tmp_path / "tiny.json"
    assert run("analyze", TINY_MODEL, "--gpu", TINY_GPU, "-o", result).exit_code == 0
    r = run("plot", result, "--gpu", "a10", "-o", tmp_path / "p.png")
    assert r.exit_code == 0
    assert f"warning: {result} was analysed with the spec 'tiny'; drawn against a10's roofs" in r.output
    assert "drawn against" not in run("plot", result, "--gpu", TINY_GPU, "-o", tmp_path / "q.png").output


def test_a_config_with_a_text_config_section_says_it_is_multimodal(tmp_path):
    data = yaml.safe_load(LLAMA.read_text())
    data["text_config"] = {"model_type": "llama"}
    path = tmp_path / "mm.yaml"
    path.write_text(yaml.safe_dump(data))
    fails(
        run("analyze", path, "--gpu", "a10"),
        1,
        f"Error: {path}: a text_config section: this is a multimodal model's config; roofline models the decoder, "
        "so give its text_config section as the model (its own model_type), or a text-only config",
    )


@pytest.mark.parametrize("option", ["-o", "--plot"])
def test_an_empty_output_name_is_refused(option):
    # `-o ""` printed to the terminal and `--plot ""` drew nothing, without a word
    r = run("analyze", LLAMA, "--gpu", "a10", option, "")
    assert r.exit_code == 2 and "an empty name; give a path, or leave the option out" in r.output, r.output


@pytest.mark.parametrize(
    "extra, model, match",
    [
        ({"phase": "both"}, "mixtral-8x7b", "routed_experts fixes the routing of one step"),
        ({"batch_size": [1, 8]}, "mixtral-8x7b", "routed_experts fixes the routing of one step"),
        ({"routed_experts": -1}, "mixtral-8x7b", "routed_experts"),
        ({"routed_experts": 9}, "mixtral-8x7b", "more than the 8 routed experts a GPU holds"),
        ({}, "llama-2-7b", "routed_experts needs a mixture-of-experts model"),
    ],
)
def test_a_bad_routed_experts_count_is_one_clear_error(extra, model, match):
    from roofline.analysis import analyze
    from roofline.config import load_model, parse_workload
    from roofline.errors import ConfigError

    raw = {"batch_size": 8, "prompt_len": 128, "context_len": 128, "phase": "decode", "routed_experts": 8, **extra}
    with pytest.raises(ConfigError, match=match):
        analyze(load_model(model), "h200", workload=parse_workload(raw))
