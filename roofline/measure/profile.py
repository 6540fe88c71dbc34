"""``profile_model``: run the reference decoder on the GPU under torch.profiler and measure each op.

Method:
1. Build ``layers`` decoder layers of the model (reference.py), run ``warmup`` steps, then ``iters``
   profiled steps (CPU + CUDA activity, record_shapes).
2. Join kernels to op ranges with ``roofline.measure.trace.analyze_trace`` on the exported Chrome
   trace of those steps (kernel -> launch by correlation -> innermost ``record_function`` range on the
   launching thread; each step inside a ``ProfilerStep#N`` range). Where that finds no GPU kernels
   (a CPU run) the profiler's events API is used instead (op time = CPU time of the range). An op's
   time in one step = the sum of its kernels' durations over its occurrences; per call = that over
   its calls per step (``layers`` for per-layer ops); ``gpu_time_s`` = the median over steps.
3. Wall-clock time of the step without the profiler and without ranges (CUDA events, median of
   repeats), and as a CUDA-graph replay (``graph_timer``); eager minus graph is host overhead
   (launches, Python).

It returns a ``MeasuredRun`` (run.py): measured figures only. ``roofline.compare.compare`` puts them
beside an analysis, scales the reference to the full model and classifies what was measured.
"""

import gzip
import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, record_function

from roofline.config import ModelConfig, Workload, load_model_and_workload
from roofline.errors import ConfigError, DeviceError, TraceError
from roofline.measure.nvml import NvmlSampler, gpu_info, spec_name_for_gpu
from roofline.measure.reference import (
    build_reference,
    decode_context,
    op_calls,
    reference_dtype,
)
from roofline.measure.run import MeasuredRun
from roofline.measure.steptime import STEP_WINDOW
from roofline.measure.trace import analyze_trace
from roofline.specs import load_spec


def resolve_model(model, workload):
    """(ModelConfig, Workload) from a ModelConfig or a model file; ``workload`` wins over the file's."""
    if isinstance(model, ModelConfig):
        return model, workload or Workload()
    m, w = load_model_and_workload(model)
    return m, workload or w


def single_point(w: Workload) -> Workload:
    """``w`` if it is one point; raises ConfigError for a sweep."""
    for key in ("batch_size", "prompt_len"):
        if len(getattr(w, key)) != 1:
            raise ConfigError(f"profile runs one point at a time; {key} has {len(getattr(w, key))} values")
    if w.context_len and len(w.context_len) != 1:
        raise ConfigError(f"profile runs one point at a time; context_len has {len(w.context_len)} values")
    return w


def _sync(cuda: bool):
    if cuda:
        torch.cuda.synchronize()


def _kernels(event):
    """Kernels of a CPU event and its descendants, in launch order: (name, duration in us)."""
    for k in event.kernels:
        yield k.name, k.duration
    for child in sorted(event.cpu_children, key=lambda e: e.time_range.start):
        yield from _kernels(child)


def _op_ranges(events, names) -> dict:
    """op name -> [(start_us, [(kernel, us), ...], cpu_us)] of its record_function ranges, in order."""
    out = {n: [] for n in names}
    for e in events:
        if e.name in out and e.device_type == DeviceType.CPU and not e.is_async:
            out[e.name].append((e.time_range.start, list(_kernels(e)), e.cpu_time_total))
    for ranges in out.values():
        ranges.sort(key=lambda r: r[0])
    return out


