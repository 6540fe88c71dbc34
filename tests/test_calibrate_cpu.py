"""The kernel-model part of roofline calibrate that needs no GPU: the roofline the efficiencies are
taken against, grid filling, per-op costs from a profile, and a calibrated spec that loads and is used."""

from pathlib import Path

import pandas as pd
import pytest

import roofline
from roofline.formulas import flash_attention, linear
from roofline.measure.calibrate import (
    _cost_row,
    _fill,
    _roofline_s,
    build_spec,
    op_costs,
    step_tail_s,
    write_spec,
)
from roofline.specs import load_spec, resolve_spec_path
from roofline.validate import load_mapping

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_roofline_of_a_gemm_is_classify_formula():
    spec = load_spec("h200")  # datasheet: bf16 989.4 TFLOP/s, 4800 GB/s
    # decode GEMV 1 x 4096 x 4096 bf16: 33,554,432 B of weights + 8192 in + 8192 out = 33,570,816 B -> 6.994 us
    # prefill 4096 x 4096 x 4096: 2 * 4096^3 = 1.374e11 FLOP / 989.4e12 = 138.9 us (bytes: 100.7 MB -> 21 us)
    t = _roofline_s(
        spec,
        [
            _cost_row(linear(1, 4096, 4096, "bf16", "bf16"), "bf16"),
            _cost_row(linear(4096, 4096, 4096, "bf16", "bf16"), "bf16"),
        ],
    )
    assert t[0] == pytest.approx(33_570_816 / 4800e9)
    assert t[1] == pytest.approx(2 * 4096**3 / 989.4e12)


def test_roofline_of_decode_attention_counts_the_cache():
    spec = load_spec("h200")
    # batch 8, 8 KV heads of 128, 4096 cached: K+V = 2 * 8 * 8 * 4096 * 128 * 2 B = 134,217,728 B; q and out 2 * 8 * 32 * 128 * 2
    cost = flash_attention(8, 1, 4096, 4096, 32, 8, 128, "bf16", "bf16", True)
    assert cost.kv_bytes_read == 134_217_728
    t = _roofline_s(spec, [_cost_row(cost, "bf16")])[0]
    assert t == pytest.approx((134_217_728 + 2 * 8 * 32 * 128 * 2) / 4800e9)


def test_fill_takes_the_nearest_measured_cell_in_the_row_then_the_column():
    assert _fill([[0.5, None, 0.9], [None, None, None], [0.1, 0.2, None]]) == [
        [0.5, 0.5, 0.9],  # ties go to the left neighbour
        [0.5, 0.5, 0.9],  # an empty row takes the column's nearest
        [0.1, 0.2, 0.2],
    ]


def test_op_costs_scale_host_spans_to_the_measured_steps():
    # ops per step: a (2 occurrences, span 10 us, kernels 2 us), b (1, span 30 us, kernels 4 us), c (1, span 5 us,
    # no kernel: left out of the table, but its span is host time of the step)
    # spans add up to 2 * 10 + 30 + 5 = 55 us; the eager step measured 110 us -> host scale 2
    # kernels add up to 2 * 2 + 4 = 8 us; the graph replay measured 12 us -> graph scale 1.5
    ops = pd.DataFrame(
        {
            "op": ["a", "b", "c"],
            "calls": [2, 1, 1],
            "span_s": [10e-6, 30e-6, 5e-6],
            "gpu_time_s": [2e-6, 4e-6, 0.0],
            "n_kernels": [1.0, 3.0, 0.0],
        }
    )
    step = {"eager_step_ref_s": 110e-6, "graph_step_ref_s": 12e-6}
    got = op_costs(ops, step)
    assert set(got) == {"a", "b"}
    assert got["a"] == {"fixed_us": 2.0, "host_eager_us": 20.0, "host_graph_us": 3.0, "kernels": 1.0}
    assert got["b"]["host_eager_us"] == pytest.approx(60.0) and got["b"]["host_graph_us"] == pytest.approx(6.0)
    no_graph = op_costs(ops, {"eager_step_ref_s": 110e-6, "graph_step_ref_s": None})
    assert no_graph["b"]["host_graph_us"] == 4.0  # no replay measured: the kernels alone


def test_op_costs_leave_the_steps_gpu_tail_out_of_the_host_costs():
    # a host-bound step ends on the GPU time of its last op after its launch (a 40 us head): predict.py's queue
    # adds that tail to the host costs, so they add up to the step less it. Spans 2 x 10 + 20 = 40 us; step
    # 120 us - tail 40 us = 80 us of host -> scale 2: a 20 us, head 40 us (without the tail: 30 and 60)
    ops = pd.DataFrame(
        {
            "op": ["a", "lm_head"],
            "calls": [2, 1],
            "span_s": [10e-6, 20e-6],
            "gpu_time_s": [2e-6, 40e-6],
            "n_kernels": [1.0, 1.0],
        }
    )
    got = op_costs(ops, {"eager_step_ref_s": 120e-6, "graph_step_ref_s": None})
    assert got["a"]["host_eager_us"] == pytest.approx(20.0) and got["lm_head"]["host_eager_us"] == pytest.approx(40.0)
    assert step_tail_s(ops) == 40e-6 and step_tail_s(ops.iloc[:0]) == 0.0


