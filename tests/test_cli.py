"""The CLI: outputs, exit codes and the exact error text."""

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from roofline.cli import main

ROOT = Path(__file__).resolve().parent.parent
LLAMA = str(ROOT / "examples" / "llama-2-7b.yaml")


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def test_analyze_table_shows_both_phases():
    r = run("analyze", LLAMA, "--gpu", "a10")
    assert r.exit_code == 0, r.output
    assert "prefill: time to first token" in r.output and "decode: 23.2 ms per step, 43.1 tokens/s" in r.output
    assert "decode weight matmuls reach the ridge at batch" in r.output


def test_analyze_json_is_raw_si_numbers():
    r = run("analyze", LLAMA, "--gpu", "a10", "--format", "json", "--phase", "decode")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert set(data) >= {"ops", "summary", "model", "gpu", "workload"}
    q = next(row for row in data["ops"] if row["op"] == "q_proj")
    for key in (
        "phase",
        "op",
        "count",
        "flops",
        "bytes_read",
        "bytes_written",
        "arithmetic_intensity",
        "bound",
        "time_s",
    ):
        assert key in q
    assert q["flops"] == 2 * 4096 * 4096 and q["count"] == 32 and q["bound"] == "memory"
    assert isinstance(data["summary"], list) and data["summary"][0]["batch_size"] == 1


def test_analyze_csv_to_file(tmp_path):
    out = tmp_path / "ops.csv"
    r = run("analyze", LLAMA, "--gpu", "h100-sxm", "--format", "csv", "--output", out)
    assert r.exit_code == 0 and r.output == ""
    header = out.read_text().splitlines()[0].split(",")
    assert header[:6] == ["point", "batch_size", "prompt_len", "context_len", "phase", "op"]


def test_sweep_gives_one_summary_row_per_point():
    r = run("analyze", LLAMA, "--gpu", "a10", "--batch", "1,8,64", "--format", "csv", "--summary")
    assert r.exit_code == 0
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 4  # header + 3 points


def test_overrides_win_over_the_file():
    r = run(
        "analyze", LLAMA, "--gpu", "a10", "--weight-dtype", "int4", "--phase", "decode", "--format", "json", "--summary"
    )
    data = json.loads(r.stdout)
    assert data["workload"]["weight_dtype"] == "int4"
    assert data["summary"][0]["decode_roofline_time_s"] < 0.008  # 4x fewer weight bytes than the 22 ms bf16 step
    assert data["summary"][0]["decode_time_s"] < 0.010  # + the eager launch floor of the small ops


def test_memory_warning(tmp_path):
    r = run("analyze", ROOT / "examples" / "llama-2-70b.yaml", "--gpu", "a10", "--tp", "1")
    assert r.exit_code == 0
    assert "warning: weights + KV cache (138 GB) do not fit in a10's 24 GB at batch 1" in r.output


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["analyze", "nope.yaml", "--gpu", "a10"], 1, "Error: model file not found: nope.yaml"),
        (["analyze", LLAMA, "--gpu", "h100"], 1, "Error: unknown GPU 'h100'"),
        (
            ["analyze", LLAMA, "--gpu", "a10", "--batch", "-1"],
            2,
            "Invalid value for '--batch': must be greater than zero, got -1",
        ),
        (["analyze", LLAMA, "--gpu", "a10", "--batch", "0:4"], 2, "Invalid value for '--batch'"),
        (
            ["analyze", LLAMA, "--gpu", "a10", "--weight-dtype", "int3"],
            2,
            "Invalid value for '--weight-dtype': 'int3' is not one of",
        ),
        (
            ["analyze", LLAMA, "--gpu", "a10", "--weight-dtype", "fp8", "--act-dtype", "fp8"],
            1,
            "Error: a10 has no fp8 peak in its spec",
        ),
        (["analyze", LLAMA], 2, "Missing option '--gpu'"),
        (
            ["analyze", LLAMA, "--gpu", "a10", "--batch", "1:1000000", "--prompt-len", "1:1000:1"],
            1,
            "narrow the ranges",
        ),
        (["specs", "show", "a11"], 1, "Error: unknown GPU 'a11' (did you mean 'a10'?)"),
    ],
)
def test_errors_are_one_line_with_exit_code(args, code, message):
    r = run(*args)
    assert r.exit_code == code, r.output
    assert message in r.output
    assert "Traceback" not in r.output
    assert len([line for line in r.output.splitlines() if line.startswith("Error")]) == 1


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("hidden_size: 4096\n  oops: [\n")
    r = run("analyze", bad, "--gpu", "a10")
    assert r.exit_code == 1 and f"Error: {bad}: not valid YAML (line" in r.output


