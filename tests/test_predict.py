"""The calibrated per-op prediction (roofline/predict.py): tables, fallback, classes, the step formula."""

import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import roofline
from roofline.cli import main
from roofline.errors import SpecError
from roofline.predict import (
    interp_loglog,
    interp_table,
    layer_block,
    queue_step,
    step_time,
)
from roofline.specs import parse_spec

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).parent.parent / "examples"
TINY_MODEL = str(DATA / "tiny_llama.yaml")
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def tiny_spec(measured: dict | None = None):
    raw = yaml.safe_load((DATA / "tiny_gpu.yaml").read_text())
    if measured is not None:
        raw["measured"] = copy.deepcopy(measured)
    return parse_spec(raw, "tiny-calibrated")


def flat_gemm(eff):
    return {"tokens": [1, 1000], "weight_elements": [1, 1e9], "efficiency": [[eff, eff], [eff, eff]]}


def test_interp_loglog_is_linear_in_log_space_and_clamped():
    xs, ys = np.array([1e3, 1e6]), np.array([1e9, 1e12])
    got = interp_loglog(np.array([1.0, 10**4.5, 1e6, 1e9]), xs, ys)
    # halfway in log x between 1e3 and 1e6 -> halfway in log y: 1e10.5; held at the ends
    assert got == pytest.approx([1e9, 10**10.5, 1e12, 1e12])


def test_interp_table_bilinear_in_log_space():
    table = (np.array([1.0, 100.0]), np.array([1.0, 100.0]), np.array([[0.5, 1.0], [0.25, 0.5]]))
    # corners exact; the centre (10, 10) is the geometric mean of the four: (0.5 * 1 * 0.25 * 0.5) ** 0.25 = 0.5
    got = interp_table(np.array([1.0, 100.0, 10.0, 1e6]), np.array([1.0, 1.0, 10.0, 1e6]), table)
    assert got == pytest.approx([0.5, 0.25, 0.5, 0.5])


def test_datasheet_fallback_is_roofline_with_a_kernel_minimum():
    r = roofline.analyze(TINY_MODEL, tiny_spec(), phase="decode")
    ops = r.ops
    assert (ops["prediction_source"] == "datasheet roofline").all()
    # tiny_gpu: graph_launch_overhead_us 1e4 = 0.01 s per kernel minimum; eager launch 0.1 s
    assert ops["predicted_time_s"].to_numpy() == pytest.approx(np.maximum(ops["time_s"], 0.01).to_numpy())
    assert ops["host_s"].to_numpy() == pytest.approx(np.full(len(ops), 0.1))
    # the GPU's gap before each kernel: the CUDA-graph figure, one kernel per op without calibration
    assert ops["launch_gap_s"].to_numpy() == pytest.approx(np.full(len(ops), 0.01))
    assert ops["stream_s"].to_numpy() == pytest.approx((ops["predicted_time_s"] + 0.01).to_numpy())
    r_graph = roofline.analyze(TINY_MODEL, tiny_spec(), phase="decode", cuda_graph=True)
    assert (r_graph.ops["host_s"] == 0).all()  # a replay is one launch for the whole step


def test_gemm_table_scales_the_roofline_time_and_sets_the_class():
    # efficiency 0.8: matmuls take time_s / 0.8 and keep their roofline class
    r = roofline.analyze(TINY_MODEL, tiny_spec({"gemm": {"bf16": flat_gemm(0.8)}}), phase="decode")
    mm = r.ops[r.ops["category"] == "matmul"]
    assert mm["predicted_time_s"].to_numpy() == pytest.approx(mm["time_s"].to_numpy() / 0.8)
    assert (mm["prediction_source"] == "calibrated").all()
    assert set(mm["bound"].astype(str)) == {"memory"}
    # efficiency 0.25: under half of the nearest roof -> latency
    r = roofline.analyze(TINY_MODEL, tiny_spec({"gemm": {"bf16": flat_gemm(0.25)}}), phase="decode")
    mm = r.ops[r.ops["category"] == "matmul"]
    assert mm["predicted_time_s"].to_numpy() == pytest.approx(mm["time_s"].to_numpy() * 4)
    assert set(mm["bound"].astype(str)) == {"latency"}
    other = r.ops[r.ops["category"] != "matmul"]
    assert (other["prediction_source"] == "datasheet roofline").all()


