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


def test_report_shows_progress_unless_quiet_and_has_a_title(tmp_path):
    r = CliRunner().invoke(main, ["report", LLAMA, "--gpu", "a10", "-o", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines() == [
        "report: analysing...",
        "report: advising...",
        "report: charts 1/3 (roofline)...",
        "report: charts 2/3 (breakdown)...",
        "report: charts 3/3 (sweep)...",
        "report: tables...",
        "report: inputs...",
        "report: report.md...",
        "report: report.html...",
    ]
    html = (tmp_path / "a" / "report.html").read_text()
    assert "<title>llama-2-7b on a10</title>" in html
    r = CliRunner().invoke(main, ["report", LLAMA, "--gpu", "a10", "-o", str(tmp_path / "b"), "-q"])
    assert r.exit_code == 0 and r.stderr == ""


def test_a_report_that_does_not_fit_says_so_in_every_section(tmp_path):
    # batch 64 at context 4096: weights 13.5 GB + KV cache 64 * 2.15 GB = 151 GB on a 24 GB A10
    out = tmp_path / "big"
    args = ["report", LLAMA, "--gpu", "a10", "-o", str(out), "-q", "--batch", "64", "--context-len", "4096"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    md = (out / "report.md").read_text()
    assert md.startswith("# llama-2-7b on a10: does not fit in GPU memory\n")
    assert "weights + KV cache 151 GB of 24 GB" in md
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert len(headings) >= 5 and all(h.endswith(" (does not fit in GPU memory)") for h in headings)
    assert "<title>llama-2-7b on a10: does not fit in GPU memory</title>" in (out / "report.html").read_text()


def test_a_sweep_report_has_its_sweep_chart_and_no_advice(tmp_path):
    # batch 1, 8, 64 at context 4096 on an A10: 13.5 GB + 2.15 GB per sequence fits at batch 1 only
    out = tmp_path / "sweep"
    args = ["report", LLAMA, "--gpu", "a10", "-o", str(out), "-q", "--batch", "1,8,64", "--context-len", "4096"]
    r = CliRunner().invoke(main, [*args, "--phase", "decode"])
    assert r.exit_code == 0, r.output
    md = (out / "report.md").read_text()
    assert md.startswith("# llama-2-7b on a10: 2 of 3 points do not fit in 24 GB of GPU memory\n")
    assert "Advice is for one point" in md and not (out / "advice.csv").exists()
    assert (out / "sweep.png").is_file() and not (out / "roofline.png").exists()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings and all(h.endswith("(2 of 3 points do not fit in 24 GB of GPU memory)") for h in headings)
