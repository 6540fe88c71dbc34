"""Roofline arithmetic: intensity, ridge, attainable FLOP/s, predicted time and the bound class.

For an op with F FLOPs, B bytes moved (read + written) and, for collectives, C bytes sent per GPU:
  arithmetic_intensity = F / B                              FLOP/byte
  ridge                = peak(dtype) / bandwidth            FLOP/byte
  attainable_flops     = min(peak, intensity * bandwidth)   FLOP/s
  time_s               = max(F / peak, B / bandwidth, alpha + C / link)   the roofline time
  bound                = communication  if the link term is the largest
                         overhead       elif time_s is below the per-kernel launch overhead
                         compute        elif F / peak >= B / bandwidth
                         memory         otherwise
  ridge_ratio          = intensity / ridge  (>1: compute side of the ridge, <1: memory side)
The peak is the one of the dtype the op computes in (tensor cores for matmuls and attention, the
fp32 CUDA-core peak for element-wise work). Ceilings come from HardwareSpec.ceiling_* : measured
where the spec was calibrated, datasheet otherwise. ``launch_s`` is one kernel launch (eager, or
inside a CUDA graph); ``time_s`` stays the pure roofline time and the launch floor is reported
beside it, so a sum of ``max(time_s, launch_s)`` is the time with launch overhead.
"""

import numpy as np
import pandas as pd

from roofline.specs import HardwareSpec

# "latency": neither roof reached (predict.py sets it from the calibrated kernel model)
BOUNDS = ("compute", "memory", "communication", "overhead", "latency")


def classify(frame: pd.DataFrame, spec: HardwareSpec, cuda_graph: bool = False) -> pd.DataFrame:
    """Add the roofline columns to an ops frame (needs flops, bytes_read, bytes_written,
    comm_bytes, compute_dtype). Returns a new frame. Raises SpecError for a dtype the part lacks."""
    out = frame.copy()
    dtypes = pd.Categorical(out["compute_dtype"])
    peak_of = np.array([spec.ceiling_flops(str(d)) for d in dtypes.categories])
    peak = peak_of[dtypes.codes]
    bw = spec.ceiling_bytes_per_s()
    flops = out["flops"].to_numpy(dtype=float)
    moved = out["bytes_read"].to_numpy(dtype=float) + out["bytes_written"].to_numpy(dtype=float)
    comm = out["comm_bytes"].to_numpy(dtype=float)

    with np.errstate(divide="ignore", invalid="ignore"):
        intensity = np.where(moved > 0, flops / moved, np.inf)
    ridge = peak / bw
    t_compute = flops / peak
    t_memory = moved / bw
    link = spec.ceiling_link_bytes_per_s()
    t_comm = np.where(comm > 0, spec.ceiling_collective_latency_s() + comm / link, 0.0)
    t = np.maximum(np.maximum(t_compute, t_memory), t_comm)
    launch = spec.ceiling_launch_s(cuda_graph)

    bound = np.where(t_compute >= t_memory, "compute", "memory").astype(object)
    bound[t < launch] = "overhead"
    bound[(comm > 0) & (t_comm >= np.maximum(t_compute, t_memory))] = "communication"

    out["arithmetic_intensity"] = intensity
    out["ridge"] = ridge
    out["ridge_ratio"] = intensity / ridge
    out["peak_flops_per_s"] = peak
    out["attainable_flops_per_s"] = np.minimum(peak, intensity * bw)
    out["time_compute_s"] = t_compute
    out["time_memory_s"] = t_memory
    out["time_comm_s"] = t_comm
    out["time_s"] = t
    out["launch_s"] = launch
    out["bound"] = pd.Categorical(bound, categories=BOUNDS)
    return out