def test_specs_list_and_show():
    r = run("specs")
    assert r.exit_code == 0 and "h100-sxm" in r.output and "mi300x" in r.output
    r = run("specs", "show", "a10", "--format", "json")
    data = json.loads(r.stdout)
    bf16 = next(d for d in data["dtypes"] if d["dtype"] == "bf16")
    assert bf16["ridge_flop_per_byte"] == pytest.approx(125e12 / 600e9)  # 208.3
    r = run("specs", "show", "a10")
    assert re.search(r"bf16\s+125 TFLOP/s\s+-\s+208\.3", r.output)


def docstring_examples():
    for name, command in main.commands.items():
        sub = getattr(command, "commands", {})
        for c in [command, *sub.values()]:
            text = c.help or ""
            lines = [line.strip() for line in text.splitlines() if line.strip().startswith("roofline ")]
            if lines:
                yield " && ".join(lines), "needs a CUDA GPU" in text


@pytest.mark.parametrize("example, needs_gpu", list(docstring_examples()))
def test_docstring_examples_run(example, needs_gpu, tmp_path, monkeypatch):
    """Each command's example, run in order in an empty folder."""
    import torch

    monkeypatch.chdir(tmp_path)
    for line in example.split(" && "):
        args = line.split()[1:]
        args = [str(ROOT / a) if a.startswith(("examples/", "tests/")) else a for a in args]
        r = run(*args)
        if needs_gpu and not torch.cuda.is_available():
            assert r.exit_code == 1 and "no CUDA GPU" in r.output  # runs for real in the GPU evidence job
        else:
            assert r.exit_code == 0, r.output