def test_gemm_table_reads_tokens_and_weight_elements_off_the_row():
    # tiny_llama q_proj: hidden 64 -> 8 heads x 8 = 64, K*N = 4096; prefill 2 x 16 = 32 tokens
    # table: efficiency 1 at 1 token, 0.5 at 1024 tokens (log-linear in tokens): 32 tokens -> 0.5 ** (5 / 10)
    table = {"tokens": [1, 1024], "weight_elements": [4096], "efficiency": [[1.0], [0.5]]}
    r = roofline.analyze(TINY_MODEL, tiny_spec({"gemm": {"bf16": table}}), phase="prefill")
    q = r.ops[r.ops["op"] == "q_proj"].iloc[0]
    assert q["flops"] == 2 * 32 * 4096
    assert q["predicted_time_s"] == pytest.approx(q["time_s"] / 0.5**0.5)


def test_attention_and_bandwidth_tables():
    # copies reach 5 B/s below 1 kB and 10 B/s from 1 MB; decode attention at half its roofline
    measured = {
        "bandwidth_curve": {"bytes": [1e3, 1e6], "gb_per_s": [5e-9, 1e-8]},
        "attention": {
            "decode": {"kv_bytes": [1, 1e9], "flops_per_kv_byte": [0.5, 8], "efficiency": [[0.5, 0.5], [0.5, 0.5]]}
        },
    }
    r = roofline.analyze(TINY_MODEL, tiny_spec(measured), phase="decode")
    ops = r.ops.set_index("op")
    attn = ops.loc["attention"]
    assert attn["predicted_time_s"] == pytest.approx(attn["time_s"] / 0.5)
    norm = ops.loc["attn_norm"]  # a few hundred bytes: the 5 B/s end of the curve, twice the roofline
    moved = norm["bytes_read"] + norm["bytes_written"]
    assert moved < 1e3
    assert norm["predicted_time_s"] == pytest.approx(max(moved / 5.0, norm["time_compute_s"], 0.01))
    assert norm["prediction_source"] == "calibrated"


def test_prefill_attention_is_priced_over_its_compute_roofline():
    # the prefill table's efficiency is over FLOPs / peak (roofline: compute): a 0.25 table prices the op at
    # 4 x its compute time, whatever its bytes; the kernel min (0.01 s in tiny_gpu) does not bind at this size
    table = {"roofline": "compute", "query_len": [1, 1e6], "flops_per_pair": [1, 1e9]}
    measured = {"attention": {"prefill": {**table, "efficiency": [[0.25, 0.25], [0.25, 0.25]]}}}
    attn = roofline.analyze(TINY_MODEL, tiny_spec(measured), phase="prefill").ops.set_index("op").loc["attention"]
    assert attn["time_compute_s"] != pytest.approx(attn["time_s"])  # the two rooflines differ here
    assert attn["predicted_time_s"] == pytest.approx(max(attn["time_compute_s"] / 0.25, 0.01))
    assert attn["prediction_source"] == "calibrated"


def test_a_prefill_attention_table_from_before_the_compute_roofline_is_refused():
    old = {"query_len": [1, 1e6], "flops_per_pair": [1, 1e9], "efficiency": [[0.5, 0.5], [0.5, 0.5]]}
    with pytest.raises(SpecError, match=r"attention.prefill/d64 needs 'roofline: compute'.*run roofline calibrate"):
        tiny_spec({"attention": {"prefill/d64": old}})


def test_traffic_factor_multiplies_the_memory_time_of_element_wise_ops():
    # rope's kernels move 3x the ideal bytes; at 10 B/s flat the calibrated time is 3 x bytes / 10
    measured = {"bandwidth_curve": {"bytes": [1, 1e9], "gb_per_s": [1e-8, 1e-8]}, "ops": {"rope": {"traffic": 3.0}}}
    ops = roofline.analyze(TINY_MODEL, tiny_spec(measured), phase="prefill").ops.set_index("op")
    rope = ops.loc["rope"]
    assert rope["predicted_time_s"] == pytest.approx(3 * (rope["bytes_read"] + rope["bytes_written"]) / 10)
    assert rope["bound"] == "latency"  # 3x its roofline: neither roof reached
    assert ops.loc["attn_residual", "predicted_time_s"] == pytest.approx(ops.loc["attn_residual", "time_s"])


def test_per_op_fixed_and_host_costs():
    measured = {
        "kernel_min_us": 2e4,
        "kernel_gap_us": 5e3,
        "ops": {"rope": {"fixed_us": 1e9, "host_eager_us": 3e5, "host_graph_us": 2e4, "kernels": 8}},
    }
    spec = tiny_spec(measured)
    eager = roofline.analyze(TINY_MODEL, spec, phase="decode").ops.set_index("op")
    assert eager.loc["rope", "predicted_time_s"] == pytest.approx(1000.0)  # the fixed cost wins over 67 s
    assert eager.loc["rope", "bound"] == "latency"
    assert eager.loc["rope", "host_s"] == pytest.approx(0.3)
    assert eager.loc["attn_residual", "host_s"] == pytest.approx(0.1)  # not measured: one eager launch
    assert eager.loc["attn_residual", "fixed_s"] == pytest.approx(0.02)  # kernel_min_us
    assert eager.loc["rope", "launch_gap_s"] == pytest.approx(8 * 0.005)  # 8 kernels x the measured gap
    assert eager.loc["attn_residual", "launch_gap_s"] == pytest.approx(0.005)  # one kernel
    assert eager.loc["rope", "stream_s"] == pytest.approx(1000.0 + 0.04)
    graph = roofline.analyze(TINY_MODEL, spec, phase="decode", cuda_graph=True).ops.set_index("op")
    assert graph.loc["rope", "host_s"] == 0.0


