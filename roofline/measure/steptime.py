"""Wall-clock step times of the reference model, measured in a fresh Python process.

Why a separate process: once ``torch.profiler`` has run in a process, every later eager launch in it
costs more (CUPTI stays subscribed). On an H200 host (PyTorch 2.11, ``benchmarks/gpu_host_cost.py``,
reports/h200/host_cost_probe.csv) the eager step of a two-layer reference went from 1.04-1.16 ms
fresh to 1.5-2.0 ms after one ``profile_model`` in the same process, and kept drifting up to 2.4 ms.
A user's real run has no profiler in it, so the eager step the prediction is checked against, and the
host cost ``roofline calibrate`` scales to, are measured where none has run: here.

Method, per job (a model, a workload point, a number of layers), in the child: build the reference
(``build_reference``, the same seed as the profiled one), then per phase: warm-up steps for at least
WARMUP_S of wall time (the first few hundred host-bound steps of a fresh process run up to 50% slower:
1.6 ms, then 1.05-1.15 ms, in the probe above), then the eager step: CUDA events around windows of
``timing_iters`` steps, each followed by a synchronize (a step lasts from its call until its results
are ready and the host knows it, as in a decode loop that reads its token on the host; back to back,
the next step's host work would hide the last one's GPU tail), at least MIN_WINDOWS windows and for
at least WINDOWS_S, and the fastest window's mean (``fastest_window``). Why the fastest: the GPU hosts are virtual machines
whose host-bound step slows by up to 1.8x for 5-10 s at a time and for single seconds between
(reports/h200/host_noise_probe.csv: 0.81-0.95 ms per step undisturbed, 1.4-1.57 ms in the slow
episodes, pinned to one core or not); interference only adds time, so the fastest window is the
machine's own cost, the figure that repeats. Then, where the step can be captured, the replay of a
CUDA graph holding one step, synced the same way and also back to back (``graph_times``). Nothing in the child starts a profiler or an
NVML sampler.

    time_steps(jobs) -> [{phase: {"eager_s": ..., "graph_s": ... or None}} or {"error": "..."}]
"""

import json
import pickle
import subprocess
import sys
import time

from roofline.errors import DeviceError

TIMEOUT_S = 900
WARMUP_S = 0.5
MIN_WINDOWS, WINDOWS_S = 5, 1.0
# steps per timing window, wherever an eager step is timed: validate's cases, profile's step, the steps the
# calibration scales its host costs to and the host reference. The fastest 5-step window and the fastest 50-step
# one are minima over different spans of a noisy host, and need not move together: on one lease (stop 14,
# reports/h200/host-reference/probe.csv) the reference's 5-step figure followed the cases' 5-step figures round
# to round (gpt2 r = +0.98) and its 50-step figure did not (r = +0.01), so every timing uses the same window
STEP_WINDOW = 5


def fastest_window(step, iters: int, cuda: bool, sync_each: bool = True) -> float:
    """Seconds per step: the fastest of at least MIN_WINDOWS windows of ``iters`` steps, taken for at
    least WINDOWS_S of wall time (host clock). ``sync_each``: the host waits for the GPU after every
    step (a step from its call to its results, as a decode loop that reads its token on the host runs
    it); False: steps back to back, the next one's host work overlapping the last one's GPU tail."""
    import torch

    best, t0, n = float("inf"), time.perf_counter(), 0
    while n < MIN_WINDOWS or time.perf_counter() - t0 < WINDOWS_S:
        if cuda:
            torch.cuda.synchronize()
        w0 = time.perf_counter()
        for _ in range(iters):
            step()
            if sync_each and cuda:
                torch.cuda.synchronize()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - w0) / iters)
        n += 1
    return best


def warm_up(step, cuda: bool) -> None:
    """Run ``step`` for at least WARMUP_S of wall time and 3 calls (a fresh process's first host-bound steps run
    up to 50% slower: the module docstring), syncing every 16 calls so the queue stays short."""
    import torch

    t0, done = time.perf_counter(), 0
    while done < 3 or time.perf_counter() - t0 < WARMUP_S:
        step()
        done += 1
        if done % 16 == 0 and cuda:
            torch.cuda.synchronize()


