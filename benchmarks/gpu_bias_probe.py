"""Probe (issue 10, gpt2's projections): does a bias in F.linear slow the GEMM?

Stop 10's validate: gpt2's biased projections were predicted 6-22% short by the gemm.bf16 table (timed
without a bias), while its unbiased lm_head was within 2.5%, and the unbiased Llama projections within a median 3%.
This times F.linear(x, W) against F.linear(x, W, b) at gpt2's shapes and a Llama one (calibrate.kernel_time_s,
weights rotated among cold copies as the table does). Run at stop 11 -> reports/h200/bias_probe.csv: x1.02-1.05,
x1.146 at 2048 x 768 x 768.

    OUT=/tmp/out python benchmarks/gpu_bias_probe.py   # -> $OUT/bias_probe.csv
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from roofline.io import write_rows  # noqa: E402
from roofline.measure import calibrate as C  # noqa: E402

SHAPES = ((768, 768), (768, 3072), (3072, 768), (4096, 4096))
TOKENS = (1, 64, 2048)


def main():
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k_in, n_out in SHAPES:
        ws = [
            torch.randn(n_out, k_in, device="cuda", dtype=torch.bfloat16) * 0.02
            for _ in range(C.copies_for(2 * k_in * n_out))
        ]
        b = torch.randn(n_out, device="cuda", dtype=torch.bfloat16) * 0.02
        for m in TOKENS:
            x = torch.randn(m, k_in, device="cuda", dtype=torch.bfloat16)
            row = {"tokens": m, "k_in": k_in, "n_out": n_out}
            for name, args in (("no_bias", [(x, w) for w in ws]), ("bias", [(x, w, b) for w in ws])):
                fn = C.rotating(F.linear, args)
                row[f"{name}_us"] = round(C.kernel_time_s(fn, max(5, len(ws))) * 1e6, 3)
            row["ratio"] = round(row["bias_us"] / row["no_bias_us"], 3)
            rows.append(row)
            print(row, flush=True)
    write_rows(out / "bias_probe.csv", rows)


if __name__ == "__main__":
    main()