def test_overhead_when_the_host_is_slower_than_the_kernel():
    # 1e6 s of host per norm: the step is host-bound, and the norm is its overhead
    ops = roofline.analyze(TINY_MODEL, tiny_spec({"ops": {"attn_norm": {"host_eager_us": 1e12}}}), phase="decode").ops
    assert ops.set_index("op").loc["attn_norm", "bound"] == "overhead"
    # 1000 s (x 2 layers): the GPU's 20,565 s of work hide it; the norm keeps its roofline class
    ops = roofline.analyze(TINY_MODEL, tiny_spec({"ops": {"attn_norm": {"host_eager_us": 1e9}}}), phase="decode").ops
    assert ops.set_index("op").loc["attn_norm", "bound"] == "memory"


def test_summary_step_is_the_one_formula_and_shares_add_up():
    spec = tiny_spec({"gemm": {"bf16": flat_gemm(0.25)}, "kernel_min_us": 2e4})
    for cuda_graph in (False, True):
        r = roofline.analyze(TINY_MODEL, spec, cuda_graph=cuda_graph)
        s = r.summary.iloc[0]
        for phase in ("prefill", "decode"):
            ops = r.ops[r.ops["phase"] == phase]
            assert s[f"{phase}_time_s"] == pytest.approx(step_time(ops))
            assert s[f"{phase}_roofline_time_s"] == pytest.approx(float((ops["count"] * ops["time_s"]).sum()))
            shares = sum(s[f"{phase}_share_{c}"] for c in roofline.classify.BOUNDS)
            assert shares == pytest.approx(1.0)
            assert ops["share"].sum() == pytest.approx(1.0)
        assert s["decode_tokens_per_s"] == pytest.approx(s["batch_size"] / s["decode_time_s"])


def test_memory_fit_at_the_last_token_not_the_mean():
    # llama-2-7b on an A10 (24 GB): 13.48 GB of weights; KV = 2 x 32 layers x 4096 x 2 B = 524,288 B per token.
    # batch 8, prompt 512, 3000 generated: the last token holds 8 x 3512 tokens = 14.7 GB of KV -> 28.2 GB, no fit
    # (at the mean context 512 + 1500.5 it would be 8.4 GB and fit)
    r = roofline.analyze(str(EXAMPLES / "llama-2-7b.yaml"), "a10", batch_size=8, prompt_len=512, gen_tokens=3000)
    s = r.summary.iloc[0]
    assert s["kv_cache_bytes"] == pytest.approx(8 * 3512 * 524_288)
    assert not s["fits_in_memory"]
    assert s["context_len"] == pytest.approx(512 + 3001 / 2)  # the step itself stays at the mean context


def test_spec_errors_name_the_key():
    with pytest.raises(SpecError, match=r"measured\.gemm\.bf16\.tokens must be strictly increasing"):
        tiny_spec({"gemm": {"bf16": {"tokens": [8, 1], "weight_elements": [1], "efficiency": [[1], [1]]}}})
    with pytest.raises(SpecError, match=r"measured\.gemm\.bf16\.efficiency\[1\] must be a list of 2 positive numbers"):
        tiny_spec({"gemm": {"bf16": {"tokens": [1, 8], "weight_elements": [1, 2], "efficiency": [[1, 1], [1]]}}})
    with pytest.raises(SpecError, match=r"measured\.bandwidth_curve: unknown key 'gbps'"):
        tiny_spec({"bandwidth_curve": {"bytes": [1], "gbps": [1]}})
    with pytest.raises(SpecError, match=r"measured\.ops\.rope\.fixed_us: must be greater than zero"):
        tiny_spec({"ops": {"rope": {"fixed_us": -1}}})


def test_json_has_the_three_times_per_op():
    r = CliRunner().invoke(main, ["analyze", TINY_MODEL, "--gpu", str(DATA / "tiny_gpu.yaml"), "--format", "json"])
    assert r.exit_code == 0, r.output
    op = json.loads(r.stdout)["ops"][0]
    assert {"time_s", "predicted_time_s", "prediction_source", "host_s"} <= set(op)
    assert op["prediction_source"] == "datasheet roofline"


