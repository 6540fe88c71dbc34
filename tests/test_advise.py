"""advise: every predicted speedup must equal an independent re-run of analyze with the change applied."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import roofline
from roofline.advise import COLUMNS, advise, apply_changes, fuse_elementwise, max_batch_that_fits, render_advice
from roofline.config import parse_model
from roofline.errors import ConfigError
from roofline.predict import step_time

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DATA = Path(__file__).resolve().parent / "data"
LLAMA_7B = str(EXAMPLES / "llama-2-7b.yaml")
LLAMA_70B = str(EXAMPLES / "llama-2-70b.yaml")

CASES = {
    "7b-a10-decode": (LLAMA_7B, "a10", dict(phase="decode", batch_size=1)),
    "7b-a10-both": (LLAMA_7B, "a10", dict(phase="both")),
    "7b-a10-naive": (LLAMA_7B, "a10", dict(attn_impl="naive", prompt_len=2048)),
    "7b-h100-prefill": (LLAMA_7B, "h100-sxm", dict(phase="prefill", prompt_len=2048, batch_size=1)),
    "70b-a10-tp1": (LLAMA_70B, "a10", dict(tp=1)),
    "mixtral-h100": (str(EXAMPLES / "mixtral-8x7b.yaml"), "h100-sxm", dict()),
}


def _time(result, phase):
    return float(result.summary[f"{phase}_time_s"].iloc[0])


@pytest.fixture(scope="module")
def advised():
    out = {}
    for name, (model, gpu, kw) in CASES.items():
        analysis = roofline.analyze(model, gpu, **kw)
        out[name] = (analysis, advise(analysis, top=None))
    return out


def test_frame_shape(advised):
    _, frame = advised["7b-a10-both"]
    assert list(frame.columns) == COLUMNS
    assert list(frame["rank"]) == list(range(1, len(frame) + 1))
    assert (frame["predicted_speedup"] >= 1.02).all()
    assert len(advise(advised["7b-a10-both"][0], top=3)) == 3


def test_llama_7b_a10_decode_top_is_quantisation_or_batch(advised):
    analysis, frame = advised["7b-a10-decode"]
    top = frame.iloc[0]
    assert top["change"].startswith(("weights", "batch"))
    # int4: the speedup is the ratio of two independent analyses' decode step times, exactly
    row = frame[frame["change"] == "weights int4"].iloc[0]
    int4 = roofline.analyze(LLAMA_7B, "a10", phase="decode", batch_size=1, weight_dtype="int4")
    assert row["predicted_speedup"] == _time(analysis, "decode") / _time(int4, "decode")
    assert row["flags"] == "--weight-dtype int4"
    assert "memory-bound" in row["why"] and "weights are 98% of bytes read" in row["why"]


def test_larger_batch_is_a_throughput_gain_not_a_latency_gain(advised):
    analysis, frame = advised["7b-a10-decode"]
    row = frame[frame["change"].str.startswith("batch")].iloc[0]
    b = row["overrides"]["batch_size"]
    # weights 13.48 GB + 512 tokens x 0.5 MB KV per sequence in 24 GB: (24 - 13.477) / 0.268 = 39.2
    assert b == max_batch_that_fits(analysis) == 39
    bigger = roofline.analyze(LLAMA_7B, "a10", phase="decode", batch_size=b)
    assert row["metric"] == "tokens/s"
    assert row["predicted_speedup"] == pytest.approx((b / _time(bigger, "decode")) / (1 / _time(analysis, "decode")))
    assert row["step_time_ratio"] > 1
    assert "single-stream latency" in row["wont_help"]


def test_max_batch_that_fits_is_the_boundary():
    analysis = roofline.analyze(LLAMA_7B, "a10", phase="decode", batch_size=1, context_len=4096, prompt_len=512)
    n = max_batch_that_fits(analysis)
    fits = roofline.analyze(
        LLAMA_7B, "a10", phase="decode", batch_size=[n, n + 1], context_len=4096, prompt_len=512
    ).summary["fits_in_memory"]
    assert list(fits) == [True, False]


def test_naive_attention_gets_flash_attention(advised):
    analysis, frame = advised["7b-a10-naive"]
    row = frame[frame["change"] == "FlashAttention"]
    assert len(row) >= 1 and (row["flags"] == "--attn flash").all()
    prefill = row[row["phase"] == "prefill"].iloc[0]
    flash = roofline.analyze(LLAMA_7B, "a10", prompt_len=2048, attn_impl="flash")
    assert prefill["predicted_speedup"] == _time(analysis, "prefill") / _time(flash, "prefill")
    # the flash analysis of the same model never suggests it
    assert "FlashAttention" not in set(advised["7b-a10-both"][1]["change"])


@pytest.mark.parametrize(
    "kw", [dict(phase="decode"), dict(phase="prefill", prompt_len=2048), dict(), dict(batch_size=64, prompt_len=4096)]
)
def test_fp8_is_never_suggested_on_a10(kw):
    frame = advise(roofline.analyze(LLAMA_7B, "a10", **kw), top=None)
    text = " ".join(frame["change"]) + " ".join(frame["flags"]) + " ".join(frame.attrs["not_helping"])
    assert "fp8" not in text


def test_fp8_is_suggested_where_the_part_has_it(advised):
    _, frame = advised["7b-h100-prefill"]
    assert "W8A8 fp8" in set(frame["change"])


def test_prefill_h100_weight_quantisation_is_not_top_and_says_compute_bound(advised):
    analysis, frame = advised["7b-h100-prefill"]
    assert not frame.iloc[0]["change"].startswith("weights")
    weight_only = frame[frame["change"].str.startswith("weights")]
    assert weight_only.empty  # dropped: each under 1.02x ...
    note = next(n for n in frame.attrs["not_helping"] if n.startswith("quantising weights"))
    assert "compute-bound prefill" in note  # ... and said why, in the related row too
    assert note in frame[frame["change"] == "W8A8 fp8"].iloc[0]["wont_help"]
    int4 = roofline.analyze(LLAMA_7B, "h100-sxm", phase="prefill", prompt_len=2048, weight_dtype="int4")
    assert _time(analysis, "prefill") / _time(int4, "prefill") < 1.02


def test_70b_on_one_a10_gets_tensor_parallelism(advised):
    analysis, frame = advised["70b-a10-tp1"]
    assert not analysis.summary["fits_in_memory"].iloc[0]
    tp = frame[frame["change"].str.startswith("tensor parallel")]
    assert len(tp) == 2  # prefill and decode
    assert tp["fits_in_memory"].all() and (tp["gpus"] == 8).all()
    assert frame.iloc[0]["change"].startswith("tensor parallel")  # the only fitting change ranks first
    assert all("communication is" in w and "costs 8 GPUs" in w for w in tp["wont_help"])
    assert "still does not fit" in frame[frame["change"] == "weights int4"].iloc[0]["wont_help"]


def test_tensor_parallelism_skips_degrees_the_heads_do_not_divide():
    # 12 heads: tp 2 and 4 divide them, tp 8 does not and is skipped, not guessed; ~60 B params fit no A10
    model = parse_model(
        dict(
            model_type="llama",
            hidden_size=8192,
            head_dim=128,
            num_attention_heads=12,
            num_key_value_heads=12,
            intermediate_size=28672,
            num_hidden_layers=80,
            vocab_size=32000,
        )
    )
    analysis = roofline.analyze(model, "a10", phase="decode")
    frame = advise(analysis, top=None)
    tp = frame[frame["change"].str.startswith("tensor parallel")].iloc[0]
    assert tp["gpus"] == 4 and not tp["fits_in_memory"]  # none fits: the largest degree tried
    assert "tp 2: " in tp["why"] and "tp 4: " in tp["why"] and "tp 8" not in tp["why"]
    with pytest.raises(ConfigError, match="tp 8 does not divide num_attention_heads 12"):
        apply_changes(analysis, {"tp": 8})


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_rows_overrides_reproduce_its_new_time(advised, case):
    analysis, frame = advised[case]
    model, gpu, kw = CASES[case]
    for row in frame.itertuples():
        if row.source != "analysis" or not row.overrides:
            continue
        again = roofline.analyze(model, gpu, **{**kw, **row.overrides})
        assert _time(again, row.phase) == pytest.approx(row.new_time_s, rel=1e-12), row.change


def test_flags_reproduce_through_the_cli(advised):
    from click.testing import CliRunner

    from roofline.cli import main

    _, frame = advised["7b-a10-decode"]
    for row in frame[frame["flags"] != ""].itertuples():
        args = [
            "analyze",
            LLAMA_7B,
            "--gpu",
            "a10",
            "--phase",
            "decode",
            "--batch",
            "1",
            *row.flags.split(),
            "--format",
            "json",
            "--summary",
        ]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output[result.output.index("{") :])["summary"][0]
        assert summary["decode_time_s"] == pytest.approx(row.new_time_s, rel=1e-12), row.flags


def test_fusion_hand_count():
    # tiny-llama prefill: batch 2 x 16 tokens, hidden 64, 8 heads, 2 KV heads of 8, 2 layers, bf16.
    analysis = roofline.analyze(str(DATA / "tiny_llama.yaml"), str(DATA / "tiny_gpu.yaml"), phase="prefill")
    fused = fuse_elementwise(analysis.ops, analysis.spec)
    pairs = fused[fused["saved_bytes"] > 0].set_index("op")
    # residual -> norm: the norm's re-read of 32 x 64 x 2 = 4096 bytes
    assert pairs.loc["attn_residual+mlp_norm", "count"] == 2  # one per layer
    assert pairs.loc["mlp_residual+final_norm", "count"] == 1  # last layer
    assert pairs.loc["mlp_residual+attn_norm", "count"] == 1  # layer 1 -> layer 2; layer 1's norm follows the embedding
    assert pairs.loc["attn_residual+mlp_norm", "saved_bytes"] == 4096
    # rope -> kv_cache_write: the re-read of k, 32 tokens x 2 KV heads x 8 x 2 bytes = 1024
    assert pairs.loc["rope+kv_cache_write", "saved_bytes"] == 1024
    total_saved = (pairs["count"] * pairs["saved_bytes"]).sum()
    assert total_saved == 2 * 4096 + 4096 + 4096 + 2 * 1024  # 18432
    # every op here is memory-bound and far above the 0.1 s launch (the GPU is the bottleneck): the step
    # loses 18432 B / 10 B/s and the 0.01 s launch gap of each of the six kernels fused away
    before = _time(analysis, "prefill")
    after = step_time(fused)
    assert before - after == pytest.approx(18432 / 10 + 6 * 0.01)
    assert fused["count"].sum() == analysis.ops["count"].sum() - 6  # six fewer kernels


def test_fusion_row_matches_fuse_elementwise():
    # a small model whose decode step is host-bound: fusing saves launches (on Llama-2-7B on an A10 the
    # GPU is the bottleneck and fusion saves under 2%, so it is not suggested)
    analysis = roofline.analyze(str(EXAMPLES / "gpt2.yaml"), "h100-sxm", phase="decode")
    frame = advise(analysis, top=None)
    row = frame[frame["change"] == "fuse element-wise ops"].iloc[0]
    fused = fuse_elementwise(analysis.ops, analysis.spec)
    assert row["new_time_s"] == pytest.approx(step_time(fused))
    assert row["overrides"] == {} and row["flags"] == ""


def test_measured_frame_replaces_analytic_figures():
    analysis = roofline.analyze(LLAMA_7B, "a10", phase="decode")
    ops = analysis.ops
    ideal = ops["count"] * ops["predicted_time_s"].clip(lower=ops["host_s"])
    slow = ops["category"] == "elementwise"
    measured = pd.DataFrame(
        {"phase": "decode", "op": ops["op"].astype(str), "measured_time_s": ideal * slow.map({True: 3.0, False: 1.0})}
    )
    measured["eager_wall_s"] = 0.030
    measured["graph_wall_s"] = 0.025
    frame = advise(analysis, measured=measured, top=None)
    graphs = frame[frame["change"] == "CUDA graphs"].iloc[0]
    assert graphs["source"] == "measured" and graphs["predicted_speedup"] == pytest.approx(0.030 / 0.025)
    fusion = frame[frame["change"] == "fuse element-wise ops"].iloc[0]
    assert fusion["source"] == "measured"
    fused = fuse_elementwise(ops, analysis.spec)
    chain_ops = set("+".join(fused.loc[fused["saved_bytes"] > 0, "op"]).split("+"))
    in_chain = ops["op"].isin(chain_ops)
    measured_chain = float(measured.loc[in_chain.to_numpy(), "measured_time_s"].sum())
    fused_chain = fused[fused["op"].isin(chain_ops) | (fused["saved_bytes"] > 0)]
    ideal_fused = step_time(fused_chain)
    baseline = float(measured["measured_time_s"].sum())
    assert fusion["baseline_time_s"] == pytest.approx(baseline)
    assert fusion["new_time_s"] == pytest.approx(baseline - (measured_chain - ideal_fused))


def test_measured_frame_without_its_columns():
    analysis = roofline.analyze(LLAMA_7B, "a10", phase="decode")
    with pytest.raises(ConfigError, match="the measured frame lacks column measured_time_s; it needs phase, op"):
        advise(analysis, measured=pd.DataFrame({"phase": ["decode"], "op": ["q_proj"]}))


def test_a_sweep_is_refused():
    analysis = roofline.analyze(LLAMA_7B, "a10", batch_size=[1, 8])
    with pytest.raises(ConfigError, match="advise needs a single point; the analysis has 2"):
        advise(analysis)


def test_render_advice(advised):
    _, frame = advised["7b-a10-both"]
    text = render_advice(frame)
    lines = text.splitlines()
    assert len(lines) == len(frame)
    assert lines[0].startswith("1. batch 39 (decode): ")
    assert "x tokens/s predicted [--batch 39] — decode is" in lines[0]
    assert "won't help: single-stream latency" in lines[0]
    empty = frame.iloc[0:0].copy()
    empty.attrs["not_helping"] = ["quantising weights does little for the compute-bound prefill: 1.00x"]
    assert render_advice(empty) == (
        "no change tried predicts a 1.02x speedup or more\n"
        "won't help:\n  - quantising weights does little for the compute-bound prefill: 1.00x"
    )


def test_advise_imports_neither_torch_nor_matplotlib():
    code = "import sys, roofline.advise; print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_8_bit_change_is_priced_as_the_calibrated_kernels_run_it_with_the_fused_figure_beside_it():
    # assumption 7: a spec whose calibration measured torch's unfused weight-only int8 (10x slower per byte than
    # the 16-bit GEMM here) prices 'weights int8' with that table: it slows decode, so it is dropped, and the row
    # (attrs['dropped']) and the note carry the fused kernel's figure, the same change without the table
    import copy

    import yaml

    from roofline.advise import every_change
    from roofline.specs import parse_spec

    flat = {"tokens": [1, 1e5], "weight_elements": [1, 1e12]}
    raw = yaml.safe_load((DATA / "tiny_gpu.yaml").read_text())
    raw["measured"] = {
        "gemm": {
            "bf16": {**flat, "efficiency": [[0.5, 0.5], [0.5, 0.5]]},
            "int8/weight_only": {**flat, "efficiency": [[0.05, 0.05], [0.05, 0.05]]},
        }
    }
    spec = parse_spec(copy.deepcopy(raw), "calibrated")
    model = str(EXAMPLES / "llama-2-7b.yaml")
    a = roofline.analyze(model, spec, phase="decode", batch_size=1)
    adv = advise(a, top=None)
    assert "weights int8" not in set(adv["change"])
    rows = every_change(adv).set_index(["change", "phase"])
    int8 = rows.loc[("weights int8", "decode")]
    assert not int8["suggested"] and int8["predicted_speedup"] < 1.0
    slow = apply_changes(a, {"weight_dtype": "int8"})
    assert int8["predicted_speedup"] == pytest.approx(_time(a, "decode") / _time(slow, "decode"))
    del raw["measured"]["gemm"]["int8/weight_only"]
    fused = roofline.analyze(model, parse_spec(raw, "fused"), phase="decode", batch_size=1, weight_dtype="int8")
    assert int8["fused_speedup"] == pytest.approx(_time(a, "decode") / _time(fused, "decode"))
    assert int8["fused_speedup"] > 1.3  # decode reads half the weight bytes
    note = next(n for n in adv.attrs["not_helping"] if n.startswith("quantising weights"))
    assert f"with a fused kernel weights int8 {int8['fused_speedup']:.2f}x" in note
    assert "converts the weights to 16 bits" in int8["why"]
    # int4 has no calibrated table: priced as a fused kernel already, no second figure
    assert math.isnan(rows.loc[("weights int4", "decode"), "fused_speedup"])
    assert "no calibrated int4 kernel: priced as a fused one" in rows.loc[("weights int4", "decode"), "why"]


def test_the_fused_figure_drops_the_unfused_path_s_extra_host_cost():
    # eager and host-bound: weight-only int8 as torch runs it pays projection_host_us per projection; the fused
    # kernel is one launch, so its figure is the step without that table and without that host cost
    import copy

    import yaml

    from roofline.advise import every_change
    from roofline.specs import parse_spec

    flat = {"tokens": [1, 1e5], "weight_elements": [1, 1e12]}
    raw = yaml.safe_load((DATA / "tiny_gpu.yaml").read_text())
    raw["measured"] = {
        "gemm": {"bf16": {**flat, "efficiency": [[0.5, 0.5], [0.5, 0.5]]},
                 "int8/weight_only": {**flat, "efficiency": [[0.05, 0.05], [0.05, 0.05]]}},
        "projection_host_us": {"int8/weight_only": 500.0},
    }  # fmt: skip
    a = roofline.analyze(str(DATA / "tiny_llama.yaml"), parse_spec(copy.deepcopy(raw), "c"), phase="decode")
    row = every_change(advise(a, top=None)).set_index("change").loc["weights int8"]
    del raw["measured"]["gemm"]["int8/weight_only"], raw["measured"]["projection_host_us"]
    fused = roofline.analyze(str(DATA / "tiny_llama.yaml"), parse_spec(raw, "f"), phase="decode", weight_dtype="int8")
    assert row["fused_speedup"] == pytest.approx(_time(a, "decode") / _time(fused, "decode"))
    assert row["predicted_speedup"] < 0.5 < row["fused_speedup"]  # 7 x 500 us more host per layer as torch runs it


def test_a_measured_routing_is_kept_for_a_kernel_change_and_dropped_for_a_changed_step():
    # routed_experts is the routing of the step as it ran: a larger batch routes as uniform routing expects
    from roofline.advise import apply_changes
    from roofline.analysis import analyze
    from roofline.config import load_model, parse_workload

    raw = {"batch_size": 8, "prompt_len": 1024, "context_len": 1024, "phase": "decode", "routed_experts": 7}
    a = analyze(load_model("mixtral-8x7b"), "h200", workload=parse_workload(raw))
    assert apply_changes(a, {"cuda_graph": True}).workload.routed_experts == 7
    bigger = apply_changes(a, {"batch_size": 64})
    assert bigger.workload.routed_experts is None and bigger.workload.batch_size == (64,)
    expected = analyze(
        load_model("mixtral-8x7b"), "h200", workload=parse_workload(dict(raw, batch_size=64, routed_experts=None))
    )
    assert bigger.summary["decode_time_s"].iloc[0] == expected.summary["decode_time_s"].iloc[0]
    # the ridge batch is a search over batches: each routes as expected, whatever the analysed step's routing
    from roofline.analysis import decode_ridge_batch
    from roofline.specs import load_spec

    m, spec = load_model("mixtral-8x7b"), load_spec("h200")
    plain = decode_ridge_batch(m, parse_workload(dict(raw, routed_experts=None)), spec)
    assert decode_ridge_batch(m, a.workload, spec) == plain and plain > 8