def test_a_reference_of_more_layers_than_its_model_has_runs_the_models():
    # the op-cost models were timed with the layers asked for and profiled with the model's (stop 11)
    from roofline.config import Workload
    from roofline.measure.calibrate import table_model
    from roofline.measure.reference import build_reference

    one = table_model("gpt2", 64)
    w = Workload(batch_size=(1,), prompt_len=(8,), context_len=(8,), phase="decode")
    assert build_reference(one, w, layers=2, device="cpu").layers == 1
    assert build_reference(table_model("gpt2", 64, layers=2), w, layers=2, device="cpu").layers == 2


def test_a_calibrated_spec_with_a_kernel_model_round_trips(tmp_path):
    shipped = load_mapping(resolve_spec_path("h200"), "hardware spec")
    measured = {
        "peak_tflops": {"bf16": 800.0},
        "mem_bandwidth_gb_per_s": 4200.0,
        "kernel_min_us": 2.0,
        "bandwidth_curve": {"bytes": [4096, 1_073_741_824], "gb_per_s": [3.0, 4000.0]},
        "gemm": {
            "bf16": {
                "tokens": [1, 16384],
                "weight_elements": [589_824, 525_336_576],
                "efficiency": [[0.3, 0.9], [0.8, 0.95]],
            }
        },
        "ops": {"rope": {"fixed_us": 12.0, "host_eager_us": 80.0, "host_graph_us": 14.0, "kernels": 8}},
        "conditions": {"gpu": "NVIDIA H200", "date": "2026-12-01T00:00:00Z"},
    }
    path = write_spec(build_spec(shipped, measured, "made up for this test"), tmp_path / "h200-cal.yaml")
    spec = load_spec(path)
    assert spec.measured_kernels["kernel_min_s"] == pytest.approx(2e-6)
    assert spec.measured_kernels["ops"]["rope"]["host_eager_s"] == pytest.approx(80e-6)
    r = roofline.analyze(str(EXAMPLES / "llama-2-7b.yaml"), spec, phase="decode")
    ops = r.ops.set_index("op")
    assert (r.ops["prediction_source"] == "calibrated").all()
    assert ops.loc["rope", "predicted_time_s"] == pytest.approx(12e-6)
    assert ops.loc["rope", "host_s"] == pytest.approx(80e-6)
    # q_proj at 1 token, 16.8M weight elements: between the table's columns in log space
    assert ops.loc["q_proj", "predicted_time_s"] > ops.loc["q_proj", "time_s"] / 0.9


def test_calibrate_without_a_gpu_says_so():
    from click.testing import CliRunner

    from roofline.cli import main

    r = CliRunner().invoke(main, ["calibrate", "--output", "x.yaml"])
    assert r.exit_code == 1 and "no CUDA GPU" in r.output


def test_operands_rotate_through_copies_larger_than_the_l2():
    from roofline.measure.calibrate import COLD_BYTES, copies_for, rotating

    assert copies_for(33.6e6) == 8  # a 4096 x 4096 bf16 weight: 8 copies = 269 MB > 256 MB
    assert copies_for(1e9) == 1 and copies_for(1e3) == 64 and copies_for(1e3, cap=16) == 16
    assert 8 * 33.6e6 >= COLD_BYTES
    seen = []
    fn = rotating(lambda a, b: seen.append(a + b), [(1, 10), (2, 20), (3, 30)])
    for _ in range(4):
        fn()
    assert seen == [11, 22, 33, 11]


def test_kernel_gap_is_the_replay_minus_its_kernels_per_kernel():
    from roofline.measure.calibrate import kernel_gap_s

    # 2 ops per step: a (2 occurrences x 1 kernel) and b (1 x 3 kernels) = 5 kernels; 100 us of kernels
    # replayed in 104 us -> 0.8 us per kernel
    ops = pd.DataFrame({"n_kernels": [1.0, 3.0], "calls": [2, 1]})
    assert kernel_gap_s(ops, {"graph_step_ref_s": 104e-6, "kernel_time_ref_s": 100e-6}) == pytest.approx(0.8e-6)
    assert kernel_gap_s(ops, {"graph_step_ref_s": None, "kernel_time_ref_s": 100e-6}) is None


