"""Probe (issue 10, worst key ops): why do the MLP GEMMs of a two-layer reference step run faster than the
calibration's GEMM table says, and how does small prefill attention depend on heads and GQA?

Validate at stop 9 measured the Llama MLP projections at 256-512 tokens at 739-796 TFLOP/s inside the step; the
gemm.bf16 table (calibrate.measure_gemm_table: kernel_time_s, weights rotated among copies so each call reads
HBM, at least 50 ms of back-to-back warm-up calls first) holds 0.74-0.82 of the 773.6 TFLOP/s peak at those
points. This times the same F.linear shapes several ways, each with the cuBLAS kernel's name, the SM clock and
power sampled by NVML every 2 ms:

- table:      calibrate.kernel_time_s as the table runs it (rotating cold weights, 50 ms warm-up);
- short_warm: the same, warm-up of 3 calls only;
- duty:       the same calls with a 60 us GPU spin between them (about a step's duty cycle);
- in_step:    the kernels of a two-layer reference step (llama-2-7b prefill 512 / llama-3-8b decode batch 256)
              under torch.profiler, grouped by kernel name.

Then prefill attention (the reference's SDPA call, as calibrate.measure_attention_tables times it) at 128-512
query tokens, head_dim 64 and 128, batch x heads 16-256 (gpt2's 4 x 12 among them), MHA and GQA 4.

    OUT=/tmp/out python benchmarks/gpu_gemm_context.py   # -> $OUT/gemm_context.csv, $OUT/attention_grid.csv
"""

import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from roofline.io import write_rows  # noqa: E402
from roofline.measure import calibrate as C  # noqa: E402
from roofline.measure.nvml import NvmlSampler  # noqa: E402

SHAPES = ((512, 4096, 11008), (256, 4096, 14336), (512, 4096, 4096), (1024, 4096, 14336), (4096, 4096, 14336))


