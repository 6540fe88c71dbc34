"""Probe (issue 10, the MoE eager step): do the expert-loop keys depend on the experts' size?

`roofline calibrate` measures the expert loop's keys (predict.expert_loop: host cost, kernels and GPU time per
expert with tokens, the small-kernel time) on SMALL_MODEL with 8 experts of 1.4 MB per matrix
(calibrate.small_moe_model). There, every ``torch.where`` sync finds an idle GPU. A real MoE's experts are tens
of MB and up, so the GPU is still busy when the host reaches the sync, and the host's launches and an expert's
kernels take about the same time (reports/h200/moe-segments). validate's Mixtral-shaped decode step measured
10.9-15.9% over its prediction in every run of stop 15, and a what-if there showed that the experts' GPU time
explains about 1% of it.

This measures the keys exactly as calibrate does (fresh-process step times as the fastest of STEP_ROUNDS
interleaved rounds, then one profiled run per point, calibrate.op_costs and calibrate.expert_loop_keys over the
routing the runs counted), on two models at decode batch 1 and MOE_WIDE_BATCH, context 128:
  small     calibrate.small_moe_model (the calibration's own)
  mixtral   validate's mixtral-8x7b at 2 layers (experts 4096 x 14336, 117 MB per matrix)
and prints both side by side. The Mixtral down matrix runs split-K at these tokens (one more kernel per expert
with tokens; split_kernel_host_us each): compare kernels_per_active_expert - 1.

    OUT=/tmp/out python benchmarks/gpu_moe_expert_size.py [--spec reports/validate-h200/split-k/calibration-routed.yaml]
"""

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roofline.config import Workload, load_model  # noqa: E402
from roofline.measure.calibrate import (  # noqa: E402
    MOE_WIDE_BATCH,
    SMALL_MODEL,
    STEP_ROUNDS,
    _timed_steps,
    cold_vocab,
    expert_loop_keys,
    op_costs,
    profiled,
    small_moe_model,
)
from roofline.measure.steptime import STEP_WINDOW  # noqa: E402
from roofline.specs import data_dir, load_spec  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default=str(ROOT / "reports" / "validate-h200" / "split-k" / "calibration-routed.yaml"))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--models", default="small,mixtral", help="comma-separated: small, mixtral")
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the script's plumbing")
    args = ap.parse_args()
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    spec = load_spec(args.spec)
    models = {
        "small": small_moe_model(cold_vocab(spec, SMALL_MODEL["hidden_size"])),
        "mixtral": replace(load_model(data_dir("examples") / "mixtral-8x7b.yaml"), num_hidden_layers=2),
    }
    points = {
        b: Workload(batch_size=(b,), prompt_len=(128,), context_len=(128,), phase="decode") for b in (1, MOE_WIDE_BATCH)
    }
    models = {n: models[n] for n in args.models.split(",")}
    runs = [(name, b) for name in models for b in points]
    jobs = [
        {"config": models[n], "workload": points[b], "layers": 2, "timing_iters": STEP_WINDOW, "graph": False}
        for n, b in runs
    ]
    for job in jobs:
        job["device"] = args.device
    timed = _timed_steps(jobs, STEP_ROUNDS, "the MoE models")
    costs, routed = {}, {}
    for (name, b), step_times in zip(runs, timed):
        ops, step = profiled(
            models[name],
            points[b],
            spec,
            layers=2,
            warmup=5,
            iters=args.repeats,
            step_times=step_times,
            device=args.device,
        )
        costs[name, b] = op_costs(ops, step)["experts"]
        routed[name, b] = step.get("routed_experts_ref")
        print(
            f"{name} b{b}: eager step {step['eager_step_ref_s'] * 1e6:.1f} us, routed {routed[name, b]}, experts {costs[name, b]}",
            flush=True,
        )
    result = {}
    for name, m in models.items():
        keys = expert_loop_keys(
            costs[name, 1],
            costs[name, MOE_WIDE_BATCH],
            m.num_local_experts,
            m.num_experts_per_tok,
            MOE_WIDE_BATCH,
            (routed[name, 1], routed[name, MOE_WIDE_BATCH]),
        )
        result[name] = {"batch_1": costs[name, 1], f"batch_{MOE_WIDE_BATCH}": costs[name, MOE_WIDE_BATCH], "keys": keys}
        print(f"{name}: {keys}")
    (out / "moe_expert_size.json").write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
