"""roofline.attribute: kernels of HF transformers traces (recorded on an H200 by
benchmarks/record_hf_traces.py) mapped to the analytic (phase, op) rows, checked against hand counts
of the model and an independent join of the same trace (benchmarks/hf_independent_join.py)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from roofline.attribute import (
    OUTSIDE,
    UNATTRIBUTED,
    attribute,
    compare_frame,
    gemm_shape,
    module_op,
    projection_table,
)
from roofline.cli import main
from roofline.config import load_model
from roofline.errors import TraceError

DATA = Path(__file__).parent / "data"
LLAMA_TRACE = DATA / "h200_hf_tiny_llama_trace.json.gz"
MIXTRAL_TRACE = DATA / "h200_hf_tiny_mixtral_trace.json.gz"
LLAMA = DATA / "tiny_hf_llama.yaml"
MIXTRAL = DATA / "tiny_hf_mixtral.yaml"
ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def llama():
    return attribute(LLAMA_TRACE, LLAMA)


@pytest.fixture(scope="module")
def mixtral():
    return attribute(MIXTRAL_TRACE, MIXTRAL)


def _independent():
    spec = importlib.util.spec_from_file_location("hf_independent_join", ROOT / "benchmarks" / "hf_independent_join.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["hf_independent_join"] = mod
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------------------------------------- shapes


def test_gemm_shapes_from_recorded_dims():
    assert gemm_shape("aten::mm", [[64, 256], [256, 688]]) == (64, 256, 688, 1)
    assert gemm_shape("aten::addmm", [[688], [64, 256], [256, 688], [], []]) == (64, 256, 688, 1)
    assert gemm_shape("aten::linear", [[2, 32, 256], [688, 256], []]) == (64, 256, 688, 1)  # 2 * 32 rows
    assert gemm_shape("aten::_grouped_mm", [[128, 256], [4, 256, 1376], [4], [], []]) == (128, 256, 1376, 4)
    assert gemm_shape("aten::bmm", [[16, 32, 64], [16, 64, 32]]) == (32, 64, 32, 16)
    assert gemm_shape("aten::matmul", [[2, 8, 32, 32], [2, 8, 32, 32]]) is None  # batched: not a weight
    assert gemm_shape("aten::add", [[2, 3], [2, 3]]) is None
    assert gemm_shape("aten::mm", None) is None


def test_projection_table_of_a_gqa_model():
    t = projection_table(load_model(LLAMA))  # hidden 256, 8 heads x 32, 4 KV heads, intermediate 688
    assert t[(256, 256)] == ["q_proj", "o_proj"]  # 8 * 32 = 256 = hidden: q and o share a shape
    assert t[(256, 128)] == ["k_proj", "v_proj"]  # 4 * 32
    assert t[(256, 512)] == ["qkv_proj"]  # (8 + 2 * 4) * 32
    assert t[(256, 688)] == ["gate_proj", "up_proj"]
    assert t[(688, 256)] == ["down_proj"]
    assert t[(256, 1024)] == ["lm_head"]
    m = projection_table(load_model(MIXTRAL))
    assert m[(256, 4)] == ["router"] and m[(256, 1376)] == ["experts"] and m[(688, 256)] == ["experts"]


def test_module_paths_name_ops():
    m, moe = load_model(LLAMA), load_model(MIXTRAL)
    assert module_op("model.layers.3.self_attn.q_proj", m) == ("q_proj", 3)
    assert module_op("model.layers.0.post_attention_layernorm", m) == ("mlp_norm", 0)
    assert module_op("model.layers.1.mlp.act_fn", m) == ("act", 1)
    assert module_op("model.norm", m) == ("final_norm", None)
    assert module_op("model.embed_tokens", m) == ("embedding", None)
    assert module_op("lm_head", m) == ("lm_head", None)
    assert module_op("model.layers.2.mlp.gate", moe) == ("router", 2)
    assert module_op("model.layers.2.mlp.experts", moe) == ("experts", 2)
    assert module_op("model.layers.2.mlp.experts.5.w1", moe) == ("experts", 2)  # looped experts
    assert module_op("model.layers.2.self_attn", m) == (None, 2)  # not a leaf op: shapes and position decide
    assert module_op("model.layers.2.self_attn.q_norm", m) == (None, 2)


# ---------------------------------------------------------------------------------------------- tiny llama


def test_passes_and_workload_come_from_the_trace(llama):
    # the recording: batch 2, prompt 32, then 4 greedy decode steps attending to 33..36 keys
    p = llama.passes
    assert list(p["phase"]) == ["prefill"] + ["decode"] * 4
    assert list(p["tokens"]) == [32, 1, 1, 1, 1]
    assert list(p["context_len"]) == [32, 33, 34, 35, 36]
    assert list(p["layers"]) == [2] * 5
    assert llama.workload == {
        "batch_size": 2.0,
        "prompt_len": 32.0,
        "context_lens": [33.0, 34.0, 35.0, 36.0],
        "n_prefill": 1,
        "n_decode": 4,
        "dtype": "bf16",
    }


def test_every_kernel_is_on_an_op_row_or_named(llama):
    k = llama.kernels
    assert set(k["op"]) - {OUTSIDE} <= {
        "embedding",
        "attn_norm",
        "q_proj",
        "k_proj",
        "v_proj",
        "rope",
        "kv_cache_write",
        "attention",
        "o_proj",
        "attn_residual",
        "mlp_norm",
        "gate_proj",
        "up_proj",
        "act",
        "down_proj",
        "mlp_residual",
        "final_norm",
        "lm_head",
    }
    assert UNATTRIBUTED not in set(k["op"])
    off = k[k["op"] == OUTSIDE]
    assert off["reason"].str.len().min() > 0  # each says why
    # outside: the prompt's randint before the first pass, per pass the argmax after lm_head, and
    # before each of the 4 decode steps the torch.full of its positions
    assert len(off) == 1 + 5 + 4 and set(off["outer_op"]) == {"aten::randint", "aten::argmax", "aten::full"}
    s = llama.summary
    assert s["gpu_time_s"] == pytest.approx(k["dur_s"].sum())
    assert s["attributed_gpu_time_s"] + s["unattributed_gpu_time_s"] == pytest.approx(s["gpu_time_s"])
    assert s["attributed_share"] > 0.97


def test_op_rows_count_the_model(llama):
    ops = llama.ops.set_index(["phase", "op"])
    # one GEMM kernel per projection per layer per pass: 2 layers x 1 prefill, 2 layers x 4 decode steps
    for op in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert ops.loc[("prefill", op), "n_kernels"] == 2 and ops.loc[("prefill", op), "calls"] == 2
        assert ops.loc[("decode", op), "n_kernels"] == 8 and ops.loc[("decode", op), "calls"] == 8
    # cuDNN SDPA: a memset and the attention kernel per layer
    assert ops.loc[("prefill", "attention"), "n_kernels"] == 4
    # HF's RMSNorm: to(fp32), pow, mean, add eps, rsqrt, mul, to(bf16), mul weight = 8 kernels per call
    assert ops.loc[("prefill", "attn_norm"), "n_kernels"] == 8 * 2
    assert ops.loc[("decode", "mlp_norm"), "n_kernels"] == 8 * 8
    assert ops.loc[("decode", "final_norm"), "calls"] == 4
    # DynamicCache: one cat for K, one for V per layer
    assert ops.loc[("decode", "kv_cache_write"), "n_kernels"] == 2 * 8
    # act: silu, then the product with up: 2 kernels per layer
    assert ops.loc[("prefill", "act"), "n_kernels"] == 2 * 2
    assert ops.loc[("prefill", "lm_head"), "n_kernels"] == 1 and ops.loc[("decode", "lm_head"), "n_kernels"] == 4


def test_the_norm_is_the_chain_of_hf_rmsnorm(llama):
    k = llama.kernels
    first = k[(k["phase"] == "prefill") & (k["layer"] == 0) & (k["op"] == "attn_norm")]
    assert list(first["outer_op"]) == [
        "aten::to",
        "aten::pow",
        "aten::mean",
        "aten::add",
        "aten::rsqrt",
        "aten::mul",
        "aten::to",
        "aten::mul",
    ]
    res = k[(k["op"] == "attn_residual") & (k["phase"] == "prefill")]
    assert list(res["outer_dims"].map(lambda d: d[:2])) == [[[2, 32, 256], [2, 32, 256]]] * 2


def test_kernel_time_agrees_with_an_independent_join():
    mod = _independent()
    for trace, model in ((LLAMA_TRACE, LLAMA), (MIXTRAL_TRACE, MIXTRAL)):
        rows = mod.compare(str(trace), str(model))
        assert len(rows) >= 12
        for phase, group, independent, attributed, rel in rows:
            assert rel < 0.05, (trace.name, phase, group, independent, attributed)


def test_notes_name_the_departures(llama):
    text = "\n".join(llama.notes)
    assert "prefill computes the logits of 64 positions (32 per sequence)" in text
    assert "kv_cache_write is aten::cat of the whole cache" in text
    assert "attn_norm runs as 8 kernels per call" in text


def test_prediction_joins_the_same_calls(llama):
    c = compare_frame(llama, load_model(LLAMA), llama.spec).set_index(["phase", "op"])
    a = __import__("roofline").analyze(LLAMA, "h200", batch_size=2, prompt_len=32, phase="prefill").ops
    q = a[a["op"] == "q_proj"].iloc[0]
    # prefill q_proj: 2 calls (layers) at the predicted time of one; its roofline time beside it
    assert c.loc[("prefill", "q_proj"), "predicted_time_s"] == pytest.approx(2 * q["predicted_time_s"])
    assert c.loc[("prefill", "q_proj"), "roofline_time_s"] == pytest.approx(2 * q["time_s"])
    assert c.loc[("prefill", "q_proj"), "analytic_flops"] == pytest.approx(2 * 2 * 64 * 256 * 256)  # 2 x 2MKN
    # decode: 8 calls at the mean over the contexts 33..36 of a step's time
    d = (
        __import__("roofline")
        .analyze(LLAMA, "h200", batch_size=2, prompt_len=32, context_len=[33, 34, 35, 36], phase="decode")
        .ops
    )
    att = d[d["op"] == "attention"]["predicted_time_s"].mean()
    assert c.loc[("decode", "attention"), "predicted_time_s"] == pytest.approx(8 * att)
    assert c.loc[("decode", "lm_head"), "predicted_time_s"] == pytest.approx(
        4 * d[d["op"] == "lm_head"]["predicted_time_s"].mean()
    )
    assert c.loc[("decode", "lm_head"), "roofline_time_s"] == pytest.approx(
        4 * d[d["op"] == "lm_head"]["time_s"].mean()
    )
    assert set(c["measured_bound"]) <= {"compute", "memory", "overhead", "latency", "communication", "unknown"}


# ---------------------------------------------------------------------------------------------- tiny mixtral


def test_moe_rows(mixtral):
    ops = mixtral.ops.set_index(["phase", "op"])
    assert "gate_proj" not in set(mixtral.ops["op"])
    # per layer: the router GEMM; two grouped GEMMs (gate_up, down), each a prepare kernel + the GEMM
    k = mixtral.kernels
    grouped = k[(k["op"] == "experts") & (k["outer_op"] == "aten::_grouped_mm")]
    assert len(grouped[grouped["phase"] == "prefill"]) == 2 * 2 * 2
    assert ops.loc[("decode", "experts"), "calls"] == 8
    router = k[(k["op"] == "router") & (k["phase"] == "prefill")]
    assert "aten::topk" in set(router["outer_op"]) and "aten::linear" in set(router["outer_op"])
    assert mixtral.summary["attributed_share"] > 0.97
    assert any("expert GEMM kernels (aten::_grouped_mm)" in n for n in mixtral.notes)


def test_routing_is_the_routers_and_dispatch_the_experts(mixtral):
    """By shapes alone, as by module ranges: softmax, top-k and its renormalisation are the router's;
    what follows the top-k (sorting tokens by expert, histogram, index bookkeeping) is the experts'."""
    k = mixtral.kernels
    ops_of = k.groupby("outer_op")["op"].agg(lambda s: set(s))
    assert ops_of["aten::topk"] == {"router"}
    for dispatch in ("aten::sort", "aten::histc"):
        if dispatch in ops_of.index:
            assert ops_of[dispatch] == {"experts"}, dispatch
    assert "aten::sort" in ops_of.index or "aten::histc" in ops_of.index  # HF's grouped-GEMM dispatch


