"""Probe (issue 10, MoE eager decode): what a host sync costs when it has to wait for the GPU.

The reference's MoE expert loop syncs at every ``torch.where`` (nonzero copies its count to the host). In the
Mixtral-shaped decode case the GPU kernels took the same time on two leases (1.89-1.91 ms per step) while the
fresh-process step went from 3.65 to 5.84-6.29 ms; the small calibration model, whose GPU work is shorter than
its host work, never waits at those syncs. This measures, per kernel length, the wall time of
(launch a kernel that spins for T, then torch.where on a small tensor) minus T, in a process that never ran the
profiler, as the fastest of several rounds. A wake-up cost that grows once the host really waits is what the
expert-loop model lacks. Then the Mixtral-shaped decode step itself (two layers, batch 8, context 1024), synced
after each step as steptime times it, with the wall time spent inside each ``torch.where`` summed per step
(``torch.where`` wrapped by a perf_counter pair), over several windows: the step, the host time in the syncs,
and the rest. Written at stop 9, first run at stop 10.

    OUT=/tmp/out python benchmarks/gpu_sync_wake.py      # -> $OUT/sync_wake.csv and stdout
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from roofline.io import write_rows  # noqa: E402

SPIN_US = (0, 5, 20, 50, 100, 200, 500, 1000)
ROUNDS, CALLS = 5, 200


def main():
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device("cuda")
    chosen = torch.randint(0, 8, (8, 2), device=dev)
    # cycles per microsecond from the SM clock the driver reports (torch.cuda._sleep spins for cycles)
    mhz = torch.cuda.clock_rate() if hasattr(torch.cuda, "clock_rate") else 1980
    rows = []
    for spin in SPIN_US:
        best_where = best_sync = float("inf")
        for _ in range(ROUNDS):
            for mode in ("where", "synchronize"):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(CALLS):
                    if spin:
                        torch.cuda._sleep(int(spin * mhz))
                    if mode == "where":
                        torch.where(chosen == 3)
                    else:
                        torch.cuda.synchronize()
                per_call = (time.perf_counter() - t0) / CALLS * 1e6
                if mode == "where":
                    best_where = min(best_where, per_call)
                else:
                    best_sync = min(best_sync, per_call)
        rows.append({"spin_us": spin, "where_us": round(best_where, 2), "synchronize_us": round(best_sync, 2),
                     "where_minus_spin_us": round(best_where - spin, 2)})  # fmt: skip
        print(rows[-1], flush=True)
    write_rows(out / "sync_wake.csv", rows)
    write_rows(out / "moe_where.csv", moe_step_windows())


def moe_step_windows(windows: int = 12, steps: int = 20) -> list:
    """Per window of ``steps`` synced Mixtral-shaped decode steps: ms per step, ms per step inside torch.where."""
    from roofline.config import load_model
    from roofline.measure.reference import build_reference
    from roofline.transformer import Workload

    spent = {"s": 0.0, "n": 0}
    where = torch.where

    def timed_where(*args, **kwargs):
        t0 = time.perf_counter()
        r = where(*args, **kwargs)
        spent["s"] += time.perf_counter() - t0
        spent["n"] += 1
        return r

    w = Workload(batch_size=(8,), prompt_len=(1,), phase="decode", context_len=1024)
    rows = []
    with torch.no_grad():
        ref = build_reference(load_model("mixtral-8x7b"), w, layers=2, max_context=1024)
        ref.annotate = False
        step = ref.make_step("decode", 1, 1024)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.5:
            step()
            torch.cuda.synchronize()
        torch.where = timed_where
        try:
            for i in range(windows):
                spent.update(s=0.0, n=0)
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
                    torch.cuda.synchronize()
                ms = (time.perf_counter() - t0) / steps * 1e3
                rows.append({"window": i, "step_ms": round(ms, 3), "where_ms": round(spent["s"] / steps * 1e3, 3),
                             "wheres_per_step": spent["n"] / steps})  # fmt: skip
                print(rows[-1], flush=True)
        finally:
            torch.where = where
    return rows


if __name__ == "__main__":
    main()
