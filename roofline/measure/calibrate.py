"""``calibrate``: measure this GPU's ceilings and write a spec YAML with a ``measured:`` section.

What is measured (each the median of repeats after warm-up, on random data, never zeros):
1. Memory bandwidth, two ways: a device-to-device copy of a large buffer (bytes read + bytes written
   counted) and a sum reduction over one (bytes read). ``mem_bandwidth_gb_per_s`` is the larger: the
   best a streaming kernel reached, the ceiling a memory-bound op is compared with. Both are kept
   under ``conditions``.
2. Dense matmul FLOP/s per dtype: bf16, fp16, tf32 (fp32 inputs, TF32 tensor cores), fp32 (CUDA
   cores) and fp8 e4m3 through ``torch._scaled_mm`` where the part and PyTorch have it; n x n x n
   products, 2 n^3 FLOP each.
3. Launch floor: one tiny kernel (``add_`` on one element) launched eagerly from Python, host time per
   launch over many; and inside a replayed CUDA graph, device time per kernel.

The written file is the shipped spec of the detected GPU plus ``measured:`` (the keys
``roofline.specs`` accepts) and ``sources.measured``; it loads with ``roofline.specs.load_spec``.
"""

import datetime
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from roofline.errors import DeviceError, SpecError
from roofline.measure.nvml import NvmlSampler, gpu_info, spec_name_for_gpu
from roofline.specs import load_spec, parse_spec, resolve_spec_path
from roofline.validate import load_mapping

FULL = {"copy_bytes": 2 * 1024**3, "matmul_n": 8192, "warmup": 3, "repeats": 10, "launches": 5000,
        "graph_kernels": 1000}
QUICK = {"copy_bytes": 256 * 1024**2, "matmul_n": 2048, "warmup": 2, "repeats": 5, "launches": 500,
         "graph_kernels": 100}
MATMUL_DTYPES = ("bf16", "fp16", "tf32", "fp32", "fp8")


def _require_cuda():
    if not torch.cuda.is_available():
        raise DeviceError("no CUDA GPU found (torch.cuda.is_available() is False); calibrate needs an NVIDIA GPU")