def test_shipped_h200_calibration_loads_and_is_used():
    path = Path(__file__).parent.parent / "reports" / "h200" / "calibration.yaml"
    if not path.exists():
        pytest.skip("reports/h200/calibration.yaml not committed")
    r = roofline.analyze(str(EXAMPLES / "llama-2-7b.yaml"), str(path), phase="decode")
    proj = r.ops[r.ops["op"].isin(PROJECTIONS)]
    assert (proj["prediction_source"] == "calibrated").all()
    assert (proj["predicted_time_s"] >= proj["time_s"]).all()


def test_a_10000_point_sweep_stays_fast():
    spec = tiny_spec(
        {
            "gemm": {"bf16": flat_gemm(0.5)},
            "kernel_min_us": 2e4,
            "bandwidth_curve": {"bytes": [1e3, 1e6], "gb_per_s": [5e-9, 1e-8]},
        }
    )
    start = time.perf_counter()
    r = roofline.analyze(
        TINY_MODEL, spec, batch_size=list(range(1, 101)), context_len=list(range(16, 116)), phase="decode"
    )
    assert len(r.summary) == 10_000 and not math.isnan(r.summary["decode_time_s"].iloc[-1])
    assert time.perf_counter() - start < 5.0


def simulate(host, stream, counts, block):
    """The launch queue by brute force: expand the sequence and run it op by op."""
    seq = []
    i = 0
    while i < len(counts):
        if block and i == block[0]:
            seq += [j for _ in range(int(counts[i])) for j in range(block[0], block[1])]
            i = block[1]
        else:
            seq += [i] * int(counts[i])
            i += 1
    h_done = g_done = 0.0
    for j in seq:
        h_done += host[j]  # the host has issued op j
        g_done = max(g_done, h_done) + stream[j]  # the GPU runs it once issued and free
    return g_done


def test_queue_step_matches_a_brute_force_simulation():
    # by hand: host [1, 1], GPU [3, 1], once each: op 0 issued at 1, runs to 4; op 1 issued at 2, runs 4 -> 5
    assert queue_step(np.array([[1.0, 1.0]]), np.array([[3.0, 1.0]]), np.array([1, 1]))[0] == 5.0
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(3, 9))
        counts = np.ones(n)
        a = int(rng.integers(0, n - 1))
        b = int(rng.integers(a + 1, n + 1))
        counts[a:b] = rng.integers(2, 6)
        counts[rng.integers(0, n)] = max(counts[rng.integers(0, n)], 1)
        host, stream = rng.exponential(1.0, n), rng.exponential(1.0, n)
        block = layer_block(counts)
        got = queue_step(host[None, :], stream[None, :], counts, block)[0]
        assert got == pytest.approx(simulate(host, stream, counts, block))


def test_op_tables_set_the_time_of_element_wise_ops_by_tokens_and_activation_bytes_per_token():
    # rmsnorm at efficiency 0.25 everywhere (a flat table): 4x its roofline time; the layernorm entry
    # of the same op is not used for a llama-style (RMSNorm) model; ops without a table keep the roofline
    flat = {"tokens": [1, 1e6], "act_bytes_per_token": [1, 1e9], "efficiency": [[0.25, 0.25], [0.25, 0.25]]}
    other = {"tokens": [1, 1e6], "act_bytes_per_token": [1, 1e9], "efficiency": [[0.01, 0.01], [0.01, 0.01]]}
    measured = {"kernel_min_us": 1e-3, "op_tables": {"attn_norm/rmsnorm": flat, "attn_norm/layernorm": other}}
    ops = roofline.analyze(TINY_MODEL, tiny_spec(measured), phase="prefill").ops.set_index("op")
    norm = ops.loc["attn_norm"]
    assert norm["predicted_time_s"] == pytest.approx(norm["time_s"] / 0.25)
    assert norm["prediction_source"] == "calibrated"
    assert ops.loc["rope", "predicted_time_s"] == pytest.approx(ops.loc["rope", "time_s"])


def test_an_op_table_column_is_the_ops_width_whatever_its_token_count():
    # gpt2's LayerNorm (hidden 768) at decode batch 1 reads x (768 x 2 B) and its weight and bias (2 x 768 x 2 B),
    # writes 768 x 2 B: 6144 B moved, of which 3072 B weights. Its activation bytes per token: 3072, the
    # 768 column (3072) of a table whose other column is hidden 1600 (6400); bytes moved per token (6144)
    # would have read nearly the 1600 column
    from roofline.config import load_model

    table = {"tokens": [1, 4096], "act_bytes_per_token": [3072, 6400], "efficiency": [[0.01, 0.5], [0.01, 0.5]]}
    spec = tiny_spec({"kernel_min_us": 1e-3, "op_tables": {"attn_norm/layernorm": table}})
    gpt2 = load_model(EXAMPLES / "gpt2.yaml")
    norm = roofline.analyze(gpt2, spec, phase="decode", batch_size=1, context_len=512).ops.set_index("op")
    norm = norm.loc["attn_norm"]
    assert norm["bytes_read"] + norm["bytes_written"] == 6144 and norm["weight_bytes_read"] == 3072
    assert norm["predicted_time_s"] == pytest.approx(norm["time_s"] / 0.01)