# ---------------------------------------------------------------------------------------------- errors, CLI


def test_a_trace_without_forward_passes_says_so():
    with pytest.raises(TraceError, match="no forward pass found in the trace"):
        attribute(DATA / "tiny_joins.json", LLAMA, spec=DATA / "tiny_gpu.yaml")


def test_cli_trace_model_table_and_json():
    r = CliRunner().invoke(main, ["trace", str(LLAMA_TRACE), "--model", str(LLAMA)])
    assert r.exit_code == 0, r.output
    assert r.output.startswith(
        "tiny-llama on h200: 1 prefill and 4 decode passes; batch 2, prompt 32, decode context 33..36"
    )
    assert "note: prefill computes the logits of 64 positions" in r.output
    r = CliRunner().invoke(main, ["trace", str(LLAMA_TRACE), "--model", str(LLAMA), "--format", "json"])
    payload = json.loads(r.output)
    assert payload["gpu"] == "h200" and payload["summary"]["forward_passes"] == {"prefill": 1, "decode": 4}
    row = next(o for o in payload["ops"] if o["phase"] == "prefill" and o["op"] == "q_proj")
    for key in ("gpu_time_s", "n_kernels", "calls", "predicted_time_s", "measured_bound", "evidence"):
        assert row[key] is not None
    assert {u["reason"] for u in payload["unattributed"]} >= {
        "after lm_head: sampling and bookkeeping outside the model's forward"
    }


