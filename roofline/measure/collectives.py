"""``calibrate_collectives``: all-reduce time and bus bandwidth across message sizes on the GPUs of
this host (or of several, with torchrun's rendezvous arguments), one process per GPU, as
nccl-tests' all_reduce_perf measures them; and the two figures the analytic model uses, written into
a spec's ``measured:`` section.

Method (each rank, through ``roofline.measure.distributed.launch`` and torchrun):
1. Check the sum once: rank r contributes r + 1 everywhere; every element must come back N(N+1)/2.
2. Per size (default 1 KiB to 1 GiB in powers of 4), a bf16 buffer of random normal values:
   ``warmup`` all-reduces (sum), then ``repeats`` times: refill with random values (outside the
   timing, so sums stay finite), a barrier, ``iters`` back-to-back all-reduces between two CUDA
   events on the calling stream; time per all-reduce = elapsed / iters. On GPUs the ``iters``
   all-reduces are captured once in a CUDA graph and replayed (``time_s``: device time, what
   nccl-tests' -G 1 measures); the same loop issued from Python gives ``time_eager_s``, which
   for small messages is the host's rate of issuing them (about 26 us each on an H200 host with
   PyTorch 2.11), not the link's. On the CPU (gloo) both are the host clock of the Python loop.
   A rank's figure is the median over repeats; a size's time is the slowest rank's.
3. algbw = size / time_s; busbw = algbw x 2(N-1)/N (nccl-tests' bus bandwidth: the bytes each GPU
   sends and receives per second in a ring, comparable with one direction of its link).

Into the spec (``collective_ceilings``, ``merge_collectives``):
- ``link_busbw_gb_per_s``: the largest busbw over the sizes (large messages); classify.py divides
  a collective's comm_bytes (2(N-1)/N x message) by it, which is the time that busbw implies.
- ``collective_latency_us``: the (graph-replayed) time of the smallest size, the alpha of
  alpha + bytes / link; the host's cost of issuing a collective is the launch overhead's business.
- ``conditions.collectives``: the table of sizes, the world size, dtype, backend, NCCL version.
"""

import copy
import os
import statistics
import sys
import time

import numpy as np
import pandas as pd
import torch

from roofline.errors import ConfigError, DeviceError
from roofline.measure.distributed import check_devices, check_rdzv_args, launch, nnodes_of, worker_main
from roofline.specs import parse_spec

DEFAULT_SIZES = tuple(1024 * 4**k for k in range(11))  # 1 KiB, 4 KiB, ..., 1 GiB (bytes)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def calibrate_collectives(
    sizes=None,
    nproc: int = None,
    *,
    dtype: str = "bf16",
    backend: str = "nccl",
    warmup: int = 5,
    iters: int = 20,
    repeats: int = 5,
    rdzv_args=(),
    timeout_s: float = 600.0,
    init_timeout_s: float = 120.0,
) -> pd.DataFrame:
    """All-reduce (sum) timings over ``sizes`` (bytes; default 1 KiB .. 1 GiB, powers of 4) on
    ``nproc`` GPUs of this host (default: all it has; with ``rdzv_args``, the same on every host).

    Returns one row per size: op, dtype, backend, world, size_bytes, time_s (slowest rank; CUDA-graph
    replay on GPUs), time_min_rank_s, time_eager_s (the Python loop, slowest rank),
    algbw_bytes_per_s, busbw_bytes_per_s (from time_s), iters, repeats.
    Raises DeviceError (fewer than 2 GPUs in all, no NCCL, a wrong sum, a rank that failed or hung),
    ConfigError (bad sizes, dtype or rendezvous arguments).
    """
    sizes = tuple(int(s) for s in (sizes or DEFAULT_SIZES))
    if not sizes or min(sizes) < 1:
        raise ConfigError("sizes must be positive numbers of bytes")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype '{dtype}' is not one of {', '.join(DTYPES)}")
    if min(warmup, iters, repeats) < 0 or iters < 1 or repeats < 1:
        raise ConfigError("iters and repeats must be at least 1, warmup at least 0")
    rdzv = check_rdzv_args(rdzv_args)
    nnodes = nnodes_of(rdzv)
    if nproc is None:
        nproc = torch.cuda.device_count() if backend == "nccl" and torch.cuda.is_available() else 2
    check_devices(backend, nproc, what=f"the all-reduce calibration on {nproc} processes")
    if nproc * nnodes < 2:
        raise DeviceError(f"an all-reduce calibration needs at least 2 GPUs; this host has {nproc}")
    job = {"sizes": sizes, "dtype": dtype, "warmup": warmup, "iters": iters, "repeats": repeats}
    payloads = launch(
        __name__,
        job,
        nproc=nproc,
        rdzv_args=rdzv,
        backend=backend,
        timeout_s=timeout_s,
        init_timeout_s=init_timeout_s,
        what="the all-reduce calibration",
    )
    return _table(payloads, job, backend)


