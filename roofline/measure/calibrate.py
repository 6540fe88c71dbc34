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
import math
import statistics
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
import yaml

from roofline.config import ModelConfig
from roofline.errors import DeviceError, SpecError
from roofline.measure.nvml import NvmlSampler, gpu_info, spec_name_for_gpu
from roofline.measure.steptime import STEP_WINDOW
from roofline.specs import load_spec, parse_spec, resolve_spec_path
from roofline.validate import load_mapping

FULL = {
    "copy_bytes": 2 * 1024**3,
    "matmul_n": 8192,
    "warmup": 3,
    "repeats": 10,
    "launches": 5000,
    "graph_kernels": 1000,
}
QUICK = {
    "copy_bytes": 256 * 1024**2,
    "matmul_n": 2048,
    "warmup": 2,
    "repeats": 5,
    "launches": 500,
    "graph_kernels": 100,
}
MATMUL_DTYPES = ("bf16", "fp16", "tf32", "fp32", "fp8")


def _require_cuda():
    if not torch.cuda.is_available():
        raise DeviceError("no CUDA GPU found (torch.cuda.is_available() is False); calibrate needs an NVIDIA GPU")


def _time_ms(fn, warmup: int, repeats: int) -> float:
    """Median device time of ``fn()`` in milliseconds, CUDA events around each call."""
    from roofline.measure.profile import event_time_s

    for _ in range(warmup):
        fn()
    return statistics.median(event_time_s(fn) * 1e3 for _ in range(repeats))


def measure_bandwidth(n_bytes: int, warmup: int, repeats: int) -> dict:
    """Copy (read + write) and sum (read) bandwidth over ``n_bytes`` of random fp32, in bytes/s."""
    n = n_bytes // 4
    src = torch.randn(n, device="cuda")
    dst = torch.empty_like(src)
    copy_ms = _time_ms(lambda: dst.copy_(src), warmup, repeats)  # noqa: F821 (deleted below, after the calls)
    read_ms = _time_ms(lambda: src.sum(), warmup, repeats)  # noqa: F821
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


def calibrate(output=None, spec=None, device_index: int = 0, quick: bool = False, kernels: bool = True) -> dict:
    """Measure the ceilings of CUDA device ``device_index``; return the calibrated spec mapping and
    write it as YAML to ``output`` when given.

    ``spec``: the shipped spec (name or path) to extend; by default the one the GPU's name maps to.
    ``quick``: small sizes and few repeats (tests), not for real numbers.
    ``kernels``: also measure the kernel model of predict.py (bandwidth by size, GEMM and attention
    efficiency tables, per-op fixed and host costs of the reference model); skipped with ``quick``.
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
            kernel_model = None
            if kernels and not quick:
                basic = {
                    "peak_tflops": {k: v / 1e12 for k, v in mm["flops_per_s"].items()},
                    "mem_bandwidth_gb_per_s": max(bw["copy_bytes_per_s"], bw["read_bytes_per_s"]) / 1e9,
                }
                interim = parse_spec(build_spec(shipped, basic, "interim"), "<calibration in progress>")
                kernel_model = measure_kernel_model(interim)
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
        "conditions": _conditions(
            info,
            sampler,
            {
                "copy_gb_per_s": round(bw["copy_bytes_per_s"] / 1e9, 1),
                "read_gb_per_s": round(bw["read_bytes_per_s"] / 1e9, 1),
                "buffer_bytes": sizes["copy_bytes"],
                "matmul_n": sizes["matmul_n"],
                "warmup": sizes["warmup"],
                "repeats": sizes["repeats"],
                "quick": quick,
                "matmul_notes": mm["notes"],
            },
        ),
    }
    if not measured["peak_tflops"]:
        del measured["peak_tflops"]
    if kernel_model is not None:
        tables, kernel_conditions = kernel_model
        measured.update(tables)
        measured["conditions"].update(kernel_conditions)
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
    if kernel_model is not None:
        source += (
            " Kernel model (roofline/predict.py): kernel_min_us = device time of add_ on one element; "
            "bandwidth_curve = a bf16 element-wise kernel (neg) moving 4 KB to 1 GB (read + written); gemm.bf16 = F.linear over "
            f"tokens {GEMM_TOKENS[0]}-{GEMM_TOKENS[-1]} x {len(GEMM_SHAPES)} (in, out) shapes of the shipped models; "
            "attention = flash SDPA, prefill causal by length x batch*heads (MHA and GQA 4), decode by KV bytes x "
            "GQA ratio; efficiency = classify.py's roofline time with this run's peak and bandwidth / measured time; "
            "ops = profile_model of two layers of a small Llama-style model at decode batch 1 (host costs scaled "
            "to the measured eager and CUDA-graph steps, a layer's eager ones to the step's slope from 2 to "
            f"{DEPTH_LAYERS} layers). Times: kernel durations from torch.profiler, mean of "
            "the repeats after warm-up."
        )
    raw = build_spec(shipped, measured, source)
    if output is not None:
        write_spec(raw, output)
    return raw


def plain(obj):
    """``obj`` with numpy scalars turned into Python numbers (yaml.safe_dump refuses numpy types)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        return obj.item()
    return obj


KERNEL_MODEL_DOC = """#
# measured: keys of the kernel model (roofline/predict.py reads them; plain numbers, SI prefixes as named):
#   kernel_min_us      device time of the smallest kernel (add_ on one element): the floor of any op
#   kernel_gap_us      idle GPU time per kernel in a CUDA-graph replay of the reference's step (the launch gap)
#   graph_replay_us    what a synced CUDA-graph step costs beyond its kernels and gaps (the replay's launch
#                      call before the GPU starts, the host's wake-up after): the synced replay minus the
#                      back-to-back one of the small model; the host cost of a graph step's first op
#   bandwidth_curve    bytes: bytes moved (read + written) by one bf16 element-wise kernel; gb_per_s: achieved
#                      at that size. Element-wise and memory ops take bytes / this (log-log interpolated)
#   gemm.<dtype>       tokens (M) x weight_elements (K*N) -> efficiency = roofline time / measured time of
#                      F.linear(x [M, K], W [N, K]); rows follow tokens, columns weight_elements; kernels (since
#                      stop 14, every gemm table): the kernels one call launches on the same grid (cuBLAS's split-K
#                      GEMMs run two)
#   gemm.<dtype>/unaligned  the same for an output width that is not a multiple of 8 (odd vocabularies):
#                      used for lm_head when its vocabulary shard is (predict.op_variants)
#   gemm.<dtype>/tall_k  the same for down_proj's shapes (intermediate -> hidden), used for down_proj
#   gemm.<dtype>/bias  the projections' shapes with a bias, F.linear(x, W, b): a biased projection's time is its
#                      own table's times max(1, plain efficiency / this) (predict.bias_factor)
#   gemm.fp8, gemm.int8  W8A8 projections as the reference runs them (torch._scaled_mm / torch._int_mm, the
#                      activations quantised per call inside the op), against the 8-bit peak
#   gemm.<dtype>/weight_only  8-bit weights with 16-bit activations as the reference runs them (fp8: torch._scaled_mm
#                      with the activations quantised per call; int8: the weights converted to 16 bits, then
#                      F.linear), against the weight-only roofline (1-byte weights, 16-bit activations and peak)
#   attention.prefill  query_len x flops_per_pair (4 * batch * heads * head_dim) -> efficiency of causal
#                      flash SDPA against its compute roofline (FLOPs / peak; roofline: compute): the kernel
#                      takes about the same time for MHA and GQA 4 (benchmarks/gpu_gemm_context.py), whose memory
#                      rooflines differ, so one table serves both (their geometric mean)
#   attention.decode   kv_bytes (K + V read) x flops_per_kv_byte (the GQA ratio in bf16) -> efficiency of
#                      one-query flash SDPA against a cache
#   attention.<phase>/d64  the same two tables at head_dim 64 (16 query heads), for models of that head_dim
#   attention.decode/kv_fp8  decode against an fp8 (e4m3) cache as the reference runs it (the slice converted to
#                      bf16, then SDPA), against the fp8 cache's roofline; kv_bytes in fp8 bytes
#   projection_host_us  fp8 | int8 | <dtype>/weight_only: the extra eager host time of one 8-bit projection call over
#                      a 16-bit one (the per-call activation quantisation, the weights' conversion), from the small
#                      model's eager step in each format against bf16; added to those projections' host cost
#   split_kernel_host_us  the eager host time of one more kernel in a 16-bit projection call (the slope of host time
#                      on kernels per F.linear call over the GEMM shapes at 1 and 8 tokens, in a fresh process): a
#                      projection whose gemm cell runs more kernels than its ops entry counts pays it per extra kernel
#   op_tables.<name>   tokens x act_bytes_per_token ((bytes moved - weight bytes) / tokens) -> efficiency of the reference's
#                      element-wise or memory op <name> (NAME/VARIANT: rmsnorm | layernorm norms, gated | plain
#                      activation), measured on one-layer models of several widths; replaces the bandwidth
#                      curve and traffic for that op
#   ops.experts        also syncs (host syncs per occurrence: torch.where per expert, each draining the queue),
#                      host_per_active_expert_us and active_experts (host_eager_us's point): the host cost
#                      grows by host_per_active_expert_us per expert that receives tokens;
#                      kernels_per_active_expert: the kernels each such expert adds (both from the small MoE
#                      model at decode batch 1 and MOE_WIDE_BATCH, over the experts that got tokens as the
#                      runs routed them: conditions.ops_measured_on.moe_routed_experts; a spec from before
#                      stop 15 divided by the uniform expectation, 7.92 at batch 16 against 7.5 routed);
#                      small_kernel_us: GPU time per kernel of the op less its active experts (routing and the
#                      where's, no GEMM): (fixed - active x GPU per active expert) / (kernels - active x
#                      kernels_per_active_expert) at batch 1; the time of the loop's non-GEMM kernels
#                      (predict.expert_loop: the experts' GPU time and their launch queue between syncs)
#   ops.<name>         the reference model's op <name> (or NAME/VARIANT): fixed_us (its kernels at the smallest size: a floor),
#                      host_eager_us (what one occurrence costs the host, eager: a layer's ops add up to the slope
#                      of the reference's eager step from 2 to DEPTH_LAYERS layers, the ops outside the layers to
#                      the rest of its 2-layer step, at least launch_overhead_us each; the MoE model's own ops and
#                      the gpt2-style variants to what their model's step leaves), host_graph_us (its share
#                      of a CUDA-graph replay of the small model; recorded, not used: in a graph the
#                      prediction adds kernel_gap_us per kernel), kernels (per occurrence), traffic
#                      (element-wise ops: measured time at a large size over ideal bytes / bandwidth)
# An op's predicted time = max(fixed, roofline time / efficiency); a step = the launch queue of the ops'
# GPU time (predicted + kernels x kernel_gap) and host cost (host_eager; none inside a CUDA graph).
# Efficiencies use this file's measured peak and bandwidth.
"""