def test_cli_warns_when_gpu_contradicts_the_trace():
    r = CliRunner().invoke(
        main, ["trace", str(LLAMA_TRACE), "--model", str(LLAMA), "--gpu", "h100-sxm", "--format", "csv"]
    )
    assert r.exit_code == 0
    assert r.stderr.strip() == (
        "warning: the trace was recorded on 'NVIDIA H200' (h200) but --gpu is h100-sxm; predictions use h100-sxm"
    )


def test_cli_trace_without_gpu_or_device_properties():
    r = CliRunner().invoke(main, ["trace", str(DATA / "tiny_old_format.json")])
    assert r.exit_code == 1
    assert "the trace names no device (no deviceProperties); pass --gpu" in r.output
    r = CliRunner().invoke(main, ["trace", "missing.json"])
    assert r.exit_code == 1 and r.output == (
        "Error: missing.json: no such file; pass a trace written by prof.export_chrome_trace()\n"
    )


def test_reference_model_ranges_name_ops_too():
    """The project's reference model names each record_function range like its analytic row."""
    a = attribute(DATA / "h100_decode_trace.json.gz", "examples/llama-2-7b.yaml", spec="h100-sxm")
    ops = a.ops.set_index("op")
    assert a.summary["attributed_share"] == 1.0
    assert ops.loc["q_proj", "evidence_kind"] == "module" and ops.loc["attn_norm", "evidence_kind"] == "module"
    assert ops.loc["q_proj", "calls"] == 2  # the reference's 2 layers
    assert any("run 2 layers but the model file has num_hidden_layers 32" in n for n in a.notes)