def test_analytic_path_imports_neither_torch_nor_matplotlib():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from roofline.cli import main\n"
        f"r = CliRunner().invoke(main, ['analyze', {LLAMA!r}, '--gpu', 'a10'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(main, ['specs', 'show', 'h100-sxm'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_trace_command_on_a_committed_hopper_trace():
    r = run("trace", ROOT / "tests" / "data" / "h100_decode_trace.json.gz", "--gpu", "h100-sxm", "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["summary"]["n_kernels"] == 67 and data["summary"]["n_orphans"] == 0
    ranges = {row["range"] for row in data["by_range"]}
    assert {"q_proj", "attention", "lm_head", "down_proj"} <= ranges


def test_trace_command_errors():
    r = run("trace", ROOT / "README.md", "--gpu", "h100-sxm")
    assert r.exit_code == 1 and "Error:" in r.output and "Traceback" not in r.output
    r = run("trace", "missing.json", "--gpu", "h100-sxm")
    assert r.exit_code == 1 and "missing.json" in r.output


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU message")
@pytest.mark.parametrize(
    "args",
    [
        ["profile", LLAMA, "--phase", "decode"],
        ["calibrate"],
        ["profile", LLAMA, "--tp", "2", "--phase", "decode"],
        ["calibrate", "--collectives"],
    ],
)
def test_gpu_commands_without_a_gpu_say_so(args):
    r = run(*args)
    assert r.exit_code == 1
    assert "no CUDA GPU" in r.output and "Traceback" not in r.output


def test_profile_passes_rendezvous_flags_to_torchrun(monkeypatch):
    import roofline.measure.distributed as distributed

    seen = {}

    def fake(model, workload, **kwargs):
        seen.update(kwargs, tp=workload.tp)
        raise distributed.DeviceError("stop here")

    monkeypatch.setattr(distributed, "profile_distributed", fake)
    r = run(
        "profile",
        LLAMA,
        "--tp",
        "4",
        "--phase",
        "decode",
        "--nnodes",
        "2",
        "--node-rank",
        "1",
        "--master-addr",
        "10.0.0.1",
        "--master-port",
        "29500",
    )
    assert r.exit_code == 1 and "stop here" in r.output
    assert seen["tp"] == 4
    assert seen["rdzv_args"] == (
        "--nnodes",
        "2",
        "--node-rank",
        "1",
        "--master-addr",
        "10.0.0.1",
        "--master-port",
        "29500",
    )


# ---------------------------------------------------------------------------------------------
# profile and report --profile end to end on the CPU: the reference runs with op times from CPU time

TINY_MODEL = str(ROOT / "tests" / "data" / "tiny_llama.yaml")


@pytest.fixture
def cpu_profile(monkeypatch):
    """profile_model on the CPU in place of the GPU run, wherever the CLI and the checks call it."""
    import roofline.measure.checks as checks
    import roofline.measure.profile as profile

    real = profile.profile_model
    calls = []

    def on_cpu(model, workload, spec=None, layers=2, **kwargs):
        calls.append(workload)
        # the advisor's "larger batch" fills an H100's 80 GB: on the CPU run a batch of 8 in its place
        small = replace(workload, batch_size=(min(workload.batch_size[0], 8),))
        return real(
            model, small, spec=spec or "h100-sxm", layers=layers, device="cpu", warmup=0, iters=2, timing_iters=1
        )

    monkeypatch.setattr(profile, "profile_model", on_cpu)
    monkeypatch.setattr(checks, "profile_model", on_cpu)
    return calls


def test_profile_prints_measured_beside_predicted(cpu_profile, tmp_path):
    plot = tmp_path / "p.png"
    r = run("profile", TINY_MODEL, "--gpu", "h100-sxm", "--phase", "decode", "--format", "csv", "--plot", plot)
    assert r.exit_code == 0, r.output
    import io

    import pandas as pd

    ops = pd.read_csv(io.StringIO(r.stdout))
    assert list(ops["op"])[:3] == ["embedding", "attn_norm", "q_proj"] and (ops["phase"] == "decode").all()
    assert (ops["measured_time_s"] > 0).all() and ops["predicted_time_s"].notna().all()
    assert set(ops["measured_bound"]) <= {"compute", "memory", "communication", "overhead", "latency", "unknown"}
    assert "rank" not in ops.columns and plot.exists() and plot.with_suffix(".svg").exists()
    assert len(cpu_profile) == 1


def test_report_profile_checks_the_advice_once(cpu_profile, tmp_path, monkeypatch):
    import roofline.advise as advise_module
    import roofline.report as report_module

    counted = []
    real = advise_module.advise
    for module in (advise_module, report_module):  # the CLI's call and the report's own
        monkeypatch.setattr(module, "advise", lambda *a, **k: counted.append(1) or real(*a, **k))
    out = tmp_path / "rep"
    r = run(
        "report",
        TINY_MODEL,
        "--gpu",
        "h100-sxm",
        "--out",
        out,
        "--profile",
        "--phase",
        "decode",
        "--attn",
        "naive",
        "--layers",
        "1",
    )
    assert r.exit_code == 0, r.output
    assert len(counted) == 1  # the advice is computed once, for the comparison, and reported as it is
    md = (out / "report.md").read_text()
    assert "## Measured on the GPU" in md
    import pandas as pd

    checks = pd.read_csv(out / "checks.csv")
    assert list(checks.columns) == [
        "change",
        "phase",
        "predicted_speedup",
        "predicted_speedup_ref",
        "achieved_speedup",
        "baseline_s",
        "changed_s",
        "how",
    ]
    flash = checks[checks["change"].str.contains("FlashAttention")]
    assert len(flash) == 1 and flash["achieved_speedup"].iloc[0] > 0  # profiled again with flash attention
    assert any(w.attn_impl == "flash" for w in cpu_profile)
    graphs = checks[checks["change"].str.contains("CUDA graph")]
    assert graphs["how"].str.startswith("not measured: the profile has no CUDA-graph replay").all()


def test_trace_against_a_model_sets_each_range_beside_its_prediction(tmp_path):
    trace = ROOT / "tests" / "data" / "h100_decode_trace.json.gz"
    r = run("trace", trace, "--gpu", "h100-sxm", "--model", LLAMA, "--batch", "1", "--format", "csv")
    assert r.exit_code == 0, r.output
    import io

    import pandas as pd

    ops = pd.read_csv(io.StringIO(r.stdout)).set_index("op")
    # the trace is the 2-layer reference decoder, one decode pass: its ranges name the rows
    gate = ops.loc["gate_proj"]
    assert gate["phase"] == "decode" and gate["calls"] == 2 and gate["evidence_kind"] == "module"
    assert gate["analytic_bytes"] == pytest.approx(2 * (4096 * 11008 * 2 + 4096 * 2 + 11008 * 2))  # weights + x + y
    assert gate["measured_over_predicted"] == pytest.approx(gate["gpu_time_s"] / gate["predicted_time_s"])
    # 4096 x 11008 bf16 weights at batch 1: memory-bound by the prediction
    assert gate["predicted_bound"] == "memory" and gate["gpu_time_s"] > 0
    table = run("trace", trace, "--gpu", "h100-sxm", "--model", LLAMA, "--batch", "1", "--plot", tmp_path / "t.png")
    assert table.exit_code == 0 and "gate_proj" in table.output and "meas/pred" in table.output
    assert (tmp_path / "t.png").exists() and (tmp_path / "t.svg").exists()


def test_trace_workload_flags_need_a_model():
    trace = ROOT / "tests" / "data" / "h100_decode_trace.json.gz"
    r = run("trace", trace, "--gpu", "h100-sxm", "--batch", "4")
    assert r.exit_code == 2 and "--batch describes the model's workload; give --model too" in r.output
