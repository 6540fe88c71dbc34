# ruff: noqa: B023  (each lambda is timed at once, inside its loop iteration)
"""Diagnose the eager step's host cost on the GPU: is it stable, and what changes it?

    OUT=/tmp/out python benchmarks/gpu_host_cost.py

Times the eager step (CUDA events, the same _wall_time profile_model uses) of two-layer reference
models at decode batch 1 (host-bound: every kernel is at its minimum), in this order, in one process:
fresh; with the NVML sampler running; after a torch.profiler session; after gc.collect(); and per
model structure of the validate matrix. Also counts the aten ops and kernels of one step, so the host
cost per op is (eager step) / ops. Prints one line per measurement and writes $OUT/host_cost.csv.
"""

import gc
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from roofline.config import Workload, load_model, parse_model  # noqa: E402
from roofline.measure.calibrate import SMALL_MODEL  # noqa: E402
from roofline.measure.nvml import NvmlSampler  # noqa: E402
from roofline.measure.profile import _wall_time, profile_model  # noqa: E402
from roofline.measure.reference import build_reference  # noqa: E402
from roofline.specs import data_dir  # noqa: E402

rows = []


def dispatch_ops(step) -> int:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        step()
    return Count.n


def time_step(label, model, ref, step, iters=50):
    t = [_wall_time(step, iters, True) for _ in range(3)]
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    torch.cuda.synchronize()
    host = (time.perf_counter() - t0) / iters
    n = dispatch_ops(step)
    row = {
        "label": label,
        "model": model,
        "eager_step_us": [round(x * 1e6, 1) for x in t],
        "perf_counter_us": round(host * 1e6, 1),
        "aten_ops": n,
        "us_per_aten_op": round(min(t) * 1e6 / n, 2),
    }
    rows.append(row)
    print(row, flush=True)


def build(model, phase="decode", batch=1, ctx=128):
    cfg = (
        parse_model(dict(SMALL_MODEL), "s")
        if model == "small-llama"
        else load_model(data_dir("examples") / f"{model}.yaml")
    )
    w = Workload(batch_size=(batch,), prompt_len=(ctx,), context_len=(ctx,), phase=phase)
    ref = build_reference(cfg, w, layers=2, device="cuda")
    ref.annotate = False
    return cfg, w, ref, ref.make_step(phase, ctx, ctx)


def main():
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    print(torch.cuda.get_device_name(0), torch.__version__, "cpu count", os.cpu_count(), flush=True)
    with torch.no_grad():
        cfg, w, ref, step = build("small-llama")
        time_step("fresh", "small-llama", ref, step)
        time_step("fresh again", "small-llama", ref, step)
        ref.annotate = True
        time_step("annotate on", "small-llama", ref, step)
        ref.annotate = False
        s = NvmlSampler(0).start()
        time_step("sampler running", "small-llama", ref, step)
        s.stop()
        gc.disable()
        time_step("gc disabled", "small-llama", ref, step)
        gc.enable()
        res = profile_model(cfg, w, layers=2, warmup=5, iters=10, timing_iters=50)
        print(
            "profile_model eager_step_ref_s",
            res.steps.iloc[0]["eager_step_ref_s"],
            "objects",
            len(gc.get_objects()),
            flush=True,
        )
        time_step("after profile_model", "small-llama", ref, step)
        del res
        gc.collect()
        time_step("after gc.collect", "small-llama", ref, step)
        for model in ("llama-2-7b", "llama-3-8b", "gpt2", "small-llama"):
            del ref, step
            torch.cuda.empty_cache()
            cfg, w, ref, step = build(model)
            time_step("matrix model", model, ref, step)
            time_step("matrix model again", model, ref, step, iters=5)
    pd.DataFrame(rows).to_csv(out / "host_cost.csv", index=False)
    kernels(out)


def kernels(out):
    """Kernel times the kernel model may miss: odd vocabularies, LayerNorm / GELU, head_dim 64 decode."""
    import torch.nn.functional as F

    from roofline.measure.calibrate import kernel_time_s, rotating

    res = []
    bf = torch.bfloat16
    for n in (50257, 50304, 32000):
        ws = [torch.randn(n, 768, device="cuda", dtype=bf) for _ in range(4)]
        for m in (1, 64, 2048):
            x = torch.randn(m, 768, device="cuda", dtype=bf)
            t = kernel_time_s(rotating(F.linear, [(x, w) for w in ws]), 8)
            res.append({"what": f"linear K768 N{n} M{m}", "us": round(t * 1e6, 2)})
    for tokens in (1, 64, 2048):
        for h in (768, 4096):
            x = torch.randn(tokens, h, device="cuda", dtype=bf)
            wgt = torch.ones(h, device="cuda", dtype=bf)
            res.append(
                {
                    "what": f"layer_norm {tokens}x{h}",
                    "us": round(kernel_time_s(lambda: F.layer_norm(x, (h,), wgt, wgt), 10) * 1e6, 2),
                }
            )
            res.append(
                {
                    "what": f"rms_norm {tokens}x{h}",
                    "us": round(kernel_time_s(lambda: F.rms_norm(x, (h,), wgt), 10) * 1e6, 2),
                }
            )
            y = torch.randn(tokens, 4 * h, device="cuda", dtype=bf)
            res.append(
                {
                    "what": f"gelu_tanh {tokens}x{4 * h}",
                    "us": round(kernel_time_s(lambda: F.gelu(y, approximate="tanh"), 10) * 1e6, 2),
                }
            )
            res.append(
                {"what": f"silu*mul {tokens}x{4 * h}", "us": round(kernel_time_s(lambda: F.silu(y) * y, 10) * 1e6, 2)}
            )
    for d, heads in ((64, 12), (128, 32)):
        for b, ctx in ((1, 512), (64, 1024), (1, 128)):
            q = torch.randn(b, heads, 1, d, device="cuda", dtype=bf)
            k = torch.randn(b, heads, ctx, d, device="cuda", dtype=bf)
            v = torch.randn_like(k)
            t = kernel_time_s(lambda: F.scaled_dot_product_attention(q, k, v), 10)
            res.append({"what": f"sdpa decode d{d} h{heads} b{b} ctx{ctx}", "us": round(t * 1e6, 2)})
    for r in res:
        print(r, flush=True)
    pd.DataFrame(res).to_csv(out / "kernels.csv", index=False)


if __name__ == "__main__":
    main()