def test_kernels_frame_carries_the_recorded_shapes():
    from roofline.measure.trace import analyze_trace

    k = analyze_trace(LLAMA_TRACE, "h200").kernels
    gather = k[k["outer_op"] == "aten::embedding"].iloc[0]
    assert gather["outer_dims"] == [[1024, 256], [2, 32], [], [], []]
    assert gather["outer_types"][:2] == ["c10::BFloat16", "long int"]
    mm = k[k["cpu_op"] == "aten::mm"].iloc[0]
    assert mm["op_dims"] == [[64, 256], [256, 256]] and mm["outer_op"] == "aten::linear"
    assert mm["tid"] == 430 and mm["launch_ts_s"] < mm["ts_s"]
    sdpa = k[k["name"].str.startswith("cudnn_generated")].iloc[0]
    assert sdpa["owner_dims"][:3] == [[2, 8, 32, 32], [2, 4, 32, 32], [2, 4, 32, 32]]
    memset = k[k["kind"] == "memset"].iloc[0]
    assert memset["outer_id"] == sdpa["outer_id"] >= 0  # one SDPA call launched both
    assert np.all(k.loc[k["outer_op"].isna(), "outer_id"] == -1)


def test_profile_transformers_renders_steps_and_ops(llama):
    """What `profile --impl transformers` prints, from the tiny trace standing in for a live capture."""
    from roofline.cli import render_hf_profile

    ops = compare_frame(llama, load_model(LLAMA), llama.spec)
    text = render_hf_profile(ops, llama, [4e-3, 3e-3, 3e-3, 2e-3, 3e-3], "trace.json.gz", "table")
    lines = text.splitlines()
    assert lines[0].split() == ["phase", "passes", "wall", "per", "pass", "kernels", "per", "pass"]
    assert lines[2].split()[:4] == ["prefill", "1", "4", "ms"] and lines[3].split()[:4] == ["decode", "4", "3", "ms"]
    assert any(line.split()[:2] == ["prefill", "q_proj"] for line in lines)
    payload = json.loads(render_hf_profile(ops, llama, [4e-3, 3e-3], "t.json.gz", "json"))
    assert payload["device"] == "h200" and payload["trace"] == "t.json.gz" and len(payload["ops"]) == len(ops)


