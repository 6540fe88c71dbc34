"""``profile_distributed``: the reference decoder split tp ways (Megatron), one process per GPU under
torchrun, every rank profiled; the NCCL kernels joined to the collective ranges (embed_all_reduce,
attn_all_reduce, mlp_all_reduce, logits_all_gather): communication time, and the part of it that no
other GPU work hides (exposed). It returns a MeasuredRun; ``roofline.compare`` sets it against the
prediction (bus bandwidth, predicted and datasheet collective time: items marked [compare] below).

How it runs:
1. The launcher (``profile_distributed``, in the caller's process) checks the set-up before it starts
   anything (GPUs on this host, NCCL, tp = nodes x processes per node, the model's split), pickles
   the job into a run folder and starts, in a new process session,
   ``python -m torch.distributed.run --nproc-per-node N [rendezvous args | --standalone]
   -m roofline.measure.distributed JOB``.
   The workers' environment is the caller's with NVLink multicast off (``MULTICAST_OFF_ENV``).
2. Each worker (``worker_main``) joins the process group (NCCL on GPUs; gloo on the CPU, for tests);
   ``init_timeout_s`` bounds the join and every collective. It runs ``profile_model`` on its own
   GPU, where the reference builds this rank's shard (reference.py, conventions 6-9), then reads its
   profiled-steps trace again for the communication kernels. The per-rank results reach local rank
   0 of every node through ``all_gather_object``, which writes them to one file that the launcher reads.
3. Failures: a rank that raises writes its error to the run folder and exits; torchrun then stops
   the others (--max-restarts 0). The launcher turns the first failure into one line: the rank's
   own exception type where it is one of roofline.errors, else DeviceError. A watchdog ends
   everything after ``timeout_s``: SIGTERM to torchrun (which stops its workers), then SIGKILL to
   torchrun's process group and to each worker by the pid it recorded.

Measured communication of a collective row, per call (over each phase's ``iters`` profiled steps:
the median over steps of the step's sum over the row's calls, divided by its calls per step):
- comm_time_s: NCCL kernel time on this rank. An NCCL kernel starts when its rank arrives and ends
  when the data of the last rank is in, so it includes waiting for the slowest rank (skew).
- comm_time_min_rank_s: per call, the shortest kernel over the ranks (the rank that arrived last
  waited least), the closest to the transfer alone; comm_time_max_rank_s the longest.
- exposed_comm_s: NCCL kernel time during which no other kernel, copy or set ran on the same GPU.
  Under the profiler one rank's host often runs behind the other's for a whole run (eager decode is
  host-bound, and nothing makes the hosts wait for each other), so the other rank's NCCL kernels
  wait that long at every call: compare comm_time_s with comm_time_min_rank_s before reading it
  as transfer time.
- [compare] busbw_bytes_per_s = comm_bytes / comm_time_s, with comm_bytes the analytic bytes each GPU sends:
  2(N-1)/N x the message for all-reduce, (N-1)/N x the gathered message for all-gather. That is
  nccl-tests' bus bandwidth (algbw x 2(N-1)/N, resp. x (N-1)/N), comparable with the per-direction
  link bandwidth the prediction uses. busbw_min_rank_bytes_per_s uses comm_time_min_rank_s.
- [compare] predicted_comm_s: the analytic alpha + comm_bytes / link of the spec used (measured figures where
  the spec was calibrated with ``calibrate --collectives``); datasheet_comm_s: the same with the
  spec's datasheet latency and link.
On the CPU (gloo) there are no kernels: a collective's time is the CPU time of its range, all exposed.
"""

import datetime
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from roofline import errors
from roofline.errors import ConfigError, DeviceError
from roofline.measure.profile import (
    graph_time,
    profile_model,
    resolve_model,
    single_point,
)
from roofline.measure.reference import reference_dtype, tp_shard_check
from roofline.measure.run import MeasuredRun
from roofline.measure.trace import analyze_trace
from roofline.specs import load_spec

