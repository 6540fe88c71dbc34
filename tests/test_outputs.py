"""What every command writes, for people and for programs: one JSON header (schema_version, version,
the resolved model, spec and workload) on every JSON output, numbers without exponents or milli-FLOP/B
in text, integers as integers and no Python reprs in CSV and JSON."""

import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from roofline import __version__, render
from roofline.cli import JSON_SCHEMA_VERSION, main

ROOT = Path(__file__).resolve().parent.parent
LLAMA = str(ROOT / "examples" / "llama-2-7b.yaml")
DATA = ROOT / "tests" / "data"
HEADER = ["schema_version", "roofline_version", "model", "gpu", "workload", "model_config", "spec"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def json_of(*args) -> dict:
    r = run(*args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def check_header(data: dict, model, gpu) -> None:
    assert list(data)[: len(HEADER)] == HEADER
    assert data["schema_version"] == JSON_SCHEMA_VERSION and data["roofline_version"] == __version__
    assert data["model"] == model and data["gpu"] == gpu
    if gpu is not None:
        assert data["spec"]["name"] == gpu and data["spec"]["mem_bytes_per_s"] > 0  # SI units
    if model is not None:
        assert data["model_config"]["name"] == model


def test_analyze_and_advise_json_share_one_header():
    analyzed = json_of("analyze", LLAMA, "--gpu", "a10", "--batch", "4", "--phase", "decode", "--format", "json")
    check_header(analyzed, "llama-2-7b", "a10")
    advised = json_of("advise", LLAMA, "--gpu", "a10", "--batch", "4", "--phase", "decode", "--format", "json")
    check_header(advised, "llama-2-7b", "a10")
    assert {k: advised[k] for k in HEADER} == {k: analyzed[k] for k in HEADER}  # the same function
    assert advised["workload"]["batch_size"] == [4] and advised["workload"]["phase"] == "decode"
    first = advised["advice"][0]
    assert first["rank"] == 1 and isinstance(first["overrides"], dict) and first["flags"].startswith("--")


def test_trace_json_carries_the_header_with_and_without_a_model():
    plain = json_of("trace", DATA / "h100_decode_trace.json.gz", "--gpu", "h100-sxm", "--format", "json")
    check_header(plain, None, "h100-sxm")
    assert plain["workload"] is None and plain["model_config"] is None
    modelled = json_of(
        "trace", DATA / "h200_hf_tiny_llama_trace.json.gz", "--model", DATA / "tiny_hf_llama.yaml", "--format", "json"
    )
    check_header(modelled, modelled["model_config"]["name"], "h200")
    # the workload as inferred from the trace's shapes: batch 2, prompt 32, four decode steps
    assert modelled["workload"]["batch_size"] == 2 and modelled["workload"]["prompt_len"] == 32
    assert modelled["workload"]["context_lens"] == [33, 34, 35, 36]


def test_hf_profile_json_carries_the_header():
    from roofline.attribute import attribute, compare_frame
    from roofline.cli import render_hf_profile
    from roofline.config import load_model

    model = load_model(DATA / "tiny_hf_llama.yaml")
    run_ = attribute(DATA / "h200_hf_tiny_llama_trace.json.gz", model)
    ops = compare_frame(run_, model, run_.spec)
    payload = json.loads(render_hf_profile(ops, run_, [4e-3, 3e-3], "t.json.gz", "json", model=model))
    check_header(payload, model.name, "h200")
    assert payload["workload"]["batch_size"] == 2 and payload["trace"] == "t.json.gz"
    text = render_hf_profile(ops, run_, [4e-3, 3e-3], "t.json.gz", "csv", model=model)
    frame = pd.read_csv(io.StringIO(text))
    assert frame["n_kernels"].dtype.kind == "i" and "[" not in text.splitlines()[1].split(",top_kernels")[0]


def test_profile_json_carries_the_header():
    """render_profile on Comparison-shaped objects (the GPU run itself is tested in test_cli on the CPU)."""
    from types import SimpleNamespace

    from roofline.cli import render_profile
    from roofline.config import load_model_and_workload
    from roofline.specs import load_spec

    m, w = load_model_and_workload(LLAMA, {"batch_size": (1, 8)})
    spec = load_spec("h100-sxm")
    steps = pd.DataFrame({"phase": ["decode"], "batch_size": [1.0], "kernel_time_full_s": [1e-3]})
    ops = pd.DataFrame({"phase": ["decode"], "op": ["q_proj"], "n_kernels": [1.0], "measured_time_s": [2e-5]})
    comparison = SimpleNamespace(spec=spec, run=SimpleNamespace(device={"gpu": "H100"}), ops=ops, steps=steps)
    payload = json.loads(render_profile(m, w, [comparison, comparison], "json"))
    check_header(payload, "llama-2-7b", "h100-sxm")
    assert payload["workload"]["batch_size"] == [1, 8] and payload["device"] == {"gpu": "H100"}
    assert len(payload["ops"]) == 2 and payload["ops"][0]["n_kernels"] == 1 and payload["steps"][0]["batch_size"] == 1


# ------------------------------------------------------------------------------------------------
# numbers for people


@pytest.mark.parametrize(
    "value, unit, text",
    [
        (6.11e-10, "s", "611 ps"),  # not 6.11e-10 s
        (2.5e-14, "s", "25 fs"),
        (1.2345e12, "FLOP", "1.23 TFLOP"),
        (3.2e19, "FLOP", "32 EFLOP"),
        (4.5e22, "FLOP", "45,000 EFLOP"),  # past the last prefix: digits, no exponent
        (1e-19, "s", "0.0001 fs"),
        (0.0, "s", "0 s"),
        (float("nan"), "s", "-"),
        (float("inf"), "s", "inf"),
    ],
)
def test_si_never_prints_an_exponent(value, unit, text):
    assert render.si(value, unit) == text


@pytest.mark.parametrize(
    "value, text",
    [(2 / 3, "0.667"), (0.0667, "0.0667"), (12.34, "12.3"), (227.0, "227"), (1234.5, "1,234"), (0, "0")],
)
def test_number_is_plain(value, text):
    assert render.number(value) == text


def test_one_si_formatter():
    import roofline.classify as classify

    assert not hasattr(classify, "_si") and classify.si is render.si


EXPONENT = re.compile(r"\d[eE][+-]?\d")


@pytest.mark.parametrize(
    "args",
    [
        ("analyze", LLAMA, "--gpu", "a10"),
        ("analyze", LLAMA, "--gpu", "a10", "--batch", "1:1024:x4", "--context-len", "1024,32768"),
        ("analyze", LLAMA, "--gpu", "h100-sxm", "--tp", "8", "--phase", "decode", "--format", "markdown"),
        ("advise", LLAMA, "--gpu", "a10"),
        ("specs",),
        ("trace", DATA / "h100_decode_trace.json.gz", "--gpu", "h100-sxm"),
        ("trace", DATA / "h200_hf_tiny_llama_trace.json.gz", "--model", DATA / "tiny_hf_llama.yaml"),
    ],
)
def test_text_outputs_have_no_exponents_and_no_milli_intensity(args):
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert not EXPONENT.search(r.stdout), EXPONENT.search(r.stdout).group(0)
    assert " m " not in r.stdout and "mFLOP/B" not in r.stdout


def test_intensity_reads_in_flop_per_byte():
    r = run("analyze", LLAMA, "--gpu", "a10", "--phase", "decode")
    row = next(line.split() for line in r.stdout.splitlines() if line.startswith("attn_norm"))
    # attn_norm, decode, batch 1: 4 FLOP per element (square, sum, scale, weight) over 4096 elements read
    # and written in bf16 plus the bf16 weight: 16,384 FLOP / (8,192 + 8,192 + 8,192) B = 0.667 FLOP/B
    assert row[8] == "0.667"


def test_csv_integers_as_integers_and_no_python_reprs():
    r = run("analyze", LLAMA, "--gpu", "a10", "--batch", "1,8", "--format", "csv")
    frame = pd.read_csv(io.StringIO(r.stdout))
    first = r.stdout.splitlines()[1].split(",")
    assert first[:4] == ["0", "1", "512", "512"]  # point, batch_size, prompt_len, context_len: not 1.0
    assert frame["count"].dtype.kind == frame["params"].dtype.kind == "i"
    advice = run("advise", LLAMA, "--gpu", "a10", "--format", "csv").stdout
    assert "{'" not in advice and '"{""batch_size"":39}"' in advice  # overrides as JSON, not a dict repr
    # a fractional context (the mean context of a generation) stays a float; a list is JSON
    frame = pd.DataFrame({"context_len": [512.5, 600.0], "batch_size": [1.0, float("nan")], "x": [[1, 2], {"a": 1}]})
    assert render.to_csv(frame).splitlines()[1:] == ['512.5,1,"[1,2]"', '600.0,,"{""a"":1}"']
    assert render.to_records(frame)[0] == {"context_len": 512.5, "batch_size": 1, "x": [1, 2]}
    assert render.to_records(frame)[1]["batch_size"] is None


def test_json_integers_as_integers():
    data = json_of("analyze", LLAMA, "--gpu", "a10", "--batch", "1,8", "--format", "json")
    row = data["ops"][0]
    assert [type(row[k]) for k in ("point", "batch_size", "prompt_len", "context_len", "count")] == [int] * 5
    assert type(data["summary"][1]["batch_size"]) is int and data["summary"][1]["batch_size"] == 8
    assert data["summary"][0]["decode_ridge_batch"] == 227  # as the README says; an int


def test_calibration_lines_show_the_measured_figures():
    from roofline.cli import calibration_lines

    measured = {
        "peak_tflops": {"bf16": 756.3, "fp8": 1372.4},
        "mem_bandwidth_gb_per_s": 3012.5,
        "launch_overhead_us": 4.25,
        "graph_launch_overhead_us": 0.00061,
        "gemm": {"bf16": {"rows": [1, 2]}},
        "conditions": {"gpu": "H100"},
    }
    assert calibration_lines(measured) == [
        "peak_tflops: bf16 756.3, fp8 1,372",
        "mem_bandwidth_gb_per_s: 3,012",  # 4 significant figures, thousands separated
        "launch_overhead_us: 4.25",
        "graph_launch_overhead_us: 0.00061",  # not 6.1e-04
        "gemm: table (bf16)",
    ]


def test_specs_json_carries_the_header():
    listed = json_of("specs", "--format", "json")
    check_header(listed, None, None)
    assert "a10" in [row["name"] for row in listed["specs"]]
    shown = json_of("specs", "show", "a10", "--format", "json")
    check_header(shown, None, "a10")
    assert shown["name"] == "a10" and shown["dtypes"][0]["dtype"]