def test_op_tables_of_the_old_axis_are_refused_with_the_fix():
    old = {"tokens": [1, 10], "bytes_per_token": [1, 5], "efficiency": [[0.1, 0.1], [0.1, 0.1]]}
    with pytest.raises(SpecError, match=r"op_tables\.rope has bytes_per_token.*run roofline calibrate again"):
        tiny_spec({"op_tables": {"rope": old}})


def test_op_table_is_interpolated_in_log_space_on_its_two_axes():
    # efficiency 0.1 at 1 token, 0.4 at 10,000 tokens (any bytes per token): at 100 tokens, halfway in
    # log tokens, log-linear interpolation gives sqrt(0.1 * 0.4) = 0.2
    table = {"tokens": [1, 10000], "act_bytes_per_token": [1, 1e9], "efficiency": [[0.1, 0.1], [0.4, 0.4]]}
    spec = tiny_spec({"kernel_min_us": 1e-3, "op_tables": {"rope": table}})
    r = roofline.analyze(TINY_MODEL, spec, phase="prefill", batch_size=1, prompt_len=100)
    rope = r.ops.set_index("op").loc["rope"]
    assert rope["predicted_time_s"] == pytest.approx(rope["time_s"] / 0.2)


def test_op_variants_follow_the_family_and_the_vocabulary_shard():
    from roofline.config import load_model
    from roofline.predict import op_variants

    gpt2 = op_variants(load_model(EXAMPLES / "gpt2.yaml"))
    assert gpt2["attn_norm"] == "layernorm" and gpt2["act"] == "plain"
    assert gpt2["lm_head"] == "unaligned"  # 50257 is odd
    llama = op_variants(load_model(EXAMPLES / "llama-2-7b.yaml"), tp=2)
    assert llama["attn_norm"] == "rmsnorm" and llama["act"] == "gated"
    assert "lm_head" not in llama  # 32000 / 2 = 16000, a multiple of 8
    assert op_variants(load_model(EXAMPLES / "llama-2-7b.yaml"), tp=128)["lm_head"] == "unaligned"  # 250


def test_unaligned_lm_head_uses_the_unaligned_gemm_table():
    measured = {"gemm": {"bf16": flat_gemm(0.5), "bf16/unaligned": flat_gemm(0.05)}}
    ops = roofline.analyze(str(EXAMPLES / "gpt2.yaml"), tiny_spec(measured), phase="decode").ops.set_index("op")
    assert ops.loc["lm_head", "predicted_time_s"] == pytest.approx(ops.loc["lm_head", "time_s"] / 0.05)
    assert ops.loc["q_proj", "predicted_time_s"] == pytest.approx(ops.loc["q_proj", "time_s"] / 0.5)


def test_op_variants_name_the_biased_projections_as_transformer_adds_them():
    from roofline.config import load_model
    from roofline.predict import biased_ops, op_variants

    # gpt2: every linear; qwen2: q/k/v only; gpt-oss: router and experts (and its attention_bias q/k/v/o);
    # llama: none; deepseek (MLA, attention_bias false): none
    # (names an architecture does not have, such as gpt2's gate_proj or a fused qkv_proj, match no row)
    qkv = {"qkv_proj", "q_proj", "k_proj", "v_proj"}
    gpt2 = set(biased_ops(load_model(EXAMPLES / "gpt2.yaml")))
    assert gpt2 == qkv | {"o_proj", "gate_up_proj", "gate_proj", "up_proj", "down_proj"}
    assert set(biased_ops(load_model(EXAMPLES / "qwen2.5-7b.yaml"))) == qkv
    assert set(biased_ops(load_model(EXAMPLES / "gpt-oss-20b.yaml"))) == qkv | {"o_proj", "router", "experts"}
    assert op_variants(load_model(EXAMPLES / "llama-2-7b.yaml"))["biased"] == ()
    assert biased_ops(load_model(EXAMPLES / "deepseek-v2-lite.yaml")) == ()


