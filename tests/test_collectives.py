"""The collective model: calibrate_collectives' four collectives on gloo (2 and 4 processes), the per-size
table in a spec (measured.collectives: parsed, validated, written), the prediction that reads it (against
hand values from the 2 x H200 all-reduce measurements in reports/h200x2/), and the advisor's tp rows."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import roofline
from roofline.advise import advise
from roofline.cli import main
from roofline.errors import ConfigError, SpecError
from roofline.measure.calibrate import write_spec
from roofline.measure.collectives import (
    OPS,
    calibrate_collectives,
    collective_ceilings,
    collective_tables,
    merge_collectives,
)
from roofline.measure.distributed import MULTICAST_OFF_ENV
from roofline.predict import (
    COLLECTIVE_BUSBW_FACTOR,
    COLLECTIVE_OF_OP,
    collective_table_time,
    describe_collectives,
)
from roofline.specs import load_spec, parse_spec, resolve_spec_path
from roofline.validate import load_mapping

ROOT = Path(__file__).parent.parent
H200X2 = ROOT / "reports" / "h200x2"
LLAMA_7B = str(ROOT / "examples" / "llama-2-7b.yaml")
LLAMA_70B = str(ROOT / "examples" / "llama-3-70b.yaml")
MIXTRAL = str(ROOT / "examples" / "mixtral-8x7b.yaml")
US = 1e-6


# ---------------------------------------------------------------------------------------------
# measuring: gloo processes through the torchrun launcher


@pytest.fixture(scope="module")
def gloo2():
    # the caller asks for NVLink multicast; the launcher turns it off in every worker regardless
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NCCL_NVLS_ENABLE", "1")
        return calibrate_collectives(
            sizes=[4096, 1024, 1030], nproc=2, backend="gloo", warmup=1, iters=2, repeats=2, init_timeout_s=60
        )


def test_gloo_runs_all_four_collectives_at_nccl_tests_sizes(gloo2):
    f = gloo2
    assert list(dict.fromkeys(f["op"])) == list(OPS) and (f["world"] == 2).all()
    sizes = {op: list(g["size_bytes"]) for op, g in f.groupby("op", sort=False)}
    # bf16: 1030 B = 515 elements; all-reduce keeps them, the others round down to whole shards of 2 ranks: 514
    assert sizes["all_reduce"] == [1024, 1030, 4096]
    assert sizes["all_gather"] == sizes["reduce_scatter"] == sizes["all_to_all"] == [1024, 1028, 4096]
    assert np.allclose(f["algbw_bytes_per_s"], f["size_bytes"] / f["time_s"])
    factor = f["op"].map({"all_reduce": 1.0, "all_gather": 0.5, "reduce_scatter": 0.5, "all_to_all": 0.5})
    assert np.allclose(f["busbw_bytes_per_s"], f["algbw_bytes_per_s"] * factor)  # 2(N-1)/N = 1, (N-1)/N = 1/2
    assert (f["time_min_rank_s"] <= f["time_s"]).all() and (f["time_s"] > 0).all()
    assert f.attrs["notes"] == []


def test_every_worker_runs_with_nvlink_multicast_off(gloo2):
    env = gloo2.attrs["device"]["env"]
    assert {k: env.get(k) for k in MULTICAST_OFF_ENV} == {
        "NCCL_NVLS_ENABLE": "0",
        "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
        "NVSHMEM_DISABLE_NVLS": "1",
    }


def test_four_processes_use_the_bus_factors_of_four_ranks():
    f = calibrate_collectives(sizes=[4096], nproc=4, backend="gloo", warmup=0, iters=1, repeats=1)
    assert list(f["op"]) == list(OPS) and (f["world"] == 4).all() and (f["size_bytes"] == 4096).all()
    ratio = dict(zip(f["op"], f["busbw_bytes_per_s"] / f["algbw_bytes_per_s"]))
    # all-reduce 2(N-1)/N = 2 * 3 / 4 = 1.5; the others (N-1)/N = 3/4
    assert ratio == pytest.approx({"all_reduce": 1.5, "all_gather": 0.75, "reduce_scatter": 0.75, "all_to_all": 0.75})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(ops=("all_reduce", "allgather")), "unknown collective 'allgather' (did you mean 'all_gather'?); known:"),
        (dict(ops=()), "no collective to measure; choose from all_reduce, all_gather, reduce_scatter, all_to_all"),
        (dict(sizes=[0, 1024]), "sizes must be positive numbers of bytes"),
    ],
)
def test_bad_calibration_arguments_are_refused_before_anything_starts(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        calibrate_collectives(nproc=2, backend="gloo", **kwargs)


def test_cli_refuses_an_unknown_collective_before_the_gpu_work():
    from roofline.cli import COLLECTIVE_OPS

    assert COLLECTIVE_OPS == OPS == tuple(COLLECTIVE_BUSBW_FACTOR)
    r = CliRunner().invoke(main, ["calibrate", "--collectives", "--collective-ops", "all_reduce,allgather"])
    assert r.exit_code == 2
    assert (
        "Invalid value for --collective-ops: 'allgather' is not a collective; choose from all_reduce, all_gather, "
        "reduce_scatter, all_to_all" in r.output
    )


# ---------------------------------------------------------------------------------------------
# into a spec: the table, written, read back, validated


def test_merged_table_is_written_documented_and_read_back(gloo2, tmp_path):
    shipped = load_mapping(resolve_spec_path("h200"), "hardware spec")
    raw = merge_collectives(shipped, gloo2)
    table = raw["measured"]["collectives"]
    assert list(table) == list(OPS)
    assert table["all_gather"] == {
        "world": 2,
        "bytes": [1024, 1028, 4096],
        "time_us": [float(f"{t * 1e6:.4g}") for t in gloo2[gloo2["op"] == "all_gather"]["time_s"]],
    }
    ar = gloo2[gloo2["op"] == "all_reduce"]
    assert raw["measured"]["collective_latency_us"] == float(f"{ar['time_s'].iloc[0] * 1e6:.4g}")  # 1 KiB
    assert len(raw["measured"]["conditions"]["collectives"]["sizes"]) == 12  # 4 ops x 3 sizes, every row
    path = write_spec(raw, tmp_path / "cal.yaml")
    text = path.read_text()
    assert "# measured.collectives (roofline/predict.py collective_times reads it" in text
    spec = load_spec(path)
    world, x, t = spec.measured_collectives["all_to_all"]
    assert world == 2 and list(x) == [1024, 1028, 4096]
    assert t * 1e6 == pytest.approx(table["all_to_all"]["time_us"])


def test_ceilings_come_from_the_all_reduce_only():
    f = pd.DataFrame(
        {
            "op": ["all_gather", "all_reduce", "all_reduce"],
            "world": 2,
            "size_bytes": [1024.0, 1024.0, 2.0**30],
            "time_s": [1e-6, 10e-6, 3e-3],
            "busbw_bytes_per_s": [1e12, 1024 / 10e-6, 2**30 / 3e-3],
        }
    )
    # 2^30 B / 3 ms = 357.9 GB/s; the all-gather's 1000 GB/s is not the link figure
    assert collective_ceilings(f) == {"link_busbw_gb_per_s": 357.9, "collective_latency_us": 10.0}
    assert collective_ceilings(f[f["op"] == "all_gather"]) == {}
    assert collective_tables(f)["all_reduce"] == {"world": 2, "bytes": [1024, 2**30], "time_us": [10.0, 3000.0]}


def _raw_with(collectives):
    raw = load_mapping(resolve_spec_path("h200"), "hardware spec")
    raw["measured"] = {"collectives": collectives}
    return raw


GOOD = {"world": 2, "bytes": [1024, 4096], "time_us": [10.0, 12.0]}


@pytest.mark.parametrize(
    "table, message",
    [
        ([1, 2], "measured.collectives must be a mapping of op (all_reduce, all_gather, reduce_scatter, all_to_all)"),
        ({"allreduce": GOOD}, "unknown collective 'allreduce' (did you mean 'all_reduce'?)"),
        ({"all_reduce": [1]}, "measured.collectives.all_reduce must be a mapping with keys world, bytes, time_us"),
        ({"all_reduce": dict(GOOD, size=1)}, "measured.collectives.all_reduce: unknown key 'size'"),
        ({"all_reduce": {"world": 2, "bytes": [1024]}}, "measured.collectives.all_reduce.time_us is missing"),
        ({"all_reduce": dict(GOOD, world=1)}, "measured.collectives.all_reduce.world"),
        ({"all_reduce": dict(GOOD, world=2.5)}, "measured.collectives.all_reduce.world: expected a whole number"),
        ({"all_reduce": dict(GOOD, bytes=[])}, "measured.collectives.all_reduce.bytes must be a non-empty list"),
        ({"all_reduce": dict(GOOD, bytes=[4096, 1024])}, "measured.collectives.all_reduce.bytes must be strictly"),
        ({"all_reduce": dict(GOOD, bytes=[1024, 1024])}, "measured.collectives.all_reduce.bytes must be strictly"),
        ({"all_reduce": dict(GOOD, bytes=[-1, 1024])}, "measured.collectives.all_reduce.bytes[0]: must be greater"),
        ({"all_reduce": dict(GOOD, time_us=[10.0])}, "time_us must be a list of 2 times in µs (one per size), got 1"),
        ({"all_reduce": dict(GOOD, time_us=[10.0, 0])}, "measured.collectives.all_reduce.time_us[1]: must be greater"),
        ({"all_reduce": dict(GOOD, time_us=[10.0, ".nan"])}, "measured.collectives.all_reduce.time_us[1]: expected"),
        ({"all_reduce": dict(GOOD, time_us=[10.0, "1e400"])}, "time_us[1]: '1e400' is too large"),
    ],
)
def test_a_bad_table_is_one_clear_error(table, message):
    with pytest.raises(SpecError) as err:
        parse_spec(_raw_with(table), "cal.yaml")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_cli_prints_a_bad_table_as_one_line(tmp_path):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_raw_with({"all_reduce": dict(GOOD, bytes=[4096, 1024])})))
    r = CliRunner().invoke(main, ["analyze", LLAMA_7B, "--gpu", str(path), "--tp", "2"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [
        f"Error: {path}: measured.collectives.all_reduce.bytes must be strictly increasing; sort the sizes together "
        f"with their times"
    ]


# ---------------------------------------------------------------------------------------------
# the prediction: hand values from the 2 x H200 all-reduce (reports/h200x2/collectives.csv)


@pytest.fixture(scope="module")
def h200x2():
    """reports/h200x2/calibration.yaml (link 331.4 GB/s, alpha 12.03 µs) with the measured all-reduce of
    collectives.csv, at full precision, as its table."""
    raw = load_mapping(H200X2 / "calibration.yaml", "hardware spec")
    csv = pd.read_csv(H200X2 / "collectives.csv")
    table = {"world": 2, "bytes": [int(b) for b in csv["size_bytes"]], "time_us": list(csv["time_s"] * 1e6)}
    with_table = copy.deepcopy(raw)
    with_table["measured"]["collectives"] = {"all_reduce": table}
    return parse_spec(raw, "h200x2"), parse_spec(with_table, "h200x2+table"), csv


def _coll(spec, **kw):
    r = roofline.analyze(LLAMA_7B, spec, tp=2, **kw)
    return r, r.ops[r.ops["category"] == "collective"].set_index("op")


def test_a_measured_size_is_predicted_as_measured(h200x2):
    plain, table, csv = h200x2
    # prefill 2048 tokens x hidden 4096 x 2 B = 16 MiB per all-reduce: the table's point, 77.46 µs
    _, ops = _coll(table, phase="prefill", prompt_len=2048, batch_size=1)
    ar = ops.loc["attn_all_reduce"]
    assert ar["bytes_written"] == 2048 * 4096 * 2 == 16777216
    assert ar["predicted_time_s"] == pytest.approx(7.745760083198548e-05, rel=1e-12)
    assert ar["prediction_source"] == "collective table"
    # alpha + beta said 12.03 µs + 16777216 B / 331.4 GB/s = 62.66 µs: 19% short of the measurement
    _, ops0 = _coll(plain, phase="prefill", prompt_len=2048, batch_size=1)
    assert ops0.loc["attn_all_reduce", "predicted_time_s"] == pytest.approx(6.26552745926373e-05, rel=1e-9)
    assert ops0.loc["attn_all_reduce", "prediction_source"] == "alpha-beta"
    assert 1 - 62.6552745926373 / 77.45760083198548 == pytest.approx(0.191, abs=0.001)


def test_between_sizes_the_time_is_interpolated_in_log_log(h200x2):
    _, table, _ = h200x2
    # decode batch 1: 1 x 4096 x 2 = 8192 B, halfway (in log) between 4 KiB (12.0176 µs) and 16 KiB (13.1232 µs):
    # sqrt(12.017600238323211 * 13.123199343681335) = 12.558238871760157 µs
    _, ops = _coll(table, phase="decode", batch_size=1, context_len=1024)
    assert ops.loc["mlp_all_reduce", "bytes_written"] == 8192
    assert ops.loc["mlp_all_reduce", "predicted_time_s"] == pytest.approx(12.558238871760157 * US, rel=1e-9)
    # batch 64: 524288 B between 256 KiB (11.7168 µs) and 1 MiB (17.1984 µs): sqrt of their product = 14.1954 µs
    _, ops = _coll(table, phase="decode", batch_size=64, context_len=1024)
    assert ops.loc["mlp_all_reduce", "predicted_time_s"] == pytest.approx(14.195429497017228 * US, rel=1e-9)
    # the all-gather of the logits has no table: alpha + bytes / link, and says so
    g = ops.loc["logits_all_gather"]
    assert g["prediction_source"] == "alpha-beta"
    assert g["predicted_time_s"] == pytest.approx(12.03 * US + g["comm_bytes"] / 331.4e9, rel=1e-9)


def test_beyond_the_ends_bandwidth_above_latency_below(h200x2):
    _, table, _ = h200x2
    # prefill batch 128 x 2048 x 4096 x 2 B = 2 GiB: twice the largest size at its bandwidth, 2 x 3239.616 µs
    _, ops = _coll(table, phase="prefill", prompt_len=2048, batch_size=128)
    assert ops.loc["attn_all_reduce", "bytes_written"] == 2 * 2**30
    assert ops.loc["attn_all_reduce", "predicted_time_s"] == pytest.approx(6479.232025146485 * US, rel=1e-9)
    # below 1 KiB: held at the 1 KiB time, 12.0336 µs (a 64-wide model's decode message is 128 B)
    t = collective_table_time(np.array([128.0, 1024.0]), table.measured_collectives["all_reduce"])
    assert t == pytest.approx([1.2033600360155105e-05] * 2, rel=1e-12)


def test_another_world_size_falls_back_to_alpha_beta_and_says_so(h200x2):
    _, table, _ = h200x2
    r = roofline.analyze(LLAMA_7B, table, tp=4, phase="prefill", prompt_len=2048, batch_size=1)
    ar = r.ops[r.ops["op"] == "attn_all_reduce"].iloc[0]
    assert ar["prediction_source"] == "alpha-beta (table is for 2 GPUs)"
    # comm_bytes = 2(4-1)/4 x 16 MiB = 25165824 B; 12.03 µs + 25165824 / 331.4e9 s = 87.97 µs
    assert ar["comm_bytes"] == 25165824
    assert ar["predicted_time_s"] == pytest.approx(12.03e-6 + 25165824 / 331.4e9, rel=1e-9)
    assert describe_collectives(table) == (
        "collectives: measured tables, all_reduce at 2 GPUs (1024-1073741824 B); other world sizes and ops: "
        "alpha 12.03 µs + bytes / 331.4 GB/s"
    )
    assert describe_collectives(load_spec("h200")) == (
        "collectives: alpha 10 µs + bytes / 450 GB/s (no measured table; run roofline calibrate --collectives)"
    )


def test_the_step_grows_by_what_the_table_adds(h200x2):
    plain, table, _ = h200x2
    kw = dict(phase="prefill", prompt_len=2048, batch_size=1, cuda_graph=True)
    r0, ops0 = _coll(plain, **kw)
    r1, ops1 = _coll(table, **kw)
    # a GPU-bound step (CUDA graph): the step is the sum of stream times, so it grows by
    # count x (77.46 - 62.66) µs over the 32 + 32 + 1 all-reduces, 0.962 ms
    added = ((ops1["predicted_time_s"] - ops0["predicted_time_s"]) * ops1["count"]).sum()
    assert added == pytest.approx(65 * (77.45760083198548 - 62.6552745926373) * US, rel=1e-9)
    step0, step1 = r0.summary["prefill_time_s"].iloc[0], r1.summary["prefill_time_s"].iloc[0]
    assert step1 - step0 == pytest.approx(added, rel=1e-9)


def test_all_to_all_of_expert_parallelism_reads_its_table(h200x2):
    plain, _, _ = h200x2
    raw = load_mapping(H200X2 / "calibration.yaml", "hardware spec")
    raw["measured"]["collectives"] = {"all_to_all": {"world": 2, "bytes": [1024, 2**30], "time_us": [20.0, 5000.0]}}
    spec = parse_spec(raw, "a2a")
    r = roofline.analyze(MIXTRAL, spec, tp=1, ep=2, phase="decode", batch_size=8, context_len=1024)
    d = r.ops[r.ops["op"] == "moe_dispatch"].iloc[0]
    # ep 2: each GPU runs 8 / 2 = 4 sequences; 4 tokens x top-2 x hidden 4096 x 2 B = 65536 B per rank's buffer
    assert d["bytes_written"] == 4 * 2 * 4096 * 2 == 65536
    # log-log from (1 KiB, 20 µs) to (1 GiB, 5000 µs): 65536 B is 6/20 of the way in log size,
    # 20 x (5000 / 20) ** (6 / 20) = 105.1 µs
    assert d["predicted_time_s"] == pytest.approx(20 * (5000 / 20) ** 0.3 * US, rel=1e-9)
    assert d["prediction_source"] == "collective table"


def test_every_collective_op_has_its_collective_and_bus_factor():
    seen = set()
    for model, kw in ((LLAMA_7B, dict(tp=4, pp=2)), (MIXTRAL, dict(tp=1, ep=4)), (MIXTRAL, dict(tp=8))):
        ops = roofline.analyze(model, "h200", batch_size=4, prompt_len=64, **kw).ops
        for r in ops[ops["category"] == "collective"].itertuples():
            seen.add(r.op)
            if r.op == "pp_send":  # point to point: no table, alpha + bytes / link
                continue
            kind = COLLECTIVE_OF_OP[r.op]
            world = kw["ep"] if kind == "all_to_all" else kw["tp"]
            # comm_bytes is the nccl-tests size (the row's bytes written) x the bus factor at its world size
            assert r.comm_bytes == pytest.approx(r.bytes_written * COLLECTIVE_BUSBW_FACTOR[kind](world), rel=1e-12)
    assert seen == set(COLLECTIVE_OF_OP) | {"pp_send"}


# ---------------------------------------------------------------------------------------------
# the advisor's tensor parallelism reads the same model


def test_tensor_parallel_advice_follows_the_table(h200x2):
    plain, _, csv = h200x2
    raw = load_mapping(H200X2 / "calibration.yaml", "hardware spec")
    # a made-up 8-GPU all-reduce 1.5 times slower than the 2-GPU one at every size
    raw["measured"]["collectives"] = {
        "all_reduce": {"world": 8, "bytes": [int(b) for b in csv["size_bytes"]], "time_us": list(csv["time_s"] * 1.5e6)}
    }
    slow = parse_spec(raw, "slow-8")
    kw = dict(phase="decode", cuda_graph=True)  # llama-3-70b.yaml: tp 4, batch 1; the advisor tries tp 8
    rows = {}
    for name, spec in (("plain", plain), ("slow", slow)):
        a = roofline.analyze(LLAMA_70B, spec, **kw)
        frame = advise(a, top=None)
        row = frame[frame["change"] == "tensor parallel 8"].iloc[0]
        tp8 = roofline.analyze(LLAMA_70B, spec, **{**kw, "tp": 8})
        assert row["predicted_speedup"] == pytest.approx(
            a.summary["decode_time_s"].iloc[0] / tp8.summary["decode_time_s"].iloc[0], rel=1e-12
        )
        rows[name] = (row, tp8)
    row, tp8 = rows["slow"]
    ar = tp8.ops[tp8.ops["op"] == "attn_all_reduce"].iloc[0]
    # decode batch 1: hidden 8192 x 2 B = 16384 B per all-reduce, the 16 KiB point: 1.5 x 13.1232 µs
    assert ar["bytes_written"] == 16384
    assert ar["predicted_time_s"] == pytest.approx(1.5 * 13.123199343681335 * US, rel=1e-9)
    assert "(collective time: alpha-beta, collective table)" in row["wont_help"]  # the logits gather: no table
    assert "(collective time: alpha-beta)" in rows["plain"][0]["wont_help"]
    assert row["predicted_speedup"] < rows["plain"][0]["predicted_speedup"]


def test_measured_communication_meets_the_table_prediction(h200x2):
    """The committed 2 x H200 decode traces (Llama-2-7B, tp 2, batch 1) beside the table's prediction."""
    from dataclasses import replace

    from roofline.compare import comm_against_prediction
    from roofline.config import load_model_and_workload
    from roofline.measure.distributed import join_rank_traces

    plain, table, _ = h200x2
    traces = {r: ROOT / "tests" / "data" / f"h200x2_rank{r}_decode_trace.json.gz" for r in (0, 1)}
    m, w = load_model_and_workload(LLAMA_7B)
    w = replace(w, tp=2, phase="decode", batch_size=(1,), prompt_len=(1024,), context_len=(1024,), gen_tokens=None)
    joined = join_rank_traces(traces, plain)
    j = comm_against_prediction(joined, roofline.analyze(m, table, workload=w)).set_index("range")
    j0 = comm_against_prediction(joined, roofline.analyze(m, plain, workload=w)).set_index("range")
    # 8192 B all-reduces: the table's 12.558 µs (log-log between 4 and 16 KiB); alpha + beta said 12.03 µs +
    # 8192 B / 331.4 GB/s = 12.055 µs; the logits gather (no table) keeps alpha + beta in both
    assert j.loc["attn_all_reduce", "predicted_comm_s"] == pytest.approx(12.558238871760157 * US, rel=1e-9)
    assert j0.loc["attn_all_reduce", "predicted_comm_s"] == pytest.approx(12.03 * US + 8192 / 331.4e9, rel=1e-9)
    assert j.loc["logits_all_gather", "predicted_comm_s"] == j0.loc["logits_all_gather", "predicted_comm_s"]