def test_step_times_are_measured_in_a_fresh_process():
    # the child builds the same reference and times it: a positive eager step per phase, no graph on the
    # CPU; a job that cannot run comes back as an error line, the jobs after it still run
    from roofline.config import Workload
    from roofline.measure.calibrate import table_model
    from roofline.measure.steptime import time_steps

    m = table_model("llama", 256)
    ok = {"config": m, "workload": Workload(batch_size=(2,), prompt_len=(8,), phase="prefill"), "layers": 1}
    ok.update(device="cpu", timing_iters=2)
    bad = dict(ok, workload=Workload(batch_size=(1,), prompt_len=(8,), phase="prefill", weight_dtype="int4"))
    first, second, third = time_steps([ok, bad, ok])
    assert first["prefill"]["eager_s"] > 0 and first["prefill"]["graph_s"] is None
    assert "int4" in second["error"]
    assert third["prefill"]["eager_s"] > 0
    # rounds: the jobs again, round after round, in the same child; the fastest round per job
    best, failed = time_steps([ok, bad], rounds=2)
    assert best["prefill"]["eager_s"] > 0 and "int4" in failed["error"]


def test_prefill_attention_tables_are_the_compute_roofline_over_the_measured_time(monkeypatch):
    # every cell timed at 1 ms (a stand-in timer on the CPU): efficiency = FLOPs / peak / 1 ms, MHA and GQA 4
    # merged by their geometric mean (the same compute roofline: the same figure); one row per query length,
    # one column per batch x heads. Stop 10's review reused the row's name for a cell's cost and broke this
    # loop on the GPU (AttributeError); no CPU test ran it
    from roofline.formulas import causal_pairs, flash_attention
    from roofline.measure import calibrate as C
    from roofline.specs import load_spec

    monkeypatch.setattr(C, "PREFILL_LENS", (128, 256))
    monkeypatch.setattr(C, "PREFILL_BATCH_HEADS", (32, 64))
    monkeypatch.setattr(C, "kernel_time_s", lambda fn, repeats=10: (fn(), 1e-3)[1])
    spec = load_spec("h200")
    got = C.measure_attention_tables(spec, repeats=1, d=64, heads=8, device="cpu")["prefill"]
    assert got["roofline"] == "compute" and got["query_len"] == [128, 256]
    assert got["flops_per_pair"] == [4 * 8 * 64, 4 * 16 * 64]  # 4 b h d, b h = 32 and 64 scaled to 8 heads
    cost = flash_attention(2, 256, 256, causal_pairs(256), 8, 8, 64, "bf16", "bf16", False)
    want = C._roofline_s(spec, [C._cost_row(cost, "bf16")], "time_compute_s")[0] / 1e-3
    assert got["efficiency"][1][1] == pytest.approx(want, rel=1e-3)  # 4 significant digits


def test_calibration_models_read_four_times_the_l2_per_step():
    from roofline.measure.calibrate import COLD_L2_FACTOR, cold_vocab, table_model
    from roofline.specs import load_spec

    h200 = load_spec("h200")  # l2_cache_mb: 60 (its datasheet)
    assert COLD_L2_FACTOR == 4
    # 4 x 60e6 B / (2 B x 512) = 234375 rows, rounded up to a multiple of 128
    assert cold_vocab(h200, 512) == 234496
    assert cold_vocab(h200, 8192) == 32000  # 32000 x 8192 x 2 B = 524 MB already
    m = table_model("gpt2", 768, cold_vocab(h200, 768))
    assert m.vocab_size * 768 * 2 >= 4 * 60e6 and m.vocab_size % 128 == 0


def test_a_step_timing_job_can_leave_the_graph_out(monkeypatch, capsys):
    # steptime's child passes a job's "graph" (default True) on: False times the eager step only
    import io
    import pickle
    import types

    from roofline.measure import steptime

    seen = []
    monkeypatch.setattr(steptime, "time_steps_here", lambda *args: seen.append(args) or {"decode": {"eager_s": 1.0}})
    jobs = [{"config": None, "workload": None, "graph": False}, {"config": None, "workload": None}]
    monkeypatch.setattr("sys.stdin", types.SimpleNamespace(buffer=io.BytesIO(pickle.dumps(jobs))))
    steptime.main()
    assert [args[-1] for args in seen] == [False, True]
    assert capsys.readouterr().out.count('{"decode"') == 2


