"""Time roofline's trace analysis against HolisticTraceAnalysis on one large Kineto trace.

    python benchmarks/bench_trace.py                                   # 1M events from the committed H100 trace
    python benchmarks/bench_trace.py --hta-python /tmp/htavenv/bin/python
    python benchmarks/bench_trace.py my_trace.json.gz --events 250000 --keep /tmp/big.json

Builds a trace of about ``--events`` events by replicating a real one (default
tests/data/h100_decode_trace.json.gz, a Llama decode step recorded on an H100; while that file is
absent, a synthetic decode trace of the same structure) with shifted timestamps, correlation ids,
External ids and ProfilerStep numbers, then runs, each in a fresh Python process:
  roofline:  roofline.measure.trace.analyze_trace(path, spec)   parse + join + cost + classify
  hta:       hta.trace_analysis.TraceAnalysis(trace_dir=...)    HTA's parse of the same file
and prints, side by side, the call's wall time and CPU time (user + system while in the call, worker
processes included: on a shared machine the CPU time is the fairer figure), the whole process's
wall time and peak RSS (getrusage of the child and its workers), and their ratios. HTA is a benchmark-only
dependency; install it where it does not disturb roofline's environment, e.g.
``python3 -m venv /tmp/htavenv && /tmp/htavenv/bin/pip install HolisticTraceAnalysis==0.5.0``,
and pass that interpreter as ``--hta-python``. When HTA cannot be imported the script says so and
times roofline alone.
"""

import argparse
import gzip
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = REPO / "tests" / "data" / "h100_decode_trace.json.gz"
STEP = re.compile(r"^ProfilerStep#(\d+)$")

ROOFLINE_CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
from roofline.measure.trace import PARSERS, analyze_trace
from roofline.specs import load_spec
spec = load_spec("h100-sxm")
def cpu():  # user + system seconds of this process and of any worker processes it waited for
    return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
def peak_mb():
    return max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
t1, c1 = time.perf_counter(), cpu()
a = analyze_trace(sys.argv[1], spec)
t2, c2 = time.perf_counter(), cpu()
print(json.dumps({"import_s": t1 - t0, "call_s": t2 - t1, "call_cpu_s": c2 - c1, "kernels": len(a.kernels),
                  "parser": PARSERS[0], "peak_rss_mb": peak_mb()}))
"""

HTA_CHILD = """
import json, logging, os, resource, sys, time
t0 = time.perf_counter()
from hta.trace_analysis import TraceAnalysis
logging.disable(logging.WARNING)
def cpu():  # user + system seconds of this process and of any worker processes it waited for
    return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))
def peak_mb():
    return max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
t1, c1 = time.perf_counter(), cpu()
a = TraceAnalysis(trace_dir=os.path.dirname(sys.argv[1]))
t2, c2 = time.perf_counter(), cpu()
df = a.t.get_trace(a.t.get_ranks()[0])
print(json.dumps({"import_s": t1 - t0, "call_s": t2 - t1, "call_cpu_s": c2 - c1, "rows": len(df),
                  "peak_rss_mb": peak_mb()}))
"""


def load(path: Path) -> dict:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return json.load(fh)


def build(source: dict, n_events: int, out: Path) -> int:
    """Write a trace of about n_events events to ``out`` by repeating source's timed events."""
    events = source["traceEvents"]
    once = [e for e in events if e.get("ph") in ("M", "i") or e.get("cat") == "Trace"]
    body = [e for e in events if not (e.get("ph") in ("M", "i") or e.get("cat") == "Trace")]
    timed = [e for e in body if "ts" in e]
    start = min(e["ts"] for e in timed)
    period = max(e["ts"] + e.get("dur", 0) for e in timed) - start + 100.0
    corr_step = 1 + max(
        [(e.get("args") or {}).get("correlation", 0) for e in body]
        + [e.get("id", 0) for e in body if e.get("cat") == "ac2g"]
    )
    ext_step = 1 + max((e.get("args") or {}).get("External id", 0) for e in body)
    steps = [int(m.group(1)) for e in body if (m := STEP.match(str(e.get("name", ""))))]
    step_step = max(steps, default=0) - min(steps, default=0) + 1
    copies = max(1, round((n_events - len(once)) / len(body)))
    header = {k: v for k, v in source.items() if k != "traceEvents"}
    header.setdefault("distributedInfo", {"rank": 0})  # HTA reads the rank from here
    written = len(once)
    with open(out, "w") as fh:
        fh.write(json.dumps(header)[:-1] + ', "traceEvents": [\n')
        fh.write(",\n".join(json.dumps(e) for e in once))
        for i in range(copies):
            chunk = []
            for e in body:
                e = dict(e)
                if "ts" in e:
                    e["ts"] = round(e["ts"] + i * period, 3)
                if e.get("cat") == "ac2g" and "id" in e:
                    e["id"] += i * corr_step
                args = e.get("args")
                if args and ("correlation" in args or "External id" in args):
                    args = dict(args)
                    if "correlation" in args:
                        args["correlation"] += i * corr_step
                    if "External id" in args:
                        args["External id"] += i * ext_step
                    e["args"] = args
                if (m := STEP.match(str(e.get("name", "")))) and i:
                    e["name"] = f"ProfilerStep#{int(m.group(1)) + i * step_step}"
                chunk.append(json.dumps(e))
            fh.write(",\n" + ",\n".join(chunk))
            written += len(chunk)
        fh.write("\n]}\n")
    return written


