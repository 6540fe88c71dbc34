"""Large sweeps in bounded memory (roofline.sweep): the grid cut into chunks in its own order, each
analysed by the same analyze(), written a chunk at a time; put together they are the whole analysis."""

import io
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import roofline
from roofline import render
from roofline.cli import main, render_analysis, render_sweep
from roofline.config import Workload, load_model_and_workload
from roofline.sweep import POINTS_PER_CHUNK, chunk_workloads, grid_size, iter_analysis

ROOT = Path(__file__).resolve().parent.parent
LLAMA = str(ROOT / "examples" / "llama-2-7b.yaml")


def grid(w: Workload) -> list:
    return list(itertools.product(w.batch_size, w.prompt_len, w.context_len or (None,)))


@pytest.mark.parametrize("context_len", [(32, 64, 128), None])
@pytest.mark.parametrize("per_chunk", [1, 2, 3, 5, 6, 7, 12, 29, 30, 31, 1000])
def test_chunks_cover_the_grid_in_order(per_chunk, context_len):
    w = Workload(batch_size=(1, 2, 3, 4, 5), prompt_len=(8, 16), context_len=context_len)
    chunks = list(chunk_workloads(w, per_chunk))
    assert all(grid_size(c) <= per_chunk for c in chunks)
    assert [p for c in chunks for p in grid(c)] == grid(w)  # every point once, batch outermost


def test_chunk_size_must_be_positive():
    with pytest.raises(ValueError, match="points_per_chunk must be at least 1, got 0"):
        list(chunk_workloads(Workload(), 0))


def test_the_chunks_put_together_are_the_whole_analysis():
    flags = dict(batch_size=[1, 8, 64], prompt_len=[128, 512], context_len=[512, 1024, 4096], tp=2)
    whole = roofline.analyze(LLAMA, "a10", **flags)
    chunks = list(iter_analysis(LLAMA, "a10", points_per_chunk=4, **flags))
    assert [len(c.summary) for c in chunks] == [3, 3, 3, 3, 3, 3]  # 18 points: one (batch, prompt) a chunk
    for name in ("ops", "summary"):
        joined = pd.concat([getattr(c, name) for c in chunks], ignore_index=True)
        for col in ("phase", "op", "category", "compute_dtype", "bound"):  # categories differ only in order
            if col in joined:
                joined[col] = joined[col].astype(str)
        want = getattr(whole, name).copy()
        for col in ("phase", "op", "category", "compute_dtype", "bound"):
            if col in want:
                want[col] = want[col].astype(str)
        pd.testing.assert_frame_equal(joined, want)
    assert list(pd.concat([c.summary for c in chunks])["point"]) == list(range(18))


def test_streamed_outputs_equal_the_whole_ones():
    m, w = load_model_and_workload(LLAMA, {"batch_size": (1, 2, 4, 8, 16), "context_len": (512, 2048)})
    whole = roofline.analyze(m, "h100-sxm", workload=w)

    def chunks():
        return iter_analysis(m, "h100-sxm", workload=w, points_per_chunk=3)

    for fmt, summary_only in itertools.product(("json", "csv", "table", "markdown"), (False, True)):
        streamed = render_sweep(chunks(), fmt, summary_only, workload=whole.workload)
        want = render_analysis(whole, fmt, summary_only)
        as_text = lambda t: t if isinstance(t, str) else "".join(t)  # noqa: E731
        assert as_text(streamed) == as_text(want), (fmt, summary_only)
    data = json.loads("".join(render_sweep(chunks(), "json", False, workload=whole.workload)))
    assert len(data["summary"]) == 10 and len(data["ops"]) == len(whole.ops)
    assert data["workload"]["batch_size"] == [1, 2, 4, 8, 16]


def test_a_sweep_larger_than_a_chunk_through_the_cli():
    # 101 batches x 200 contexts = 20,200 points > POINTS_PER_CHUNK: three chunks, one CSV
    assert POINTS_PER_CHUNK == 10_000
    args = ["--batch", "1:101", "--prompt-len", "128", "--context-len", "1024:13760:64", "--phase", "decode"]
    r = CliRunner().invoke(main, ["analyze", LLAMA, "--gpu", "h100-sxm", *args, "--summary", "--format", "csv"])
    assert r.exit_code == 0, r.output
    frame = pd.read_csv(io.StringIO(r.stdout))
    assert len(frame) == 20_200 and list(frame["point"]) == list(range(20_200))
    whole = roofline.analyze(
        LLAMA, "h100-sxm", batch_size="1:101", prompt_len=128, context_len="1024:13760:64", phase="decode"
    ).summary
    assert r.stdout == render.to_csv(whole)
    assert np.array_equal(frame["decode_time_s"].to_numpy(), whole["decode_time_s"].to_numpy())