def test_projection_host_costs_are_the_step_difference_per_projection_from_eager_timings_only(monkeypatch):
    # the small model (2 layers x 7 projections = 14 per step) in bf16 and each 8-bit format, eager only:
    # bf16 800 us; fp8 800 + 14 x 90 us -> 90 us per call; a format faster than bf16 clamps at 0
    from roofline.measure import calibrate as C
    from roofline.specs import load_spec

    steps = {"bf16": 800.0, "fp8": 800.0 + 14 * 90.0, "int8": 800.0 + 14 * 150.0, "fp8/weight_only": 790.0}
    steps["int8/weight_only"] = 800.0 + 14 * 30.0
    captured = {}

    def fake(jobs, rounds, what):
        captured["jobs"], captured["rounds"] = jobs, rounds
        names = ["bf16", *C.PROJECTION_FORMATS]
        return [{"decode": {"eager_s": steps[n] * 1e-6}} for n in names]

    monkeypatch.setattr(C, "_timed_steps", fake)
    got = C.measure_projection_host(load_spec("h200"))
    assert all(job["graph"] is False for job in captured["jobs"]) and captured["rounds"] == C.STEP_ROUNDS
    assert [job["timing_iters"] for job in captured["jobs"]] == [5] * 5  # the cases' window (steptime.STEP_WINDOW)
    assert got == pytest.approx({"fp8": 90.0, "int8": 150.0, "fp8/weight_only": 0.0, "int8/weight_only": 30.0})


def test_op_tables_on_the_cpu_have_one_column_per_width_and_one_row_per_token_count():
    from roofline.measure.calibrate import measure_op_tables
    from roofline.specs import load_spec

    tables, cond = measure_op_tables(
        load_spec("h200"), tokens=(1, 8), widths={"llama": (256, 512), "gpt2": (256,)}, repeats=1, device="cpu"
    )
    norm = tables["attn_norm/rmsnorm"]
    # RMSNorm reads and writes hidden 16-bit values per token (its weight, read once, left out): 2 * 2 * hidden
    assert norm["act_bytes_per_token"] == [4 * 256, 4 * 512]
    assert len(norm["efficiency"]) == 2 and all(len(row) == 2 for row in norm["efficiency"])
    # the cache write: one column per model, by the K and V it copies per token (read and written, 16-bit):
    # llama-256 one KV head of 64 (4 x 2 x 64 = 512 B), llama-512 one of 128 (1024 B), gpt2-256 four of 64 (2048 B)
    assert tables["kv_cache_write"]["act_bytes_per_token"] == [512, 1024, 2048]
    assert all(v > 0 for row in norm["efficiency"] for v in row)
    assert "attn_norm/layernorm" in tables and "act/plain" in tables and "act/gated" in tables
    assert cond["models"]["gpt2"] == ["calibration-gpt2-256"]
    from roofline.specs import parse_spec

    raw = load_mapping(Path(load_spec("h200").path), "spec")
    spec = parse_spec(dict(raw, measured={"op_tables": tables}), "x")
    assert "attn_norm/rmsnorm" in spec.measured_kernels["op_tables"]


def test_the_w8a8_gemm_table_times_the_reference_s_quantised_projection():
    # the table's op is the reference's QuantWeight (activations quantised per call, torch._scaled_mm); a
    # timer that returns the roofline time of the cell makes every efficiency exactly 1, and one that
    # returns twice that makes it 0.5: the table divides the fp8 roofline (1-byte weights and activations,
    # the fp8 peak) by the time, cell by cell
    import torch

    from roofline.formulas import linear
    from roofline.measure.calibrate import _cost_row, _roofline_s, linear_op, measure_gemm_table

    spec = load_spec("h200")
    make, op, act = linear_op("fp8", "cpu")
    w = make(32, 48)
    x = torch.randn(4, 32, dtype=act)
    assert op(x, w).shape == (4, 48) and op(x, w).dtype == torch.bfloat16
    seen = []

    def timer(fn, repeats):
        fn()  # the real quantised op runs
        m = len(seen) % 2 + 1  # tokens (1, 2) in order, for the one shape
        seen.append(m)
        return 2.0 * _roofline_s(spec, [_cost_row(linear(m, 32, 48, "fp8", "fp8"), "fp8")])[0]

    t = measure_gemm_table(spec, "fp8", tokens=(1, 2), shapes=((32, 48),), device="cpu", timer=timer)
    assert t == {"tokens": [1, 2], "weight_elements": [32 * 48], "efficiency": [[0.5], [0.5]]}