COLLECTIVE_OPS = ("embed_all_reduce", "attn_all_reduce", "mlp_all_reduce", "logits_all_gather")
BACKENDS = ("nccl", "gloo")
# torchrun's rendezvous arguments, passed through as given (both spellings torchrun accepts)
RDZV_FLAGS = {
    "--nnodes",
    "--node-rank",
    "--node_rank",
    "--master-addr",
    "--master_addr",
    "--master-port",
    "--master_port",
    "--rdzv-endpoint",
    "--rdzv_endpoint",
    "--rdzv-backend",
    "--rdzv_backend",
    "--rdzv-id",
    "--rdzv_id",
    "--rdzv-conf",
    "--rdzv_conf",
    "--local-addr",
    "--local_addr",
}
KILL_GRACE_S = 15.0  # after SIGTERM, torchrun's time to stop its workers before SIGKILL
FAULT_ENV = "ROOFLINE_DIST_FAULT"  # tests: "RANK:raise|exit|hang", acted on right after joining the group
ENV_RECORDED = ("NCCL_", "TORCH_NCCL_", "TORCH_SYMM_MEM_", "NVSHMEM_", "CUDA_VISIBLE_DEVICES")
RESULT_FILE = "result.pkl"
# NVLink multicast (NVLS, NVSwitch SHARP) off in every worker, whatever the caller's environment: on hosts
# whose NVSwitch fabric is shared it can take GPUs out of service. NCCL then uses its ring / tree kernels.
MULTICAST_OFF_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


# ----------------------------------------------------------------------------------------------
# the launcher


def profile_distributed(
    model,
    workload=None,
    spec=None,
    layers: int = 2,
    nproc: int = None,
    warmup: int = 5,
    iters: int = 10,
    trace_dir=None,
    rdzv_args=(),
    *,
    backend: str = "nccl",
    cuda_graph: bool = None,
    timing_iters: int = 20,
    seed: int = 0,
    timeout_s: float = 1800.0,
    init_timeout_s: float = 300.0,
) -> MeasuredRun:
    """Profile ``layers`` reference layers of ``model`` split over ``workload.tp`` GPUs, one process
    per GPU, for the single point of ``workload`` (the model file's when None), against ``spec``
    (name, path or HardwareSpec; default: the shipped spec of the GPUs).

    ``nproc``: processes (GPUs) on this host; default tp / nodes. With ``workload.tp`` 1, tp becomes
    nodes x nproc. ``rdzv_args``: torchrun's rendezvous arguments for more than one host, passed
    through (e.g. ``("--nnodes", "2", "--node-rank", "0", "--master-addr", "10.0.0.1",
    "--master-port", "29500")``); none: one host (``--standalone``). Run the same call on every host.
    ``trace_dir``: each rank's traces go to ``trace_dir/rank{r}/`` on its own host (as profile_model
    writes them); None = a temporary folder. ``backend='gloo'`` runs the ranks on the CPU (tests).
    ``cuda_graph``, ``timing_iters``, ``seed``: as profile_model's. ``timeout_s``: the watchdog on the
    whole run; ``init_timeout_s``: joining the group, and each collective (torch.distributed's timeout).

    Returns a MeasuredRun (source 'distributed') with profile_model's frames for every rank, by
    ``rank``. ``ops`` adds, per call: comm_time_s, exposed_comm_s, comm_time_min_rank_s,
    comm_time_max_rank_s (0 or NaN on rows that are not collectives); ``steps`` adds, per rank and
    phase, for the reference step: comm_time_ref_s, exposed_comm_ref_s, comm_time_min_rank_ref_s,
    exposed_comm_share (of the kernel time), skew_wait_ref_s (NCCL time spent waiting for a later
    rank) and balanced_comm_share (communication's share of the step with that wait taken out).
    ``roofline.compare.compare`` sets them against the prediction (bus bandwidth, full model) and
    ``compare.comm_table`` puts the collective rows of all ranks side by side.

    Raises ConfigError (a sweep, a dtype or split the reference cannot run, tp not nodes x nproc,
    unknown rendezvous arguments), DeviceError (too few GPUs, no NCCL, a rank that failed or hung),
    UnknownHardware (no spec for the GPU).
    """
    m, w = resolve_model(model, workload)
    single_point(w)
    rdzv = check_rdzv_args(rdzv_args)
    tp, nproc = world_of(w.tp, nproc, nnodes_of(rdzv))
    w = replace(w, tp=tp)
    tp_shard_check(m, tp)
    reference_dtype(w, distributed=True)
    if backend == "gloo" and spec is None:
        raise ConfigError("profiling on the CPU (backend gloo) needs an explicit spec (a GPU to compare with)")
    spec = load_spec(spec) if spec is not None else None
    check_devices(backend, nproc, what=f"tp {tp}")
    layers = max(1, min(layers, m.num_hidden_layers))
    run_dir = Path(tempfile.mkdtemp(prefix="roofline-tp-"))
    trace_root = Path(trace_dir).resolve() if trace_dir else run_dir / "traces"
    job = {
        "model": m,
        "workload": w,
        "spec": spec,
        "layers": layers,
        "warmup": warmup,
        "iters": iters,
        "cuda_graph": cuda_graph,
        "timing_iters": timing_iters,
        "seed": seed,
        "trace_dir": str(trace_root),
    }
    payloads = launch(
        __name__,
        job,
        nproc=nproc,
        rdzv_args=rdzv,
        backend=backend,
        run_dir=run_dir,
        timeout_s=timeout_s,
        init_timeout_s=init_timeout_s,
        what=f"the tp {tp} profile",
    )
    return combine(payloads)