def run_child(code: str, trace: Path, python: str = sys.executable) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [python, "-c", code, str(trace)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            ),
        },
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"child failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = wall
    return result


def hta_missing(python: str):
    """None when ``python`` can import HTA, else why not (one line)."""
    proc = subprocess.run([python, "-c", "import hta.trace_analysis"], capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return None
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return f"{python} cannot import HTA ({last})"


# ----------------------------------------------------------------------------------------------
# a synthetic decode trace with the structure of a real one (used while no real trace is committed)


def synthesize(n_steps: int = 30, layers: int = 8) -> dict:
    """A Kineto-shaped trace of a small decoder's decode steps: ranges, aten ops with shapes,
    runtime and driver launches, kernels on two streams, copies, sets, flows and metadata."""
    pid, tid, main, side = 4242, 4242, 7, 20
    ev, t = [], 1_000_000.0
    # real traces' correlation ids are large; HTA 0.5 fails when they all fit in int16 (it downcasts the
    # column, then stores row numbers in a column derived from it)
    ids = {"corr": 100_000, "ext": 1}

    def x(cat, name, ts, dur, p, th, args=None):
        e = {"ph": "X", "cat": cat, "name": name, "pid": p, "tid": th, "ts": round(ts, 3), "dur": round(dur, 3)}
        if args is not None:
            e["args"] = args
        ev.append(e)
        return e

    def op(name, ts, dur, dims=None, types=None, concrete=None):
        ids["ext"] += 1
        args = {"External id": ids["ext"], "Record function id": 0, "Sequence number": ids["ext"], "Fwd thread id": 0}
        if dims is not None:
            args.update(
                {
                    "Input Dims": dims,
                    "Input type": types,
                    "Concrete Inputs": concrete or [""] * len(dims),
                    "Input Strides": [[1] * len(d) for d in dims],
                }
            )
        return x("cpu_op", name, ts, dur, pid, tid, args)

    def launch(kind, name, ts, kernel, gpu_ts, gpu_dur, stream=main, cat="kernel", extra=None):
        ids["corr"] += 1
        c = ids["corr"]
        x(
            "cuda_driver" if kind == "driver" else "cuda_runtime",
            name,
            ts,
            6.5,
            pid,
            tid,
            {"External id": ids["ext"], "cbid": 652 if kind == "driver" else 211, "correlation": c},
        )
        ev.append({"ph": "s", "id": c, "pid": pid, "tid": tid, "ts": round(ts, 3), "cat": "ac2g", "name": "ac2g"})
        args = {"External id": ids["ext"], "device": 0, "context": 1, "stream": stream, "correlation": c}
        if cat == "kernel":
            args.update(
                {
                    "queued": 0,
                    "registers per thread": 128,
                    "shared memory": 49152,
                    "blocks per SM": 0.97,
                    "warps per SM": 3.9,
                    "grid": [132, 1, 1],
                    "block": [128, 1, 1],
                    "est. achieved occupancy %": 6,
                }
            )
        args.update(extra or {})
        x(cat, kernel, gpu_ts, gpu_dur, 0, stream, args)
        ev.append(
            {
                "ph": "f",
                "id": c,
                "pid": 0,
                "tid": stream,
                "ts": round(gpu_ts, 3),
                "cat": "ac2g",
                "name": "ac2g",
                "bp": "e",
            }
        )

    bf = "c10::BFloat16"
    gpu_t = t
    for step in range(1, n_steps + 1):
        step_start = t
        t += 5
        for layer in range(layers):
            layer_start = t
            for part, (n_in, n_out) in (("attention", (4096, 12288)), ("mlp", (4096, 28672))):
                part_start = t
                for w in ((n_in, n_out), (n_out // 3 if part == "attention" else n_out // 2, 4096)):
                    o = op("aten::linear", t, 30, [[1, 1, w[0]], [w[1], w[0]], []], [bf, bf, ""])
                    op("aten::matmul", t + 2, 26, [[1, 1, w[0]], [w[0], w[1]]], [bf, bf])
                    op("aten::mm", t + 6, 18, [[1, w[0]], [w[0], w[1]]], [bf, bf])
                    gpu_t = max(gpu_t, t + 20) + 1.2
                    dur = w[0] * w[1] * 2 / 3.0e6  # weight-read time at 3 TB/s, µs
                    launch("driver", "cuLaunchKernelEx", t + 9, "nvjet_sm90_tst_64x8_64x16_1x4_h_bz_NNT", gpu_t, dur)
                    gpu_t += dur
                    t = o["ts"] + o["dur"] + 3
                if part == "attention":
                    o = op(
                        "aten::scaled_dot_product_attention",
                        t,
                        60,
                        [[1, 32, 1, 128], [1, 32, 512 + step, 128], [1, 32, 512 + step, 128], [], [], [], [], []],
                        [bf, bf, bf, "", "Scalar", "Scalar", "", "Scalar"],
                        ["", "", "", "", "0.", "False", "", "False"],
                    )
                    op("aten::_scaled_dot_product_flash_attention", t + 5, 50)
                    op("aten::_flash_attention_forward", t + 10, 35)
                    gpu_t = max(gpu_t, t + 30) + 1.0
                    launch(
                        "runtime",
                        "cudaLaunchKernel",
                        t + 20,
                        "void pytorch_flash::flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<128, 64, 128, 4, "
                        "false, false, cutlass::bfloat16_t>, false, false, false, false, true, true, false, false>"
                        "(pytorch_flash::Flash_fwd_params)",
                        gpu_t,
                        9.5,
                    )
                    gpu_t += 9.5
                    t = o["ts"] + o["dur"] + 3
                o = op("aten::add", t, 14, [[1, 1, 4096], [1, 1, 4096], []], [bf, bf, "Scalar"])
                gpu_t = max(gpu_t, t + 10) + 1.0
                launch(
                    "runtime",
                    "cudaLaunchKernel",
                    t + 5,
                    "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>, "
                    "std::array<char*, 3ul> >(int, at::native::CUDAFunctor_add<c10::BFloat16>, "
                    "std::array<char*, 3ul>)",
                    gpu_t,
                    1.6,
                )
                gpu_t += 1.6
                t = o["ts"] + o["dur"] + 3
                x("user_annotation", part, part_start, t - part_start, pid, tid, {"External id": ids["ext"]})
                t += 2
            x("user_annotation", f"layer.{layer}", layer_start, t - layer_start, pid, tid, {"External id": ids["ext"]})
        o = op("aten::copy_", t, 25, [[1], [1], []], ["long int", "long int", "Scalar"])
        gpu_t = max(gpu_t, t + 15) + 2
        launch(
            "runtime",
            "cudaMemcpyAsync",
            t + 8,
            "Memcpy HtoD (Pinned -> Device)",
            gpu_t,
            1.4,
            cat="gpu_memcpy",
            extra={"bytes": 8, "memory bandwidth (GB/s)": 0.006},
        )
        gpu_t += 1.4
        o = op("aten::zero_", o["ts"] + 30, 12, [[4096]], ["float"])
        launch(
            "runtime",
            "cudaMemsetAsync",
            o["ts"] + 3,
            "Memset (Device)",
            gpu_t + 0.5,
            0.8,
            cat="gpu_memset",
            extra={"bytes": 16384, "memory bandwidth (GB/s)": 20.5},
        )
        o = op("aten::mm", o["ts"] + 20, 16, [[256, 256], [256, 256]], [bf, bf])
        launch(
            "driver",
            "cuLaunchKernelEx",
            o["ts"] + 6,
            "nvjet_sm90_tst_64x32_64x16_1x2_h_bz_TNT",
            gpu_t + 2,
            4.1,
            stream=side,
        )
        t = o["ts"] + o["dur"] + 4
        x(
            "cuda_runtime",
            "cudaStreamSynchronize",
            t,
            gpu_t + 8 - t if gpu_t + 8 > t else 2,
            pid,
            tid,
            {"cbid": 131, "correlation": 0},
        )
        t = max(t, gpu_t + 8) + 40
        x("user_annotation", f"ProfilerStep#{step}", step_start, t - step_start, pid, tid, {"External id": 0})
        gpu_t = t
    meta = [
        {"name": "process_name", "ph": "M", "ts": 1_000_000.0, "pid": pid, "tid": 0, "args": {"name": "python"}},
        {"name": "process_labels", "ph": "M", "ts": 1_000_000.0, "pid": 0, "tid": 0, "args": {"labels": "GPU 0"}},
        {"name": "thread_name", "ph": "M", "ts": 1_000_000.0, "pid": 0, "tid": main, "args": {"name": "stream 7 "}},
        {"name": "thread_name", "ph": "M", "ts": 1_000_000.0, "pid": 0, "tid": side, "args": {"name": "stream 20 "}},
        {
            "ph": "X",
            "cat": "Trace",
            "ts": 999_990.0,
            "dur": t - 999_990.0,
            "pid": "Spans",
            "tid": "PyTorch Profiler",
            "name": "PyTorch Profiler (0)",
            "args": {"Op count": 0},
        },
    ]
    return {
        "schemaVersion": 1,
        "deviceProperties": [{"id": 0, "name": "NVIDIA H100 80GB HBM3", "numSms": 132}],
        "distributedInfo": {"backend": "nccl", "rank": 0, "world_size": 1},
        "record_shapes": 1,
        "displayTimeUnit": "ms",
        "baseTimeNanoseconds": 1_700_000_000_000_000_000,
        "traceEvents": meta + ev,
        "traceName": "synthetic decode",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace", nargs="?", default=str(DEFAULT_INPUT), help="a Kineto trace to replicate")
    ap.add_argument("--events", type=int, default=1_000_000, help="events in the built trace (default 1M)")
    ap.add_argument("--keep", help="write the built trace here (a .json path) and keep it")
    ap.add_argument("--hta-python", default=sys.executable, help="an interpreter that can import hta")
    ap.add_argument("--skip-hta", action="store_true", help="time roofline only")
    opts = ap.parse_args()

    src = Path(opts.trace)
    source = load(src) if src.exists() else synthesize()
    origin = str(src) if src.exists() else f"synthetic decode trace ({src} not found)"
    missing = None if opts.skip_hta else hta_missing(opts.hta_python)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(opts.keep) if opts.keep else Path(tmp) / "trace" / "rank0.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        n = build(source, opts.events, out)
        del source
        size = out.stat().st_size
        print(f"input: {origin}\nbuilt: {out} ({n:,} events, {size / 1e6:.0f} MB)")
        results = {"roofline": run_child(ROOFLINE_CHILD, out)}
        if not opts.skip_hta and not missing:
            results["hta"] = run_child(HTA_CHILD, out, opts.hta_python)
    print(f"{'':10} {'call s':>8} {'call CPU s':>11} {'process s':>10} {'peak RSS MB':>12}")
    for name, r in results.items():
        print(f"{name:10} {r['call_s']:8.2f} {r['call_cpu_s']:11.2f} {r['process_s']:10.2f} {r['peak_rss_mb']:12.0f}")
    rf = results["roofline"]
    print(f"roofline parser: {rf['parser']}")
    if "hta" in results:
        h = results["hta"]
        print(
            f"hta / roofline: time {h['call_s'] / rf['call_s']:.1f}x (call), {h['call_cpu_s'] / rf['call_cpu_s']:.1f}x "
            f"(call CPU), {h['process_s'] / rf['process_s']:.1f}x (process); "
            f"peak RSS {h['peak_rss_mb'] / rf['peak_rss_mb']:.2f}x"
        )
    elif missing:
        print(f"hta: not timed: {missing}; install HolisticTraceAnalysis in a separate venv and pass --hta-python")
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}; "
        f"this process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
