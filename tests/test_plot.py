"""Charts: what each chart function puts on its Axes, for real analyses; save and the result JSON."""

import dataclasses
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

import roofline  # noqa: E402
from roofline import plot  # noqa: E402
from roofline.classify import BOUNDS, CLASSES, MEASURED_BOUNDS  # noqa: E402
from roofline.errors import InputFileError, RooflineError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LLAMA = ROOT / "examples" / "llama-2-7b.yaml"
LLAMA_70B = ROOT / "examples" / "llama-3-70b.yaml"


@pytest.fixture(scope="module")
def llama_a10():
    return roofline.analyze(LLAMA, "a10")  # both phases, batch 1, prompt 512


@pytest.fixture(scope="module")
def llama70_tp4():
    return roofline.analyze(LLAMA_70B, "h100-sxm", tp=4, phase="decode")  # has collectives


def axes():
    return plot.new_figure(8, 5).add_subplot()


def roof_lines(ax, style=None):
    lines = [ln for ln in ax.get_lines() if (ln.get_gid() or "").startswith("roof-")]
    return [ln for ln in lines if style is None or ln.get_linestyle() == style]


def n_points(ax, prefix):
    return sum(len(c.get_offsets()) for c in ax.collections if (c.get_gid() or "").startswith(prefix))


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def all_text(ax):
    return "\n".join(t.get_text() for t in ax.texts)


def plotted(ops):
    return ops[(ops["flops"] > 0) & (ops["category"] != "collective")]


# ------------------------------------------------------------------------------------------------
def test_roofline_chart_roofs_points_axes_and_legend(llama_a10):
    ops, spec = llama_a10.ops, llama_a10.spec
    ax = plot.roofline_chart(ops, spec, axes())
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    dtypes = set(ops["compute_dtype"].astype(str))  # bf16 matmuls, fp32 element-wise
    assert dtypes == {"bf16", "fp32"}
    assert len(roof_lines(ax)) == len(dtypes) + 1  # one roof per dtype + the memory slope
    assert {ln.get_gid() for ln in roof_lines(ax)} == {
        "roof-bf16-datasheet",
        "roof-fp32-datasheet",
        "roof-memory-datasheet",
    }
    assert all(ln.get_linestyle() == "--" for ln in roof_lines(ax))  # uncalibrated: datasheet only, dashed
    bf16 = next(ln for ln in ax.get_lines() if ln.get_gid() == "roof-bf16-datasheet")
    assert bf16.get_ydata()[0] == 125e12 and bf16.get_xdata()[0] == pytest.approx(125e12 / 600e9)  # from the ridge
    assert n_points(ax, "ops-") == len(plotted(ops))
    assert n_points(ax, "ops-prefill") == len(plotted(ops[ops["phase"] == "prefill"]))
    # a point sits at (intensity, flops / time_s): here q_proj of decode, on the memory slope
    q = ops[(ops["phase"] == "decode") & (ops["op"] == "q_proj")].iloc[0]
    offsets = np.concatenate([c.get_offsets() for c in ax.collections if c.get_gid() == "ops-decode"])
    assert any(np.allclose(o, [q["arithmetic_intensity"], q["flops"] / q["time_s"]]) for o in offsets)
    assert "FLOP/B" in ax.get_xlabel() and "FLOP/s" in ax.get_ylabel()
    assert ax.xaxis.get_major_formatter()(1000) == "1 kFLOP/B"
    assert ax.yaxis.get_major_formatter()(1e12) == "1 TFLOP/s"
    classes = set(plotted(ops)["bound"].astype(str))
    assert classes == {"compute", "memory"}  # the A10 steps are GPU-bound: short ops' launches are hidden
    texts = legend_texts(ax)
    assert [t for t in texts if t.endswith("-bound")] == [f"{b}-bound" for b in BOUNDS if b in classes]
    assert "prefill" in texts and "decode" in texts
    note = all_text(ax)
    assert "no FLOPs, not plotted: embedding, kv_cache_write" in note