def _table(payloads: list, job: dict, backend: str) -> pd.DataFrame:
    world = len(payloads)
    ranks = sorted(payloads, key=lambda p: p["rank"])
    per_rank = np.array([p["times_s"] for p in ranks])  # [rank, size]
    eager = np.array([p["eager_times_s"] for p in ranks]).max(axis=0)
    t = per_rank.max(axis=0)
    sizes = np.array(payloads[0]["size_bytes"], dtype=float)
    frame = pd.DataFrame(
        {
            "op": "all_reduce",
            "dtype": job["dtype"],
            "backend": backend,
            "world": world,
            "size_bytes": sizes,
            "time_s": t,
            "time_min_rank_s": per_rank.min(axis=0),
            "time_eager_s": eager,
            "algbw_bytes_per_s": sizes / t,
            "busbw_bytes_per_s": sizes / t * 2 * (world - 1) / world,
            "iters": job["iters"],
            "repeats": job["repeats"],
        }
    )
    frame.attrs["device"] = payloads[0].get("device", {})
    return frame


def _collectives_rank(job, rank, world, local_rank, device) -> dict:
    import torch.distributed as dist

    cuda = device.type == "cuda"
    dt = DTYPES[job["dtype"]]
    elem = torch.tensor([], dtype=dt).element_size()
    check = torch.full((1024,), float(rank + 1), dtype=dt, device=device)
    dist.all_reduce(check)
    want = world * (world + 1) / 2
    if not bool((check.float() == want).all()):
        raise DeviceError(
            f"all-reduce returned {check.float().unique().tolist()[:4]}, not {want} everywhere: "
            f"the collective is broken on this set-up"
        )
    gen = torch.Generator(device=device).manual_seed(1234 + rank)
    iters = job["iters"]
    for _ in range(max(job["warmup"], 1) * 4):  # the first calls set up NCCL's channels: keep them out of every size
        dist.all_reduce(check)

    def timed(x, run):
        reps = []
        for _ in range(job["repeats"]):
            x.normal_(generator=gen)  # outside the timing: sums stay finite
            dist.barrier()
            if cuda:
                torch.cuda.synchronize(device)
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                run()
                end.record()
                end.synchronize()
                reps.append(start.elapsed_time(end) * 1e-3 / iters)
            else:
                t0 = time.perf_counter()
                run()
                reps.append((time.perf_counter() - t0) / iters)
        return statistics.median(reps)

    sizes, times, eager_times = [], [], []
    for size in job["sizes"]:
        n = max(1, size // elem)
        x = torch.empty(n, dtype=dt, device=device)
        x.normal_(generator=gen)
        for _ in range(job["warmup"]):
            dist.all_reduce(x)

        def loop(x=x):
            for _ in range(iters):
                dist.all_reduce(x)

        eager = timed(x, loop)
        graph_time = eager
        if cuda:  # the same loop captured once and replayed: device time, no host in the way
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                dist.all_reduce(x)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                loop()
            graph.replay()
            graph_time = timed(x, graph.replay)
            del graph
        sizes.append(n * elem)
        times.append(graph_time)
        eager_times.append(eager)
        del x
        if cuda:
            torch.cuda.empty_cache()
    info = {
        "gpu": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": str(torch.__version__),
        "backend": dist.get_backend(),
    }
    if cuda:
        info["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        info["nvls_env"] = os.environ.get("NCCL_NVLS_ENABLE", "unset")
    return {"rank": rank, "size_bytes": sizes, "times_s": times, "eager_times_s": eager_times, "device": info}


# ----------------------------------------------------------------------------------------------
# into a spec


def collective_ceilings(frame: pd.DataFrame) -> dict:
    """The ``measured:`` keys from a ``calibrate_collectives`` table: link_busbw_gb_per_s (the largest
    busbw over the sizes) and collective_latency_us (the time of the smallest size)."""
    if not len(frame):
        raise ConfigError("the collective table is empty")
    small = frame.loc[frame["size_bytes"].idxmin()]
    return {
        "link_busbw_gb_per_s": _sig(float(frame["busbw_bytes_per_s"].max()) / 1e9),
        "collective_latency_us": _sig(float(small["time_s"]) * 1e6),
    }


def _sig(x: float, digits: int = 4) -> float:
    """``x`` to ``digits`` significant figures, as a plain float for YAML."""
    return float(f"{x:.{digits}g}")


def merge_collectives(raw: dict, frame: pd.DataFrame) -> dict:
    """A copy of the spec mapping ``raw`` (a shipped spec's YAML content, or what calibrate()
    returned) with the collective figures of ``frame`` in ``measured:`` (beside any there) and the
    size table under ``measured.conditions.collectives``; ``sources.measured`` says how. Raises
    SpecError (through parse_spec) when the result would not load."""
    out = copy.deepcopy(raw)
    ceilings = collective_ceilings(frame)
    measured = dict(out.get("measured") or {})
    measured.update(ceilings)
    conditions = dict(measured.get("conditions") or {})
    first = frame.iloc[0]
    device = dict(frame.attrs.get("device", {}))
    biggest = frame.loc[frame["busbw_bytes_per_s"].idxmax()]
    conditions["collectives"] = {
        "op": "all_reduce (sum)",
        "dtype": str(first["dtype"]),
        "backend": str(first["backend"]),
        "world": int(first["world"]),
        **{k: str(v) for k, v in device.items()},
        "iters": int(first["iters"]),
        "repeats": int(first["repeats"]),
        "busbw_max_at_bytes": int(biggest["size_bytes"]),
        "timing": "CUDA-graph replay of the loop" if str(first["backend"]) == "nccl" else "host clock",
        "sizes": [
            {
                "bytes": int(r.size_bytes),
                "time_us": _sig(r.time_s * 1e6),
                "time_eager_us": _sig(getattr(r, "time_eager_s", r.time_s) * 1e6),
                "busbw_gb_per_s": _sig(r.busbw_bytes_per_s / 1e9),
            }
            for r in frame.itertuples()
        ],
    }
    measured["conditions"] = conditions
    out["measured"] = measured
    sources = dict(out.get("sources") or {})
    text = (
        f"calibrate_collectives: all-reduce (sum) of {first['dtype']} on {int(first['world'])} GPUs through "
        f"torch.distributed ({first['backend']}), sizes {int(frame['size_bytes'].min())} to "
        f"{int(frame['size_bytes'].max())} bytes; per size the slowest rank's median over {int(first['repeats'])} "
        f"repeats of {int(first['iters'])} back-to-back all-reduces (on GPUs captured in a CUDA graph and replayed: "
        f"device time); busbw = size / time x 2(N-1)/N "
        f"(nccl-tests); link_busbw_gb_per_s = the largest busbw, collective_latency_us = the smallest size's time."
    )
    sources["measured"] = f"{sources['measured']} {text}" if sources.get("measured") else text
    out["sources"] = sources
    parse_spec(out, "<spec with collectives>")
    return out


if __name__ == "__main__":
    worker_main(sys.argv[1:], _collectives_rank)