def capture_graph(step):
    """A CUDA graph holding one call of ``step``, captured after 3 warm-up calls on a side stream."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph


def graph_times(step, iters: int) -> tuple:
    """(synced, back to back) seconds per replay of a CUDA graph holding one step, each the fastest window.
    Their difference is what a replay costs beyond its kernels and gaps when the host waits for it:
    the cudaGraphLaunch call before the GPU starts and the wake-up after it ends."""
    graph = capture_graph(step)
    try:
        for _ in range(3):
            graph.replay()
        return fastest_window(graph.replay, iters, True), fastest_window(graph.replay, iters, True, sync_each=False)
    finally:
        del graph


def _kernels_per_call(fn, calls: int = 3, cuda: bool = True) -> float:
    """GPU activities (kernels, copies, sets) per call of ``fn``, counted by torch.profiler over ``calls``
    (NaN where the profiler fails; 0 with ``cuda`` False: a CPU run launches none)."""
    import numpy as np
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity

    try:
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(calls):
                fn()
            if cuda:
                torch.cuda.synchronize()
        return sum(1 for e in prof.events() if e.device_type == DeviceType.CUDA) / calls
    except (RuntimeError, AssertionError):  # the count only explains a miss: never fail the row for it
        return np.nan


def time_steps_here(
    config,
    workload,
    layers: int,
    timing_iters: int = STEP_WINDOW,
    device: str = "cuda",
    seed: int = 0,
    compile=False,
    count_kernels: bool = False,
    time_graph: bool = True,
) -> dict:
    """{phase: {"eager_s", "graph_s", "graph_pipelined_s"}} of ``layers`` reference layers at the single
    point of ``workload``, in this process (the child's body; call ``time_steps`` from a process that has
    profiled). eager_s and graph_s: synced after every step; graph_pipelined_s: replays back to back.
    ``compile``: the step under ``torch.compile`` (default mode; True for Inductor, or a backend name;
    compiled during the warm-up), no graph. ``count_kernels``: add 'kernels' per step (torch.profiler,
    after the timing, so it does not slow it). ``time_graph`` False: the eager step only (graph_s and
    graph_pipelined_s None), for callers that read no graph time: each graph timing is two more windows."""
    import torch

    from roofline.measure.reference import build_reference, decode_context

    b, p, context = workload.batch_size[0], workload.prompt_len[0], decode_context(workload)
    need = max(p if "prefill" in workload.phases else 1, context if "decode" in workload.phases else 1)
    cuda = torch.device(device).type == "cuda"
    out = {}
    with torch.no_grad():
        ref = build_reference(config, workload, layers=layers, device=device, seed=seed, max_context=need)
        ref.annotate = False
        for phase in workload.phases:
            step = ref.make_step(phase, p, context)
            if compile:
                step = torch.compile(step, backend="inductor" if compile is True else compile)
                step()  # compiles
            warm_up(step, cuda)
            eager = fastest_window(step, timing_iters, cuda)
            capturable = cuda and ref.graph_capturable and not compile and time_graph
            graph, pipelined = graph_times(step, timing_iters) if capturable else (None, None)
            out[phase] = {"eager_s": eager, "graph_s": graph, "graph_pipelined_s": pipelined, "batch_size": b}
            if count_kernels:
                out[phase]["kernels"] = _kernels_per_call(step) if cuda else float("nan")
        del ref
    if cuda:
        torch.cuda.empty_cache()
    return out


def time_steps(jobs: list, timeout_s: float = TIMEOUT_S, rounds: int = 1) -> list:
    """Run ``jobs`` (dicts of config, workload, layers, timing_iters, seed) in one fresh Python process,
    in order; one result per job: {phase: {"eager_s", "graph_s"}}, or {"error": one line} where the
    job failed (a model the reference cannot build; out of memory adds "out_of_memory": True). Raises DeviceError when the child
    cannot start or dies. ``rounds`` > 1: the jobs run that many times, round after round, and each time
    is the fastest of its rounds (``fastest_rounds``): the host's slow episodes last 5-10 s, longer than
    one job's windows, so rounds spread over more than an episode keep a job from landing inside one."""
    if rounds > 1:
        return fastest_rounds(time_steps(list(jobs) * rounds, timeout_s * rounds), len(jobs))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "roofline.measure.steptime"],
            input=pickle.dumps(jobs),
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DeviceError(f"step timing in a fresh process took over {timeout_s:.0f} s; stopped") from None
    except OSError as exc:
        raise DeviceError(f"could not start a Python process for step timing: {exc}") from None
    lines = [line for line in done.stdout.decode(errors="replace").splitlines() if line.startswith("{")]
    if done.returncode != 0 or len(lines) != len(jobs):
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise DeviceError(f"step timing in a fresh process failed (exit {done.returncode}): {tail[0]}")
    return [json.loads(line) for line in lines]


def time_with_reference(
    jobs: list, reference: dict | None, timeout_s: float = TIMEOUT_S, rounds: int = 1, fresh_each_round: bool = False
) -> tuple:
    """(``time_steps``' results of ``jobs``, each the fastest of ``rounds``; the host reference) from one fresh
    process (``fresh_each_round``: one for each round), where ``reference`` (a job: calibrate.host_reference_job; None: none) is timed at the start of every
    round and once after the last. The host reference: {"eager_step_us": the fastest of its samples, as each job
    keeps its fastest round, "samples_us": each, "window": its steps per timing window}; None without
    ``reference`` or where every sample failed. ``fresh_each_round``: each round in a fresh process of its own
    (the last sample of the reference in the last round's), so that what one process does to a job's step does
    not decide every round of it.
    ``timeout_s``: the limit of the whole child (with ``fresh_each_round``, of all of them)."""
    lead = [reference] if reference else []
    per_round = lead + list(jobs)
    if fresh_each_round and rounds > 1:
        timed = []
        for r in range(rounds):
            tail = lead if r == rounds - 1 else []
            timed += time_steps(per_round + tail, timeout_s=timeout_s / rounds)
    else:
        timed = time_steps(per_round * rounds + lead, timeout_s=timeout_s)
    results = fastest_rounds(timed[: len(per_round) * rounds], len(per_round))[len(lead) :]
    samples = [r["decode"]["eager_s"] * 1e6 for r in timed[0 :: len(per_round)] if lead and "error" not in r]
    host = None
    if samples:
        host = {
            "eager_step_us": round(min(samples), 2),
            "samples_us": [round(x, 2) for x in samples],
            "window": reference.get("timing_iters", STEP_WINDOW),
        }
    return results, host


