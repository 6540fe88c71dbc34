"""How stable is the eager (host-bound) step over a minute, and does pinning the process to one core help?

    OUT=/tmp/out python benchmarks/gpu_host_noise.py

The two-layer small Llama-style reference at decode batch 1 (host-bound), timed in 1-second windows
(mean step time per window, CUDA events) for 20 s unpinned, then 20 s pinned to one core, then 20 s
unpinned again; each window also records the load average and the mean CPU clock (/proc/cpuinfo).
Writes $OUT/host_noise.csv and prints a line per window.
"""

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from roofline.config import Workload, parse_model  # noqa: E402
from roofline.measure.calibrate import SMALL_MODEL  # noqa: E402
from roofline.measure.reference import build_reference  # noqa: E402


def mhz() -> float:
    vals = [float(line.split(":")[1]) for line in open("/proc/cpuinfo") if line.startswith("cpu MHz")]
    return sum(vals) / len(vals) if vals else float("nan")


def main():
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    cfg = parse_model(dict(SMALL_MODEL), "s")
    w = Workload(batch_size=(1,), prompt_len=(128,), context_len=(128,), phase="decode")
    rows = []
    with torch.no_grad():
        ref = build_reference(cfg, w, layers=2, device="cuda")
        ref.annotate = False
        step = ref.make_step("decode", 128, 128)
        all_cpus = os.sched_getaffinity(0)
        for label, cpus in (("unpinned", all_cpus), ("pinned", {sorted(all_cpus)[2]}), ("unpinned again", all_cpus)):
            os.sched_setaffinity(0, cpus)
            t_end = time.perf_counter() + 20
            while time.perf_counter() < t_end:
                t0 = time.perf_counter()
                n = 0
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                while time.perf_counter() - t0 < 1.0:
                    step()
                    n += 1
                end.record()
                end.synchronize()
                row = {
                    "mode": label,
                    "step_us": round(start.elapsed_time(end) * 1e3 / n, 1),
                    "steps": n,
                    "load1": os.getloadavg()[0],
                    "cpu_mhz": round(mhz()),
                }
                rows.append(row)
                print(row, flush=True)
    pd.DataFrame(rows).to_csv(out / "host_noise.csv", index=False)


if __name__ == "__main__":
    main()