def kernels(fn, calls: int) -> dict:
    """{kernel name: (mean us per call, launches per call)} of ``calls`` calls of ``fn`` under the profiler."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    total, count = defaultdict(float), defaultdict(int)
    for e in prof.events():
        if e.device_type == DeviceType.CUDA:
            total[e.name] += e.time_range.elapsed_us()
            count[e.name] += 1
    return {k: (total[k] / calls, count[k] / calls) for k in total}


def clocked(what, fn):
    """(fn's result, mean SM MHz, min SM MHz, mean W, throttle reasons seen) while fn runs."""
    with NvmlSampler(interval_s=0.002) as s:
        result = fn()
    f = s.samples
    if f.empty or "sm_clock_mhz" not in f:
        return result, None, None, None, ""
    reasons = sorted({r for v in f["throttle_reasons"].dropna() for r in str(v).split(",") if r})
    return result, f.sm_clock_mhz.mean(), f.sm_clock_mhz.min(), f.power_w.mean(), "|".join(reasons)


def gemm_rows(spec):
    rows = []
    for m, k, n in SHAPES:
        flops = 2 * m * k * n
        weights = [
            torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(C.copies_for(2 * n * k))
        ]
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        fn = C.rotating(F.linear, [(x, w) for w in weights])

        def spun(fn=fn):
            torch.cuda._sleep(int(60 * 1980))
            return fn()

        reps = max(5, len(weights))
        for how, timing in (
            ("table", lambda fn=fn, reps=reps: C.kernel_time_s(fn, reps)),
            ("short_warm", lambda fn=fn, reps=reps: C.kernel_time_s(fn, reps, warmup_s=0.0)),
            ("long_warm", lambda fn=fn, reps=reps: C.kernel_time_s(fn, reps, warmup_s=0.5)),
            ("duty", lambda: kernels(spun, 20)),
        ):
            res, mhz, mhz_min, watts, why = clocked(how, timing)
            if how == "duty":
                gemm = {name: v for name, v in res.items() if "sleep" not in name.lower()}
                t = sum(v[0] for v in gemm.values()) * 1e-6
                names = ";".join(sorted(gemm))
            else:
                t = res
                names = ";".join(sorted(kernels(fn, 3)))
            rows.append(
                {
                    "what": f"gemm {m}x{k}x{n}",
                    "how": how,
                    "us": round(t * 1e6, 2),
                    "tflops": round(flops / t / 1e12, 1),
                    "sm_mhz_mean": None if mhz is None else round(mhz),
                    "sm_mhz_min": mhz_min,
                    "power_w": None if watts is None else round(watts),
                    "throttle": why,
                    "kernels": names,
                }
            )
            print(rows[-1], flush=True)
        del weights, x, fn
        torch.cuda.empty_cache()
    return rows


def step_rows():
    from roofline.config import load_model
    from roofline.measure.reference import build_reference
    from roofline.transformer import Workload

    rows = []
    for model, phase, b, p, ctx in (("llama-2-7b", "prefill", 1, 512, None), ("llama-3-8b", "decode", 256, 1024, 1024)):
        cfg = load_model(model)
        w = Workload(batch_size=(b,), prompt_len=(p if phase == "prefill" else 1,), phase=phase,
                     **({"context_len": ctx} if ctx else {}))  # fmt: skip
        with torch.no_grad():
            ref = build_reference(cfg, w, layers=2, max_context=max(p, ctx or 0))
            ref.annotate = False
            step = ref.make_step(phase, p, ctx)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 0.5:
                step()
            torch.cuda.synchronize()
            res, mhz, mhz_min, watts, why = clocked("step", lambda step=step: kernels(step, 20))
        for name, (us, per) in sorted(res.items(), key=lambda kv: -kv[1][0])[:8]:
            rows.append(
                {
                    "what": f"{model} {phase} b{b} {'s' + str(p) if phase == 'prefill' else 'c' + str(ctx)}",
                    "how": "in_step",
                    "us": round(us / per, 2),
                    "tflops": None,
                    "sm_mhz_mean": None if mhz is None else round(mhz),
                    "sm_mhz_min": mhz_min,
                    "power_w": None if watts is None else round(watts),
                    "throttle": why,
                    "kernels": f"{per:g} x {name}",
                }
            )
            print(rows[-1], flush=True)
        del ref, step
        torch.cuda.empty_cache()
    return rows


def attention_rows():
    rows = []
    grid = {
        64: ((1, 16), (4, 12), (2, 16), (4, 16), (8, 16), (16, 16)),
        128: ((1, 16), (1, 32), (2, 32), (4, 32), (8, 32)),
    }
    for d, pairs in grid.items():
        for s in (128, 256, 512):
            for b, heads in pairs:
                for kv_heads in (heads, heads // 4):
                    q = torch.randn(b, s, heads, d, device="cuda", dtype=torch.bfloat16)
                    k = torch.randn(b, s, kv_heads, d, device="cuda", dtype=torch.bfloat16)
                    v = torch.randn_like(k)
                    gqa = kv_heads != heads

                    def op(q=q, k=k, v=v, gqa=gqa, b=b, s=s, heads=heads, d=d):
                        o = F.scaled_dot_product_attention(
                            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, enable_gqa=gqa
                        )
                        return o.transpose(1, 2).reshape(b, s, heads * d)

                    t = C.kernel_time_s(op, 10)
                    per = kernels(op, 3)
                    rows.append({"d": d, "query_len": s, "batch": b, "heads": heads, "kv_heads": kv_heads,
                                 "us": round(t * 1e6, 3),
                                 "kernels": ";".join(f"{v[0]:.2f}us {n[:60]}" for n, v in per.items())})  # fmt: skip
                    print(rows[-1], flush=True)
    return rows


def main():
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    from roofline.specs import load_spec

    spec = load_spec("h200")
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    write_rows(out / "gemm_context.csv", gemm_rows(spec) + step_rows())
    write_rows(out / "attention_grid.csv", attention_rows())


if __name__ == "__main__":
    main()
