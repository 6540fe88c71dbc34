"""``calibrate_collectives``: the time and bus bandwidth of all-reduce, all-gather, reduce-scatter and
all-to-all across message sizes on the GPUs of this host (or of several, with torchrun's rendezvous
arguments), one process per GPU, as nccl-tests' *_perf programs measure them; written into a spec's
``measured:`` section as a per-size table per collective (the prediction's collective model,
roofline/predict.py ``collective_times``) and the two all-reduce figures of the alpha + bytes / link model.

Sizes (nccl-tests' convention, doc/PERFORMANCE.md): the size S of a call is its whole buffer:
  all_reduce       the buffer (in place)            dist.all_reduce(x[S])
  all_gather       the gathered OUTPUT              dist.all_gather_into_tensor(out[S], in[S/N])
  reduce_scatter   the INPUT (N shards)             dist.reduce_scatter_tensor(out[S/N], in[S])
  all_to_all       one rank's send buffer           dist.all_to_all_single(out[S], in[S])
and the bus bandwidth busbw = S / time x factor: all-reduce 2(N-1)/N, the other three (N-1)/N
(predict.COLLECTIVE_BUSBW_FACTOR): the bytes each GPU sends per second, comparable with one direction
of its link whatever N. All but all-reduce round S down to whole elements per rank (N x elements).

Method (each rank, through ``roofline.measure.distributed.launch`` and torchrun):
1. Check each collective once, in fp32 (small integers, exact): all-reduce of r + 1 gives N(N+1)/2;
   all-gather of r + 1 gives shard j = j + 1; reduce-scatter of shards j + 1 gives rank r N(r + 1);
   all-to-all of rN + j (shard j of rank r) gives rank r shard q = qN + r. A wrong value: DeviceError.
2. Per collective and size, buffers of random normal values in ``dtype``: ``warmup`` calls, then
   ``repeats`` times: refill the input (outside the timing, so sums stay finite), a barrier, ``iters``
   back-to-back calls between two CUDA events on the calling stream; time per call = elapsed / iters.
   On GPUs the ``iters`` calls are captured once in a CUDA graph and replayed (``time_s``: device time,
   what nccl-tests' -G 1 measures; where capture fails the eager time is used and a note says so); the
   same loop issued from Python gives ``time_eager_s``, which for small messages is the host's rate of
   issuing them (about 26 us each on an H200 host with PyTorch 2.11), not the link's. On the CPU (gloo)
   both are the host clock of the Python loop. A rank's figure is the median over repeats; a size's
   time is the slowest rank's.

Into the spec (``merge_collectives``):
- ``collectives``: per collective {world, bytes, time_us}: the sizes and the (graph-replayed) times per
  call, back to back, which the prediction interpolates (predict.py ``collective_times``). Back to back
  in a graph, a call's time holds the gap before its kernel too; the prediction adds the spec's launch
  gap to every op, this one included (one gap, about 1 us on an H200, counted twice).
- ``link_busbw_gb_per_s``: the largest all-reduce busbw over the sizes (large messages); classify.py
  divides a collective's comm_bytes by it (alpha + bytes / link, the model where no table applies).
- ``collective_latency_us``: the all-reduce time of the smallest size, the alpha of that model.
- ``conditions.collectives``: every row (op, size, time, eager time, busbw), world size, dtype, backend,
  NCCL version, the NVLink-multicast environment of the ranks, notes.
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
from roofline.measure.distributed import (
    ENV_RECORDED,
    check_devices,
    check_rdzv_args,
    launch,
    nnodes_of,
    worker_main,
)
from roofline.predict import COLLECTIVE_BUSBW_FACTOR
from roofline.specs import parse_spec
from roofline.validate import suggest

DEFAULT_SIZES = tuple(1024 * 4**k for k in range(11))  # 1 KiB, 4 KiB, ..., 1 GiB (bytes)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")


def calibrate_collectives(
    sizes=None,
    nproc: int = None,
    *,
    ops=OPS,
    dtype: str = "bf16",
    backend: str = "nccl",
    warmup: int = 5,
    iters: int = 20,
    repeats: int = 5,
    rdzv_args=(),
    timeout_s: float = 600.0,
    init_timeout_s: float = 120.0,
) -> pd.DataFrame:
    """Timings of the collectives ``ops`` (default all four of OPS) over ``sizes`` (bytes, nccl-tests'
    size of a call: module docstring; default 1 KiB .. 1 GiB, powers of 4) on ``nproc`` GPUs of this
    host (default: all it has; with ``rdzv_args``, the same on every host).

    Returns one row per op and size: op, dtype, backend, world, size_bytes (as run: whole elements per
    rank), time_s (slowest rank; CUDA-graph replay on GPUs), time_min_rank_s, time_eager_s (the Python
    loop, slowest rank), algbw_bytes_per_s, busbw_bytes_per_s (from time_s, nccl-tests' factor of the
    op), iters, repeats; ``attrs['device']`` (GPU, versions, the ranks' NCCL environment) and
    ``attrs['notes']``.
    Raises DeviceError (fewer than 2 GPUs in all, no NCCL, a wrong result, a rank that failed or hung),
    ConfigError (bad sizes, ops, dtype or rendezvous arguments).
    """
    sizes = tuple(sorted({int(s) for s in (sizes or DEFAULT_SIZES)}))
    if not sizes or min(sizes) < 1:
        raise ConfigError("sizes must be positive numbers of bytes")
    ops = tuple(dict.fromkeys(ops or ()))
    if not ops:
        raise ConfigError(f"no collective to measure; choose from {', '.join(OPS)}")
    for op in ops:
        if op not in OPS:
            raise ConfigError(f"unknown collective '{op}'{suggest(str(op), OPS)}; known: {', '.join(OPS)}")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype '{dtype}' is not one of {', '.join(DTYPES)}")
    if min(warmup, iters, repeats) < 0 or iters < 1 or repeats < 1:
        raise ConfigError("iters and repeats must be at least 1, warmup at least 0")
    rdzv = check_rdzv_args(rdzv_args)
    nnodes = nnodes_of(rdzv)
    if nproc is None:
        nproc = torch.cuda.device_count() if backend == "nccl" and torch.cuda.is_available() else 2
    check_devices(backend, nproc, what=f"the collective calibration on {nproc} processes")
    if nproc * nnodes < 2:
        raise DeviceError(f"a collective calibration needs at least 2 GPUs; this host has {nproc}")
    job = {"ops": ops, "sizes": sizes, "dtype": dtype, "warmup": warmup, "iters": iters, "repeats": repeats}
    payloads = launch(
        __name__,
        job,
        nproc=nproc,
        rdzv_args=rdzv,
        backend=backend,
        timeout_s=timeout_s,
        init_timeout_s=init_timeout_s,
        what="the collective calibration",
    )
    return collective_frame(payloads, job, backend)


def collective_frame(payloads: list, job: dict, backend: str) -> pd.DataFrame:
    """The table ``calibrate_collectives`` returns, from the per-rank payloads of ``_collectives_rank``."""
    world = len(payloads)
    ranks = sorted(payloads, key=lambda p: p["rank"])
    per_rank = np.array([p["times_s"] for p in ranks])  # [rank, row]
    eager = np.array([p["eager_times_s"] for p in ranks]).max(axis=0)
    t = per_rank.max(axis=0)
    sizes = np.array(ranks[0]["size_bytes"], dtype=float)
    factor = np.array([COLLECTIVE_BUSBW_FACTOR[op](world) for op in ranks[0]["ops"]])
    frame = pd.DataFrame(
        {
            "op": ranks[0]["ops"],
            "dtype": job["dtype"],
            "backend": backend,
            "world": world,
            "size_bytes": sizes,
            "time_s": t,
            "time_min_rank_s": per_rank.min(axis=0),
            "time_eager_s": eager,
            "algbw_bytes_per_s": sizes / t,
            "busbw_bytes_per_s": sizes / t * factor,
            "iters": job["iters"],
            "repeats": job["repeats"],
        }
    )
    # a user's sizes can round to the same whole-element size: keep the first of each
    frame = frame.drop_duplicates(["op", "size_bytes"]).reset_index(drop=True)
    frame.attrs["device"] = ranks[0].get("device", {})
    frame.attrs["notes"] = sorted({n for p in ranks for n in p.get("notes", [])})
    return frame


def _elements(op: str, size: int, elem: int, world: int) -> int:
    """Elements of the size-``size`` buffer of ``op`` (module docstring): whole, and for every op but
    all-reduce a multiple of ``world`` (equal shards), at least one per rank."""
    n = max(1, size // elem)
    if op == "all_reduce":
        return n
    return max(world, n // world * world)


def _buffers(op: str, n: int, world: int, dt, device) -> tuple:
    """(input, output, call) for one size: ``call()`` runs ``op`` once on them."""
    import torch.distributed as dist

    if op == "all_reduce":
        x = torch.empty(n, dtype=dt, device=device)
        return x, x, lambda: dist.all_reduce(x)
    if op == "all_gather":
        inp, out = torch.empty(n // world, dtype=dt, device=device), torch.empty(n, dtype=dt, device=device)
        return inp, out, lambda: dist.all_gather_into_tensor(out, inp)
    if op == "reduce_scatter":
        inp, out = torch.empty(n, dtype=dt, device=device), torch.empty(n // world, dtype=dt, device=device)
        return inp, out, lambda: dist.reduce_scatter_tensor(out, inp)
    inp, out = torch.empty(n, dtype=dt, device=device), torch.empty(n, dtype=dt, device=device)
    return inp, out, lambda: dist.all_to_all_single(out, inp)


def check_collective(op: str, rank: int, world: int, device, shard: int = 256) -> None:
    """Run ``op`` once on known fp32 values (module docstring, 1) and raise DeviceError unless every
    element comes back as it must."""
    n = shard * world
    inp, out, call = _buffers(op, n, world, torch.float32, device)
    j = torch.arange(world, dtype=torch.float32, device=device).repeat_interleave(shard)  # shard index
    if op == "all_reduce":
        inp.fill_(rank + 1)
        want = torch.full_like(out, world * (world + 1) / 2)
    elif op == "all_gather":
        inp.fill_(rank + 1)
        want = j + 1
    elif op == "reduce_scatter":
        inp.copy_(j + 1)
        want = torch.full_like(out, world * (rank + 1))
    else:
        inp.copy_(rank * world + j)
        want = j * world + rank
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if not torch.equal(out, want):
        bad = (out != want).nonzero()[0].item()
        raise DeviceError(
            f"{op} on {world} ranks returned {out[bad].item()} at element {bad} of rank {rank}, not "
            f"{want[bad].item()}: the collective is broken on this set-up"
        )


def _collectives_rank(job, rank, world, local_rank, device) -> dict:
    import torch.distributed as dist

    cuda = device.type == "cuda"
    dt = DTYPES[job["dtype"]]
    elem = torch.tensor([], dtype=dt).element_size()
    for op in job["ops"]:
        check_collective(op, rank, world, device)
    gen = torch.Generator(device=device).manual_seed(1234 + rank)
    iters = job["iters"]
    warm = torch.ones(1024, dtype=dt, device=device)
    for _ in range(max(job["warmup"], 1) * 4):  # the first calls set up NCCL's channels: keep them out of every size
        dist.all_reduce(warm)
    notes = []

    def timed(inp, run):
        reps = []
        for _ in range(job["repeats"]):
            inp.normal_(generator=gen)  # outside the timing: sums stay finite
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

    ops, sizes, times, eager_times = [], [], [], []
    for op in job["ops"]:
        for size in job["sizes"]:
            n = _elements(op, size, elem, world)
            inp, out, call = _buffers(op, n, world, dt, device)
            inp.normal_(generator=gen)
            for _ in range(job["warmup"]):
                call()

            def loop(call=call):
                for _ in range(iters):
                    call()

            eager = timed(inp, loop)
            graph_time = eager
            if cuda:  # the same loop captured once and replayed: device time, no host in the way
                graph_time = _graph_time(loop, call, inp, timed, device, notes, f"{op} at {n * elem} B")
            ops.append(op)
            sizes.append(n * elem)
            times.append(graph_time)
            eager_times.append(eager)
            del inp, out, call
            if cuda:
                torch.cuda.empty_cache()
    info = {
        "gpu": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch": str(torch.__version__),
        "backend": dist.get_backend(),
        "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_RECORDED)},
    }
    if cuda:
        info["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        info["nvls_env"] = os.environ.get("NCCL_NVLS_ENABLE", "unset")
    return {
        "rank": rank,
        "ops": ops,
        "size_bytes": sizes,
        "times_s": times,
        "eager_times_s": eager_times,
        "device": info,
        "notes": notes,
    }


def _graph_time(loop, call, inp, timed, device, notes: list, what: str):
    """Seconds per call of ``loop`` captured in a CUDA graph and replayed; the eager time (a note says
    so) where capture fails."""
    try:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            call()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loop()
        graph.replay()
    except RuntimeError as exc:
        torch.cuda.synchronize(device)
        notes.append(f"{what}: CUDA-graph capture failed ({str(exc).splitlines()[0][:120]}); eager time used")
        return timed(inp, loop)
    try:
        return timed(inp, graph.replay)
    finally:
        del graph


# ----------------------------------------------------------------------------------------------
# into a spec


def collective_ceilings(frame: pd.DataFrame) -> dict:
    """The alpha + bytes / link keys of ``measured:`` from the all-reduce rows of a
    ``calibrate_collectives`` table: link_busbw_gb_per_s (the largest busbw over the sizes) and
    collective_latency_us (the time of the smallest size); {} without all-reduce rows. Raises
    ConfigError for an empty table."""
    if not len(frame):
        raise ConfigError("the collective table is empty")
    ar = frame[frame["op"] == "all_reduce"]
    if not len(ar):
        return {}
    small = ar.loc[ar["size_bytes"].idxmin()]
    return {
        "link_busbw_gb_per_s": _sig(float(ar["busbw_bytes_per_s"].max()) / 1e9),
        "collective_latency_us": _sig(float(small["time_s"]) * 1e6),
    }


def collective_tables(frame: pd.DataFrame) -> dict:
    """``measured.collectives`` from a ``calibrate_collectives`` table: per op {world, bytes, time_us}
    (sizes increasing, times to 4 significant figures), as specs.parse_collective_tables reads it."""
    out = {}
    for op, f in frame.groupby("op", sort=False):
        f = f.sort_values("size_bytes")
        out[str(op)] = {
            "world": int(f["world"].iloc[0]),
            "bytes": [int(b) for b in f["size_bytes"]],
            "time_us": [_sig(t * 1e6) for t in f["time_s"]],
        }
    return out


def _sig(x: float, digits: int = 4) -> float:
    """``x`` to ``digits`` significant figures, as a plain float for YAML."""
    return float(f"{x:.{digits}g}")


def merge_collectives(raw: dict, frame: pd.DataFrame) -> dict:
    """A copy of the spec mapping ``raw`` (a shipped spec's YAML content, or what calibrate()
    returned) with the collective model of ``frame`` in ``measured:`` (``collectives`` and, from the
    all-reduce, the two alpha + bytes / link figures, beside any there) and every row under
    ``measured.conditions.collectives``; ``sources.measured`` says how. Raises SpecError (through
    parse_spec) when the result would not load."""
    out = copy.deepcopy(raw)
    measured = dict(out.get("measured") or {})
    measured.update(collective_ceilings(frame))
    measured["collectives"] = collective_tables(frame)
    conditions = dict(measured.get("conditions") or {})
    first = frame.iloc[0]
    device = dict(frame.attrs.get("device", {}))
    ar = frame[frame["op"] == "all_reduce"]
    conditions["collectives"] = {
        "ops": [str(op) for op in frame["op"].unique()],
        "dtype": str(first["dtype"]),
        "backend": str(first["backend"]),
        "world": int(first["world"]),
        **{k: (v if isinstance(v, dict) else str(v)) for k, v in device.items()},
        "iters": int(first["iters"]),
        "repeats": int(first["repeats"]),
        "timing": "CUDA-graph replay of the loop" if str(first["backend"]) == "nccl" else "host clock",
        "size": "nccl-tests': all_reduce buffer, all_gather output, reduce_scatter input, all_to_all one rank's buffer",
        "notes": list(frame.attrs.get("notes", [])),
        "sizes": [
            {
                "op": str(r.op),
                "bytes": int(r.size_bytes),
                "time_us": _sig(r.time_s * 1e6),
                "time_eager_us": _sig(getattr(r, "time_eager_s", r.time_s) * 1e6),
                "busbw_gb_per_s": _sig(r.busbw_bytes_per_s / 1e9),
            }
            for r in frame.itertuples()
        ],
    }
    if len(ar):
        conditions["collectives"]["busbw_max_at_bytes"] = int(ar.loc[ar["busbw_bytes_per_s"].idxmax(), "size_bytes"])
    measured["conditions"] = conditions
    out["measured"] = measured
    sources = dict(out.get("sources") or {})
    text = (
        f"calibrate_collectives: {', '.join(conditions['collectives']['ops'])} of {first['dtype']} on "
        f"{int(first['world'])} GPUs through torch.distributed ({first['backend']}), sizes "
        f"{int(frame['size_bytes'].min())} to {int(frame['size_bytes'].max())} bytes (nccl-tests' size: the whole "
        f"buffer, all-gather's output); per size the slowest rank's median over {int(first['repeats'])} repeats of "
        f"{int(first['iters'])} back-to-back calls (on GPUs captured in a CUDA graph and replayed: device time) "
        f"-> measured.collectives; busbw = size / time x 2(N-1)/N (all-reduce) or (N-1)/N (nccl-tests); "
        f"link_busbw_gb_per_s = the largest all-reduce busbw, collective_latency_us = the smallest all-reduce's time."
    )
    sources["measured"] = f"{sources['measured']} {text}" if sources.get("measured") else text
    out["sources"] = sources
    parse_spec(out, "<spec with collectives>")
    return out


# the comment header write_spec puts above a spec with measured.collectives
COLLECTIVE_MODEL_DOC = """#
# measured.collectives (roofline/predict.py collective_times reads it; written by calibrate --collectives):
#   <op>.world     GPUs it was measured on (all_reduce, all_gather, reduce_scatter, all_to_all)
#   <op>.bytes     message sizes S, nccl-tests' convention: all_reduce the buffer, all_gather the gathered
#                  output, reduce_scatter the input, all_to_all one rank's send buffer
#   <op>.time_us   time per call at each size: slowest rank, median of repeats, back-to-back calls replayed
#                  from a CUDA graph (device time)
# A collective op of the model (attn/mlp/embed_all_reduce, logits_all_gather, moe_dispatch/combine) at the
# table's world size takes the time interpolated in log-log space between sizes, S x the largest size's
# time / the largest size above it, the smallest size's time below it. Another world size, or an op with
# no table: alpha + comm_bytes / link (collective_latency_us, link_busbw_gb_per_s). prediction_source says which.
"""


if __name__ == "__main__":
    worker_main(sys.argv[1:], _collectives_rank)