def test_biased_projections_pay_the_bias_table_over_their_own_table():
    # plain table 0.5, bias table 0.4 (any shape): a biased projection takes its own table's time x 0.5 / 0.4;
    # down_proj reads tall_k (0.25) and pays the same factor; lm_head (no bias in gpt2) does not
    measured = {"gemm": {"bf16": flat_gemm(0.5), "bf16/tall_k": flat_gemm(0.25), "bf16/bias": flat_gemm(0.4)}}
    ops = roofline.analyze(str(EXAMPLES / "gpt2.yaml"), tiny_spec(measured), phase="decode").ops.set_index("op")
    for name, own in (("q_proj", 0.5), ("up_proj", 0.5), ("down_proj", 0.25)):
        assert ops.loc[name, "predicted_time_s"] == pytest.approx(ops.loc[name, "time_s"] / own * 0.5 / 0.4), name
    assert ops.loc["lm_head", "predicted_time_s"] == pytest.approx(ops.loc["lm_head", "time_s"] / 0.5)
    # a bias table that reads faster than the plain one is noise: no factor under 1
    measured["gemm"]["bf16/bias"] = flat_gemm(0.6)
    ops = roofline.analyze(str(EXAMPLES / "gpt2.yaml"), tiny_spec(measured), phase="decode").ops.set_index("op")
    assert ops.loc["q_proj", "predicted_time_s"] == pytest.approx(ops.loc["q_proj", "time_s"] / 0.5)
    # llama has no bias: the table changes nothing
    ops = roofline.analyze(str(EXAMPLES / "llama-2-7b.yaml"), tiny_spec(measured), phase="decode").ops
    q = ops.set_index("op").loc["q_proj"]
    assert q["predicted_time_s"] == pytest.approx(q["time_s"] / 0.5)


def test_op_table_errors_name_the_key():
    bad = {"tokens": [1, 10], "act_bytes_per_token": [5, 1], "efficiency": [[0.1, 0.1], [0.1, 0.1]]}
    with pytest.raises(SpecError, match=r"op_tables\.rope\.act_bytes_per_token must be strictly increasing"):
        tiny_spec({"op_tables": {"rope": bad}})


def test_a_syncing_op_serialises_host_and_gpu_in_the_queue():
    # three ops, host 1 s each, GPU 2 s each; op 1 syncs. Plain queue: 1 + 2 + 2 + 2 = 7 s.
    # With op 1 holding host and GPU for its host + GPU time (3 s): op 0 ends on the GPU at 3; op 1 starts at
    # max(host 1, GPU 3) = 3 and holds both until 3 + 3 = 6; op 2 is issued at 7 and ends at 9.
    host = np.array([[1.0, 1.0, 1.0]])
    stream = np.array([[2.0, 2.0, 2.0]])
    counts = np.ones(3)
    assert queue_step(host, stream, counts)[0] == pytest.approx(7.0)
    assert queue_step(host, stream, counts, sync=np.array([0.0, 3.0, 0.0]))[0] == pytest.approx(9.0)


def test_sync_simulation_equals_the_closed_form_without_syncs():
    rng = np.random.default_rng(3)
    host, stream = rng.uniform(0, 1, (4, 6)), rng.uniform(0, 1, (4, 6))
    counts = np.array([1, 3, 3, 3, 1, 1], float)
    from roofline.predict import _simulate_queue

    closed = queue_step(host, stream, counts, (1, 4))
    assert _simulate_queue(host, stream, counts, (1, 4), np.zeros((4, 6))) == pytest.approx(closed)


def test_routed_experts_read_the_gemm_table_at_one_expert_matrix_and_its_tokens():
    # Mixtral (hidden 4096, expert width 14336, 8 experts, top 2) at decode batch 8: 16 routings over
    # 8 (1 - 0.75^8) = 7.199 active experts, 2.22 tokens each, against one 4096 x 14336 matrix (58.7M).
    # The table: efficiency 0.5 at 58.7M, 1.0 at the op's sum over experts (8 x 3 x 58.7M = 1.41G), any tokens;
    # and 0.25 at 1 token, 0.5 at 4 tokens for the matrix, to see the tokens read: log-linear at 2.22 tokens
    kn = 4096 * 14336
    table = {"tokens": [1, 4], "weight_elements": [kn, 24 * kn], "efficiency": [[0.25, 1.0], [0.5, 1.0]]}
    ops = roofline.analyze(
        str(EXAMPLES / "mixtral-8x7b.yaml"), tiny_spec({"gemm": {"bf16": table}}), phase="decode", batch_size=8
    ).ops.set_index("op")
    e = ops.loc["experts"]
    tokens = 16 / (8 * (1 - 0.75**8))
    eff = 0.25 * 2 ** (np.log(tokens) / np.log(4))  # log(eff) linear in log(tokens): 0.25 at 1, 0.5 at 4
    assert tokens == pytest.approx(2.2225, abs=1e-4)
    assert e["predicted_time_s"] == pytest.approx(e["time_s"] / eff)
    # a dense projection of the same model keeps its own K x N (q_proj: 4096 x 4096, under the first column)
    q = ops.loc["q_proj"]
    assert q["predicted_time_s"] == pytest.approx(q["time_s"] / interp(8, 0.25, 0.5))