def _time_ms(fn, warmup: int, repeats: int) -> float:
    """Median device time of ``fn()`` in milliseconds, CUDA events around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def measure_bandwidth(n_bytes: int, warmup: int, repeats: int) -> dict:
    """Copy (read + write) and sum (read) bandwidth over ``n_bytes`` of random fp32, in bytes/s."""
    n = n_bytes // 4
    src = torch.randn(n, device="cuda")
    dst = torch.empty_like(src)
    copy_ms = _time_ms(lambda: dst.copy_(src), warmup, repeats)
    read_ms = _time_ms(lambda: src.sum(), warmup, repeats)
    if not torch.equal(dst, src):
        raise DeviceError("calibration copy check failed: the destination differs from the source")
    del src, dst
    return {"copy_bytes_per_s": 2 * n * 4 / (copy_ms * 1e-3), "read_bytes_per_s": n * 4 / (read_ms * 1e-3)}


def _matmul_fn(dtype: str, n: int):
    """A closure doing one n x n x n product in ``dtype``, or None where the part / PyTorch lacks it."""
    if dtype in ("bf16", "fp16"):
        t = torch.bfloat16 if dtype == "bf16" else torch.float16
        a, b = torch.randn(n, n, device="cuda", dtype=t), torch.randn(n, n, device="cuda", dtype=t)
        return lambda: torch.mm(a, b)
    if dtype in ("tf32", "fp32"):
        a, b = torch.randn(n, n, device="cuda"), torch.randn(n, n, device="cuda")
        tf32 = dtype == "tf32"

        def mm():
            old = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            try:
                return torch.mm(a, b)
            finally:
                torch.backends.cuda.matmul.allow_tf32 = old

        return mm
    if dtype == "fp8":
        if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
            return None
        if torch.cuda.get_device_capability() < (8, 9):
            return None
        a = torch.randn(n, n, device="cuda").to(torch.float8_e4m3fn)
        b = torch.randn(n, n, device="cuda").to(torch.float8_e4m3fn).t()  # column-major, as cuBLASLt wants
        one = torch.tensor(1.0, device="cuda")
        return lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    raise ValueError(f"no matmul for dtype {dtype}")


def measure_matmul(n: int, warmup: int, repeats: int, dtypes=MATMUL_DTYPES) -> dict:
    """dtype -> FLOP/s of an n x n x n product (2 n^3 FLOP); a dtype that fails is left out with a note."""
    out, notes = {}, []
    for dtype in dtypes:
        try:
            fn = _matmul_fn(dtype, n)
            if fn is None:
                notes.append(f"{dtype}: not available on this GPU / PyTorch")
                continue
            ms = _time_ms(fn, warmup, repeats)
            out[dtype] = 2.0 * n**3 / (ms * 1e-3)
        except RuntimeError as exc:  # e.g. _scaled_mm layouts a build does not support
            notes.append(f"{dtype}: {str(exc).splitlines()[0]}")
        finally:
            torch.cuda.empty_cache()
    return {"flops_per_s": out, "notes": notes}


def measure_launch(launches: int, graph_kernels: int, repeats: int = 5) -> dict:
    """Seconds per tiny kernel: eager (host time per launch) and inside a replayed CUDA graph."""
    x = torch.randn(1, device="cuda")
    for _ in range(100):
        x.add_(1.0)
    torch.cuda.synchronize()
    eager = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(launches):
            x.add_(1.0)
        torch.cuda.synchronize()
        eager.append((time.perf_counter() - t0) / launches)

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            x.add_(1.0)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(graph_kernels):
            x.add_(1.0)
    ms = _time_ms(graph.replay, 3, max(repeats, 10))
    return {"launch_s": statistics.median(eager), "graph_launch_s": ms * 1e-3 / graph_kernels}


def _conditions(info: dict, sampler: NvmlSampler, extra: dict) -> dict:
    summary = sampler.summary()
    cond = {
        "gpu": torch.cuda.get_device_name(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "torch": str(torch.__version__),  # TorchVersion, a str subclass yaml.safe_dump refuses
        "cuda": str(torch.version.cuda),
        "driver": info.get("driver", "unknown (NVML unavailable)"),
    }
    for key in ("sm_clock_mhz", "mem_clock_mhz", "power_w", "temperature_c"):
        if key in summary:
            cond[key] = {k: round(v, 1) for k, v in summary[key].items()}
    for key in ("max_sm_clock_mhz", "max_mem_clock_mhz", "power_limit_w"):
        if key in info:
            cond[key] = info[key]
    if "throttle_reasons_seen" in summary:
        cond["throttle_reasons_seen"] = summary["throttle_reasons_seen"]
    cond.update(extra)
    if summary["notes"]:
        cond["notes"] = summary["notes"]
    return json.loads(json.dumps(cond, default=str))  # plain str / int / float / list / dict for YAML


def build_spec(shipped: dict, measured: dict, source_text: str) -> dict:
    """The shipped spec mapping with ``measured`` and ``sources.measured`` added. Raises SpecError
    (through parse_spec) when the result would not load."""
    raw = dict(shipped)
    raw["sources"] = dict(raw["sources"])
    raw["sources"]["measured"] = source_text
    raw["measured"] = measured
    parse_spec(raw, "<calibrated spec>")
    return raw


def calibrate(output=None, spec=None, device_index: int = 0, quick: bool = False) -> dict:
    """Measure the ceilings of CUDA device ``device_index``; return the calibrated spec mapping and
    write it as YAML to ``output`` when given.

    ``spec``: the shipped spec (name or path) to extend; by default the one the GPU's name maps to.
    ``quick``: small sizes and few repeats (tests), not for real numbers.
    Raises DeviceError (no GPU, out of memory), UnknownHardware (a GPU with no shipped spec and no
    ``spec`` given).
    """
    _require_cuda()
    torch.cuda.set_device(device_index)
    sizes = QUICK if quick else FULL
    name = torch.cuda.get_device_name(device_index)
    spec_ref = spec or spec_name_for_gpu(name)
    shipped = load_mapping(resolve_spec_path(spec_ref), "hardware spec")
    info = gpu_info(device_index)
    sampler = NvmlSampler(device_index)
    try:
        with sampler:
            bw = measure_bandwidth(sizes["copy_bytes"], sizes["warmup"], sizes["repeats"])
            mm = measure_matmul(sizes["matmul_n"], sizes["warmup"], sizes["repeats"])
            launch = measure_launch(sizes["launches"], sizes["graph_kernels"])
    except torch.cuda.OutOfMemoryError:
        raise DeviceError(
            f"out of GPU memory during calibration on {name}; free the GPU (other processes?) and retry"
        ) from None

    mem_bw = max(bw["copy_bytes_per_s"], bw["read_bytes_per_s"])
    measured = {
        "peak_tflops": {k: round(v / 1e12, 1) for k, v in mm["flops_per_s"].items()},
        "mem_bandwidth_gb_per_s": round(mem_bw / 1e9, 1),
        "launch_overhead_us": round(launch["launch_s"] * 1e6, 2),
        "graph_launch_overhead_us": round(launch["graph_launch_s"] * 1e6, 3),
        "conditions": _conditions(info, sampler, {
            "copy_gb_per_s": round(bw["copy_bytes_per_s"] / 1e9, 1),
            "read_gb_per_s": round(bw["read_bytes_per_s"] / 1e9, 1),
            "buffer_bytes": sizes["copy_bytes"],
            "matmul_n": sizes["matmul_n"],
            "warmup": sizes["warmup"],
            "repeats": sizes["repeats"],
            "quick": quick,
            "matmul_notes": mm["notes"],
        }),
    }
    if not measured["peak_tflops"]:
        del measured["peak_tflops"]
    c = measured["conditions"]
    source = (
        f"roofline calibrate on {c['gpu']} (driver {c['driver']}, torch {c['torch']}, CUDA {c['cuda']}), "
        f"{c['date']}: memory bandwidth = the larger of a device-to-device copy of {sizes['copy_bytes'] / 1e9:.2f} GB "
        f"of random fp32 (bytes read + written: {c['copy_gb_per_s']} GB/s) and a sum over it (bytes read: "
        f"{c['read_gb_per_s']} GB/s); peak_tflops = {sizes['matmul_n']}^3 torch.mm per dtype (tf32: fp32 inputs "
        f"with allow_tf32; fp8: torch._scaled_mm e4m3 -> bf16) on random normal data, 2n^3 FLOP; launch overhead "
        f"= host time per eager add_ on one element over {sizes['launches']} launches; graph launch overhead = "
        f"device time per kernel of a CUDA graph of {sizes['graph_kernels']} add_ kernels. Each figure the "
        f"median of {sizes['repeats']} repeats after {sizes['warmup']} warm-ups."
    )
    raw = build_spec(shipped, measured, source)
    if output is not None:
        write_spec(raw, output)
    return raw


def write_spec(raw: dict, output) -> Path:
    """Write a spec mapping as YAML and check that it loads. Returns the path."""
    from roofline import io

    path = Path(output)
    header = "# Written by roofline calibrate: the shipped spec plus a measured: section (ceilings used first).\n"
    io.write_text(path, header + yaml.safe_dump(raw, sort_keys=False, width=110))  # atomic: old spec kept on failure
    try:
        load_spec(path)
    except SpecError as exc:  # a bug here, not bad input
        raise DeviceError(f"the calibrated spec written to {path} does not load: {exc}") from None
    return path