def check_rdzv_args(rdzv_args) -> list:
    """``rdzv_args`` as a list of strings; raises ConfigError for a flag that is not a rendezvous one."""
    out = [str(a) for a in (rdzv_args or ())]
    for a in out:
        if a.startswith("-") and a.split("=", 1)[0] not in RDZV_FLAGS:
            allowed = ", ".join(sorted(f for f in RDZV_FLAGS if "_" not in f))
            raise ConfigError(f"'{a}' is not a torchrun rendezvous argument; pass only {allowed}")
    return out


def nnodes_of(rdzv: list) -> int:
    """The number of hosts that torchrun rendezvous arguments ask for (1 without --nnodes); raises
    ConfigError for a range or a value that is not a whole number."""
    value = None
    for i, a in enumerate(rdzv):
        if a == "--nnodes" and i + 1 < len(rdzv):
            value = rdzv[i + 1]
        elif a.startswith("--nnodes="):
            value = a.split("=", 1)[1]
    if value is None:
        return 1
    lo, _, hi = value.partition(":")
    if hi and hi != lo:
        raise ConfigError(f"--nnodes {value}: tensor parallelism needs a fixed number of hosts, not a range")
    try:
        n = int(lo)
    except ValueError:
        raise ConfigError(f"--nnodes {value} is not a whole number of hosts") from None
    if n < 1:
        raise ConfigError(f"--nnodes must be at least 1, got {n}")
    return n


def world_of(tp: int, nproc, nnodes: int):
    """(tp, processes per host) from the workload's tp, nproc and the number of hosts."""
    if nproc is not None and nproc < 1:
        raise ConfigError(f"nproc must be at least 1, got {nproc}")
    if tp == 1:
        if nproc is None:
            raise ConfigError("profile_distributed needs tp > 1 (workload tp, or nproc processes per host)")
        tp = nproc * nnodes
    if nproc is None:
        if tp % nnodes:
            raise ConfigError(f"tp {tp} does not split evenly over {nnodes} hosts; give nproc per host")
        nproc = tp // nnodes
    if nproc * nnodes != tp:
        raise ConfigError(
            f"tp {tp} needs {tp} processes in all; {nnodes} host(s) x {nproc} per host = {nproc * nnodes}"
        )
    if tp < 2:
        raise ConfigError("tp 1 runs in one process: use profile_model (roofline profile without --tp)")
    return tp, nproc


def check_devices(backend: str, nproc: int, what: str = "this run") -> None:
    """Raise DeviceError unless this host can run ``nproc`` ranks of ``backend`` (one GPU each for NCCL)."""
    import torch.distributed as dist

    if backend not in BACKENDS:
        raise ConfigError(f"backend '{backend}' is not one of {', '.join(BACKENDS)}")
    if not dist.is_available():
        raise DeviceError("this PyTorch build has no torch.distributed; install a build with distributed support")
    if backend == "gloo":
        if not dist.is_gloo_available():
            raise DeviceError("gloo is not available in this PyTorch build; use backend nccl on GPUs")
        return
    if not torch.cuda.is_available():
        raise DeviceError(
            f"no CUDA GPU found (torch.cuda.is_available() is False); {what} needs {nproc} NVIDIA GPU(s) on this "
            f"host and a CUDA build of PyTorch"
        )
    if not dist.is_nccl_available():
        raise DeviceError(
            "NCCL is not available in this PyTorch build (torch.distributed.is_nccl_available() is False); "
            "install a CUDA build of PyTorch, which ships NCCL"
        )
    found = torch.cuda.device_count()
    if found < nproc:
        fix = "use fewer processes" if found < 2 else f"use tp {found} per host"
        raise DeviceError(
            f"{what} needs {nproc} GPUs on this host, one per process; found {found} "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); {fix}, or more hosts with --nnodes"
        )