def interp(tokens, low, high):
    """log-linear efficiency between 1 token (low) and 4 tokens (high), held outside."""
    t = min(max(tokens, 1), 4)
    return float(np.exp(np.log(low) + (np.log(high) - np.log(low)) * np.log(t) / np.log(4)))


def test_experts_host_cost_grows_with_the_active_experts():
    from roofline.predict import active_experts

    # 8 experts, top 2: one token reaches exactly 2; 16 tokens 8 (1 - 0.75^16) = 7.92
    assert active_experts(1, 8, 2) == pytest.approx(2.0)
    assert active_experts(16, 8, 2) == pytest.approx(8 * (1 - 0.75**16))
    entry = {"host_eager_us": 100.0, "host_per_active_expert_us": 10.0, "active_experts": 2.0, "syncs": 8}
    spec = tiny_spec({"ops": {"experts": entry}})
    mix = str(EXAMPLES / "mixtral-8x7b.yaml")
    one = roofline.analyze(mix, spec, phase="decode", batch_size=1).ops.set_index("op")
    many = roofline.analyze(mix, spec, phase="decode", batch_size=16).ops.set_index("op")
    assert one.loc["experts", "host_s"] == pytest.approx(100e-6)
    assert many.loc["experts", "host_s"] == pytest.approx((100 + 10 * (8 * (1 - 0.75**16) - 2)) * 1e-6)
    assert one.loc["experts", "sync_s"] > 0


def test_the_expert_loop_counts_the_experts_the_weight_bytes_read_at_every_ep():
    from roofline.predict import active_experts

    # Mixtral (8 experts, top 2) over ep GPUs at a step of 16 sequences: each GPU holds 8 / ep experts and takes
    # 16 / ep tokens; all 16 tokens route over all 8 experts, so a GPU's experts get tokens with probability
    # 1 - 0.75^16 each: 8 / ep x 0.99. The loop's count and the bytes formulas.experts reads agree. Before
    # stop 15 the loop computed 8 / ep x (1 - (1 - 2 ep / 8)^16): 0 experts with tokens at ep 8, 2 at ep 4.
    assert active_experts(2, 1, 2, ep=8) == pytest.approx(1 - 0.75**16)
    assert active_experts(4, 2, 2, ep=4) == pytest.approx(2 * (1 - 0.75**16))
    entry = {"host_eager_us": 100.0, "host_per_active_expert_us": 10.0, "active_experts": 2.0, "syncs": 8}
    spec = tiny_spec({"ops": {"experts": entry}})
    mix = str(EXAMPLES / "mixtral-8x7b.yaml")
    per_expert = None  # one expert's weight bytes, from ep 1
    for ep in (1, 2, 4, 8):
        a = roofline.analyze(mix, spec, phase="decode", batch_size=16, tp=1, ep=ep).ops.set_index("op").loc["experts"]
        touched = 8 / ep * (1 - 0.75**16)
        per_expert = per_expert or a["weight_bytes_read"] / touched
        assert a["weight_bytes_read"] == pytest.approx(touched * per_expert)
        # host: the base part (100 - 2 x 10 us, scaled to the 8 / ep experts the loop walks) + 10 us per active one
        assert a["host_s"] == pytest.approx((80 / ep + 10 * touched) * 1e-6)


def test_a_graph_step_pays_the_replay_launch_once_before_its_first_op():
    spec = tiny_spec({"kernel_min_us": 1e3, "kernel_gap_us": 1e-9, "graph_replay_us": 5e5})
    graph = roofline.analyze(TINY_MODEL, spec, phase="decode", cuda_graph=True, batch_size=[1, 2])
    ops = graph.ops
    first = ops.groupby("point")["host_s"].first()
    assert first.to_numpy() == pytest.approx([0.5, 0.5])  # 5e5 us on the first op of each point
    assert ops["host_s"].sum() == pytest.approx(1.0)  # and nowhere else
    stream = (ops["count"] * ops["stream_s"]).groupby(ops["point"]).sum().to_numpy()
    steps = graph.summary["decode_time_s"].to_numpy()
    assert steps == pytest.approx(0.5 + stream)  # the launch, then the GPU runs every op back to back


