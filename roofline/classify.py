"""Roofline arithmetic and every bound rule: intensity, ridge, attainable FLOP/s, predicted time and
the predicted class (``classify``), and the class of what was measured (``classify_measured``, below).
Both speak one vocabulary, ``CLASSES``; a prediction uses its first four.

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
The time formula is ``roofline_time_s``, the one place it is written; the datasheet columns of a
comparison (compare.py) call it with the spec's datasheet figures instead of its ceilings.
The peak is the one of the dtype the op computes in (tensor cores for matmuls and attention, the
fp32 CUDA-core peak for element-wise work). Ceilings come from HardwareSpec.ceiling_* : measured
where the spec was calibrated, datasheet otherwise. ``launch_s`` is one kernel launch (eager, or
inside a CUDA graph); ``time_s`` stays the pure roofline time and the launch floor is reported
beside it, so a sum of ``max(time_s, launch_s)`` is the time with launch overhead.

Imports neither torch nor matplotlib.
"""

import numpy as np
import pandas as pd

from roofline.errors import SpecError
from roofline.render import si
from roofline.specs import HardwareSpec

# One vocabulary of classes for both sides; each has one colour in the charts (plot.BOUND_COLORS).
CLASSES = ("compute", "memory", "communication", "overhead", "latency", "unknown")
# what a prediction can say (the summary's share columns, one per class); "latency": neither roof reached,
# set by predict.py from the calibrated kernel model
BOUNDS = CLASSES[:5]
MEASURED_BOUNDS = CLASSES  # a measurement can also be latency-bound, or unknown (no FLOP/byte count)


def roofline_time_s(
    flops: float | np.ndarray,
    moved_bytes: float | np.ndarray,
    peak_flops_per_s: float | np.ndarray,
    mem_bytes_per_s: float | np.ndarray,
    comm_bytes: float | np.ndarray = 0.0,
    latency_s: float | np.ndarray = 0.0,
    link_bytes_per_s: float | np.ndarray = np.inf,
) -> float | np.ndarray:
    """The roofline time of an op (arrays or scalars): max(F / peak, B / bandwidth, alpha + C / link),
    the collective term only where C > 0. Returns (time_s, time_compute_s, time_memory_s, time_comm_s)."""
    t_compute = np.asarray(flops, dtype=float) / peak_flops_per_s
    t_memory = np.asarray(moved_bytes, dtype=float) / mem_bytes_per_s
    comm = np.asarray(comm_bytes, dtype=float)
    t_comm = np.where(comm > 0, latency_s + comm / link_bytes_per_s, 0.0)
    return np.maximum(np.maximum(t_compute, t_memory), t_comm), t_compute, t_memory, t_comm


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
    t, t_compute, t_memory, t_comm = roofline_time_s(
        flops, moved, peak, bw, comm, spec.ceiling_collective_latency_s(), spec.ceiling_link_bytes_per_s()
    )
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


# ------------------------------------------------------------------------------------------------
# measured classes: what a trace or a profiler run shows, judged against the same ceilings

# Thresholds, as fractions of a ceiling or ratios of times. Named so a test or a reader can see them.
BOUND_FRAC = 0.5  # at least this fraction of the FLOP/s or bytes/s roof: bound by that roof
LATENCY_FRAC = 0.3  # under this fraction of both roofs ...
LATENCY_KERNEL_S = 10e-6  # ... with kernels this short on average: latency (ramp-up, tail, sync)
OVERHEAD_SPAN_RATIO = 2.0  # host span at least this many times the GPU time ...
# ... with kernels shorter on average than spec.ceiling_launch_s(): the host cannot keep up
COMM_SHARE = 0.5  # NCCL kernels at least this share of the GPU time: communication
MIN_COSTED_SHARE = 0.5  # FLOPs/bytes must describe at least this share of the GPU time to judge roofs
DEFAULT_DTYPE = "bf16"  # compute dtype assumed where a row names none