def _run_profiler(step, iters: int, cuda: bool):
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    try:
        with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
            for i in range(iters):
                with record_function(f"ProfilerStep#{i}"):
                    step()
            _sync(cuda)
        events = prof.events()
    except (RuntimeError, AssertionError) as exc:
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            raise
        raise DeviceError(
            f"the PyTorch profiler failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    return prof, events


def event_time_s(fn, calls: int = 1) -> float:
    """Seconds per call of ``calls`` back-to-back calls of ``fn``, between two CUDA events on the current
    stream (the host waits for the second)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e-3 / calls


def _wall_time(fn, iters: int, cuda: bool, repeats: int = 5) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` batches of ``iters`` calls."""
    for _ in range(3):
        fn()
    _sync(cuda)
    times = []
    for _ in range(repeats):
        if cuda:
            times.append(event_time_s(fn, iters))
        else:
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            times.append((time.perf_counter() - t0) / iters)
    return statistics.median(times)


def graph_time(step, iters: int) -> float:
    """Seconds per replay of a CUDA graph holding one step (the default ``graph_timer`` of
    ``profile_model``; a timer may return None where the step cannot be captured)."""
    from roofline.measure.steptime import capture_graph

    graph = capture_graph(step)
    try:
        return _wall_time(graph.replay, iters, True)
    finally:
        del graph


def _export_trace(prof, path: Path) -> dict:
    """Write the Chrome trace gzipped to ``path``; return a few counts read back from it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(raw)
        with open(raw, "rb") as src, gzip.open(path, "wb", compresslevel=9) as dst:
            shutil.copyfileobj(src, dst)
        with open(raw) as fh:
            trace = json.load(fh)
    events = trace.get("traceEvents", [])
    gpu = [e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset") and "dur" in e]
    return {
        "trace_bytes": path.stat().st_size,
        "trace_events": len(events),
        "trace_gpu_time_s": sum(e["dur"] for e in gpu) * 1e-6,
        "trace_kernels": len(gpu),
        "trace_cuLaunchKernelEx": sum(1 for e in events if e.get("name") == "cuLaunchKernelEx"),
        "trace_cudaLaunchKernel": sum(1 for e in events if e.get("name") == "cudaLaunchKernel"),
    }


def _rows(phase, names, per_step, iters, found) -> tuple:
    """Op and kernel rows from ``found``: name -> (per-step seconds, {kernel: (calls, seconds)}, span_s
    per occurrence or NaN). Per-occurrence figures divide by the steps seen and ``per_step[name]``."""
    op_rows, kernel_rows, notes = [], [], []
    totals = np.zeros(iters)
    for name in names:
        k = per_step[name]
        steps_s, kstats, span = found.get(name, ([], {}, np.nan))
        if not steps_s:
            notes.append(f"{phase}: op '{name}' launched no GPU work in the profiled steps")
            op_rows.append({"op": name, "calls": k, "gpu_time_s": 0.0, "n_kernels": 0.0, "kernels": "", "span_s": span})
            continue
        if len(steps_s) == iters:
            totals += np.array(steps_s)
        med = statistics.median(steps_s)
        occurrences = len(steps_s) * k
        for kname, (calls, total) in sorted(kstats.items(), key=lambda kv: -kv[1][1]):
            kernel_rows.append(
                {
                    "phase": phase,
                    "op": name,
                    "kernel": kname,
                    "calls": calls / occurrences,
                    "time_s": total / occurrences,
                }
            )
        op_rows.append(
            {
                "op": name,
                "calls": k,
                "gpu_time_s": med / k,
                "gpu_time_spread": (max(steps_s) - min(steps_s)) / med if med > 0 else np.nan,
                "n_kernels": sum(c for c, _ in kstats.values()) / occurrences,
                "kernels": " | ".join(kstats),
                "span_s": span,
            }
        )
    return op_rows, kernel_rows, totals, notes


def _per_op_from_trace(ta, names, per_step, iters, phase):
    """Per-op measurements from an ``analyze_trace`` result of ``iters`` steps (ProfilerStep#0..)."""
    kern = ta.kernels
    in_step = kern[kern["step"] >= 0]
    mine = in_step[in_step["range"].isin(names)]
    found = {}
    by_range = ta.by_range.set_index("range") if len(ta.by_range) else None
    for name, g in mine.groupby("range", sort=False):
        per = g.groupby("step")["dur_s"].sum().reindex(range(iters), fill_value=0.0)
        kstats = {kn: (len(kg), float(kg["dur_s"].sum())) for kn, kg in g.groupby("name", sort=False)}
        span = np.nan
        if by_range is not None and name in by_range.index and by_range.at[name, "n_calls"]:
            span = float(by_range.at[name, "span_s"]) / float(by_range.at[name, "n_calls"])
        found[name] = (list(per.to_numpy(float)), kstats, span)
    op_rows, kernel_rows, totals, notes = _rows(phase, names, per_step, iters, found)
    first = mine[mine["step"] == mine["step"].min()].sort_values("ts_s") if len(mine) else mine
    sequence = [
        {
            "phase": phase,
            "op": r.range,
            "kernel": r.name,
            "kind": r.kind,
            "time_s": r.dur_s,
            "launch_kind": r.launch_kind,
        }
        for r in first.itertuples()
    ]
    sm = ta.summary
    n = max(sm.get("n_steps", iters), 1)
    info = {
        "join": "roofline.measure.trace",
        "profiled_steps": sm.get("n_steps"),
        "kernels_per_step": len(in_step) / n,
        "driver_launched_kernels_per_step": int((in_step["launch_kind"] == "driver").sum()) / n,
        "gpu_busy_per_step_s": sm.get("busy_s", np.nan) / n,
        "profiled_window_per_step_s": sm.get("window_s", np.nan) / n,
        "idle_host_bound_per_step_s": sm.get("idle_host_bound_s", np.nan) / n,
        "unattributed_gpu_time_per_step_s": float(in_step.loc[~in_step["range"].isin(names), "dur_s"].sum()) / n,
        "orphan_kernels": sm.get("n_orphans"),
    }
    return op_rows, kernel_rows, sequence, totals, notes, info


def _per_op_from_events(events, names, per_step, iters, phase, cuda):
    """Per-op measurements through torch.profiler's events API (CPU runs; fallback on the GPU)."""
    ranges = _op_ranges(events, names)
    found, notes = {}, []
    for name in names:
        occ, k = ranges[name], per_step[name]
        if len(occ) != iters * k:
            notes.append(f"{phase}: op '{name}' ran {len(occ)} times in {iters} steps, expected {iters * k}")
        n_steps = len(occ) // k
        if not n_steps:
            continue
        per, kstats = [], {}
        for i in range(n_steps):
            chunk = occ[i * k : (i + 1) * k]
            us = sum(d for r in chunk for _, d in r[1]) if cuda else sum(r[2] for r in chunk)
            per.append(us * 1e-6)
        for r in occ[: n_steps * k]:
            for kname, d in r[1]:
                calls, total = kstats.get(kname, (0, 0.0))
                kstats[kname] = (calls + 1, total + d * 1e-6)
        span = statistics.median(r[2] for r in occ) * 1e-6
        found[name] = (per, kstats, span)
    op_rows, kernel_rows, totals, more = _rows(phase, names, per_step, iters, found)
    first = sorted((r[0], n, r[1]) for n, rs in ranges.items() for r in rs[: per_step[n]])
    sequence = [{"phase": phase, "op": n, "kernel": kname, "time_s": d * 1e-6} for _, n, ks in first for kname, d in ks]
    info = {"join": "torch.profiler events API", "profiled_steps": iters}
    return op_rows, kernel_rows, sequence, totals, notes + more, info


def _measure_phase(
    ref,
    phase,
    prompt_len,
    context,
    per_step,
    spec,
    *,
    warmup,
    iters,
    timing_iters,
    cuda,
    trace_path,
    graph_timer,
    timed=None,
):
    """Profile one phase of the reference, ``per_step`` (op name -> calls per step) naming its ranges;
    returns (per-op measurements, kernels, sequence, step row, notes). ``timed``: the phase's step times
    measured elsewhere ({"eager_s", "graph_s"}, steptime.py's fresh process); None times them here."""
    step = ref.make_step(phase, prompt_len, context)
    names = list(per_step)
    notes = []
    ref.routed.clear()  # this phase's routing (an MoE reference), counted over every step run below
    with torch.no_grad():
        ref.annotate = True
        for _ in range(warmup):
            step()
        _sync(cuda)
        prof, events = _run_profiler(step, iters, cuda)
        joined = None
        if cuda:
            stats_path = trace_path.with_name(f"{phase}_profiled_steps.json.gz")
            _export_trace(prof, stats_path)
            try:
                joined = _per_op_from_trace(analyze_trace(stats_path, spec), names, per_step, iters, phase)
                notes.append(f"{phase}: kernels joined to op ranges by roofline.measure.trace.analyze_trace")
            except TraceError as exc:
                notes.append(f"{phase}: analyze_trace failed ({exc}); kernels joined through the profiler's events API")
        if joined is None:
            joined = _per_op_from_events(events, names, per_step, iters, phase, cuda)
        del prof, events
        op_rows, kernel_rows, sequence, step_totals, join_notes, join_info = joined
        notes.extend(join_notes)

        # one step, exported as a Chrome trace, and its kernels in launch order
        prof1, _ = _run_profiler(step, 1, cuda)
        trace_info = _export_trace(prof1, trace_path)
        del prof1

        if cuda and not ref.graph_capturable:
            notes.append(f"{phase}: CUDA-graph replay skipped: the MoE reference routes with host syncs")
        pipelined = None
        if timed is not None:
            eager, graph, pipelined = timed["eager_s"], timed["graph_s"], timed.get("graph_pipelined_s")
        else:
            ref.annotate = False  # wall-clock timing without ranges
            try:
                eager = _wall_time(step, timing_iters, cuda)
                graph = graph_timer(step, timing_iters) if cuda and ref.graph_capturable else None
            finally:
                ref.annotate = True

    step_row = {
        "kernel_time_ref_s": float(np.median(step_totals)),
        "eager_step_ref_s": eager,
        "graph_step_ref_s": graph,
        "graph_pipelined_ref_s": pipelined,  # replays back to back (fresh-process timing only)
        "host_overhead_ref_s": (eager - graph) if graph is not None else None,
        # an MoE reference: the routed experts that got tokens, per MoE layer (the mean over layers and steps)
        "routed_experts_ref": float(np.mean(ref.routed)) if ref.routed else None,
        **join_info,
        **{f"one_step_{k}": v for k, v in trace_info.items()},
    }
    return op_rows, kernel_rows, sequence, step_row, notes


def _out_of_memory(m, layers, b, p, context, gpu_name) -> str:
    return (
        f"out of GPU memory running {layers} layers of {m.name} at batch {b} (prompt {p}, context {context}) "
        f"on {gpu_name}; use fewer --layers or a smaller --batch"
    )


def profile_model(
    model,
    workload: Workload = None,
    spec=None,
    layers: int = 2,
    warmup: int = 5,
    iters: int = 10,
    cuda_graph: bool = None,
    trace_dir=None,
    timing_iters: int = STEP_WINDOW,
    device: str = "cuda",
    seed: int = 0,
    graph_timer=graph_time,
    fresh_timing: bool = None,
    step_times: dict | None = None,
    timing_rounds: int = 1,
) -> MeasuredRun:
    """Profile ``layers`` reference layers of ``model`` (a ModelConfig or a model file) for the single
    point of ``workload`` (the file's workload when None), on ``spec`` (name, path or HardwareSpec;
    by default the shipped spec of the detected GPU; its name goes to ``device['spec']``).

    ``cuda_graph`` picks which reference step time a full-model step estimate starts from: the graph
    replay (True) or eager launches (False); default: the workload's ``cuda_graph``. Both are measured.
    ``trace_dir``: where to write ``{phase}_trace.json.gz`` (one step each, small enough to commit) and
    ``{phase}_profiled_steps.json.gz`` (the ``iters`` profiled steps the join read); None = a temporary folder.
    ``device='cpu'`` runs the same pipeline on the CPU, op times from CPU time (for tests).
    ``graph_timer(step, iters)``: seconds per CUDA-graph replay of ``step``, or None where it cannot
    be captured (the distributed profile passes one that notes a failed capture).
    ``fresh_timing``: measure the eager and graph step times in a fresh Python process before profiling
    (roofline.measure.steptime: a process that has run the profiler launches slower); default on a GPU
    at tp 1. False times them here, after the profiler, as a distributed rank does. ``step_times``: this
    model's and workload's step times already measured (one result of ``steptime.time_steps``, e.g. the
    fastest of several rounds): used as they are, no timing here. ``timing_rounds``: the fresh-process timing
    repeated that many times, the fastest kept (``steptime.time_steps``' rounds).

    Returns a MeasuredRun (source 'reference', rank 0). Raises DeviceError (no CUDA GPU, out of GPU
    memory, profiler failure), ConfigError (a dtype or tp the reference cannot run, a sweep),
    UnknownHardware (no spec for the GPU).
    """
    m, w = resolve_model(model, workload)
    single_point(w)
    reference_dtype(w)
    cuda = torch.device(device).type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise DeviceError(
            "no CUDA GPU found (torch.cuda.is_available() is False); roofline profile needs an NVIDIA GPU "
            "with a CUDA build of PyTorch (roofline analyze needs neither)"
        )
    if cuda_graph is None:
        cuda_graph = w.cuda_graph
    layers = max(1, min(layers, m.num_hidden_layers))
    dev_index = torch.device(device).index or 0 if cuda else 0
    gpu_name = torch.cuda.get_device_name(dev_index) if cuda else "cpu"
    if spec is None:
        if not cuda:
            raise ConfigError("profiling on the CPU needs an explicit spec (a GPU to compare with)")
        spec = spec_name_for_gpu(gpu_name)
    spec = load_spec(spec)

    b, p, context = w.batch_size[0], w.prompt_len[0], decode_context(w)
    need = max(p if "prefill" in w.phases else 1, context if "decode" in w.phases else 1)
    trace_root = Path(trace_dir) if trace_dir else Path(tempfile.mkdtemp(prefix="roofline-trace-"))
    notes = []
    sampler = NvmlSampler(dev_index) if cuda else None
    if sampler:
        sampler.start()
    results = {}
    ref = None
    host_reference = None
    if fresh_timing is None:
        fresh_timing = cuda and w.tp == 1 and graph_timer is graph_time
    timed = {}
    if step_times is not None:
        timed = step_times
        notes.append("step times measured in a fresh Python process, before profiling (roofline.measure.steptime)")
    elif fresh_timing:
        from roofline.measure.calibrate import recorded_reference_job
        from roofline.measure.steptime import TIMEOUT_S, time_with_reference
        from roofline.predict import describe_host_reference, host_reference_record

        job = {"config": m, "workload": w, "layers": layers, "timing_iters": timing_iters, "seed": seed}
        # with the host reference where the spec records one (predict.py's docstring): the host's speed now
        reference = recorded_reference_job(spec)
        (timed,), host = time_with_reference(
            [job], reference, timeout_s=TIMEOUT_S * timing_rounds * (2 if reference else 1), rounds=timing_rounds
        )
        if host is not None:
            host_reference = host_reference_record(host, spec)
            notes.append(describe_host_reference(host_reference))
        if timed.get("out_of_memory"):
            raise DeviceError(_out_of_memory(m, layers, b, p, context, gpu_name))
        if "error" in timed:
            raise DeviceError(f"timing the step of {m.name}: {timed['error']}")
        notes.append("step times measured in a fresh Python process, before profiling (roofline.measure.steptime)")
    try:
        ref = build_reference(m, w, layers=layers, device=device, seed=seed, max_context=need)
        for phase in w.phases:
            results[phase] = _measure_phase(
                ref,
                phase,
                p,
                context,
                op_calls(m, w, phase, ref.layers),
                spec,
                warmup=warmup,
                iters=iters,
                timing_iters=timing_iters,
                cuda=cuda,
                trace_path=trace_root / f"{phase}_trace.json.gz",
                graph_timer=graph_timer,
                timed=timed.get(phase),
            )
    except torch.cuda.OutOfMemoryError:
        ref = None
        if cuda:
            torch.cuda.empty_cache()
        raise DeviceError(_out_of_memory(m, layers, b, p, context, gpu_name)) from None
    finally:
        if sampler:
            sampler.stop()
    weight_bytes_ref = ref.weight_bytes()
    del ref
    if cuda:
        torch.cuda.empty_cache()

    op_frames, kernel_rows, seq_rows, step_rows = [], [], [], []
    for phase, (op_rows, krows, seq, step_row, phase_notes) in results.items():
        notes.extend(phase_notes)
        f = pd.DataFrame(op_rows)
        f.insert(0, "phase", phase)
        f.insert(0, "rank", 0)
        f["time_source"] = "cuda kernels" if cuda else "cpu time"
        op_frames.append(f)
        kernel_rows.extend(krows)
        seq_rows.extend(seq)
        step_rows.append(
            {
                "rank": 0,
                "phase": phase,
                "batch_size": b,
                "prompt_len": p,
                "context_len": context if phase == "decode" else None,
                "attn_impl": w.attn_impl,
                "dtype": w.weight_dtype,
                "ref_layers": layers,
                "model_layers": m.num_hidden_layers,
                **step_row,
                "weight_bytes_ref": weight_bytes_ref,
            }
        )

    clocks = sampler.samples if sampler else pd.DataFrame()
    info = {
        "gpu": gpu_name,
        "spec": spec.name,
        "spec_calibrated": spec.is_calibrated,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "model": m.name,
        "layers_run": layers,
    }
    if host_reference is not None:
        info["host_reference"] = host_reference
    if cuda:
        info.update({k: v for k, v in gpu_info(dev_index).items() if k != "name"})
        info["clocks"] = sampler.summary()
        notes.extend(sampler.notes)
    measured_point = replace(w, context_len=(context,) if "decode" in w.phases else w.context_len, gen_tokens=None)
    return MeasuredRun(
        source="reference",
        ops=pd.concat(op_frames, ignore_index=True),
        steps=pd.DataFrame(step_rows),
        kernels=pd.DataFrame(kernel_rows),
        sequence=pd.DataFrame(seq_rows),
        clocks=clocks,
        traces={ph: str(trace_root / f"{ph}_trace.json.gz") for ph in results},
        device=info,
        notes=tuple(notes),
        model=m,
        workload=measured_point,
        layers=layers,
        cuda_graph=bool(cuda_graph),
    )