def write_spec(raw: dict, output) -> Path:
    """Write a spec mapping as YAML and check that it loads. Returns the path."""
    from roofline import io

    path = Path(output)
    raw = plain(raw)
    header = "# Written by roofline calibrate: the shipped spec plus a measured: section (ceilings used first).\n"
    kernel_keys = ("gemm", "attention", "bandwidth_curve", "ops", "op_tables", "kernel_min_us")
    if any(k in raw.get("measured", {}) for k in kernel_keys):
        header += KERNEL_MODEL_DOC
    if "collectives" in raw.get("measured", {}):
        from roofline.measure.collectives import COLLECTIVE_MODEL_DOC

        header += COLLECTIVE_MODEL_DOC
    io.write_text(path, header + yaml.safe_dump(raw, sort_keys=False, width=110))  # atomic: old spec kept on failure
    try:
        load_spec(path)
    except SpecError as exc:  # a bug here, not bad input
        raise DeviceError(f"the calibrated spec written to {path} does not load: {exc}") from None
    return path


# ------------------------------------------------------------------------------------------------
# the kernel model of roofline/predict.py: what a roofline leaves out, measured
#
# Every time below is the device time of the CUDA kernels one call launches, from torch.profiler
# (kernel durations summed, mean over ``repeats`` calls after warm-up): the quantity profile_model
# measures per op, so a calibrated prediction and a profiled op are the same kind of number.
# Efficiencies are the roofline time of the same work (classify.py's formula, with the measured
# peak and bandwidth of this run, FLOPs and bytes from formulas.py) over the measured time.

GEMM_TOKENS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
# (in, out) of the linear layers of the shipped models: small (gpt2), Llama-2-7B, Llama-3-8B / Mixtral
# (GQA k/v, the MLP), and two vocabularies (lm_head)
GEMM_SHAPES = (
    (768, 768),
    (768, 3072),
    (4096, 1024),
    (4096, 4096),
    (4096, 11008),
    (4096, 14336),
    (4096, 32000),
    (4096, 128256),
)
# down_proj's (intermediate -> hidden): more inputs than outputs; cuBLAS splits K at few tokens (a second
# kernel), so these get their own table (predict.op_variants: 'tall_k') rather than being merged with
# the (hidden -> intermediate) shape of the same weight size
GEMM_DOWN_SHAPES = ((3072, 768), (11008, 4096), (14336, 4096))
# (in, out) with an output width that is not a multiple of 8 elements: gpt2's vocabulary and Llama's
# 32000 + 1 pad token; cuBLAS runs other (slower) kernels for them (predict.op_variants: 'unaligned')
GEMM_UNALIGNED_SHAPES = ((768, 50257), (1600, 50257), (4096, 32001))
# the projections' shapes again with a bias (gpt2, qwen2's q/k/v, gpt-oss): cuBLAS fuses the add into the GEMM's
# epilogue, 2-15% slower (reports/h200/bias_probe.csv); predict.bias_factor reads this table against the plain one
GEMM_BIAS_SHAPES = GEMM_SHAPES[:6]
BANDWIDTH_BYTES = tuple(4096 * 4**i for i in range(10))  # 4 KB .. 1.07 GB moved (read + written)
PREFILL_LENS = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
PREFILL_BATCH_HEADS = (32, 64, 128, 256)  # batch x query heads, head_dim 128 (scaled to the heads of d64's)
DECODE_KV_BYTES = tuple(2**19 * 4**i for i in range(9))  # 0.5 MB .. 34 GB of K and V read
DECODE_GQA = (1, 4, 8)  # query heads per KV head, 32 query heads of 128
SMALL_MODEL = {
    "name": "calibration-small",
    "model_type": "llama",
    "hidden_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "intermediate_size": 1408,
    "vocab_size": 32000,
    "hidden_act": "silu",
}
LARGE_MODEL = {
    "name": "calibration-large",
    "model_type": "llama",
    "hidden_size": 4096,
    "num_hidden_layers": 1,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 32000,
    "hidden_act": "silu",
}
# the op tables: the reference's element-wise and memory ops (norms, rope, activation, residuals, cache
# writes, embeddings) timed at these token counts (decode batch = tokens at context 128 up to 64, then
# prefill of one sequence) on llama-style and gpt2-style models of these widths
OP_TABLE_TOKENS = (1, 8, 64, 512, 4096)
STEP_ROUNDS = 4  # interleaved rounds of the fresh-process step timings the host costs are scaled to
# the host reference is timed again at this many layers: the slope of its eager step over depth is what a layer's
# ops cost the host (split_layer_hosts). Profiled at 2 layers, the spans put 181 us of the 2-layer step outside the
# layers, where its eager steps timed at 2 to 32 layers extrapolate to 42-73 us at no layers (stop 16, three leases,
# reports/h200/step-depth): a 32-layer step was predicted 11% short on the calibration's own lease
DEPTH_LAYERS = 16
OP_TABLE_DECODE_MAX = 64
OP_TABLE_WIDTHS = {"llama": (512, 2048, 4096, 8192), "llama_mha": (4096,), "gpt2": (768, 1600)}
# L2: the op costs and op tables are measured on models whose 16-bit head is at least this many times the spec's L2
# (cold_vocab), as every real model's step reads more than its L2. With a 32000-token head that fit (33 MB at hidden
# 512 in the H200's 50-60 MB), the H200 replayed the llama-style model's kernels with 0.19 µs between them against
# 0.36 µs with a 131072-token head, and gpt2's 768-wide LayerNorm ran 2.8 µs at one token with an 8192-token head
# against 3.1-3.3 µs with gpt2's own (benchmarks/gpu_l2_probe.py, reports/h200/l2_probe_*.csv)
COLD_L2_FACTOR = 4
MOE_WIDE_BATCH = 16  # decode batch of the second MoE calibration point (host cost per active expert)
TRAFFIC_TOKENS = 2048  # prefill tokens of the traffic run: 16.8 MB per hidden-state tensor
MAX_KERNEL_S = 0.2  # a grid point whose roofline time exceeds this is skipped (held from its neighbour)
# Power: an H200 running back-to-back bf16 GEMMs enters NVML's sw_power_cap after about 125 ms and drops its SM
# clock from 1980 to a median 1455 MHz (1125-1530); 200 ms idle brings it back to 1950 MHz (benchmarks/gpu_power_cap.py,
# reports/h200/power_onset.csv, power_recovery.csv). A model's step, with its host gaps and small kernels, runs its
# GEMMs at the full clock (benchmarks/gpu_gemm_context.py: 1980 MHz inside a two-layer step; stop 9's validate
# measured its MLP GEMMs at 0.95-1.02 of the peak, where tables timed cell after cell under the cap held 0.74-0.82).
# So each timing is short and the tables are measured at the unthrottled clock: a few ms of warm-up (clocks up
# from idle), and COOL_S of idle once COOL_AFTER_S of GPU work has run since the last one.
WARMUP_S = 0.01  # wall time of warm-up calls before each timing
COOL_AFTER_S, COOL_S = 0.1, 0.2
_work_since_cool = [0.0]  # seconds of timed GPU work since the last idle (kernel_time_s)
_last_kernels = [None]  # kernels per call of the last kernel_time_s (the GEMM tables record them)
COLD_BYTES = 256e6  # operands are rotated among copies adding up to this (> 4x the L2 of an H200): each call
# reads its weights / cache from HBM, as a model's op does, not from the L2 a repeated call would hit