def test_weight_only_8_bit_projections_read_their_own_gemm_table():
    # weights int8 with bf16 activations: the seven projections (1-byte weights, bf16 compute) take
    # gemm.int8/weight_only; lm_head (16-bit weights) keeps gemm.bf16; fp8 weights have no table here and keep bf16
    measured = {"gemm": {"bf16": flat_gemm(0.5), "int8/weight_only": flat_gemm(0.1)}}
    spec = tiny_spec(measured)
    ops = roofline.analyze(TINY_MODEL, spec, phase="decode", weight_dtype="int8").ops.set_index("op")
    for name in PROJECTIONS:
        assert ops.loc[name, "predicted_time_s"] == pytest.approx(ops.loc[name, "time_s"] / 0.1), name
    assert ops.loc["lm_head", "predicted_time_s"] == pytest.approx(ops.loc["lm_head", "time_s"] / 0.5)
    fp8 = roofline.analyze(TINY_MODEL, spec, phase="decode", weight_dtype="fp8").ops.set_index("op")
    assert fp8.loc["q_proj", "predicted_time_s"] == pytest.approx(fp8.loc["q_proj", "time_s"] / 0.5)
    # W8A8 fp8 computes in fp8: gemm.fp8 where measured, never a weight-only table
    tables = {**measured["gemm"], "fp8/weight_only": flat_gemm(0.1), "fp8": flat_gemm(0.4)}
    w8a8 = roofline.analyze(
        TINY_MODEL, tiny_spec({"gemm": tables}), phase="decode", weight_dtype="fp8", act_dtype="fp8"
    ).ops.set_index("op")
    assert w8a8.loc["q_proj", "predicted_time_s"] == pytest.approx(w8a8.loc["q_proj", "time_s"] / 0.4)


def test_an_fp8_kv_cache_reads_its_own_decode_attention_table():
    table = {"kv_bytes": [1, 1e9], "flops_per_kv_byte": [0.5, 8], "efficiency": [[0.5, 0.5], [0.5, 0.5]]}
    measured = {"attention": {"decode": table, "decode/kv_fp8": {**table, "efficiency": [[0.05, 0.05], [0.05, 0.05]]}}}
    spec = tiny_spec({"gemm": {"bf16": flat_gemm(0.5)}, **measured})
    fp8 = roofline.analyze(TINY_MODEL, spec, phase="decode", kv_dtype="fp8").ops.set_index("op")
    assert fp8.loc["attention", "predicted_time_s"] == pytest.approx(fp8.loc["attention", "time_s"] / 0.05)
    bf16 = roofline.analyze(TINY_MODEL, spec, phase="decode").ops.set_index("op")
    assert bf16.loc["attention", "predicted_time_s"] == pytest.approx(bf16.loc["attention", "time_s"] / 0.5)
    with pytest.raises(SpecError, match=r"unknown key 'decode/kv_int8'.*decode/kv_fp8"):
        tiny_spec({"attention": {"decode/kv_int8": table}})


def test_8_bit_projections_pay_their_measured_extra_host_cost_in_eager_steps_only():
    # projection_host_us: 30 us more per weight-only int8 projection call; lm_head (16-bit) and the other ops
    # keep theirs, and a CUDA graph has no per-op host cost at all
    measured = {"gemm": {"bf16": flat_gemm(0.5)}, "projection_host_us": {"int8/weight_only": 30.0, "fp8": 50.0}}
    spec = tiny_spec(measured)
    base = roofline.analyze(TINY_MODEL, spec, phase="decode").ops.set_index("op")
    int8 = roofline.analyze(TINY_MODEL, spec, phase="decode", weight_dtype="int8").ops.set_index("op")
    for name in PROJECTIONS:
        assert int8.loc[name, "host_s"] == pytest.approx(base.loc[name, "host_s"] + 30e-6), name
    assert int8.loc["lm_head", "host_s"] == base.loc["lm_head", "host_s"]
    assert int8.loc["attn_norm", "host_s"] == base.loc["attn_norm", "host_s"]
    w8a8 = roofline.analyze(TINY_MODEL, spec, phase="decode", weight_dtype="fp8", act_dtype="fp8").ops.set_index("op")
    assert w8a8.loc["q_proj", "host_s"] == pytest.approx(base.loc["q_proj", "host_s"] + 50e-6)
    fp8_weights = roofline.analyze(TINY_MODEL, spec, phase="decode", weight_dtype="fp8").ops.set_index("op")
    assert fp8_weights.loc["q_proj", "host_s"] == base.loc["q_proj", "host_s"]  # no fp8/weight_only figure given
    graph = roofline.analyze(TINY_MODEL, spec, phase="decode", weight_dtype="int8", cuda_graph=True).ops
    assert (graph.set_index("op").loc[PROJECTIONS, "host_s"] == 0).all()
    with pytest.raises(SpecError, match=r"projection_host_us: unknown key 'int4'"):
        tiny_spec({"projection_host_us": {"int4": 1.0}})