def _repo_root() -> str:
    import roofline

    return str(Path(roofline.__file__).resolve().parent.parent)


def launch(
    module: str,
    job: dict,
    *,
    nproc: int,
    rdzv_args=(),
    backend: str = "nccl",
    run_dir=None,
    timeout_s: float = 1800.0,
    init_timeout_s: float = 300.0,
    what: str = "the run",
) -> list:
    """Run ``python -m module JOB`` on ``nproc`` processes under torchrun and return the per-rank
    payloads (the list ``worker_main`` gathered, rank order). Raises DeviceError (or the rank's own
    roofline error type) on a failure, and after ``timeout_s`` with everything stopped."""
    run_dir = Path(run_dir or tempfile.mkdtemp(prefix="roofline-dist-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    job = dict(job, backend=backend, run_dir=str(run_dir), init_timeout_s=float(init_timeout_s))
    job_path = run_dir / "job.pkl"
    job_path.write_bytes(pickle.dumps(job))
    rdzv = list(rdzv_args) or ["--standalone"]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        "--max-restarts=0",
        "--monitor-interval=0.5",
        *rdzv,
        "-m",
        module,
        str(job_path),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_repo_root(), env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(MULTICAST_OFF_ENV)
    log_path = run_dir / "torchrun.log"
    with open(log_path, "wb") as log:
        log.write((" ".join(cmd) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop(proc, run_dir)
            raise DeviceError(
                f"{what} did not finish within {timeout_s:.0f} s (a rank hung?); stopped torchrun and its workers; "
                f"log: {log_path}"
            ) from None
        except BaseException:  # KeyboardInterrupt and the like: leave nothing running
            stop(proc, run_dir)
            raise
    kill_workers(run_dir)  # torchrun stops its workers; make sure of it
    if rc != 0:
        raise failure(run_dir, rc, log_path)
    result = run_dir / RESULT_FILE
    if not result.exists():
        raise DeviceError(f"torchrun finished but wrote no result (is local rank 0 on this host?); log: {log_path}")
    return pickle.loads(result.read_bytes())


def stop(proc: subprocess.Popen, run_dir) -> None:
    """End a torchrun started by ``launch``: SIGTERM to its process group (torchrun stops its
    workers), SIGKILL after KILL_GRACE_S, then SIGKILL to any worker still alive (by recorded pid)."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    kill_workers(run_dir)


def is_our_worker(pid: int) -> bool:
    """Is ``pid`` alive and one of our workers (its command line names roofline.measure)?"""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            return b"roofline.measure" in cmdline.read_bytes()
        except OSError:
            return False
    return True


def worker_pids(run_dir) -> dict:
    """rank -> pid of each worker that started in ``run_dir``."""
    out = {}
    for f in Path(run_dir).glob("rank*.pid"):
        try:
            out[int(f.stem[4:])] = int(f.read_text().strip())
        except ValueError:
            continue
    return out


def kill_workers(run_dir) -> list:
    """SIGKILL every worker of ``run_dir`` still alive (each leads its own process group, as torchrun
    starts them). Returns the pids it killed."""
    killed = []
    for pid in worker_pids(run_dir).values():
        if not is_our_worker(pid):
            continue
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
        killed.append(pid)
    deadline = time.monotonic() + 5.0
    while killed and time.monotonic() < deadline and any(is_our_worker(p) for p in killed):
        time.sleep(0.05)
    return killed


_FAILED_RANK = re.compile(r"rank\s*:\s*(\d+) \(local_rank[^\n]*\n\s*exitcode\s*:\s*(-?\d+)")
_ERROR_TYPES = {
    name: getattr(errors, name)
    for name in ("ConfigError", "DeviceError", "SpecError", "UnknownHardware", "TraceError", "InputFileError")
}


def _how(code: int) -> str:
    if code < 0 and -code in {s.value for s in signal.Signals}:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def failure(run_dir, rc: int, log_path) -> Exception:
    """The one-line exception for a torchrun that exited with ``rc``. A rank that died with no Python
    error (killed, a crash) comes first: the others' errors are then its consequence. Else the error
    a rank wrote (torchrun's first observed failure, or the earliest), with its roofline type."""
    run_dir = Path(run_dir)
    written = {}
    for f in run_dir.glob("rank*.error"):
        try:
            e = json.loads(f.read_text())
            written[int(e["rank"])] = e
        except (OSError, ValueError, KeyError):
            continue
    log = Path(log_path).read_text(errors="replace") if Path(log_path).exists() else ""
    failed = {}  # rank -> exit code, as torchrun reports them (root cause last)
    for m in _FAILED_RANK.finditer(log):
        failed.setdefault(int(m.group(1)), int(m.group(2)))
    hard = sorted(r for r, code in failed.items() if r not in written and code != -signal.SIGTERM)
    if hard:
        r = hard[0]
        return DeviceError(
            f"rank {r} died ({_how(failed[r])}) with no Python error (killed, out of host memory, or a crash in a "
            f"library); the other ranks were stopped; log: {log_path}"
        )
    if written:
        root = [r for r in failed if r in written]
        first = written[root[-1]] if root else min(written.values(), key=lambda e: e["time"])
        cls = _ERROR_TYPES.get(first["type"], DeviceError)
        text = (
            first["message"]
            if cls is not DeviceError or first["type"] == "DeviceError"
            else f"{first['type']}: {first['message']}"
        )
        return cls(f"rank {first['rank']}: {text}")
    last = next((ln.strip() for ln in reversed(log.splitlines()) if ln.strip()), "no output")
    return DeviceError(f"torchrun exited with code {rc} before the ranks finished: {last[:200]}; log: {log_path}")


# ----------------------------------------------------------------------------------------------
# the worker: one per GPU, started by torchrun


def worker_main(argv, run_rank) -> None:
    """Entry point of a torchrun worker: join the group, ``payload = run_rank(job, rank, world,
    local_rank, device)``, gather every payload to local rank 0 of each host, which writes them to
    the run folder. Any exception: written to ``rank{r}.error`` and the process exits at once."""
    job_path = Path(argv[0])
    job = pickle.loads(job_path.read_bytes())
    run_dir = Path(job["run_dir"])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    (run_dir / f"rank{rank}.pid").write_text(str(os.getpid()))
    try:
        import torch.distributed as dist

        backend = job["backend"]
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        else:
            device = torch.device("cpu")
        kwargs = {"backend": backend, "timeout": datetime.timedelta(seconds=job["init_timeout_s"])}
        if backend == "nccl":
            kwargs["device_id"] = device  # joins NCCL now, inside the timeout, not at the first collective
        dist.init_process_group(**kwargs)
        _fault(rank)
        payload = run_rank(job, rank, world, local_rank, device)
        gathered = [None] * world
        dist.all_gather_object(gathered, payload)
        if local_rank == 0:
            tmp = run_dir / f"{RESULT_FILE}.{rank}.tmp"
            tmp.write_bytes(pickle.dumps(gathered))
            os.replace(tmp, run_dir / RESULT_FILE)
        dist.barrier()
        dist.destroy_process_group()
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the launcher as one line
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        record = {
            "rank": rank,
            "type": type(exc).__name__,
            "message": message[:500],
            "time": time.time(),
            "host": socket.gethostname(),
        }
        (run_dir / f"rank{rank}.error").write_text(json.dumps(record))
        traceback.print_exc()
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(1)  # no teardown: peers may be gone, and NCCL's would wait for them
    (run_dir / f"rank{rank}.done").write_text("ok")


def _fault(rank: int) -> None:
    """Test hook: ROOFLINE_DIST_FAULT=RANK:raise|exit|hang makes that rank fail right after joining."""
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return
    who, _, action = spec.partition(":")
    if who != str(rank):
        return
    if action == "raise":
        raise DeviceError(f"injected failure on rank {rank} ({FAULT_ENV})")
    if action == "exit":
        os._exit(7)
    if action == "hang":
        time.sleep(10**6)


def _profile_rank(job, rank, world, local_rank, device) -> dict:
    """One rank's profile_model run plus its communication kernels; the payload combine() reads."""
    w = job["workload"]
    cuda = device.type == "cuda"
    trace_dir = Path(job["trace_dir"]) / f"rank{rank}"
    notes = []

    def guarded_graph_time(step, iters):  # NCCL inside a CUDA graph: measured where capture works, noted if not
        try:
            return graph_time(step, iters)
        except RuntimeError as exc:
            notes.append(f"CUDA-graph replay skipped: capture failed ({str(exc).splitlines()[0][:160]})")
            torch.cuda.synchronize()
            return None

    result = profile_model(
        job["model"],
        w,
        spec=job["spec"],
        layers=job["layers"],
        warmup=job["warmup"],
        iters=job["iters"],
        cuda_graph=job["cuda_graph"],
        trace_dir=trace_dir,
        timing_iters=job["timing_iters"],
        device=str(device),
        seed=job["seed"],
        graph_timer=guarded_graph_time,
    )
    spec = job["spec"] if job["spec"] is not None else load_spec(result.device["spec"])
    kernels = []
    if cuda:
        for phase in w.phases:
            ta = analyze_trace(trace_dir / f"{phase}_profiled_steps.json.gz", spec)
            kernels.append(comm_kernels(ta.kernels).assign(phase=phase))
    import torch.distributed as dist

    device_info = dict(
        result.device,
        rank=rank,
        local_rank=local_rank,
        world_size=world,
        backend=dist.get_backend(),
        host=socket.gethostname(),
        env={k: v for k, v in os.environ.items() if k.startswith(ENV_RECORDED)},
    )
    if cuda:
        device_info["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    return {
        "rank": rank,
        "ops": result.ops,
        "kernels": result.kernels,
        "sequence": result.sequence,
        "steps": result.steps,
        "clocks": result.clocks,
        "traces": result.traces,
        "device": device_info,
        "notes": list(result.notes) + notes,
        "spec": spec,
        "comm_kernels": pd.concat(kernels, ignore_index=True) if kernels else pd.DataFrame(),
        "cuda": cuda,
        "model": result.model,
        "workload": result.workload,
        "layers": result.layers,
        "cuda_graph": result.cuda_graph,
    }


# ----------------------------------------------------------------------------------------------
# communication kernels: which, how long, how much of it exposed


def _is_comm(names: pd.Series) -> np.ndarray:
    return names.astype(str).str.contains("nccl", case=False, regex=False).to_numpy()


def _union(start: np.ndarray, end: np.ndarray):
    """Sorted disjoint blocks (starts, ends) covering the union of [start, end) intervals."""
    if not len(start):
        return np.empty(0), np.empty(0)
    order = np.argsort(start, kind="stable")
    s, e = start[order], end[order]
    reach = np.maximum.accumulate(e)
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] > reach[:-1]
    last = np.append(np.flatnonzero(new)[1:] - 1, len(s) - 1)
    return s[new], reach[last]


def _covered(bs: np.ndarray, be: np.ndarray, qs: np.ndarray, qe: np.ndarray) -> np.ndarray:
    """Length of [qs, qe) that the disjoint sorted blocks [bs, be) cover, per query."""
    if not len(bs):
        return np.zeros(len(qs))
    full = np.concatenate(([0.0], np.cumsum(be - bs)))  # length of the first k blocks

    def before(t):  # covered length in (-inf, t)
        k = np.searchsorted(bs, t, side="left")  # blocks starting before t
        over = np.where(k > 0, np.maximum(be[np.maximum(k - 1, 0)] - t, 0.0), 0.0)
        return full[k] - over

    return np.maximum(before(qe) - before(qs), 0.0)


def comm_kernels(kernels: pd.DataFrame) -> pd.DataFrame:
    """The NCCL kernels inside profiled steps of a ``TraceAnalysis.kernels`` frame, one row each:
    range (the record_function range that called the collective), step, call (its order among that
    range's NCCL kernels in the step), name, ts_s, dur_s and exposed_s (the part of dur_s during which
    no other kernel, copy or set ran on the same device)."""
    cols = ["range", "step", "call", "name", "ts_s", "dur_s", "exposed_s"]
    if not len(kernels):
        return pd.DataFrame(columns=cols)
    comm = _is_comm(kernels["name"])
    device = kernels["device"].astype(str).to_numpy()
    ts, end = kernels["ts_s"].to_numpy(float), (kernels["ts_s"] + kernels["dur_s"]).to_numpy(float)
    picked = np.flatnonzero(comm & (kernels["step"].to_numpy() >= 0))
    covered = np.zeros(len(picked))
    for dev in np.unique(device[picked]):  # one turn per GPU
        other = ~comm & (device == dev)
        bs, be = _union(ts[other], end[other])
        mine = device[picked] == dev
        covered[mine] = _covered(bs, be, ts[picked][mine], end[picked][mine])
    c = kernels.iloc[picked][["range", "step", "name", "ts_s", "dur_s"]].copy()
    c["exposed_s"] = np.maximum(c["dur_s"].to_numpy(float) - covered, 0.0)
    c = c.sort_values("ts_s", kind="stable")
    c["call"] = c.groupby(["step", "range"], sort=False).cumcount()
    return c[cols].reset_index(drop=True)


def comm_by_range(ck: pd.DataFrame, keys=("range",), time_col: str = "dur_s") -> pd.DataFrame:
    """Per ``keys`` (+ range): calls_per_step, comm_time_s and exposed_comm_s per call: the median over
    steps of the step's sum divided by its calls."""
    keys = list(dict.fromkeys([*keys, "range"]))
    g = ck.groupby([*keys, "step"], sort=False)
    per = pd.DataFrame({"calls": g[time_col].size(), "comm": g[time_col].sum(), "exposed": g["exposed_s"].sum()})
    per["comm_call"] = per["comm"] / per["calls"]
    per["exposed_call"] = per["exposed"] / per["calls"]
    out = per.groupby(keys, sort=False).agg(
        calls_per_step=("calls", "median"),
        comm_time_s=("comm_call", "median"),
        exposed_comm_s=("exposed_call", "median"),
        steps=("calls", "size"),
    )
    return out.reset_index()


def cross_rank(ck: pd.DataFrame, keys=("phase",)) -> pd.DataFrame:
    """Per ``keys`` + range: comm_time_min_rank_s and comm_time_max_rank_s per call, from the kernels
    of every rank (column ``rank``) matched call by call (same step, range and call index); calls
    that some rank lacks are left out."""
    keys = [k for k in keys if k in ck.columns]
    if not len(ck):
        return pd.DataFrame(columns=[*keys, "range", "comm_time_min_rank_s", "comm_time_max_rank_s", "n_ranks"])
    n_ranks = ck["rank"].nunique()
    g = ck.groupby([*keys, "range", "step", "call"], sort=False)
    per_call = pd.DataFrame({"lo": g["dur_s"].min(), "hi": g["dur_s"].max(), "n": g["rank"].nunique()})
    per_call = per_call[per_call["n"] == n_ranks].reset_index()
    out = []
    for col, name in (("lo", "comm_time_min_rank_s"), ("hi", "comm_time_max_rank_s")):
        f = per_call.rename(columns={col: "t"}).assign(exposed_s=0.0)
        out.append(comm_by_range(f, keys, "t").set_index([*keys, "range"])["comm_time_s"].rename(name))
    res = pd.concat(out, axis=1).reset_index()
    res["n_ranks"] = n_ranks
    return res


def join_rank_traces(traces: dict, spec) -> pd.DataFrame:
    """Join the NCCL kernels of one trace per rank (``{rank: path}``, Chrome traces of the same
    profiled steps) to their collective ranges. One row per range: calls_per_step, comm_time_s and
    exposed_comm_s (per call, the mean over ranks of each rank's figure), comm_time_min_rank_s,
    comm_time_max_rank_s and n_ranks. ``roofline.compare.comm_against_prediction`` adds the analytic
    bytes, the predicted time and the bus bandwidth. Raises TraceError for an unreadable trace."""
    spec = load_spec(spec)
    ck = pd.concat(
        [comm_kernels(analyze_trace(p, spec).kernels).assign(rank=r) for r, p in sorted(traces.items())],
        ignore_index=True,
    )
    per_rank = comm_by_range(ck, ("rank",))
    out = (
        per_rank.groupby("range", sort=False)
        .agg(
            calls_per_step=("calls_per_step", "median"),
            comm_time_s=("comm_time_s", "mean"),
            exposed_comm_s=("exposed_comm_s", "mean"),
        )
        .reset_index()
    )
    return out.merge(cross_rank(ck, ()), on="range", how="left")


# ----------------------------------------------------------------------------------------------
# putting the ranks together


def _rank_ops(p: dict) -> pd.DataFrame:
    """One rank's ops frame with its own communication columns (the cross-rank ones come later)."""
    ops = p["ops"].copy()
    coll = ops["op"].isin(COLLECTIVE_OPS).to_numpy()
    comm = np.zeros(len(ops))
    exposed = np.zeros(len(ops))
    if p["cuda"]:
        ck = p["comm_kernels"]
        if len(ck):
            by = comm_by_range(ck, ("phase",)).set_index(["phase", "range"])
            idx = pd.MultiIndex.from_arrays([ops["phase"], ops["op"]])
            comm = by["comm_time_s"].reindex(idx).fillna(0.0).to_numpy(float)
            exposed = by["exposed_comm_s"].reindex(idx).fillna(0.0).to_numpy(float)
    else:  # gloo: the CPU time of the collective's range, all of it exposed
        comm = np.where(coll, ops["gpu_time_s"].to_numpy(float), 0.0)
        exposed = comm.copy()
    ops["comm_time_s"] = comm
    ops["exposed_comm_s"] = exposed
    ops["rank"] = p["rank"]
    return ops


def _rank_steps(p: dict, ops: pd.DataFrame) -> pd.DataFrame:
    """One rank's steps with the communication of its reference step."""
    steps = p["steps"].copy()
    rows = []
    for phase in steps["phase"]:
        f = ops[(ops["phase"] == phase) & ops["op"].isin(COLLECTIVE_OPS)]
        calls = f["calls"].to_numpy(float)
        lo = f["comm_time_min_rank_s"].fillna(f["comm_time_s"])
        rows.append(
            {
                "comm_time_ref_s": float((f["comm_time_s"] * calls).sum()),
                "exposed_comm_ref_s": float((f["exposed_comm_s"] * calls).sum()),
                "comm_time_min_rank_ref_s": float((lo * calls).sum()),
            }
        )
    extra = pd.DataFrame(rows, index=steps.index)
    steps = pd.concat([steps, extra], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        steps["exposed_comm_share"] = steps["exposed_comm_ref_s"] / steps["kernel_time_ref_s"]
        # the part of this rank's NCCL time spent waiting for a later rank, and the share communication
        # would take of the step without it (each call at the fastest rank's time)
        steps["skew_wait_ref_s"] = steps["comm_time_ref_s"] - steps["comm_time_min_rank_ref_s"]
        steps["balanced_comm_share"] = steps["comm_time_min_rank_ref_s"] / (
            steps["kernel_time_ref_s"] - steps["skew_wait_ref_s"]
        )
    steps["rank"] = p["rank"]
    return steps


def _with_rank(frame: pd.DataFrame, rank: int) -> pd.DataFrame:
    if frame is None or not len(frame):
        return pd.DataFrame()
    f = frame.copy()
    if "rank" in f.columns:
        f["rank"] = rank
    else:
        f.insert(0, "rank", rank)
    return f


def combine(payloads: list) -> MeasuredRun:
    """One MeasuredRun (source 'distributed') from the per-rank payloads of ``_profile_rank``."""
    payloads = sorted(payloads, key=lambda p: p["rank"])
    ops = pd.concat([_rank_ops(p) for p in payloads], ignore_index=True)
    ck = [p["comm_kernels"].assign(rank=p["rank"]) for p in payloads if len(p["comm_kernels"])]
    if ck:
        cr = cross_rank(pd.concat(ck, ignore_index=True), ("phase",)).rename(columns={"range": "op"})
        ops = ops.merge(cr.drop(columns="n_ranks"), on=["phase", "op"], how="left")
    else:  # gloo: per row, the smallest and largest rank time
        g = ops.groupby(["phase", "op"])["comm_time_s"]
        coll = ops["op"].isin(COLLECTIVE_OPS)
        ops["comm_time_min_rank_s"] = g.transform("min").where(coll)
        ops["comm_time_max_rank_s"] = g.transform("max").where(coll)
    steps = pd.concat([_rank_steps(p, ops[ops["rank"] == p["rank"]]) for p in payloads], ignore_index=True)
    notes = []
    for p in payloads:
        notes.extend(f"rank {p['rank']}: {n}" for n in p["notes"])
    first = payloads[0]
    device = dict(first["device"])
    device["ranks"] = [
        {k: p["device"].get(k) for k in ("rank", "local_rank", "host", "gpu", "pci_bus_id", "uuid") if k in p["device"]}
        for p in payloads
    ]
    traces = {f"{ph}_rank{p['rank']}": path for p in payloads for ph, path in p["traces"].items()}
    return MeasuredRun(
        source="distributed",
        ops=ops,
        kernels=pd.concat([_with_rank(p["kernels"], p["rank"]) for p in payloads], ignore_index=True),
        sequence=pd.concat([_with_rank(p["sequence"], p["rank"]) for p in payloads], ignore_index=True),
        steps=steps,
        clocks=pd.concat([_with_rank(p["clocks"], p["rank"]) for p in payloads], ignore_index=True),
        traces=traces,
        device=device,
        notes=tuple(notes),
        model=first["model"],
        workload=first["workload"],
        layers=first["layers"],
        cuda_graph=first["cuda_graph"],
    )


if __name__ == "__main__":
    worker_main(sys.argv[1:], _profile_rank)
