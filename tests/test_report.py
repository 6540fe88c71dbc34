"""roofline report / plot / --plot: the files a user gets, and their contents."""

import json
from pathlib import Path

from click.testing import CliRunner

from roofline.cli import main

ROOT = Path(__file__).resolve().parent.parent
LLAMA = str(ROOT / "examples" / "llama-2-7b.yaml")


def test_report_folder(tmp_path):
    out = tmp_path / "rep"
    r = CliRunner().invoke(main, ["report", LLAMA, "--gpu", "a10", "--out", str(out), "--phase", "decode"])
    assert r.exit_code == 0, r.output
    for name in (
        "report.md",
        "report.html",
        "roofline.png",
        "roofline.svg",
        "breakdown.png",
        "sweep.png",
        "ops.csv",
        "summary.csv",
        "advice.csv",
        "inputs/model.yaml",
        "inputs/spec.yaml",
        "inputs/command.txt",
        "inputs/versions.json",
    ):
        assert (out / name).is_file(), name
    md = (out / "report.md").read_text()
    assert "# llama-2-7b on a10" in md and "23.2 ms" in md and "## What to try next" in md
    assert "1. batch" in md or "1. weights" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3  # self-contained: charts embedded
    assert "--phase decode" in (out / "inputs" / "command.txt").read_text()
    assert (out / "roofline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_analyze_plot_and_plot_command(tmp_path):
    result, chart = tmp_path / "r.json", tmp_path / "a.png"
    r = CliRunner().invoke(
        main, ["analyze", LLAMA, "--gpu", "h100-sxm", "--format", "json", "--output", str(result), "--plot", str(chart)]
    )
    assert r.exit_code == 0, r.output
    assert chart.is_file() and chart.with_suffix(".svg").is_file()
    again = tmp_path / "b.png"
    r = CliRunner().invoke(main, ["plot", str(result), "--output", str(again)])
    assert r.exit_code == 0, r.output
    assert again.stat().st_size > 10_000


def test_plot_of_a_bad_result(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"hello": 1}))
    r = CliRunner().invoke(main, ["plot", str(bad), "--output", str(tmp_path / "x.png")])
    assert r.exit_code == 1 and "not a roofline result" in r.output and "Traceback" not in r.output


def test_trace_plot(tmp_path):
    chart = tmp_path / "t.png"
    r = CliRunner().invoke(
        main,
        [
            "trace",
            str(ROOT / "tests" / "data" / "h100_prefill_trace.json.gz"),
            "--gpu",
            "h100-sxm",
            "--plot",
            str(chart),
        ],
    )
    assert r.exit_code == 0, r.output
    assert chart.read_bytes()[:4] == b"\x89PNG" and chart.with_suffix(".svg").is_file()