def test_roofline_labels_name_the_big_ops_and_do_not_overlap(llama_a10):
    ax = axes()
    plot.roofline_chart(llama_a10.ops, llama_a10.spec, ax)
    ax.figure.canvas.draw()  # labels are placed at draw time
    renderer = ax.figure.canvas.get_renderer()
    labels = [a for a in ax.texts if isinstance(a, matplotlib.text.Annotation) and a.arrowprops]
    text = "\n".join(a.get_text() for a in labels)
    assert "decode: gate_proj, up_proj, down_proj 21% each" in text  # the batch-1 decode cluster, one label
    assert "q_proj, k_proj, v_proj, o_proj 7.9% each" in text
    boxes = [matplotlib.text.Text.get_window_extent(a, renderer) for a in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    # ops under 1% of their phase are not labelled but named in the note
    assert "unlabelled, under 1% of phase time each:" in all_text(ax) and "attn_norm" in all_text(ax)


def test_roofline_lists_collectives_instead_of_plotting_them(llama70_tp4):
    ops = llama70_tp4.ops
    ax = plot.roofline_chart(ops, llama70_tp4.spec, axes())
    assert (ops["category"] == "collective").sum() == 4
    assert n_points(ax, "ops-") == len(plotted(ops))
    note = all_text(ax)
    assert "collectives, not plotted (share of decode time):" in note
    assert "attn_all_reduce 6.4%" in note and "logits_all_gather" in note
    assert [t for t in legend_texts(ax) if t in ("prefill", "decode")] == ["decode"]


def test_roofline_measured_ceilings_solid_and_measured_points_joined(llama_a10):
    spec = dataclasses.replace(
        llama_a10.spec, measured_peak_flops_per_s={"bf16": 100e12}, measured_mem_bytes_per_s=500e9
    )
    ops = llama_a10.ops
    measured = ops.loc[ops["phase"] == "decode", ["phase", "op", "flops", "time_s"]].copy()
    measured["measured_time_s"] = measured["time_s"] * 2
    ax = plot.roofline_chart(ops, spec, axes(), measured=measured)
    assert len(roof_lines(ax, "--")) == 3 and len(roof_lines(ax, "-")) == 3  # datasheet + measured
    solid_bf16 = next(ln for ln in ax.get_lines() if ln.get_gid() == "roof-bf16-measured")
    assert solid_bf16.get_ydata()[0] == 100e12 and solid_bf16.get_xdata()[0] == pytest.approx(200)
    n = len(plotted(ops[ops["phase"] == "decode"]))
    assert n_points(ax, "measured-") == n
    links = [ln for ln in ax.get_lines() if ln.get_gid() == "measured-link"]
    assert len(links) == n and all(ln.get_ydata()[0] == pytest.approx(2 * ln.get_ydata()[1]) for ln in links)
    assert {"measured ceiling", "measured time"} <= set(legend_texts(ax))


def test_roofline_draws_one_point_of_a_sweep():
    r = roofline.analyze(LLAMA, "a10", batch_size=[1, 64], phase="decode")
    ax = plot.roofline_chart(r.ops, r.spec, axes(), point=1)
    one = r.ops[r.ops["point"] == 1]
    assert n_points(ax, "ops-") == len(plotted(one))
    with pytest.raises(ValueError, match="no point 5"):
        plot.roofline_chart(r.ops, r.spec, axes(), point=5)


# ------------------------------------------------------------------------------------------------
def segments(ax, phase):
    return [p for p in ax.patches if (p.get_gid() or "").startswith(f"segment-{phase}-")]


def test_time_breakdown_by_op_top_n_and_other(llama_a10):
    ax = plot.time_breakdown(llama_a10.ops, axes(), by="op", top=5)
    s = llama_a10.summary.iloc[0]
    for phase in ("prefill", "decode"):
        segs = segments(ax, phase)
        assert len(segs) == 6 and segs[-1].get_gid() == f"segment-{phase}-other"
        assert sum(p.get_width() for p in segs) == pytest.approx(s[f"{phase}_time_s"])
        widths = [p.get_width() for p in segs[:-1]]
        assert widths == pytest.approx(sorted(widths, reverse=True))
    assert segments(ax, "decode")[0].get_gid() == "segment-decode-gate_proj"  # model order breaks the tie
    assert "[s]" in ax.get_xlabel() and ax.xaxis.get_major_formatter()(0.02) == "20 ms"
    assert "other" in legend_texts(ax) and "gate_proj" in legend_texts(ax)
    assert "21%" in all_text(ax)  # percentages on the large segments


def test_time_breakdown_by_bound(llama70_tp4):
    ax = plot.time_breakdown(llama70_tp4.ops, axes(), by="bound")
    s = llama70_tp4.summary.iloc[0]
    gids = [p.get_gid() for p in segments(ax, "decode")]
    assert gids == ["segment-decode-memory", "segment-decode-communication"]  # GPU-bound: no overhead
    comm = next(p for p in segments(ax, "decode") if p.get_gid().endswith("communication"))
    assert comm.get_width() == pytest.approx(s["decode_share_communication"] * s["decode_time_s"])
    assert legend_texts(ax) == ["memory-bound", "communication-bound"]
    with pytest.raises(ValueError, match="by must be 'op' or 'bound'"):
        plot.time_breakdown(llama70_tp4.ops, axes(), by="dtype")


# ------------------------------------------------------------------------------------------------
def test_sweep_chart_marks_the_ridge_batch():
    r = roofline.analyze(LLAMA, "a10", batch_size="1:256:x2")
    ax = plot.sweep_chart(r.summary, axes(), x="batch_size", metric="decode_tokens_per_s")
    assert ax.get_xscale() == "log"
    (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == "sweep-line"]
    assert list(line.get_xdata()) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    (ridge,) = [ln for ln in ax.get_lines() if ln.get_gid() == "ridge-batch"]
    assert r.summary["decode_ridge_batch"].iloc[0] == 227  # as the README says
    assert list(ridge.get_xdata()) == [227, 227]
    assert "decode compute-bound\nfrom batch 227" in all_text(ax)
    assert "tokens/s" in ax.get_ylabel() and "batch size" in ax.get_xlabel()
    latency = plot.sweep_chart(r.summary, axes(), metric="decode_time_s")
    assert "[s]" in latency.get_ylabel()
    prefill = plot.sweep_chart(r.summary, axes(), metric="prefill_time_s")
    assert not [ln for ln in prefill.get_lines() if ln.get_gid() == "ridge-batch"]  # a decode quantity


def test_sweep_chart_one_line_per_value_of_a_second_variable():
    r = roofline.analyze(LLAMA, "a10", batch_size=[1, 8, 64], prompt_len=[512, 2048], phase="decode")
    ax = plot.sweep_chart(r.summary, axes(), x="batch_size", metric="decode_time_s")
    lines = [ln for ln in ax.get_lines() if ln.get_gid() == "sweep-line"]
    assert [ln.get_label() for ln in lines] == ["prompt 512", "prompt 2048"]
    assert all(list(ln.get_xdata()) == [1, 8, 64] for ln in lines)
    with pytest.raises(ValueError, match="summary has no column 'ttft'"):
        plot.sweep_chart(r.summary, axes(), metric="ttft")


# ------------------------------------------------------------------------------------------------
def test_save_writes_png_and_svg(tmp_path, llama70_tp4):
    fig = plot.figure_roofline(llama70_tp4.ops, llama70_tp4.spec)
    written = plot.save(fig, tmp_path / "sub" / "chart.png")  # a .png suffix is replaced, folders made
    assert written == [tmp_path / "sub" / "chart.png", tmp_path / "sub" / "chart.svg"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written[1].read_text().lstrip().startswith("<?xml") and "<svg" in written[1].read_text()


def test_result_json_round_trip_and_figure(tmp_path):
    out = tmp_path / "r.json"
    from roofline.cli import main

    result = CliRunner().invoke(main, ["analyze", str(LLAMA), "--gpu", "a10", "--format", "json", "--output", str(out)])
    assert result.exit_code == 0, result.output
    ops, summary, gpu = plot.load_result_json(out)
    r = roofline.analyze(LLAMA, "a10")
    assert gpu == "a10" and ops.attrs["model"] == "llama-2-7b"
    assert list(ops["op"].astype(str)) == list(r.ops["op"].astype(str))
    assert np.allclose(ops["time_s"], r.ops["time_s"]) and list(ops["bound"]) == list(r.ops["bound"])
    assert summary["decode_tokens_per_s"].iloc[0] == pytest.approx(r.summary["decode_tokens_per_s"].iloc[0])
    fig = plot.figure_result(ops, summary, gpu)
    assert len(fig.axes) == 3  # the roofline and a breakdown per phase
    # the model and workload come from the result file
    assert (
        fig.axes[-1].get_title() == "llama-2-7b on a10: prefill + decode, batch 1, prompt 512, context 512; predicted"
    )
    with pytest.raises(RooflineError, match="written with --summary"):
        plot.figure_result(ops.iloc[:0], summary, gpu)


def test_result_json_errors_name_the_fix(tmp_path):
    with pytest.raises(InputFileError, match="result file not found: .*nope.json"):
        plot.load_result_json(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InputFileError, match="not valid JSON .*roofline analyze MODEL --gpu GPU --format json"):
        plot.load_result_json(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    with pytest.raises(InputFileError, match="not a roofline result \\(needs keys gpu, summary and ops\\)"):
        plot.load_result_json(other)


def test_one_colour_per_class_of_the_one_vocabulary():
    # predicted classes are the first four of the vocabulary; measured ones may also be latency or unknown
    assert tuple(plot.BOUND_COLORS) == CLASSES == MEASURED_BOUNDS
    assert BOUNDS == CLASSES[:5]
    assert len(set(plot.BOUND_COLORS.values()) | {plot.OTHER_COLOR}) == len(CLASSES) + 1  # all distinct


# ------------------------------------------------------------------------------------------------
# part 6 of issue 11: titles, one colour per op, predicted/measured, the memory limit


def test_titles_name_the_model_the_gpu_and_the_workload():
    r = roofline.analyze(LLAMA, "h100-sxm", tp=2, phase="decode", batch_size=8, context_len=1024)
    who = dict(model=r.model, workload=r.workload, summary=r.summary)
    want = "llama-2-7b on h100-sxm: decode, batch 8, prompt 512, context 1024, tp 2; predicted"
    assert plot.figure_roofline(r.ops, r.spec, **who).axes[0].get_title() == want
    assert plot.figure_time_breakdown(r.ops, spec=r.spec, **who).get_suptitle() == want
    assert plot.figure_result(r.ops, r.summary, r.spec, model=r.model, workload=r.workload).axes[-1].get_title() == want
    sweep = roofline.analyze(LLAMA, "h100-sxm", tp=2, phase="decode", batch_size="1:64:x4")
    fig = plot.figure_sweep(sweep.summary, spec=sweep.spec, model=sweep.model, workload=sweep.workload)
    assert fig.get_suptitle() == "llama-2-7b on h100-sxm: decode, batch 1-64, prompt 512, context 512, tp 2; predicted"
    # pipeline and expert parallelism too, from a result JSON's workload dict
    wl = {"tp": 1, "pp": 2, "microbatches": 4, "ep": 1}
    assert plot.chart_title(r.ops, "h100-sxm", model="m", workload=wl).endswith(
        "context 1024, pp 2 x 4 micro-batches; predicted"
    )


def test_one_colour_per_op_in_every_chart(llama_a10, llama70_tp4):
    def segment_colours(ax):
        out = {}
        for patch in ax.patches:
            gid = patch.get_gid() or ""
            if gid.startswith("segment-"):
                out.setdefault(gid.split("-", 2)[2], set()).add(tuple(patch.get_facecolor()))
        return out

    from matplotlib.colors import to_rgba

    a = segment_colours(plot.time_breakdown(llama_a10.ops, axes(), top=8))  # 7B, both phases
    b = segment_colours(plot.time_breakdown(llama70_tp4.ops, axes(), top=4))  # 70B tp 4 decode: other ops, order
    shared = (set(a) & set(b)) - {"other"}
    assert {"gate_proj", "up_proj", "down_proj"} <= shared
    for op in set(a) | set(b):
        colours = a.get(op, set()) | b.get(op, set())
        want = to_rgba(plot.OTHER_COLOR if op == "other" else plot.op_color(op))
        assert colours == {want}, op  # one colour per op in both charts and both phases
    assert len({plot.op_color(op) for op in plot.KNOWN_OPS}) == len(plot.KNOWN_OPS)  # all distinct
    assert plot.OTHER_COLOR not in plot.OP_COLORS.values() and "#7f7f7f" not in plot.OP_COLORS.values()
    assert plot.op_color("my_custom_op") == plot.op_color("my_custom_op")  # an unknown name: from its CRC-32


def test_analytic_charts_say_predicted_and_measured_ones_measured(llama_a10):
    ax = plot.roofline_chart(llama_a10.ops, llama_a10.spec, axes())
    assert ax.get_ylabel() == "predicted attained [FLOP/s]"
    ops = llama_a10.ops
    measured = ops.assign(measured_time_s=ops["time_s"] * 2)[["phase", "op", "flops", "measured_time_s"]]
    ax = plot.roofline_chart(ops, llama_a10.spec, axes(), measured=measured)
    assert ax.get_ylabel() == "attained [FLOP/s]: predicted (filled), measured (hollow)"
    assert plot.time_breakdown(ops, axes()).get_xlabel() == "predicted time [s]"
    r = roofline.analyze(LLAMA, "a10", batch_size=[1, 8], phase="decode")
    assert plot.sweep_chart(r.summary, axes(), metric="decode_time_s").get_ylabel().startswith("predicted decode")
    import pandas as pd

    by_range = pd.DataFrame({"range": ["a"], "self_gpu_time_s": [1e-3], "measured_bound": ["memory"]})
    ax = plot.trace_breakdown(by_range, axes())
    assert ax.get_xlabel() == "measured GPU time [s]" and legend_texts(ax) == ["memory-bound (measured)"]


def test_sweep_marks_the_memory_limit_and_the_title_says_what_does_not_fit():
    # llama-2-7b on an A10 (24 GB) at context 4096: weights 13.5 GB, KV cache per sequence
    # 2 (K, V) * 32 layers * 4096 tokens * 4096 * 2 B = 2.15 GB: batch 4 holds 22.1 GB, batch 8 30.7 GB
    r = roofline.analyze(LLAMA, "a10", batch_size="1:512:x2", context_len=4096, phase="decode")
    assert list(r.summary["fits_in_memory"]) == [True] * 3 + [False] * 7
    ax = plot.sweep_chart(r.summary, axes(), metric="decode_tokens_per_s")
    (limit,) = [ln for ln in ax.get_lines() if ln.get_gid() == "memory-limit"]
    assert list(limit.get_xdata()) == pytest.approx([32**0.5] * 2)  # halfway between 4 and 8 on the log axis
    (span,) = [p for p in ax.patches if p.get_gid() == "memory-limit"]
    assert span.get_x() == pytest.approx(32**0.5)
    assert "beyond 24 GB of GPU memory (weights + KV cache)" in legend_texts(ax)
    fig = plot.figure_sweep(r.summary, spec=r.spec, model=r.model)
    assert fig.get_suptitle().endswith("\n7 of 10 points do not fit in 24 GB of GPU memory (weights + KV cache)")
    assert fig.get_suptitle().startswith("llama-2-7b on a10: decode, batch 1-512")
    # one point that does not fit: its roofline says so in a second, red line of the title
    one = roofline.analyze(LLAMA, "a10", batch_size=64, context_len=4096, phase="decode")
    title = plot.figure_roofline(one.ops, one.spec, model=one.model, summary=one.summary).axes[0].title
    assert title.get_text().endswith("\nDOES NOT FIT in GPU memory: weights + KV cache 151 GB of 24 GB")
    assert title.get_color() == plot.MEMORY_LIMIT_COLOR
    # a caller's own title keeps the note
    fig = plot.figure_time_breakdown(one.ops, title="mine", summary=one.summary)
    assert fig.get_suptitle() == "mine\nDOES NOT FIT in GPU memory: weights + KV cache 151 GB of 24 GB"
    fits = roofline.analyze(LLAMA, "a10", batch_size=[1, 2], phase="decode")
    ax = plot.sweep_chart(fits.summary, axes(), metric="decode_time_s")
    assert not [a for a in ax.get_lines() + ax.patches if a.get_gid() == "memory-limit"]
