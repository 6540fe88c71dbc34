"""Probe (issue 10, eager decode steps): how many steps does a fresh process take to reach its steady eager step?

steptime warms a fresh process up for WARMUP_S (0.5 s) of steps and then times windows. A 0.8 ms step gets
600 warm-up steps in that; the Mixtral-shaped MoE decode step (6-8 ms at stop 10) gets about 70, and
benchmarks/gpu_sync_wake.py saw its synced step still falling from 8.1 to 6.3 ms over the 240 steps after.
This runs one model point in this (fresh, never profiled) process: windows of 20 synced steps for ``seconds``,
no warm-up, printing ms per step per window, so the drift can be read against steps and against seconds.

    OUT=/tmp/out python benchmarks/gpu_warmup_drift.py mixtral-8x7b 8 1024 [seconds]   # -> $OUT/drift_<model>.csv
"""

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from roofline.config import load_model  # noqa: E402
from roofline.io import write_rows  # noqa: E402
from roofline.measure.reference import build_reference  # noqa: E402
from roofline.transformer import Workload  # noqa: E402


def main():
    model, batch, context = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 8.0
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    w = Workload(batch_size=(batch,), prompt_len=(1,), phase="decode", context_len=context)
    rows = []
    with torch.no_grad():
        ref = build_reference(load_model(model), w, layers=2, max_context=context)
        ref.annotate = False
        step = ref.make_step("decode", 1, context)
        torch.cuda.synchronize()
        t_start, done = time.perf_counter(), 0
        while time.perf_counter() - t_start < seconds:
            t0 = time.perf_counter()
            for _ in range(20):
                step()
                torch.cuda.synchronize()
            done += 20
            rows.append({"steps": done, "t_s": round(time.perf_counter() - t_start, 3),
                         "ms_per_step": round((time.perf_counter() - t0) / 20 * 1e3, 4)})  # fmt: skip
    for r in rows[:: max(1, len(rows) // 30)]:
        print(model, r, flush=True)
    write_rows(out / f"drift_{model}_b{batch}.csv", rows)


if __name__ == "__main__":
    main()