def fastest_rounds(results: list, n_jobs: int) -> list:
    """Per job of ``n_jobs``, the fastest of its rounds in ``results`` (round after round, as time_steps
    runs them): each phase's eager_s, graph_s and graph_pipelined_s the minimum over the rounds that
    measured it, and eager_rounds_s each round's eager_s in order (a case slow in one round, or in all: the host's
    episode or the case's own); a job that failed in any round keeps its first error."""
    out = []
    for i in range(n_jobs):
        runs = results[i::n_jobs]
        failed = next((r for r in runs if "error" in r), None)
        if failed is not None:
            out.append(failed)
            continue
        merged = {}
        for phase in runs[0]:
            merged[phase] = dict(runs[0][phase])
            for key in ("eager_s", "graph_s", "graph_pipelined_s"):
                values = [r[phase][key] for r in runs if r[phase].get(key) is not None]
                if values:
                    merged[phase][key] = min(values)
            merged[phase]["eager_rounds_s"] = [r[phase].get("eager_s") for r in runs]
        out.append(merged)
    return out


def host_per_call(fn, calls: int = 64, cuda: bool = True) -> float:
    """Seconds of the host's own time per call of ``fn``: ``calls`` issued back to back with no sync between
    (the queue never full), timed on the host clock; the fastest of at least MIN_WINDOWS windows and WINDOWS_S / 2,
    each after a sync (the queue empty)."""
    import torch

    best, t0, n = float("inf"), time.perf_counter(), 0
    while n < MIN_WINDOWS or time.perf_counter() - t0 < WINDOWS_S / 2:
        if cuda:
            torch.cuda.synchronize()
        w0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - w0) / calls)
        if cuda:
            torch.cuda.synchronize()
        n += 1
    return best


def linear_host_here(shapes: list, device: str = "cuda", rounds: int = 3, calls: int = 64) -> dict:
    """{"host_us": [...], "kernels": [...]} per (tokens, in, out) of ``shapes``: the host's own time per 16-bit
    ``F.linear`` call (``host_per_call``, the fastest of ``rounds`` interleaved rounds), then the kernels
    one call launches (torch.profiler, after every host timing: the profiler raises later host costs). A
    ``time_steps`` job: {"linear_host": shapes}, so it runs in a fresh process."""
    import torch
    import torch.nn.functional as F

    cuda = torch.device(device).type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    args = []
    for tokens, k_in, n_out in shapes:
        x = torch.randn(int(tokens), int(k_in), device=device, dtype=torch.bfloat16)
        w = torch.randn(int(n_out), int(k_in), device=device, dtype=torch.bfloat16)
        args.append((x, w))
        for _ in range(8):
            F.linear(x, w)
    sync()
    best = [float("inf")] * len(args)
    for _ in range(rounds):
        for i, (x, w) in enumerate(args):
            best[i] = min(best[i], host_per_call(lambda x=x, w=w: F.linear(x, w), calls, cuda))
    kernels = [_kernels_per_call(lambda x=x, w=w: F.linear(x, w), 3, cuda) for x, w in args]
    if any(k != k for k in kernels):  # the slope needs every count: a profiler that failed fails the job
        raise RuntimeError("torch.profiler could not count the projections' kernels")
    return {"host_us": [round(b * 1e6, 3) for b in best], "kernels": kernels}


def main() -> None:
    """The child: jobs pickled on stdin (from ``time_steps``, the parent's own objects), one JSON line
    per job on stdout."""
    import torch

    from roofline.errors import RooflineError

    jobs = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - written by time_steps in the parent
    for job in jobs:
        if "linear_host" in job:
            print(json.dumps(linear_host_here(job["linear_host"], job.get("device", "cuda"))), flush=True)
            continue
        try:
            result = time_steps_here(
                job["config"],
                job["workload"],
                job.get("layers", 2),
                job.get("timing_iters", STEP_WINDOW),
                job.get("device", "cuda"),
                job.get("seed", 0),
                job.get("compile", False),
                job.get("count_kernels", False),
                job.get("graph", True),
            )
        except Exception as exc:  # one line per failed job (Inductor's failures come in many types)
            if not isinstance(exc, (RooflineError, torch.cuda.OutOfMemoryError, ValueError)) and not job.get("compile"):
                raise
            torch.cuda.empty_cache()
            result = {"error": (str(exc).splitlines() or [type(exc).__name__])[0]}
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                result["out_of_memory"] = True
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