def test_json_output_carries_the_table_and_the_sources(h200x2, tmp_path):
    import json

    import yaml

    _, table, csv = h200x2
    raw = load_mapping(H200X2 / "calibration.yaml", "hardware spec")
    raw["measured"]["collectives"] = {
        "all_reduce": {"world": 2, "bytes": [int(b) for b in csv["size_bytes"]], "time_us": [12.0] * len(csv)}
    }
    spec_path = tmp_path / "cal.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["analyze", LLAMA_7B, "--gpu", str(spec_path), "--tp", "2", "-o", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    world, sizes, times = d["spec"]["measured_collectives"]["all_reduce"]  # numpy arrays written as lists
    assert world == 2 and sizes[0] == 1024 and times == pytest.approx([12e-6] * len(csv))
    sources = {o["op"]: o["prediction_source"] for o in d["ops"] if o["category"] == "collective"}
    assert sources == {
        "embed_all_reduce": "collective table",
        "attn_all_reduce": "collective table",
        "mlp_all_reduce": "collective table",
        "logits_all_gather": "alpha-beta",
    }


def test_the_check_catches_a_wrong_result(tmp_path):
    """check_collective in a one-process gloo group: right for that group, and told the group has 2 ranks
    (which it has not) it sees the all-reduce come back wrong and says so in one line."""
    import torch
    import torch.distributed as dist

    from roofline.errors import DeviceError
    from roofline.measure.collectives import check_collective

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        cpu = torch.device("cpu")
        for op in OPS:
            check_collective(op, 0, 1, cpu)
        with pytest.raises(DeviceError) as err:
            check_collective("all_reduce", 0, 2, cpu)
        # rank 0 contributes 1; two ranks would sum 1 + 2 = 3
        assert str(err.value) == (
            "all_reduce on 2 ranks returned 1.0 at element 0 of rank 0, not 3.0: the collective is broken on this set-up"
        )
    finally:
        dist.destroy_process_group()


def test_analyze_names_the_collective_model(tmp_path):
    import yaml

    raw = _raw_with({"all_reduce": {"world": 8, "bytes": [1024, 2**30], "time_us": [20.0, 4000.0]}})
    path = tmp_path / "cal.yaml"
    path.write_text(yaml.safe_dump(raw))
    r = CliRunner().invoke(main, ["analyze", LLAMA_70B, "--gpu", str(path), "--tp", "8", "--phase", "decode"])
    assert r.exit_code == 0, r.output
    assert [line for line in r.output.splitlines() if line.startswith("collectives:")] == [
        "collectives: measured tables, all_reduce at 8 GPUs (1024-1073741824 B); other world sizes and ops: "
        "alpha 10 µs + bytes / 450 GB/s"
    ]
    r = CliRunner().invoke(main, ["analyze", LLAMA_7B, "--gpu", str(path), "--tp", "1", "--phase", "decode"])
    assert "collectives:" not in r.output  # no collective op: no line