def copies_for(n_bytes: float, cap: int = 64) -> int:
    """How many copies of an operand of ``n_bytes`` add up to COLD_BYTES (at least 1, at most ``cap``)."""
    return int(max(1, min(cap, math.ceil(COLD_BYTES / max(n_bytes, 1)))))


def rotating(fn, operands: list):
    """A closure calling ``fn(*operands[i])`` for i = 0, 1, 2, ... cyclically."""
    state = {"i": 0}

    def call():
        args = operands[state["i"] % len(operands)]
        state["i"] += 1
        return fn(*args)

    return call


def cool_down(sync=None, sleep=time.sleep) -> bool:
    """Idle the GPU for COOL_S (after draining its queue) once more than COOL_AFTER_S of timed work has run since
    the last idle; True when it did. ``sync`` (default torch.cuda.synchronize) and ``sleep`` are for tests."""
    if _work_since_cool[0] <= COOL_AFTER_S:
        return False
    (sync or torch.cuda.synchronize)()
    sleep(COOL_S)
    _work_since_cool[0] = 0.0
    return True


def kernel_time_s(fn, repeats: int = 10, warmup: int = 3, warmup_s: float = WARMUP_S) -> float:
    """Mean device time of the CUDA kernels one call of ``fn`` launches (torch.profiler), seconds.
    Warm-up: ``warmup`` calls and at least ``warmup_s`` of wall time (the clocks up from idle). Timed at the
    unthrottled clock a model's step runs at: the GPU idles COOL_S first once COOL_AFTER_S of timed work has
    run since its last idle, so a table never reaches power capping (see WARMUP_S). Raises DeviceError when
    the profiler records no kernel."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cool_down()
    t0 = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - t0 < warmup_s:
        fn()
        done += 1
        if done % 8 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    warmed = time.perf_counter() - t0
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            fn()
        torch.cuda.synchronize()
    events = prof.events()
    gpu = [e for e in events if e.device_type == DeviceType.CUDA]
    us, n = sum(e.time_range.elapsed_us() for e in gpu), len(gpu)
    if not us:  # older layouts: kernels hang off the CPU ops that launched them
        launched = [k for e in events if e.device_type == DeviceType.CPU for k in e.kernels]
        us, n = sum(k.duration for k in launched), len(launched)
    if not us:
        raise DeviceError("calibration: torch.profiler recorded no CUDA kernel; is CUPTI available?")
    _last_kernels[0] = n / repeats
    _work_since_cool[0] += warmed + us * 1e-6
    return us * 1e-6 / repeats


def _roofline_s(spec, rows: list, column: str = "time_s") -> "list[float]":
    """classify.py's time_s (or another of its times: 'time_compute_s') of cost rows (dicts of flops,
    bytes_read, bytes_written, compute_dtype)."""
    import pandas as pd

    from roofline.classify import classify

    frame = pd.DataFrame(rows)
    frame["comm_bytes"] = 0.0
    return list(classify(frame, spec)[column].to_numpy(float))


def _cost_row(cost, dtype: str) -> dict:
    return {
        "flops": float(cost.flops),
        "bytes_read": float(cost.bytes_read),
        "bytes_written": float(cost.bytes_written),
        "kv_bytes_read": float(cost.kv_bytes_read),
        "compute_dtype": dtype,
    }


def _fill(eff):
    """Grid cells left None (skipped) take the nearest measured value in their row, then column."""
    import numpy as np

    a = np.array([[np.nan if v is None else v for v in row] for row in eff], dtype=float)
    for _ in range(2):
        for row in a:
            idx = np.flatnonzero(~np.isnan(row))
            if len(idx):
                for j in np.flatnonzero(np.isnan(row)):
                    row[j] = row[idx[np.argmin(abs(idx - j))]]
        a = a.T
    return [[float(f"{float(v):.4g}") for v in row] for row in a]  # 4 significant digits: tiny ops are 1e-4


def measure_bandwidth_curve(spec, repeats: int = 10, sizes=BANDWIDTH_BYTES) -> dict:
    """Achieved bandwidth of an element-wise kernel (bf16 ``neg``: n read, n written) by bytes moved: the
    curve memory-bound element-wise ops are held against. {bytes: [...], gb_per_s: [...]}."""
    out = {"bytes": [], "gb_per_s": []}
    for moved in sizes:
        n = max(moved // 4, 2)  # bf16 elements read (and as many written)
        pairs = [
            (torch.randn(n, device="cuda", dtype=torch.bfloat16), torch.empty(n, device="cuda", dtype=torch.bfloat16))
            for _ in range(copies_for(4 * n))
        ]
        fn = rotating(lambda src, dst: torch.neg(src, out=dst), pairs)  # an element-wise kernel, not a DMA copy
        t = kernel_time_s(fn, max(repeats, len(pairs)))
        out["bytes"].append(int(4 * n))
        out["gb_per_s"].append(round(4 * n / t / 1e9, 2))
        del pairs, fn
    torch.cuda.empty_cache()
    return out


# the reference's W8A8 projections (reference.QuantWeight): table key (the compute dtype the analysis gives a
# W8A8 row) -> QuantWeight impl; the activations are quantised per call inside the timed op
W8A8_IMPLS = {"fp8": "fp8_scaled_mm", "int8": "int8_int_mm"}
# weight-only 8-bit projections (16-bit activations), table key gemm.DTYPE/weight_only (predict.op_variants): fp8
# through torch._scaled_mm with the activations quantised per call, int8 converted to 16 bits for F.linear
WEIGHT_ONLY_IMPLS = {"fp8": "fp8_scaled_mm", "int8": "int8_dequant"}


def linear_op(dtype: str, device: str = "cuda", weight_only: bool = False):
    """(make_weight(k_in, n_out) -> weight, op(x, weight) -> y, the activations' torch dtype) of a projection
    in ``dtype`` as the reference runs it: F.linear for bf16 / fp16; for 'fp8' and 'int8' (W8A8) the
    reference's QuantWeight (torch._scaled_mm / torch._int_mm with the activations quantised per call);
    ``weight_only``: 'fp8' / 'int8' weights with 16-bit activations (WEIGHT_ONLY_IMPLS)."""
    import torch.nn.functional as F

    impls = WEIGHT_ONLY_IMPLS if weight_only else W8A8_IMPLS
    if dtype in impls:
        from roofline.measure.reference import QuantWeight

        impl = impls[dtype]

        def make(k_in, n_out):
            return QuantWeight(torch.randn(n_out, k_in, device=device, dtype=torch.bfloat16) * 0.02, impl)

        return make, (lambda x, w: w(x)), torch.bfloat16
    t_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]

    def make16(k_in, n_out):
        return torch.randn(n_out, k_in, device=device, dtype=t_dtype) * 0.02

    return make16, F.linear, t_dtype


def measure_gemm_table(
    spec,
    dtype: str = "bf16",
    tokens=GEMM_TOKENS,
    shapes=GEMM_SHAPES,
    repeats: int = 5,
    device: str = "cuda",
    timer=None,
    weight_only: bool = False,
    bias: bool = False,
) -> dict:
    """GEMM/GEMV efficiency over tokens x weight elements of a projection as the reference runs it
    (``linear_op``: F.linear(x [M, K], W [N, K]) in 16 bits; W8A8 'fp8' / 'int8' with the per-call
    activation quantisation inside the op, so the table prices what the reference's 8-bit projection
    really costs). The roofline is formulas.linear's cost with ``dtype`` weights and activations on the
    ``dtype`` peak; ``weight_only``: ``dtype`` weights, bf16 activations, on the bf16 peak (the analysis's
    row for weight-only quantisation); ``bias`` (16-bit only): F.linear(x, W, b), the bias's bytes in the
    roofline. Shapes of equal K*N are merged (geometric mean). ``timer(fn, repeats)``: seconds per call
    (default kernel_time_s). {tokens, weight_elements, efficiency, and with the default timer kernels: the
    kernels one call launches, the mean over merged shapes (cuBLAS runs a small-M GEMM with a large K as two,
    split-K and a reduction: predict.py prices the second's host cost)}."""
    import numpy as np

    from roofline.formulas import linear

    timer = timer or kernel_time_s
    make, op, act = linear_op(dtype, device, weight_only)
    if bias:
        if dtype in W8A8_IMPLS or weight_only:
            raise ValueError(f"a bias table is measured for 16-bit projections only, not {dtype}")
        import torch.nn.functional as F

        make_weight = make

        def make(k_in, n_out):
            return make_weight(k_in, n_out), torch.randn(n_out, device=device, dtype=act) * 0.02

        def op(x, weight_bias):
            return F.linear(x, *weight_bias)

    act_dtype = "bf16" if weight_only else dtype
    cells, counts = {}, {}
    for k_in, n_out in shapes:
        weights = [make(k_in, n_out) for _ in range(copies_for(n_out * k_in * 2))]
        for m in tokens:
            cost = linear(m, k_in, n_out, dtype, act_dtype, bias=bias, bias_dtype=dtype)
            roof = _roofline_s(spec, [_cost_row(cost, act_dtype)])[0]
            if roof > MAX_KERNEL_S:
                continue
            x = torch.randn(m, k_in, device=device, dtype=act)
            fn = rotating(op, [(x, w) for w in weights])
            _last_kernels[0] = None
            t = timer(fn, max(repeats, len(weights)))
            cells.setdefault(k_in * n_out, {}).setdefault(m, []).append(roof / t)
            if _last_kernels[0] is not None:  # kernel_time_s counted them
                counts.setdefault(k_in * n_out, {}).setdefault(m, []).append(_last_kernels[0])
            del x, fn
        del weights
        if device != "cpu":
            torch.cuda.empty_cache()
    kn = sorted(cells)
    eff = [[float(np.exp(np.mean(np.log(cells[v][m])))) if m in cells[v] else None for v in kn] for m in tokens]
    out = {"tokens": list(tokens), "weight_elements": [int(v) for v in kn], "efficiency": _fill(eff)}
    if counts:
        grid = [[float(np.mean(counts[v][m])) if m in counts.get(v, {}) else None for v in kn] for m in tokens]
        out["kernels"] = _fill(grid)
    return out


def measure_attention_tables(spec, repeats: int = 3, d: int = 128, heads: int = 32, device: str = "cuda") -> dict:
    """Flash SDPA efficiency: prefill (causal, fresh K/V) by query length x FLOPs per causal pair
    (4 b h d), against the compute roofline (FLOPs / peak: the kernel's time does not follow its K/V bytes),
    MHA and GQA 4 merged (geometric mean); decode (one query per sequence against a cache) by
    K+V bytes read x GQA ratio (FLOPs per KV byte in bf16). {prefill: {...}, decode: {...}}. ``d``,
    ``heads``: head_dim and query heads (batch x heads as PREFILL_BATCH_HEADS scaled to ``heads``); ``device``:
    where the tensors live (the CPU for the tests, with a CPU ``kernel_time_s``)."""
    import numpy as np
    import torch.nn.functional as F

    from roofline.formulas import causal_pairs, flash_attention

    prefill = []
    batch_heads = [bh * heads // 32 for bh in PREFILL_BATCH_HEADS]
    for s in PREFILL_LENS:
        row = []
        for bh in batch_heads:
            b = bh // heads
            effs = []
            for kv_heads in (heads, heads // 4):
                cost = flash_attention(b, s, s, causal_pairs(s), heads, kv_heads, d, "bf16", "bf16", False)
                cost_row = _cost_row(cost, "bf16")
                if _roofline_s(spec, [cost_row])[0] > MAX_KERNEL_S:
                    continue
                roof = _roofline_s(spec, [cost_row], "time_compute_s")[0]
                # as the reference's attention op runs it: [b, s, h, d] views transposed into SDPA, the
                # output transposed back and reshaped to [b, s, h * d] (a copy)
                q = torch.randn(b, s, heads, d, device=device, dtype=torch.bfloat16)
                k = torch.randn(b, s, kv_heads, d, device=device, dtype=torch.bfloat16)
                v = torch.randn_like(k)
                gqa = kv_heads != heads

                def op(q=q, k=k, v=v, gqa=gqa, b=b, s=s):
                    o = F.scaled_dot_product_attention(
                        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, enable_gqa=gqa
                    )
                    return o.transpose(1, 2).reshape(b, s, heads * d)

                t = kernel_time_s(op, repeats)
                effs.append(roof / t)
                del q, k, v
            row.append(float(np.exp(np.mean(np.log(effs)))) if effs else None)
        prefill.append(row)
        if device != "cpu":
            torch.cuda.empty_cache()
    return {
        "prefill": {
            "roofline": "compute",
            "query_len": list(PREFILL_LENS),
            "flops_per_pair": [4 * bh * d for bh in batch_heads],
            "efficiency": _fill(prefill),
        },
        "decode": measure_decode_table(spec, repeats, d, heads) if device != "cpu" else None,
    }


def measure_decode_table(spec, repeats: int = 3, d: int = 128, heads: int = 32, kv: str = "bf16") -> dict:
    """One-query flash SDPA against a cache, as the reference's decode attention runs it: efficiency by K+V
    bytes read (in the cache's dtype ``kv``) x FLOPs per KV byte (GQA ratios DECODE_GQA; the ratio over the
    cache's bytes, so twice the bf16 figure for an fp8 cache). ``kv`` 'fp8': the cache is stored in
    float8_e4m3fn and converted to bf16 before SDPA, the reference's path (torch's SDPA reads no fp8); the
    roofline is the fp8 cache's (1 byte per value), so the table prices that path against the kernel the
    analysis assumes. {kv_bytes, flops_per_kv_byte, efficiency}."""
    import numpy as np
    import torch.nn.functional as F

    from roofline.dtypes import DTYPE_BYTES
    from roofline.formulas import flash_attention

    value_bytes = DTYPE_BYTES[kv]
    store = torch.float8_e4m3fn if kv == "fp8" else torch.bfloat16
    decode = []
    for kv_bytes in DECODE_KV_BYTES:
        row = []
        for g in DECODE_GQA:
            kv_heads = heads // g
            tokens = kv_bytes // (2 * kv_heads * d * value_bytes)  # K and V
            b = int(min(64, max(1, 2 ** round(np.log2(max(tokens / 4096, 1))))))
            ctx = max(int(tokens // b), 16)
            # the cache, plus its bf16 copy where converted: a cell the GPU cannot hold is filled from its neighbours
            need = kv_bytes * (1 + (2 / value_bytes if store != torch.bfloat16 else 0))
            if need > 0.8 * torch.cuda.mem_get_info()[0]:
                row.append(None)
                continue
            cost = flash_attention(b, 1, ctx, ctx, heads, kv_heads, d, "bf16", kv, True)
            roof = _roofline_s(spec, [_cost_row(cost, "bf16")])[0]
            # as the reference runs it: q [b, 1, h, d] transposed, K/V a slice of a cache [b, h_kv, ctx + 1, d]
            # (ReferenceDecoder._flash and _cached: an fp8 slice is converted to bf16 first)
            q = torch.randn(b, 1, heads, d, device="cuda", dtype=torch.bfloat16)
            caches = [
                (
                    torch.randn(b, kv_heads, ctx + 1, d, device="cuda", dtype=torch.bfloat16).to(store),
                    torch.randn(b, kv_heads, ctx + 1, d, device="cuda", dtype=torch.bfloat16).to(store),
                )
                for _ in range(copies_for(kv_bytes, cap=16))
            ]

            def op(k, v, q=q, gqa=g > 1, b=b, ctx=ctx):
                k, v = k[:, :, :ctx], v[:, :, :ctx]
                if k.dtype != torch.bfloat16:
                    k, v = k.to(torch.bfloat16), v.to(torch.bfloat16)
                o = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, enable_gqa=gqa)
                return o.transpose(1, 2).reshape(b, 1, heads * d)

            t = kernel_time_s(rotating(op, caches), max(repeats, len(caches)))
            row.append(roof / t)
            del q, caches
        decode.append(row)
        torch.cuda.empty_cache()
    return {
        "kv_bytes": list(DECODE_KV_BYTES),
        "flops_per_kv_byte": [float(g) * 2 / value_bytes for g in DECODE_GQA],
        "efficiency": _fill(decode),
    }


def kernel_min_s(repeats: int = 50) -> float:
    """Device time of the smallest kernel: ``add_`` on one element."""
    x = torch.zeros(1, device="cuda")
    return kernel_time_s(lambda: x.add_(1.0), repeats)


def measure_op_costs(spec, repeats: int = 10, bandwidth_curve: dict | None = None) -> tuple:
    """Per-op fixed and host costs of the reference model as it really runs: two layers of a small
    Llama-style model (hidden 512, 8 heads, 2 KV heads), decode at batch 1, context 128, every op
    small enough that its kernels take their minimum time and the eager step is host-bound. The models'
    vocabulary is ``cold_vocab``: their weights do not fit in the L2, as a real model's do not.

    fixed_us       the op's kernel time per occurrence (the profiler's sum of its kernels); not for lm_head,
                   whose kernel here reads the cold vocabulary's head (the GEMM table prices it)
    host_eager_us  the host time of the op's range (profiler on) scaled so that the ops of one step add
                   up to the measured eager step (CUDA events, profiler off), then split: a layer's ops scaled
                   to the slope of the reference's eager step over depth (2 and DEPTH_LAYERS layers), the ops
                   outside the layers to the rest (split_layer_hosts); the MoE model's own ops (router, experts)
                   and the gpt2-style model's to what their steps leave after the ops they share
                   (scale_variant_hosts)
    host_graph_us  fixed_us scaled so that the ops of one step add up to the CUDA-graph replay of it
                   (kernels plus the gaps between them inside a graph)
    kernels        kernels per occurrence
    traffic        (with ``bandwidth_curve``) element-wise and memory ops only: the op's kernel time in a
                   prefill of LARGE_MODEL at TRAFFIC_TOKENS tokens over the ideal bytes / the curve's
                   bandwidth at that size: how many times the ideal traffic the reference really moves
    Returns (ops mapping, conditions mapping)."""
    import numpy as np

    from roofline.config import Workload, parse_model
    from roofline.predict import interp_loglog, op_variants

    # the vocabulary of every model here: a head COLD_L2_FACTOR x the L2 (cold_vocab), so that the small kernels
    # and the gaps between them are timed with their weights out of the L2, as in a real model's step
    reference = host_reference_job(spec, graph=True)  # its eager step is the spec's host reference
    small, w, vocab = reference["config"], reference["workload"], reference["config"].vocab_size
    moe = small_moe_model(vocab)
    wide = Workload(batch_size=(MOE_WIDE_BATCH,), prompt_len=(128,), context_len=(128,), phase="decode")
    # two layers, as the other models: a one-layer model was timed with two (steptime builds what it is asked
    # for; build_reference now caps it at the model's) and profiled with one, and its host costs came out
    # 1.7x (stop 11) or 0.5x (stop 9's rescale) of the step they were meant to add up to
    gpt2 = table_model("gpt2", 512, vocab, layers=2)
    # every host cost below is scaled to these steps: all four timed first, in one fresh process, the fastest of
    # STEP_ROUNDS interleaved rounds each (a run whose steps all fell in one of the host's slow episodes wrote
    # host costs 1.85x too high: reports/h200/README.md)
    # the llama-style model's graph times give kernel_gap_us and graph_replay_us; the others' are not read (the MoE
    # cannot be captured; the gpt2-style model's would only set host_graph_us, recorded and unused): eager only
    # every one timed in STEP_WINDOW-step windows, as validate times its cases and profile a user's step
    runs = ((moe, w, False), (moe, wide, False), (gpt2, w, False))
    jobs = [reference] + [
        {"config": c, "workload": wl, "layers": 2, "timing_iters": STEP_WINDOW, "graph": g} for c, wl, g in runs
    ]
    deep = replace(small, num_hidden_layers=DEPTH_LAYERS)
    jobs.append(dict(reference, config=deep, layers=DEPTH_LAYERS, graph=False))  # the reference at depth: eager only
    timed = _timed_steps(jobs, STEP_ROUNDS, "the op-cost models")
    ops, step = profiled(small, w, spec, layers=2, warmup=5, iters=repeats, step_times=timed[0])
    out = op_costs(ops, step)
    gap = kernel_gap_s(ops, step)
    # a layer's ops take the slope of the reference's eager step over depth, the ops outside the layers the rest
    # of its 2-layer step (at least one eager launch each)
    two_s, deep_s = step["eager_step_ref_s"], timed[4]["decode"]["eager_s"]
    layer_us = (deep_s - two_s) / (DEPTH_LAYERS - 2) * 1e6
    depth = split_layer_hosts(out, _calls(ops), 2, layer_us, _host_us(ops, step), spec.ceiling_launch_s() * 1e6)
    # the MoE model's own ops (router, experts) get what its step leaves after the reference's figures for the ops
    # it shares (scale_variant_hosts), at each batch: their profiled spans alone, each scaled to its own step,
    # priced the calibration's own MoE 3-11% short of its eager step (stop 16, benchmarks/gpu_moe_expert_size.py)
    shared = dict(out)
    moe_ops, moe_step = profiled(moe, w, spec, layers=2, warmup=5, iters=repeats, step_times=timed[1])
    moe_costs, moe_scale = _own_hosts(shared, moe_ops, moe_step)
    for name, entry in moe_costs.items():
        if name not in out:
            entry.pop("host_graph_us", None)
            out[name] = entry
    # the experts' host cost and kernels grow with the experts that receive tokens (a gather, three GEMMs
    # and a scatter each): the same model at decode batch 16 (7.5 of 8 experts routed on an H200, 7.92 expected)
    # against batch 1 (exactly top-k = 2) gives them per active expert over the routing the runs counted
    # (expert_loop_keys); each of the E
    # experts is a host sync (torch.where), between which the queue drains (predict.expert_loop)
    wide_ops, wide_step = profiled(moe, wide, spec, layers=2, warmup=5, iters=repeats, step_times=timed[2])
    wide_costs, wide_scale = _own_hosts(shared, wide_ops, wide_step)
    routed = (moe_step.get("routed_experts_ref"), wide_step.get("routed_experts_ref"))
    if not all(x is not None and x == x for x in routed):  # not counted: the keys divide by the expectation
        routed = None
    if "experts" in out and "experts" in wide_costs:
        out["experts"].update(
            expert_loop_keys(
                out["experts"],
                wide_costs["experts"],
                moe.num_local_experts,
                moe.num_experts_per_tok,
                MOE_WIDE_BATCH,
                routed,
            )
        )
    # the ops whose kernels differ in gpt2-style models (LayerNorm, a plain GELU, learned positions): their
    # fixed and host costs on a small gpt2-style model, as NAME/VARIANT where predict.op_variants names one
    variants = op_variants(gpt2)
    g_ops, g_step = profiled(gpt2, w, spec, layers=2, warmup=5, iters=repeats, step_times=timed[3])
    g_costs, variant_scale = _own_hosts(out, g_ops, g_step, variants)
    for name, entry in g_costs.items():
        if name in variants:
            out[f"{name}/{variants[name]}"] = entry
        elif name not in out:
            out[name] = entry
    if "lm_head" in out:  # the head's kernels at this vocabulary are no floor for a smaller head's
        out["lm_head"].pop("fixed_us", None)
    if bandwidth_curve:
        large = parse_model(dict(LARGE_MODEL), "calibration-large")
        wl = Workload(batch_size=(1,), prompt_len=(TRAFFIC_TOKENS,), phase="prefill")
        big, _ = profiled(large, wl, spec, layers=1, warmup=3, iters=repeats, timing_iters=3, fresh_timing=False)
        curve = (np.array(bandwidth_curve["bytes"], float), np.array(bandwidth_curve["gb_per_s"], float) * 1e9)
        for r in big.itertuples(index=False):
            moved = r.bytes_read + r.bytes_written
            if r.category in ("elementwise", "memory") and str(r.op) in out and moved > 0 and r.gpu_time_s > 0:
                ideal = moved / float(interp_loglog(np.array([moved]), *curve)[0])
                out[str(r.op)]["traffic"] = round(max(r.gpu_time_s / ideal, 1.0), 3)
    graph = step["graph_step_ref_s"]
    cond = {
        "model": "llama-style hidden 512, 8 heads / 2 KV heads, MLP 1408, 2 layers; decode batch 1 context 128",
        "vocab": vocab,
        "eager_step_us": round(step["eager_step_ref_s"] * 1e6, 2),  # the host reference (host_reference_job)
        "reference_window": reference["timing_iters"],  # its steps per timing window
        "graph_step_us": round(graph * 1e6, 2) if graph else None,
        "kernel_time_us": round(step["kernel_time_ref_s"] * 1e6, 2),
        "gpt2_style_eager_step_us": round(g_step["eager_step_ref_s"] * 1e6, 2),
        "gpt2_style_variant_host_scale": round(variant_scale, 4),
        f"eager_step_{DEPTH_LAYERS}_layers_us": round(deep_s * 1e6, 2),
        "layer_host_us": round(layer_us, 2),  # the slope the reference's layer ops were scaled to
        "layer_host_scale": round(depth[0], 4),
        "outside_host_scale": round(depth[1], 4),
        "moe_own_host_scale": {"batch_1": round(moe_scale, 4), f"batch_{MOE_WIDE_BATCH}": round(wide_scale, 4)},
        "step_times": "eager and graph steps timed in a fresh process (roofline.measure.steptime)",
    }
    if routed is not None:  # the MoE runs' routing, which the expert-loop keys divide by
        cond["moe_routed_experts"] = {
            "batch_1": round(float(routed[0]), 3),
            f"batch_{MOE_WIDE_BATCH}": round(float(routed[1]), 3),
        }
    if gap is not None:
        cond["kernel_gap_us"] = round(gap * 1e6, 3)
    pipelined = step.get("graph_pipelined_ref_s")
    if graph and pipelined and graph == graph and pipelined == pipelined:
        cond["graph_pipelined_step_us"] = round(pipelined * 1e6, 2)
        cond["graph_replay_us"] = round(max(graph - pipelined, 0.0) * 1e6, 3)
    return out, cond


def small_moe_model(vocab: int) -> ModelConfig:
    """The model the MoE ops (router, experts: a loop over the experts with a host sync each) are measured on:
    SMALL_MODEL with 8 experts of which 2 per token (Mixtral's routing) and ``vocab`` tokens (``cold_vocab``);
    eager only (not graph-capturable)."""
    from roofline.config import parse_model

    raw = dict(SMALL_MODEL, name="calibration-small-moe", model_type="mixtral", vocab_size=vocab)
    return parse_model(dict(raw, num_local_experts=8, num_experts_per_tok=2), "calibration-small-moe")


def host_reference_job(spec, graph: bool = False, window: int = STEP_WINDOW) -> dict:
    """The host reference (predict.py's docstring) as a ``steptime.time_steps`` job: two layers of SMALL_MODEL
    with ``cold_vocab``'s vocabulary at decode batch 1, context 128, ``window`` steps per timing window. Its
    eager step is host-bound (15 ops a layer and 3 outside, each at its minimum kernel time): the speed of the
    host's Python, dispatch and launch path. ``measure_op_costs`` scales every eager host cost to it and records it
    (``ops_measured_on.eager_step_us``); validate and profile time the same job where they time their steps,
    and the prediction's host costs take the ratio (``predict.with_host_reference``)."""
    from roofline.config import Workload, parse_model

    vocab = cold_vocab(spec, SMALL_MODEL["hidden_size"])
    return {
        "config": parse_model(dict(SMALL_MODEL, vocab_size=vocab), "calibration-small"),
        "workload": Workload(batch_size=(1,), prompt_len=(128,), context_len=(128,), phase="decode"),
        "layers": 2,
        "timing_iters": window,
        "graph": graph,
    }


def recorded_reference_job(spec) -> dict | None:
    """``host_reference_job`` of ``spec`` where the spec records a host reference to compare it with
    (``measured.conditions.ops_measured_on.eager_step_us``: predict.with_host_reference), timed in the window
    the spec records it was timed with (``reference_window``), else None."""
    k = getattr(spec, "measured_kernels", None) or {}
    if "host_reference_s" not in k:
        return None
    return host_reference_job(spec, window=k.get("host_reference_window", STEP_WINDOW))


def expert_loop_keys(
    narrow: dict, wide: dict, experts: int, top_k: int, wide_batch: int, routed: tuple | None = None
) -> dict:
    """The expert-loop keys of ``measured.ops.experts`` from the op_costs entries of the experts op at decode
    batch 1 (``narrow``: top_k experts with tokens) and ``wide_batch`` (``wide``), ``experts`` routed experts
    per token picking ``top_k``. ``routed``: (a_1, a_wide), the experts with tokens per layer as the two runs
    routed them (profile's routed_experts_ref); None, or a pair that does not grow: the uniform-routing
    expectation (predict.active_experts). The seeded small model at batch 16 routes 7.5 of 8 (stop 15,
    reports/h200/moe-segments), against 7.92 expected: dividing by the expectation priced an active expert 7%
    low. Per active expert, from the differences over a_wide - a_1: host_per_active_expert_us (host_eager_us),
    kernels_per_active_expert (kernels), and the GPU time per active expert (fixed_us) that small_kernel_us
    takes off batch 1's: small_kernel_us = (fixed - a_1 x GPU per active) / (kernels - a_1 x kernels per
    active), the op's kernels without its active experts (routing and the where's, no GEMM); where that is
    not positive (noise), fixed / kernels. Returns {host_per_active_expert_us, kernels_per_active_expert,
    small_kernel_us, active_experts: a_1, syncs: experts}."""
    from roofline.predict import active_experts

    a1, a_wide = float(active_experts(1, experts, top_k)), float(active_experts(wide_batch, experts, top_k))
    if routed is not None and all(x is not None and x == x for x in routed) and routed[1] > routed[0] > 0:
        a1, a_wide = float(routed[0]), float(routed[1])
    d = a_wide - a1
    per_active = {key: (wide[key] - narrow[key]) / d for key in ("host_eager_us", "kernels", "fixed_us")}
    kernels = max(per_active["kernels"], 0.0)
    base_us = narrow["fixed_us"] - a1 * per_active["fixed_us"]
    base_kernels = narrow["kernels"] - a1 * kernels
    small = base_us / base_kernels if base_us > 0 and base_kernels > 0 else narrow["fixed_us"] / narrow["kernels"]
    return {
        "host_per_active_expert_us": round(max(per_active["host_eager_us"], 0.0), 3),
        "kernels_per_active_expert": round(kernels, 3),
        "small_kernel_us": round(small, 3),
        "active_experts": a1,
        "syncs": experts,
    }


def _timed_steps(jobs: list, rounds: int, what: str) -> list:
    """steptime.time_steps of ``jobs`` (the fastest of ``rounds``); DeviceError naming ``what`` if one failed."""
    from roofline.measure import steptime

    timed = steptime.time_steps(jobs, rounds=rounds)
    bad = next((t["error"] for t in timed if "error" in t), None)
    if bad:
        raise DeviceError(f"calibration: timing {what} failed: {bad}")
    return timed


def split_layer_hosts(
    costs: dict, calls: dict, layers: int, layer_us: float, step_us: float, floor_us: float
) -> tuple[float, float]:
    """Rescale, in place, the eager host costs of ``costs`` (the host reference's op_costs, profiled at ``layers``
    layers; ``calls``: op -> occurrences per step) so that one layer's ops (those called ``layers`` times) add up
    to ``layer_us``, the slope of the reference's eager step over depth (µs per layer), and the ops outside the
    layers to the rest of ``step_us`` (its eager step less its tail, as op_costs scales to), none under
    ``floor_us`` (the spec's eager launch: one launch each, where the rest is smaller). Why: a profiled span
    holds the profiler's own cost, unevenly, and scaling every span by one factor made the 2-layer step add up
    with a layer 15% short and the step's ends 2.5x over (module constant DEPTH_LAYERS). Returns (the layers'
    factor, the outside ops' factor, before the floor); (1.0, 1.0) and nothing changed where the slope or the
    layers' spans are not positive."""
    inside = [n for n, c in calls.items() if c == layers and "host_eager_us" in costs.get(n, {})]
    outside = [n for n, c in calls.items() if c != layers and "host_eager_us" in costs.get(n, {})]
    per_layer = sum(costs[n]["host_eager_us"] for n in inside)
    if not (layer_us > 0 and per_layer > 0 and math.isfinite(layer_us)):
        return 1.0, 1.0
    f_layer = layer_us / per_layer
    spans = sum(calls[n] * costs[n]["host_eager_us"] for n in outside)
    f_out = max(step_us - layers * layer_us, 0.0) / spans if spans > 0 else 1.0
    for n in inside:
        costs[n]["host_eager_us"] = round(costs[n]["host_eager_us"] * f_layer, 3)
    for n in outside:
        costs[n]["host_eager_us"] = round(max(costs[n]["host_eager_us"] * f_out, floor_us), 3)
    return f_layer, f_out


def _calls(ops) -> dict:
    """op -> occurrences per step of a profiled run's ``ops``."""
    return dict(zip(ops["op"].astype(str), ops["calls"].astype(float)))


def _host_us(ops, step) -> float:
    """A profiled run's eager step less its tail (step_tail_s), µs: what its ops' host costs add up to."""
    return (step["eager_step_ref_s"] - step_tail_s(ops)) * 1e6


def _own_hosts(shared: dict, ops, step, variants: dict | None = None) -> tuple:
    """(op_costs of a profiled run whose ``variants`` and ops not in ``shared`` are rescaled so that its step adds
    up with the other ops priced at ``shared``'s figures, scale_variant_hosts' factor): the MoE model's router and
    experts, the gpt2-style model's variants and own ops."""
    costs = op_costs(ops, step)
    return costs, scale_variant_hosts(shared, costs, _calls(ops), variants or {}, _host_us(ops, step))


def scale_variant_hosts(shared: dict, costs: dict, calls: dict, variants: dict, eager_us: float) -> float:
    """Rescale, in place, the eager host cost of the variant ops in ``costs`` (the gpt2-style model's op_costs;
    ``variants``: op name -> variant), and of the ops only this family has, so that this model's step,
    predicted as predict.py prices it, equals its measured eager step less its tail (``eager_us``, µs; the
    tail: ``step_tail_s``): its other ops take the
    llama-style model's entries (``shared``), so these get the rest. Each profiled run scales its host spans to
    its own step, so the two runs' figures need not add up to this step; the factor is near 1 where both
    runs are steady (1.7 and 0.5 before 2026-12-01, when this model was timed with two layers and profiled
    with one). ``calls``: op -> occurrences per step.
    Returns the factor applied (1.0 where the rest is not positive: nothing is changed)."""
    fixed = variant = 0.0
    own = set()  # the ops priced with this run's figures: the variants and the ops only this family has
    for name, n in calls.items():
        entry = costs.get(name, {})
        if name in variants or "host_eager_us" not in shared.get(name, {}):
            if "host_eager_us" in entry:
                own.add(name)
                variant += n * entry["host_eager_us"]
        else:
            fixed += n * shared[name]["host_eager_us"]
    rest = eager_us - fixed
    if variant <= 0 or rest <= 0:
        return 1.0
    factor = rest / variant
    for name in own:
        costs[name]["host_eager_us"] = round(costs[name]["host_eager_us"] * factor, 3)
    return factor


def profiled(model, workload, spec, **kw) -> tuple:
    """(ops, step) of ``profile_model`` for one phase: the run's measured columns per op (calls,
    gpu_time_s, n_kernels, span_s) beside the ideal cost of one occurrence from transformer.model_ops
    (category, flops, bytes_read, bytes_written, kv_bytes_read, weight_bytes_read), which the kernel model divides by;
    ``step`` the run's step row. No prediction is involved (measure/ only measures)."""
    import pandas as pd

    from roofline.measure.profile import profile_model
    from roofline.measure.reference import decode_context
    from roofline.transformer import model_ops

    run = profile_model(model, workload, spec=spec, **kw)
    w = run.workload
    phase = w.phases[0]
    b, p = w.batch_size[0], w.prompt_len[0]
    ideal = {
        op.name: {
            "category": op.category,
            "flops": float(op.cost.flops),
            "bytes_read": float(op.cost.bytes_read),
            "bytes_written": float(op.cost.bytes_written),
            "kv_bytes_read": float(op.cost.kv_bytes_read),
            "weight_bytes_read": float(op.cost.weight_bytes_read),
        }
        for op in model_ops(run.model, w, phase, b, p, decode_context(w) if phase == "decode" else p)
    }
    ops = run.ops[run.ops["phase"] == phase].reset_index(drop=True)
    costs = pd.DataFrame([ideal.get(str(name), {}) for name in ops["op"]], index=ops.index)
    return pd.concat([ops, costs], axis=1), run.steps.iloc[0]


def cold_vocab(spec, width: int) -> int:
    """The vocabulary that makes a calibration model of hidden ``width`` read at least COLD_L2_FACTOR times
    ``spec``'s L2 per step (its 16-bit head), at least 32000, a multiple of 128: the small kernels of a real
    model's step find their weights evicted by the rest of the step, and so must the calibration's."""
    need = COLD_L2_FACTOR * float(getattr(spec, "l2_bytes", 0.0) or 0.0) / (2.0 * width)
    return max(32000, int(math.ceil(need / 128.0)) * 128)


def table_model(family: str, width: int, vocab: int = 32000, layers: int = 1):
    """A model of ``family`` ('llama': RMSNorm, RoPE, GQA 4, gated SiLU MLP; 'llama_mha': the same with as
    many KV heads as query heads (the cache write and rope move 4x the bytes per token); 'gpt2': LayerNorm,
    learned positions, GELU MLP, biases) of hidden ``width``, vocabulary ``vocab`` and ``layers`` layers: one
    for the op tables, two for the op costs' gpt2-style model."""
    from roofline.config import parse_model

    if family == "gpt2":
        raw = {"model_type": "gpt2", "n_embd": width, "n_layer": layers, "n_head": max(width // 64, 1)}
        raw.update({"vocab_size": vocab, "n_positions": 8192, "activation_function": "gelu_new"})
    else:
        heads = max(width // 128, 4)
        kv = heads if family == "llama_mha" else max(heads // 4, 1)
        raw = dict(LARGE_MODEL, hidden_size=width, num_attention_heads=heads, num_key_value_heads=kv)
        raw.update(intermediate_size=int(round(width * 2.6875 / 128) * 128), vocab_size=vocab, num_hidden_layers=layers)
    name = f"calibration-{family}-{width}"
    return parse_model(dict(raw, name=name), name)


def measure_op_tables(spec, tokens=OP_TABLE_TOKENS, widths=None, repeats: int = 5, device: str = "cuda") -> tuple:
    """The ``measured.op_tables`` mapping: per element-wise / memory op of the reference (and per kernel
    variant, ``NAME/VARIANT`` as predict.op_variants names them: norms, the activation), its efficiency
    (classify.py's roofline time over the measured kernel time per occurrence) by tokens x activation
    bytes per token ((bytes moved - weight bytes read) / tokens: the op's width at any token count; the
    weights, read once per call, would make a one-token op look wider than it is). Each model (family,
    width) gives one column (the median over the token counts; models of the same figure share the
    first's), each token count one row. On a GPU the models' vocabulary is ``cold_vocab``. Returns
    (tables, conditions)."""
    import numpy as np

    from roofline.config import Workload
    from roofline.predict import op_variants

    widths = widths or OP_TABLE_WIDTHS
    cells = {}  # key -> (family, width) -> tokens -> (activation bytes per token, efficiency)
    vocab = {}
    for family, family_widths in widths.items():
        for width in family_widths:
            m = table_model(family, width, cold_vocab(spec, width) if device != "cpu" else 32000)
            vocab[m.name] = m.vocab_size
            variants = op_variants(m)
            for t in tokens:
                if t <= OP_TABLE_DECODE_MAX:
                    w = Workload(batch_size=(t,), prompt_len=(128,), context_len=(128,), phase="decode")
                else:
                    w = Workload(batch_size=(1,), prompt_len=(t,), phase="prefill")
                ops, _ = profiled(
                    m,
                    w,
                    spec,
                    layers=1,
                    warmup=3,
                    iters=repeats,
                    timing_iters=2,
                    graph_timer=lambda step, iters: None,
                    fresh_timing=False,
                    device=device,
                )
                ops = ops[ops["category"].isin(["elementwise", "memory"]) & (ops["gpu_time_s"] > 0)]
                if not len(ops):
                    continue
                roof = _roofline_s(spec, [_cost_row(r, "bf16") for r in ops.itertuples(index=False)])
                for r, t_roof in zip(ops.itertuples(index=False), roof):
                    act = r.bytes_read + r.bytes_written - r.weight_bytes_read
                    if act <= 0:
                        continue
                    name = str(r.op)
                    key = f"{name}/{variants[name]}" if name in variants else name
                    cells.setdefault(key, {}).setdefault((family, width), {})[t] = (act / t, t_roof / r.gpu_time_s)
            if device != "cpu":
                torch.cuda.empty_cache()
    tables = {}
    for key, by_width in cells.items():
        columns = {}  # activation bytes per token -> {tokens: efficiency}
        for model in by_width:  # in measuring order: a figure two models share keeps the first's column
            points = by_width[model]
            bpt = round(float(np.median([b for b, _ in points.values()])), 1)
            columns.setdefault(bpt, {t: e for t, (_, e) in points.items()})
        order = sorted(columns)
        tables[key] = {
            "tokens": list(tokens),
            "act_bytes_per_token": order,
            "efficiency": _fill([[columns[b].get(t) for b in order] for t in tokens]),
        }
    cond = {
        "models": {f: [table_model(f, w).name for w in ws] for f, ws in widths.items()},
        "vocab": vocab,
        "tokens": list(tokens),
        "decode_up_to_tokens": OP_TABLE_DECODE_MAX,
    }
    return tables, cond


def kernel_gap_s(ops, step):
    """Idle GPU time per kernel inside a CUDA-graph replay: (replayed step - its kernels' time) / kernels
    per step, the replays back to back where measured (no launch or wake-up in it). None without a
    graph measurement."""
    graph = step.get("graph_pipelined_ref_s")
    if graph is None or graph != graph:
        graph = step["graph_step_ref_s"]
    if not graph or math.isnan(graph):
        return None
    kernels = float((ops["n_kernels"].to_numpy(float) * ops["calls"].to_numpy(float)).sum())
    return max(graph - step["kernel_time_ref_s"], 0.0) / kernels if kernels else None


def step_tail_s(ops) -> float:
    """The GPU time a host-bound eager step ends on after its last launch: the last op's kernels (``ops`` in
    launch order; the head's, reading cold_vocab's 240 MB on an H200, about 57 µs). predict.py's queue adds
    it to the host costs, so they are scaled to the step less it."""
    if not len(ops):
        return 0.0
    t = float(ops["gpu_time_s"].iloc[-1])
    return t if t == t and t > 0 else 0.0


def op_costs(ops, step) -> dict:
    """The ``measured.ops`` mapping from a profile_model run (its ``ops`` frame: calls, gpu_time_s, span_s,
    n_kernels per op; and one ``steps`` row): per op fixed_us (kernel time per occurrence), host_eager_us (host span
    scaled so the step's ops add up to the eager step less its tail, ``step_tail_s``), host_graph_us (fixed_us scaled so they add up to the graph replay; fixed_us
    where no graph was measured), kernels. Ops that launched nothing are left out."""
    calls = ops["calls"].to_numpy(float)
    span = ops["span_s"].to_numpy(float)
    fixed = ops["gpu_time_s"].to_numpy(float)
    import numpy as np

    host_scale = _host_us(ops, step) * 1e-6 / float(np.nansum(span * calls))
    graph = step["graph_step_ref_s"]
    graph_scale = (graph / float(np.nansum(fixed * calls))) if graph and not math.isnan(graph) else 1.0
    out = {}
    for i, name in enumerate(ops["op"]):
        if not fixed[i] > 0:
            continue
        entry = {"fixed_us": round(fixed[i] * 1e6, 3)}
        if span[i] > 0:  # no host span recorded: the op keeps the spec's launch figure
            entry["host_eager_us"] = round(span[i] * host_scale * 1e6, 3)
        entry["host_graph_us"] = round(fixed[i] * graph_scale * 1e6, 3)
        entry["kernels"] = round(float(ops["n_kernels"].iloc[i]), 2)
        out[str(name)] = entry
    return out


def eight_bit_parts(spec) -> dict:
    """The 8-bit paths as the reference runs them, for the dtypes the part has: (section of ``measured:``, key)
    -> a function measuring it. gemm.fp8 / gemm.int8 (W8A8); gemm.fp8/weight_only / gemm.int8/weight_only
    (16-bit activations; fp8 weight-only needs fp8 tensor cores: it runs torch._scaled_mm, int8 weight-only
    runs on any part); attention.decode/kv_fp8 (an fp8 cache, where the part has fp8). The projections' extra
    host cost (``projection_host_us``) is measured apart, in the ops' fresh processes."""
    parts = {("gemm", d): partial(measure_gemm_table, spec, d) for d in W8A8_IMPLS if spec.has_dtype(d)}
    for d in WEIGHT_ONLY_IMPLS:
        if WEIGHT_ONLY_IMPLS[d] != "fp8_scaled_mm" or spec.has_dtype("fp8"):
            parts[("gemm", f"{d}/weight_only")] = partial(measure_gemm_table, spec, d, weight_only=True)
    if spec.has_dtype("fp8"):
        parts[("attention", "decode/kv_fp8")] = partial(measure_decode_table, spec, kv="fp8")
    return parts


def _eight_bit(spec, section: str) -> dict:
    """The tables of ``eight_bit_parts`` in one section of ``measured:``, measured."""
    return {key: measure() for (sec, key), measure in eight_bit_parts(spec).items() if sec == section}


# the 8-bit projection formats the tables name (predict.projection_formats) -> (weight_dtype, act_dtype) of the
# reference workload that runs them
PROJECTION_FORMATS = {
    "fp8": ("fp8", "fp8"),
    "int8": ("int8", "int8"),
    "fp8/weight_only": ("fp8", "bf16"),
    "int8/weight_only": ("int8", "bf16"),
}


def measure_projection_host(spec, timing_iters: int = STEP_WINDOW, rounds: int = STEP_ROUNDS) -> dict:
    """The extra eager host cost of one 8-bit projection call over a 16-bit one, microseconds, per format
    (PROJECTION_FORMATS; fp8 only where the part has fp8): the two-layer small model (SMALL_MODEL, decode
    batch 1, context 128, every kernel at its minimum, so the eager step is the host's time) timed in a fresh
    process (steptime.time_steps) in each format and in bf16; (step(format) - step(bf16)) / projections per
    step (7 per layer), clamped at 0. The quantised paths add host work per call (fp8: abs, amax, divide,
    clamp and cast of the activations before torch._scaled_mm; int8 weight-only: the weights' conversion
    and the scale). Each format's step is the fastest of ``rounds`` timings, the formats interleaved round
    by round: the host's slow episodes last 5-10 s (reports/h200/host_noise_probe.csv), longer than one
    timing, so one timing alone can fall entirely inside one."""

    from roofline.config import Workload, parse_model

    small = parse_model(dict(SMALL_MODEL), "calibration-small")
    base = Workload(batch_size=(1,), prompt_len=(128,), context_len=(128,), phase="decode")
    formats = {k: v for k, v in PROJECTION_FORMATS.items() if "fp8" not in v or spec.has_dtype("fp8")}
    workloads = [base] + [replace(base, weight_dtype=wd, act_dtype=ad) for wd, ad in formats.values()]
    jobs = [
        {"config": small, "workload": w, "layers": 2, "timing_iters": timing_iters, "graph": False} for w in workloads
    ]
    best = [t["decode"]["eager_s"] for t in _timed_steps(jobs, rounds, "the 8-bit projections")]
    projections = 7 * 2
    return {key: round(max(t - best[0], 0.0) / projections * 1e6, 3) for key, t in zip(formats, best[1:])}


def measure_split_kernel_host(spec, device: str = "cuda") -> float | None:
    """The eager host time, µs, of one more kernel in a 16-bit projection call: cuBLAS runs a GEMM of few tokens
    and a large K as two kernels (split-K and a reduction), and the op costs, measured on the small model whose
    projections run one, do not hold the second's launch. Host time and kernels per ``F.linear`` call of
    GEMM_SHAPES and GEMM_DOWN_SHAPES at 1 and 8 tokens, in a fresh process (steptime.linear_host_here), then
    ``split_kernel_slope``. On an H200 a two-kernel call took 18.2-19.0 µs against 14.2-15.2 µs
    (reports/h200/host-kernels/projection_host.csv). None where every shape ran the same kernels."""
    from roofline.measure import steptime

    shapes = [(t, k, n) for t in (1, 8) for k, n in GEMM_SHAPES + GEMM_DOWN_SHAPES]
    (result,) = steptime.time_steps([{"linear_host": shapes, "device": device}])
    if "error" in result:
        raise DeviceError(f"calibration: timing the projections' host cost failed: {result['error']}")
    return split_kernel_slope(result["host_us"], result["kernels"])


def split_kernel_slope(host_us: list, kernels: list) -> float | None:
    """The least-squares slope of host time per call on kernels per call, µs per kernel, at least 0; None where
    the calls do not differ by a whole kernel (nothing to fit)."""
    import numpy as np

    k, h = np.asarray(kernels, float), np.asarray(host_us, float)
    if len(k) < 2 or np.ptp(np.round(k)) < 1:
        return None
    return round(max(float(np.polyfit(k, h, 1)[0]), 0.0), 3)


def kernel_model_parts(spec, measured: dict) -> dict:
    """The parts of the kernel model in the order they are measured: key of ``measured:`` -> a function
    returning its value, or (value, conditions) for 'ops' and 'op_tables'. ``measured``: the mapping
    being filled (the op costs read the bandwidth curve measured before them)."""
    return {
        "kernel_min_us": lambda: round(kernel_min_s() * 1e6, 3),
        "bandwidth_curve": lambda: measure_bandwidth_curve(spec),
        "gemm": lambda: {
            "bf16": measure_gemm_table(spec),
            "bf16/tall_k": measure_gemm_table(spec, shapes=GEMM_DOWN_SHAPES),
            "bf16/unaligned": measure_gemm_table(spec, shapes=GEMM_UNALIGNED_SHAPES),
            "bf16/bias": measure_gemm_table(spec, shapes=GEMM_BIAS_SHAPES, bias=True),
            **_eight_bit(spec, "gemm"),
        },
        "attention": lambda: {
            **measure_attention_tables(spec),
            **{f"{k}/d64": v for k, v in measure_attention_tables(spec, d=64, heads=16).items()},
            **_eight_bit(spec, "attention"),
        },
        "op_tables": lambda: measure_op_tables(spec),
        "projection_host_us": lambda: measure_projection_host(spec),
        "split_kernel_host_us": lambda: measure_split_kernel_host(spec),
        "ops": lambda: measure_op_costs(spec, bandwidth_curve=measured.get("bandwidth_curve")),
    }


def measure_kernel_model(spec) -> tuple:
    """(the kernel-model keys of ``measured:`` (predict.py), their conditions) for ``spec``, a HardwareSpec
    whose measured peak and bandwidth are this run's. About three minutes on an H200."""
    t0 = time.perf_counter()
    out, conditions = {}, {}
    for key, part in kernel_model_parts(spec, out).items():
        value = part()
        if key == "ops":
            value, conditions["ops_measured_on"] = value
            for copied in ("kernel_gap_us", "graph_replay_us"):
                if conditions["ops_measured_on"].get(copied) is not None:
                    out[copied] = conditions["ops_measured_on"][copied]
        elif key == "op_tables":
            value, conditions["op_tables_measured_on"] = value
        if value is None:  # nothing to measure on this part (split_kernel_host_us: no call ran a second kernel)
            continue
        out[key] = value
    conditions["kernel_model_seconds"] = round(time.perf_counter() - t0, 1)
    return out, conditions