def test_profile_transformers_refuses_parallel_flags():
    r = CliRunner().invoke(main, ["profile", "examples/mixtral-8x7b.yaml", "--impl", "transformers", "--tp", "2"])
    assert r.exit_code == 2 and "--impl transformers runs on one GPU; drop --tp, --pp and --ep" in r.output


def test_cuda_graph_replays_take_the_rows_of_the_eager_pass():
    """llama-3-8b-graph: an eager prefill, one eager decode forward (the warm-up before capture), then 8
    replays of a CUDA graph of that forward, whose 239 kernels have no op and no shapes."""
    a = attribute(DATA / "h200_hf_llama3_4l_graph_trace.json.gz", DATA / "llama_3_8b_4_layers.yaml")
    k = a.kernels
    replays = k[k["evidence"] == "graph"]
    assert len(replays) == 8 * 239 and replays["correlation"].nunique() == 8
    assert list(a.passes["phase"]) == ["prefill"] + ["decode"] * 9
    ops = a.ops.set_index(["phase", "op"])
    assert ops.loc[("decode", "q_proj"), "calls"] == 9 * 4  # 9 decode forwards x 4 layers
    assert ops.loc[("decode", "lm_head"), "calls"] == 9
    assert UNATTRIBUTED not in set(k["op"])
    assert any(
        "CUDA graph replays mapped kernel by kernel onto the eager decode pass they repeat (8x)" in n for n in a.notes
    )
    assert any("a padded (static) cache" in n for n in a.notes)  # StaticCache of 265 positions


def test_a_compiled_trace():
    """llama-3-8b-compile: Inductor fuses the embedding (and each residual + norm) into Triton kernels; a
    pass starts where the compiled graph is entered; GEMMs keep their aten::mm shapes."""
    a = attribute(DATA / "h200_hf_llama3_4l_compile_trace.json.gz", DATA / "llama_3_8b_4_layers.yaml")
    assert list(a.passes["phase"]) == ["prefill"] + ["decode"] * 8
    assert a.workload["batch_size"] == 4 and a.workload["prompt_len"] == 256
    ops = a.ops.set_index(["phase", "op"])
    for op in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert ops.loc[("prefill", op), "calls"] == 4 and ops.loc[("decode", op), "calls"] == 8 * 4
    assert UNATTRIBUTED not in set(a.kernels["op"])
    assert any(n.startswith("torch.compile'd passes: a fused (Inductor) kernel is charged") for n in a.notes)


def test_a_compiled_trace_without_its_ranges_says_why_it_cannot_be_mapped():
    from dataclasses import replace

    from roofline.measure.trace import analyze_trace

    t = analyze_trace(DATA / "h200_hf_llama3_4l_compile_trace.json.gz", "h200")
    t = replace(t, kernels=t.kernels.assign(range="(none)"))
    with pytest.raises(
        TraceError, match="the kernels are torch.compile'd \\(Triton\\) and Inductor fuses the embedding gather"
    ):
        attribute(t, DATA / "llama_3_8b_4_layers.yaml")


def test_a_folder_of_rank_files(tmp_path):
    for rank in (0, 1):
        (tmp_path / f"rank{rank}.json.gz").write_bytes(LLAMA_TRACE.read_bytes())
    a = attribute(tmp_path, LLAMA)
    assert a.summary["n_ranks"] == 2 and sorted(set(a.ops["rank"])) == [0, 1]
    one = attribute(LLAMA_TRACE, LLAMA)
    both = a.ops.groupby(["phase", "op"])["gpu_time_s"].sum()
    assert np.allclose(both, 2 * one.ops.set_index(["phase", "op"])["gpu_time_s"].reindex(both.index))
    r = CliRunner().invoke(main, ["trace", str(tmp_path), "--model", str(LLAMA), "--format", "csv"])
    assert r.exit_code == 0 and r.output.startswith("rank,phase,op,")


@pytest.mark.parametrize("model", ["mixtral-8x7b.yaml", "deepseek-v2-lite.yaml"])
def test_a_dense_trace_read_with_an_moe_model_says_so_without_a_traceback(model):
    # the tiny Llama trace has no experts kernels: the expert-GEMM note has nothing to read (it raised KeyError
    # 'phase' before: an empty list selected no columns), and the layer count says the model is not this trace's
    r = CliRunner().invoke(main, ["trace", str(LLAMA_TRACE), "--model", str(ROOT / "examples" / model)])
    assert r.exit_code == 0 and r.exception is None, r.output
    assert "the trace's forward passes run 0 layers but the model file has num_hidden_layers" in r.output