def classify_measured(frame: pd.DataFrame, spec: HardwareSpec | str) -> pd.DataFrame:
    """Return a copy of ``frame`` with achieved rates, fractions of the spec's ceilings and a class.

    Columns read (per row: one kernel, op or range, over all its calls):
      gpu_time_s (kernel time, s), n_kernels; optional: span_s (host wall time of the calls, NaN
      when unknown), n_calls, flops, bytes (NaN when unknown; else bytes_read + bytes_written
      where a frame has those), compute_dtype (missing or None:
      bf16), costed_time_s (the part of gpu_time_s that flops/bytes describe; default all of it),
      comm_time_s (time in NCCL kernels; default: all of gpu_time_s when a ``name`` or
      ``top_kernels`` column mentions 'nccl'), device_busy_share (the share of span_s during which
      the device ran any work, all streams; NaN or missing: unknown).
    Columns added: achieved_flops_per_s, achieved_bytes_per_s (over costed_time_s),
      frac_of_compute_ceiling (of spec.ceiling_flops(compute_dtype)), frac_of_mem_ceiling (of
      spec.ceiling_bytes_per_s()), measured_bound (one of MEASURED_BOUNDS) and evidence, a short
      sentence with the numbers behind the class.

    Rules, first match wins:
      1. communication: comm_time_s >= COMM_SHARE of gpu_time_s.
      2. overhead: the average kernel is shorter than spec.ceiling_launch_s() and the device
         waited: it was idle for at least 1 - 1/OVERHEAD_SPAN_RATIO of the host span (from
         device_busy_share, the device's own timeline), or, where that is unknown, the host span is
         at least OVERHEAD_SPAN_RATIO x the row's GPU time. Needs span_s, not FLOPs.
      3. unknown: no FLOPs or bytes, or they describe under MIN_COSTED_SHARE of the GPU time.
      4. compute / memory: the larger fraction of ceiling, when it is >= BOUND_FRAC.
      5. latency: both fractions < LATENCY_FRAC and the average kernel < LATENCY_KERNEL_S: too
         little work per kernel to approach either roof.
      6. otherwise the nearer roof (compute or memory); the evidence gives how far below it is.

    Raises ValueError when gpu_time_s or n_kernels is missing; SpecError is caught per dtype (a
    dtype the spec has no peak for leaves frac_of_compute_ceiling NaN).
    """
    missing = [c for c in ("gpu_time_s", "n_kernels") if c not in frame.columns]
    if missing:
        raise ValueError(f"classify_measured needs columns {', '.join(missing)}")
    out = frame.copy()
    n = len(out)

    def col(name, default=np.nan):
        if name in out.columns:
            return pd.to_numeric(out[name], errors="coerce").to_numpy(dtype=float)
        return np.full(n, default, dtype=float)

    gpu = col("gpu_time_s")
    kernels = col("n_kernels")
    span = col("span_s")
    busy = col("device_busy_share")
    flops = col("flops")
    nbytes = (
        col("bytes")
        if "bytes" in out.columns or "bytes_read" not in out.columns
        else (col("bytes_read") + col("bytes_written", 0.0))
    )
    costed = col("costed_time_s") if "costed_time_s" in out.columns else gpu.copy()
    comm = col("comm_time_s") if "comm_time_s" in out.columns else np.where(_mentions_nccl(out), gpu, 0.0)
    dtypes = (
        out["compute_dtype"].where(out["compute_dtype"].notna(), DEFAULT_DTYPE).astype(str).to_numpy()
        if "compute_dtype" in out.columns
        else np.full(n, DEFAULT_DTYPE, dtype=object)
    )

    with np.errstate(divide="ignore", invalid="ignore"):
        per_kernel = gpu / kernels
        rate_f = np.where(costed > 0, flops / costed, np.nan)
        rate_b = np.where(costed > 0, nbytes / costed, np.nan)
        peak = np.array([_peak(spec, d) for d in dtypes], dtype=float)
        frac_c = rate_f / peak
        frac_m = rate_b / spec.ceiling_bytes_per_s()
        costed_share = np.where(gpu > 0, costed / gpu, 0.0)
        comm_share = np.where(gpu > 0, comm / gpu, 0.0)

    launch_s = spec.ceiling_launch_s()
    bound, evidence = [], []
    for i in range(n):  # one turn per row of a summary table, not per event
        args = (gpu[i], kernels[i], span[i], per_kernel[i], frac_c[i], frac_m[i], rate_f[i], rate_b[i], dtypes[i])
        if comm_share[i] >= COMM_SHARE:
            b, ev = "communication", f"NCCL kernels {comm_share[i]:.0%} of {si(gpu[i], 's')} GPU time"
        elif per_kernel[i] < launch_s and (
            busy[i] <= 1 / OVERHEAD_SPAN_RATIO if not np.isnan(busy[i]) else span[i] >= OVERHEAD_SPAN_RATIO * gpu[i]
        ):
            b, ev = "overhead", _overhead_evidence(out, i, *args[:3], busy=busy[i])
        elif np.isnan(flops[i]) and np.isnan(nbytes[i]):
            b, ev = "unknown", f"no FLOP/byte count; {si(per_kernel[i], 's')} per kernel"
        elif costed_share[i] < MIN_COSTED_SHARE:
            b = "unknown"
            ev = (
                f"FLOP/byte count known for {costed_share[i]:.0%} of its GPU time only; "
                f"{si(per_kernel[i], 's')} per kernel"
            )
        else:
            fc = -1.0 if np.isnan(frac_c[i]) else frac_c[i]
            fm = -1.0 if np.isnan(frac_m[i]) else frac_m[i]
            if max(fc, fm) >= BOUND_FRAC:
                b = "compute" if fc >= fm else "memory"
            elif max(fc, fm) < LATENCY_FRAC and per_kernel[i] < LATENCY_KERNEL_S:
                b = "latency"
            else:
                b = "compute" if fc >= fm else "memory"
            ev = _roof_evidence(*args[3:])
        bound.append(b)
        evidence.append(ev)

    out["achieved_flops_per_s"] = rate_f
    out["achieved_bytes_per_s"] = rate_b
    out["frac_of_compute_ceiling"] = frac_c
    out["frac_of_mem_ceiling"] = frac_m
    out["measured_bound"] = bound
    out["evidence"] = evidence
    return out


