"""Probe (issue 10, the GEMM tables): how fast does an H200 enter and leave power capping under bf16 GEMMs?

benchmarks/gpu_gemm_context.py showed the gemm.bf16 table's cells at 256-1024 tokens timed at 1440-1500 MHz
under NVML's sw_power_cap (50 ms of back-to-back warm-up per cell, cell after cell), while the same kernels in a
two-layer reference step run at 1980 MHz. This measures, with the F.linear 512 x 4096 x 11008 of Llama-2-7B's
MLP (cold weights rotated among copies, as the table times it):

- onset: from a GPU idle for 2 s, back-to-back calls for 1.5 s, timed in chunks of 16 calls by CUDA events,
  with NVML's SM clock and power beside each chunk;
- recovery: after 1 s of back-to-back calls (capped), the host sleeps ``idle`` ms, then a burst of 3 + 8 calls
  is timed (the 8), for idle from 0 to 2000 ms.

    OUT=/tmp/out python benchmarks/gpu_power_cap.py   # -> $OUT/power_onset.csv, $OUT/power_recovery.csv
"""

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from roofline.io import write_rows  # noqa: E402
from roofline.measure import calibrate as C  # noqa: E402
from roofline.measure.nvml import _handle, _nvml, _reasons_fn, decode_reasons  # noqa: E402
from roofline.measure.profile import event_time_s  # noqa: E402

M, K, N = 512, 4096, 11008
IDLE_MS = (0, 5, 20, 50, 100, 200, 500, 1000, 2000)


def main():
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    nv = _nvml()
    h = _handle(nv, 0)
    reasons = _reasons_fn(nv)

    def state():
        return (
            nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
            nv.nvmlDeviceGetPowerUsage(h) / 1000.0,
            ",".join(decode_reasons(reasons(h))),
        )

    weights = [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(C.copies_for(2 * N * K))]
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    fn = C.rotating(F.linear, [(x, w) for w in weights])
    flops = 2 * M * K * N

    def chunk(calls):
        return event_time_s(fn, calls)

    for _ in range(3):
        chunk(4)
    time.sleep(2.0)
    onset, t0 = [], time.perf_counter()
    while time.perf_counter() - t0 < 1.5:
        s = chunk(16)
        mhz, watts, why = state()
        onset.append({"t_ms": round((time.perf_counter() - t0) * 1e3, 1), "us_per_call": round(s * 1e6, 2),
                      "tflops": round(flops / s / 1e12, 1), "sm_mhz": mhz, "power_w": watts, "reasons": why})  # fmt: skip
    for r in onset[:: max(1, len(onset) // 25)]:
        print("onset", r, flush=True)
    recovery = []
    for idle in IDLE_MS:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 1.0:
            chunk(16)
        before = state()
        time.sleep(idle / 1e3)
        at_start = state()
        chunk(3)
        s = chunk(8)
        recovery.append({"idle_ms": idle, "us_per_call": round(s * 1e6, 2), "tflops": round(flops / s / 1e12, 1),
                         "sm_mhz_capped": before[0], "sm_mhz_after_idle": at_start[0], "power_w_after_idle": at_start[1],
                         "reasons_after_idle": at_start[2], "sm_mhz_after": state()[0]})  # fmt: skip
        print("recovery", recovery[-1], flush=True)
    write_rows(out / "power_onset.csv", onset)
    write_rows(out / "power_recovery.csv", recovery)


if __name__ == "__main__":
    main()