def test_the_weight_only_gemm_tables_time_the_reference_s_paths_against_the_weight_only_roofline():
    # weight-only int8 runs the reference's dequantising QuantWeight (int8 -> bf16, F.linear, per-channel scale);
    # fp8 runs torch._scaled_mm; both against the roofline of 1-byte weights, bf16 activations, the bf16 peak
    import torch

    from roofline.formulas import linear
    from roofline.measure.calibrate import _cost_row, _roofline_s, linear_op, measure_gemm_table

    spec = load_spec("h200")
    for dtype, impl in (("int8", "int8_dequant"), ("fp8", "fp8_scaled_mm")):
        make, op, act = linear_op(dtype, "cpu", weight_only=True)
        w = make(32, 48)
        assert w.impl == impl and act == torch.bfloat16
        x = torch.randn(3, 32, dtype=act)
        assert op(x, w).shape == (3, 48)
        assert torch.allclose(op(x, w).float(), (x @ w.dequantized().t()).float(), rtol=0.1, atol=0.1)
        roofs = [_roofline_s(spec, [_cost_row(linear(m, 32, 48, dtype, "bf16"), "bf16")])[0] for m in (1, 2)]
        calls = []

        def timer(fn, repeats, roofs=roofs, calls=calls):
            fn()
            calls.append(1)
            return 4.0 * roofs[(len(calls) - 1) % 2]

        t = measure_gemm_table(
            spec, dtype, tokens=(1, 2), shapes=((32, 48),), device="cpu", timer=timer, weight_only=True
        )
        assert t == {"tokens": [1, 2], "weight_elements": [32 * 48], "efficiency": [[0.25], [0.25]]}
    # the weight-only roofline is not the W8A8 one: 16-bit activations, the bf16 peak (half fp8's)
    wo = _roofline_s(spec, [_cost_row(linear(4096, 4096, 4096, "int8", "bf16"), "bf16")])[0]
    w8a8 = _roofline_s(spec, [_cost_row(linear(4096, 4096, 4096, "int8", "int8"), "int8")])[0]
    assert wo == pytest.approx(2 * w8a8, rel=1e-3)  # compute-bound at 4096 tokens: bf16 peak ~ half the int8 peak


def test_the_bias_gemm_table_times_f_linear_with_a_bias_against_the_biased_roofline():
    # the op runs F.linear(x, W, b); the roofline counts the bias's 2 bytes per output
    # column, so a timer returning twice the biased roofline gives 0.5 everywhere; 8-bit tables refuse a bias
    import torch

    from roofline.formulas import linear
    from roofline.measure.calibrate import _cost_row, _roofline_s, measure_gemm_table

    spec = load_spec("h200")
    outputs = []

    def timer(fn, repeats):
        outputs.append(fn())
        m = outputs[-1].shape[0]
        return 2.0 * _roofline_s(spec, [_cost_row(linear(m, 32, 48, "bf16", "bf16", bias=True), "bf16")])[0]

    t = measure_gemm_table(spec, tokens=(1, 2), shapes=((32, 48),), device="cpu", timer=timer, bias=True)
    assert t == {"tokens": [1, 2], "weight_elements": [32 * 48], "efficiency": [[0.5], [0.5]]}
    assert [o.shape for o in outputs] == [torch.Size([1, 48]), torch.Size([2, 48])]
    biased = linear(1, 32, 48, "bf16", "bf16", bias=True)
    assert biased.bytes_read - linear(1, 32, 48, "bf16", "bf16").bytes_read == 48 * 2
    with pytest.raises(ValueError, match="16-bit projections only"):
        measure_gemm_table(spec, "fp8", tokens=(1,), shapes=((32, 48),), device="cpu", timer=timer, bias=True)


