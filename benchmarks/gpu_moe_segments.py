"""Probe (issue 10, the MoE eager step): where the host's time goes in the reference's expert loop, on the
calibration's small MoE model (the shapes the expert-loop costs are measured on) and on the Mixtral-shaped cases
that validate predicts from them.

    OUT=/tmp/out python benchmarks/gpu_moe_segments.py [--rounds 8]

``torch.where`` (the loop's host sync, one per expert: reference.ReferenceDecoder._moe) is wrapped by a pair of
``perf_counter`` stamps, so a step splits into:
  where_empty_us     a where whose expert got no tokens, call to return (launches eq and nonzero, waits for its
                     count: the GPU is idle by then)
  where_after_us     a where that follows an expert with tokens (it also waits for that expert's kernels)
  body_us            an expert with tokens: its where's return to the next where's call (the host launching the
                     gather, three GEMMs, silu, mul, the weights' gather and mul, index_add_)
  active_us          body_us + where_after_us - where_empty_us: what one expert with tokens adds to the loop
                     (predict.expert_loop's host_per_active_expert, as the step pays it)
  loop_us            per layer, the first where's call to the last where's return (plus the last body)
  step_us            the 5-step window's step (synced after each step, as steptime times it)
Run as steptime runs a step (no autograd, no op annotations, no profiler in the process): the first run of this probe
had both on and its steps took 1.5-2.5x validate's. Each case is timed in ROUNDS interleaved rounds of one 5-step window each, in one process, after a warm-up;
the figures are the fastest window's and the median window's. Writes $OUT/moe_segments.csv (a row per case
and window) and prints the summary per case.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from roofline.config import Workload  # noqa: E402
from roofline.io import write_rows  # noqa: E402
from roofline.measure.calibrate import MOE_WIDE_BATCH, SMALL_MODEL, cold_vocab, small_moe_model  # noqa: E402
from roofline.measure.reference import build_reference  # noqa: E402
from roofline.measure.steptime import STEP_WINDOW, warm_up  # noqa: E402
from roofline.specs import load_spec  # noqa: E402
from roofline.validation import MATRIX, _case_setup  # noqa: E402

STAMPS: list = []


def stamped_where(original):
    def where(*args, **kwargs):
        t0 = time.perf_counter()
        result = original(*args, **kwargs)
        if len(args) == 1 and not kwargs:
            STAMPS.append((t0, time.perf_counter(), int(result[0].numel())))
        return result

    return where


def cases(spec) -> list:
    """(label, config, workload, phase, prompt, context) of the probe's four cases."""
    small = small_moe_model(cold_vocab(spec, SMALL_MODEL["hidden_size"]))
    out = []
    for batch in (1, MOE_WIDE_BATCH):
        w = Workload(batch_size=(batch,), prompt_len=(128,), context_len=(128,), phase="decode")
        out.append((f"small-moe-decode-b{batch}", small, w, "decode", 128, 128))
    for case in MATRIX:
        if case[0].startswith("moe-"):
            config, w = _case_setup(case, 2)
            out.append((case[0], config, w, case[2], case[4], case[5]))
    return out


def split(stamps: list, experts: int, steps: int) -> dict:
    """The window's where stamps -> the figures of the module docstring (µs, means over the window)."""
    per_loop = [stamps[i : i + experts] for i in range(0, len(stamps), experts)]
    empty, after, body, loops = [], [], [], []
    for loop in per_loop:
        for i, (t0, t1, n) in enumerate(loop):
            prev_active = i > 0 and loop[i - 1][2] > 0
            (after if prev_active else empty).append(t1 - t0)
            if n > 0 and i + 1 < len(loop):
                body.append(loop[i + 1][0] - t1)
        loops.append(loop[-1][1] - loop[0][0])
    mean = lambda xs: 1e6 * sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    e, a, b = mean(empty), mean(after), mean(body)
    return {
        "where_empty_us": round(e, 2),
        "where_after_us": round(a, 2),
        "body_us": round(b, 2),
        "active_us": round(b + a - e, 2),
        "active_per_loop": round(sum(n > 0 for loop in per_loop for *_, n in loop) / len(per_loop), 2),
        "loop_us": round(mean(loops), 2),
        "loops_per_step": len(per_loop) / steps,
    }


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    spec = load_spec("h200")
    torch.where = stamped_where(torch.where)
    built = []
    for label, config, w, phase, prompt, context in cases(spec):
        ref = build_reference(config, w, layers=2)
        ref.annotate = False  # no record_function ranges, as steptime times a step
        step = ref.make_step(phase, prompt, context)
        warm_up(step, True)
        torch.cuda.synchronize()
        built.append((label, config.num_local_experts, step))
        print(f"built {label}", flush=True)
    rows = []
    for r in range(args.rounds):
        for label, experts, step in built:
            STAMPS.clear()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(STEP_WINDOW):
                step()
                torch.cuda.synchronize()
            step_us = (time.perf_counter() - t0) / STEP_WINDOW * 1e6
            row = {"case": label, "round": r, "step_us": round(step_us, 1), **split(STAMPS, experts, STEP_WINDOW)}
            row["outside_loops_us"] = round(step_us - row["loop_us"] * row["loops_per_step"], 1)
            rows.append(row)
    write_rows(out / "moe_segments.csv", rows)
    keys = ["step_us", "loop_us", "outside_loops_us", "where_empty_us", "where_after_us", "body_us", "active_us"]
    for label, *_ in built:
        mine = sorted((x for x in rows if x["case"] == label), key=lambda x: x["step_us"])
        fast, med = mine[0], mine[len(mine) // 2]
        print(f"{label} (active per loop {fast['active_per_loop']}):")
        for k in keys:
            vals = [x[k] for x in mine]
            print(
                f"  {k:18s} fastest window {fast[k]:9.1f}  median window {med[k]:9.1f}  median {statistics.median(vals):9.1f}"
            )


if __name__ == "__main__":
    main()
