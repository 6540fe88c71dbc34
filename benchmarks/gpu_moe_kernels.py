"""Where the routed experts' kernel time goes: the reference's MoE step (validate's moe cases, Mixtral shapes,
2 layers), every kernel of the experts op by the aten op and shapes that launched it (--spec only classifies
the trace; the prediction is not computed here).

    OUT=/tmp/out python benchmarks/gpu_moe_kernels.py [--spec reports/h200/calibration.yaml]

Writes $OUT/moe_kernels.csv: per case, the experts op's kernels grouped by the aten op that launched them and its
recorded shapes (roofline's own trace join, analyze_trace): kernels and device microseconds per step, the
bytes and FLOPs the trace's costs give them. Built to answer why the experts op of the MoE prefill
(512 tokens, about 128 per expert) measured 17-20% over its prediction in reports/validate-h200 while decode
(2.2 tokens per expert) was within 10%.
"""

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from roofline.io import write_rows  # noqa: E402
from roofline.measure.reference import build_reference  # noqa: E402
from roofline.measure.trace import analyze_trace  # noqa: E402
from roofline.validation import MATRIX, _case_setup  # noqa: E402

STEPS = 3
CASES = [c for c in MATRIX if c[0].startswith("moe-")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default=str(ROOT / "reports" / "h200" / "calibration.yaml"))
    args = ap.parse_args()
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in CASES:
        label, _, phase, _, prompt, context = case
        config, w = _case_setup(case, 2)
        ref = build_reference(config, w, layers=2)
        step = ref.make_step(phase, prompt, context)
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        acts = torch.profiler.ProfilerActivity
        with torch.profiler.profile(activities=[acts.CPU, acts.CUDA], record_shapes=True) as prof:
            for _ in range(STEPS):
                step()
            torch.cuda.synchronize()
        trace = out / f"{label}.json"
        prof.export_chrome_trace(str(trace))
        k = analyze_trace(trace, args.spec).kernels
        trace.unlink()
        ex = k[k["range"] == "experts"]
        print(
            f"{label}: experts op {ex['dur_s'].sum() / STEPS * 1e6:.1f} us of kernels per step, {len(ex) / STEPS:.0f} kernels"
        )
        dims = ex["op_dims"].map(lambda d: str(d)[:60])
        for (op, d), g in ex.groupby([ex["cpu_op"], dims], sort=False):
            rows.append(
                {
                    "case": label,
                    "cpu_op": op,
                    "dims": d,
                    "kernels_per_step": len(g) / STEPS,
                    "device_us_per_step": g["dur_s"].sum() / STEPS * 1e6,
                    "mean_us": g["dur_s"].mean() * 1e6,
                    "bytes_per_step": g["bytes"].sum() / STEPS,
                    "flops_per_step": g["flops"].sum() / STEPS,
                    "kernel": g["name"].iloc[0][:80],
                }
            )
        by_op = ex.groupby("cpu_op")["dur_s"].agg(["count", "sum", "mean"]).sort_values("sum", ascending=False)
        for op, r in by_op.iterrows():
            print(
                f"  {op:28s} {r['count'] / STEPS:6.1f} kernels {r['sum'] / STEPS * 1e6:9.1f} us/step  mean {r['mean'] * 1e6:7.2f} us"
            )
        del ref, step
        torch.cuda.empty_cache()
    write_rows(out / "moe_kernels.csv", rows)


if __name__ == "__main__":
    main()
