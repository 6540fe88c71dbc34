"""Probe (issue 10, the MoE expert loop's GPU time): are the loop's small kernels slower after a weight stream?

In validate's Mixtral decode step the experts op's kernels take 10-12% more GPU time than predicted (809-837
against 738-747 µs a layer, reports/validate-h200/split-k), with the kernel count exact (125 a layer). The GEMMs
are within 3% of their tables; the small kernels (the where's nonzero, the gathers, index_add_, the routing's
topk) measure 1.5-2.3 µs each (reports/h200/moe_kernels.csv), where the calibration's small MoE model gives
1.25-1.3 µs. The hypothesis: in Mixtral each expert's GEMMs stream 117 MB per matrix through the 50 MB L2, so
the small kernels after them find their inputs evicted; the small model's experts (1.4 MB) never evict anything.

This runs the loop's small kernels at Mixtral decode shapes (8 tokens, hidden 4096, expert width 14336, top 2 of
8), in the loop's order, twice: warm (back to back) and cold (each sequence after a GEMM that reads STREAM_MB of
bf16 weights, as an expert's does), under torch.profiler, and prints each kernel's mean device time
in both, and their sum per sequence.

    OUT=/tmp/out python benchmarks/gpu_moe_small_kernels.py     # -> $OUT/moe_small_kernels.csv and stdout
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from roofline.io import write_rows  # noqa: E402

TOKENS, HIDDEN, WIDTH, EXPERTS, TOP_K = 8, 4096, 14336, 8, 2
STREAM_MB = 256
REPEATS = 50


def small_kernels(x, logits, gate_out, up_out, down_out, out):
    """The non-GEMM kernels of one MoE layer's loop at one expert with tokens (reference.ReferenceDecoder._moe)."""
    probs = torch.softmax(logits.float(), dim=-1)
    weights, chosen = torch.topk(probs, TOP_K, dim=-1)
    weights = (weights / weights.sum(dim=-1, keepdim=True)).to(x.dtype)
    token, slot = torch.where(chosen == 0)
    xe = x[token]
    h = F.silu(gate_out[: len(token)]) * up_out[: len(token)]
    out.index_add_(0, token, down_out[: len(token)] * weights[token, slot, None])
    return xe, h


def main():
    out_dir = Path(os.environ.get("OUT", "out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    dev, bf = "cuda", torch.bfloat16
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(TOKENS, HIDDEN, device=dev, dtype=bf, generator=g)
    logits = torch.randn(TOKENS, EXPERTS, device=dev, dtype=bf, generator=g)
    logits[:, 0] += 4.0  # every token picks expert 0: the where is never empty
    gate_out = torch.randn(TOKENS, WIDTH, device=dev, dtype=bf, generator=g)
    up_out = torch.randn(TOKENS, WIDTH, device=dev, dtype=bf, generator=g)
    down_out = torch.randn(TOKENS, HIDDEN, device=dev, dtype=bf, generator=g)
    out = torch.zeros(TOKENS, HIDDEN, device=dev, dtype=bf)
    # the stream: one GEMM reading STREAM_MB of weights, as an expert's matrix does (its kernels are left out below)
    w = torch.randn(STREAM_MB * 2**20 // 2 // HIDDEN, HIDDEN, device=dev, dtype=bf, generator=g)
    args = (x, logits, gate_out, up_out, down_out, out)

    def stream():
        return F.linear(x[:2], w)

    def profiled(fn) -> list:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(REPEATS):
                fn()
            torch.cuda.synchronize()
        return [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]

    for _ in range(10):
        small_kernels(*args)
        stream()
    torch.cuda.synchronize()
    streamed = {e.key for e in profiled(stream)}
    rows = []
    for mode, fn in (("warm", lambda: small_kernels(*args)), ("cold", lambda: (stream(), small_kernels(*args)))):
        total = 0.0
        for e in profiled(fn):
            if e.key in streamed:
                continue
            total += e.device_time_total / REPEATS
            rows.append(
                {
                    "mode": mode,
                    "kernel": e.key[:100],
                    "calls_per_seq": e.count / REPEATS,
                    "mean_us": round(e.device_time_total / max(e.count, 1), 3),
                }
            )
        rows.append(
            {"mode": mode, "kernel": "TOTAL per sequence", "calls_per_seq": float("nan"), "mean_us": round(total, 2)}
        )
    write_rows(out_dir / "moe_small_kernels.csv", rows)
    for r in rows:
        print(f"{r['mode']:5s} {r['calls_per_seq']:5.1f} {r['mean_us']:8.3f}  {r['kernel']}")


if __name__ == "__main__":
    main()