def test_projection_host_cost_is_the_eager_step_difference_per_projection(monkeypatch):
    # the small model's eager step in bf16 and in each 8-bit format, from a fresh process (faked here):
    # 2 layers x 7 projections = 14 calls per step; a format 1.4 ms slower costs 100 us more per call
    from roofline.measure import calibrate, steptime

    seen = []

    def fake_time_steps(jobs, rounds=1):
        jobs = list(jobs) * rounds  # as time_steps runs them: round after round
        seen.extend((j["workload"].weight_dtype, j["workload"].act_dtype, j["layers"]) for j in jobs)
        extra = {("bf16", "bf16"): 0.0, ("fp8", "fp8"): 1.4e-3, ("int8", "int8"): 0.7e-3, ("fp8", "bf16"): 1.4e-3,
                 ("int8", "bf16"): -1e-6}  # fmt: skip
        # a host episode doubles every step of the second round: the fastest round is kept
        results = [
            {"decode": {"eager_s": (800e-6 + extra[(j["workload"].weight_dtype, j["workload"].act_dtype)])
                        * (2.0 if 5 <= i < 10 else 1.0)}}
            for i, j in enumerate(jobs)
        ]  # fmt: skip
        return steptime.fastest_rounds(results, len(jobs) // rounds)

    monkeypatch.setattr(steptime, "time_steps", fake_time_steps)
    got = calibrate.measure_projection_host(load_spec("h200"), rounds=3)
    assert got == {"fp8": 100.0, "int8": 50.0, "fp8/weight_only": 100.0, "int8/weight_only": 0.0}  # noise clamps at 0
    assert seen[0] == ("bf16", "bf16", 2) and len(seen) == 15 and seen[5] == seen[0]  # interleaved rounds
    # a part without fp8 times the int8 formats only
    seen.clear()
    assert set(calibrate.measure_projection_host(load_spec("a100-80gb-sxm"), rounds=3)) == {"int8", "int8/weight_only"}


def test_fastest_rounds_keeps_each_job_s_fastest_round_and_its_first_error():
    from roofline.measure.steptime import fastest_rounds

    a1 = {"decode": {"eager_s": 2.0, "graph_s": 0.5, "graph_pipelined_s": 0.4, "batch_size": 1}}
    b1 = {"decode": {"eager_s": 3.0, "graph_s": None, "graph_pipelined_s": None, "batch_size": 1}}
    a2 = {"decode": {"eager_s": 1.5, "graph_s": 0.6, "graph_pipelined_s": 0.3, "batch_size": 1}}
    b2 = {"error": "out of memory", "out_of_memory": True}
    got = fastest_rounds([a1, b1, a2, b2], 2)
    rounds = [2.0, 1.5]  # each round's eager step, in order, beside the fastest
    assert got[0] == {
        "decode": {"eager_s": 1.5, "graph_s": 0.5, "graph_pipelined_s": 0.3, "batch_size": 1, "eager_rounds_s": rounds}
    }
    assert got[1] == b2
    one = fastest_rounds([a1, b1], 2)  # one round: as measured
    assert one == [
        {"decode": dict(a1["decode"], eager_rounds_s=[2.0])},
        {"decode": dict(b1["decode"], eager_rounds_s=[3.0])},
    ]


def test_the_gpt2_style_variant_host_costs_make_its_own_step_add_up():
    # shared ops (priced with the llama-style run's figures): q_proj 2 calls x 20 us = 40 us; the variant
    # (attn_norm -> layernorm, 2 calls x 30 us) and the gpt2-only pos_embedding (1 x 10 us) get the rest of a
    # 130 us step: 90 us over their 70 us -> factor 9/7
    from roofline.measure.calibrate import scale_variant_hosts

    shared = {"q_proj": {"host_eager_us": 20.0}, "attn_norm": {"host_eager_us": 15.0}}
    costs = {
        "q_proj": {"host_eager_us": 25.0},
        "attn_norm": {"host_eager_us": 30.0},
        "pos_embedding": {"host_eager_us": 10.0},
    }
    calls = {"q_proj": 2, "attn_norm": 2, "pos_embedding": 1}
    factor = scale_variant_hosts(shared, costs, calls, {"attn_norm": "layernorm"}, 130.0)
    assert factor == pytest.approx(9 / 7)
    assert costs["attn_norm"]["host_eager_us"] == pytest.approx(30 * 9 / 7, abs=1e-3)
    assert costs["pos_embedding"]["host_eager_us"] == pytest.approx(10 * 9 / 7, abs=1e-3)
    assert costs["q_proj"]["host_eager_us"] == 25.0  # not used (the shared figure prices q_proj), left as measured
    total = 2 * 20 + 2 * costs["attn_norm"]["host_eager_us"] + costs["pos_embedding"]["host_eager_us"]
    assert total == pytest.approx(130, abs=0.01)  # rounded to 1 ns per entry
    # a step the shared ops already fill: nothing changes
    assert scale_variant_hosts(shared, costs, calls, {"attn_norm": "layernorm"}, 30.0) == 1.0


def test_a_layer_s_host_costs_follow_the_reference_s_slope_over_depth():
    # profiled at 2 layers: a layer's ops 30 + 20 = 50 us, the ends 40 + 20 = 60 us, and the 2-layer step less its
    # tail 160 us (2 x 50 + 60: op_costs made it add up). Timed at depth the step grows 70 us a layer: the layer's
    # ops x 7/5, the ends get 160 - 2 x 70 = 20 us of their 60 (x 1/3): 13.333 and 6.667 us
    from roofline.measure.calibrate import split_layer_hosts

    def costs():
        return {
            "q_proj": {"host_eager_us": 30.0},
            "rope": {"host_eager_us": 20.0},
            "embedding": {"host_eager_us": 40.0},
            "lm_head": {"host_eager_us": 20.0},
            "silent": {"fixed_us": 1.0},  # no host span: left alone
        }

    calls = {"q_proj": 2, "rope": 2, "embedding": 1, "lm_head": 1, "silent": 1}
    c = costs()
    assert split_layer_hosts(c, calls, 2, 70.0, 160.0, 5.0) == pytest.approx((1.4, 1 / 3))
    assert [c[n]["host_eager_us"] for n in ("q_proj", "rope", "embedding", "lm_head")] == pytest.approx(
        [42.0, 28.0, 13.333, 6.667], abs=1e-3
    )
    assert c["silent"] == {"fixed_us": 1.0}
    assert 2 * (42 + 28) + 13.333 + 6.667 == pytest.approx(160.0, abs=1e-3)  # the 2-layer step still adds up
    # a slope that leaves the ends less than one launch each: each at the launch floor (the step then runs over)
    c = costs()
    split_layer_hosts(c, calls, 2, 78.0, 160.0, 9.0)
    assert c["embedding"]["host_eager_us"] == c["lm_head"]["host_eager_us"] == 9.0
    assert c["q_proj"]["host_eager_us"] == pytest.approx(30 * 78 / 50, abs=1e-3)
    # no usable slope (a failed or noisy depth timing): nothing changes
    for slope in (0.0, -5.0, float("nan")):
        c = costs()
        assert split_layer_hosts(c, calls, 2, slope, 160.0, 5.0) == (1.0, 1.0) and c == costs()


def test_the_moe_model_s_own_ops_get_what_its_step_leaves_after_the_shared_ones():
    # the MoE run's profiled spans, scaled to its own 2-layer step, price its router and experts; the ops it shares
    # with the reference take the reference's (depth-split) figures, so router and experts are rescaled to make the
    # MoE step add up with them: step 1000 us less the 50 us tail = 950; shared 2 x 100 + 50 = 250; own 700 over
    # 2 x (20 + 330) = 700 profiled: factor 1; with a 1100 us step, 800 / 700
    import pandas as pd

    from roofline.measure.calibrate import _own_hosts

    ops = pd.DataFrame(
        {
            "op": ["embedding", "attn", "router", "experts", "lm_head"],
            "calls": [1, 2, 2, 2, 1],
            "span_s": [40e-6, 100e-6, 20e-6, 330e-6, 10e-6],
            "gpu_time_s": [2e-6, 5e-6, 3e-6, 100e-6, 50e-6],
            "n_kernels": [1, 3, 1, 60, 1],
        }
    )
    shared = {
        "embedding": {"host_eager_us": 40.0},
        "attn": {"host_eager_us": 100.0},
        "lm_head": {"host_eager_us": 10.0},
    }
    step = {"eager_step_ref_s": 1000e-6, "graph_step_ref_s": float("nan")}
    costs, factor = _own_hosts(shared, ops, step)
    # op_costs first scales every span to the step less its tail: 950 / 950 = 1
    assert factor == pytest.approx(1.0) and costs["experts"]["host_eager_us"] == pytest.approx(330.0)
    costs, factor = _own_hosts(shared, ops, dict(step, eager_step_ref_s=1100e-6))
    # op_costs: spans x 1050 / 950; then the own ops x (1050 - 250) / (2 x 350 x 1050 / 950)
    assert factor == pytest.approx(800 / (700 * 1050 / 950))
    assert 2 * (costs["router"]["host_eager_us"] + costs["experts"]["host_eager_us"]) == pytest.approx(800, abs=0.01)


def test_the_8_bit_parts_follow_the_part_s_tensor_cores():
    # one list for calibrate's kernel model and benchmarks/gpu_gemm8.py: fp8 paths only where the part has fp8
    from roofline.measure.calibrate import eight_bit_parts

    assert sorted(eight_bit_parts(load_spec("h200"))) == [
        ("attention", "decode/kv_fp8"),
        ("gemm", "fp8"),
        ("gemm", "fp8/weight_only"),
        ("gemm", "int8"),
        ("gemm", "int8/weight_only"),
    ]
    assert sorted(eight_bit_parts(load_spec("a100-80gb-sxm"))) == [("gemm", "int8"), ("gemm", "int8/weight_only")]


def test_the_tables_idle_the_gpu_once_enough_timed_work_has_run(monkeypatch):
    # 100 ms of timed work arms it: the next timing first drains the queue and idles 200 ms (the H200 leaves its
    # power cap in about that: reports/h200/power_recovery.csv), then counts from zero again
    from roofline.measure import calibrate as C

    calls = []
    monkeypatch.setattr(C, "_work_since_cool", [0.09])
    assert not C.cool_down(sync=lambda: calls.append("sync"), sleep=lambda s: calls.append(s))
    assert calls == []
    C._work_since_cool[0] += 0.02
    assert C.cool_down(sync=lambda: calls.append("sync"), sleep=lambda s: calls.append(s))
    assert calls == ["sync", 0.2] and C._work_since_cool == [0.0]


def test_old_prefill_attention_tables_convert_exactly_to_the_compute_roofline():
    # a table written before stop 10 held geomean over MHA and GQA 4 of (max(compute, memory) roofline / time);
    # with equal times t for both, the converted cell must be t_compute / t, whatever t is
    import importlib.util
    import math

    from roofline.formulas import causal_pairs

    path = Path(__file__).parent.parent / "benchmarks" / "convert_prefill_attention.py"
    spec_ = importlib.util.spec_from_file_location("convert_prefill_attention", path)
    conv = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(conv)
    raw = load_mapping(resolve_spec_path("h200"), "spec")
    spec = load_spec("h200")
    lens, bhs, d, heads = [128, 4096], [32, 256], 128, 32
    times = {(s, bh): 1e-6 * (5 + s * bh / 1e3) for s in lens for bh in bhs}  # made up, not a roofline

    def roofs(s, bh):
        rows = [
            _cost_row(flash_attention(bh // heads, s, s, causal_pairs(s), heads, kv, d, "bf16", "bf16", False), "bf16")
            for kv in (heads, heads // 4)
        ]
        return _roofline_s(spec, rows), _roofline_s(spec, rows[:1], "time_compute_s")[0]

    old = []
    for s in lens:
        row = []
        for bh in bhs:
            (r_mha, r_gqa), _ = roofs(s, bh)
            row.append(math.sqrt(r_mha / times[s, bh] * r_gqa / times[s, bh]))
        old.append(row)
    raw["measured"] = {
        "attention": {"prefill": {"query_len": lens, "flops_per_pair": [4 * b * d for b in bhs], "efficiency": old}}
    }
    new = conv.convert(raw)["measured"]["attention"]["prefill"]
    assert new["roofline"] == "compute"
    for i, s in enumerate(lens):
        for j, bh in enumerate(bhs):
            _, t_c = roofs(s, bh)
            assert new["efficiency"][i][j] == pytest.approx(t_c / times[s, bh], rel=1e-3)  # 4 significant digits


def test_the_gemm_table_records_the_kernels_each_call_launches():
    # kernel_time_s counts the kernels it profiled per call (_last_kernels); the table keeps them on its grid,
    # the mean over shapes merged into one column (here two of 32 x 48 = 48 x 32 elements: 1 and 2 kernels)
    from roofline.measure import calibrate as C

    spec = load_spec("h200")
    per_shape = {(32, 48): 1.0, (48, 32): 2.0}
    seen = []

    def counting_timer(fn, repeats):
        y = fn()
        seen.append(y.shape)
        k_in = 32 if y.shape[-1] == 48 else 48
        C._last_kernels[0] = per_shape[(k_in, y.shape[-1])] + (1.0 if y.shape[0] == 8 else 0.0)
        return 1e-3

    t = C.measure_gemm_table(spec, tokens=(1, 8), shapes=((32, 48), (48, 32)), device="cpu", timer=counting_timer)
    assert t["weight_elements"] == [32 * 48] and t["kernels"] == [[1.5], [2.5]]
    # a timer that counts nothing (as the tests' own) leaves the table without kernels
    plain = C.measure_gemm_table(spec, tokens=(1,), shapes=((32, 48),), device="cpu", timer=lambda fn, r: 1e-3)
    assert "kernels" not in plain


def test_the_split_kernel_host_cost_is_the_slope_of_host_time_on_kernels(monkeypatch):
    from roofline.errors import DeviceError
    from roofline.measure import calibrate as C
    from roofline.measure import steptime

    # an H200's calls (reports/h200/host-kernels/projection_host.csv): one kernel 14.2-15.2 us, two 18.2-19.0 us
    assert C.split_kernel_slope([14.2, 15.2, 18.2, 19.0], [1, 1, 2, 2]) == pytest.approx(3.9)
    assert C.split_kernel_slope([14.2, 15.2], [1, 1]) is None  # every call one kernel: nothing to fit
    assert C.split_kernel_slope([18.0, 14.0], [1, 2]) == 0.0  # never negative
    jobs = []

    def fake(js, timeout_s=steptime.TIMEOUT_S, rounds=1):
        jobs.extend(js)
        n = len(js[0]["linear_host"])
        return [{"host_us": [14.0 + 4.0 * (i % 2) for i in range(n)], "kernels": [1 + i % 2 for i in range(n)]}]

    monkeypatch.setattr(steptime, "time_steps", fake)
    assert C.measure_split_kernel_host(load_spec("h200")) == pytest.approx(4.0)
    shapes = jobs[0]["linear_host"]
    assert len(shapes) == 2 * (len(C.GEMM_SHAPES) + len(C.GEMM_DOWN_SHAPES)) and {s[0] for s in shapes} == {1, 8}
    monkeypatch.setattr(steptime, "time_steps", lambda js, **kw: [{"error": "out of memory"}])
    with pytest.raises(DeviceError, match="projections' host cost failed: out of memory"):
        C.measure_split_kernel_host(load_spec("h200"))


def test_the_projection_host_child_times_and_counts_on_the_cpu():
    # the fresh process's job (steptime.linear_host_here): a host time per call for each shape; the CPU has no
    # CUDA kernels to count
    from roofline.measure.steptime import linear_host_here

    out = linear_host_here([(1, 32, 48), (2, 48, 32)], device="cpu", rounds=1, calls=4)
    assert len(out["host_us"]) == 2 and all(h > 0 for h in out["host_us"]) and out["kernels"] == [0.0, 0.0]