def _peak(spec, dtype) -> float:
    try:
        return spec.ceiling_flops(dtype)
    except SpecError:
        return np.nan


def _mentions_nccl(frame: pd.DataFrame) -> np.ndarray:
    hit = np.zeros(len(frame), dtype=bool)
    for name in ("name", "top_kernels"):
        if name in frame.columns:
            hit |= frame[name].astype(str).str.contains("nccl", case=False, regex=False).to_numpy()
    return hit


def _overhead_evidence(frame, i, gpu, kernels, span, busy=np.nan) -> str:
    calls = frame["n_calls"].iloc[i] if "n_calls" in frame.columns else 1
    calls = calls if calls and calls == calls and calls > 0 else 1
    per = " per call" if calls > 1 else ""
    if np.isnan(busy):
        return f"kernels {si(gpu / calls, 's')} in a {si(span / calls, 's')} span{per}; GPU idle {1 - gpu / span:.0%}"
    return (
        f"kernels {si(gpu / calls, 's')} in a {si(span / calls, 's')} span{per}; device idle {1 - busy:.0%} "
        f"of it (all streams)"
    )


def _roof_evidence(per_kernel, frac_c, frac_m, rate_f, rate_b, dtype) -> str:
    parts = []
    if not np.isnan(rate_f):
        share = "no peak in spec" if np.isnan(frac_c) else f"{frac_c:.0%} of {dtype} peak"
        parts.append(f"{si(rate_f, 'FLOP/s')} = {share}")
    if not np.isnan(rate_b):
        parts.append(f"{si(rate_b, 'B/s')} = {frac_m:.0%} of memory bandwidth")
    parts.append(f"{si(per_kernel, 's')} per kernel")
    return "; ".join(parts)
