"""Re-express a calibrated spec's prefill attention tables over the compute roofline (no GPU).

Until stop 10, calibrate stored attention.prefill[/dNN] as the geometric mean over MHA and GQA 4 of
(max(compute, memory) roofline time / measured time). The kernel takes the same time for both
(benchmarks/gpu_gemm_context.py), but their memory rooflines differ, so at small sizes (memory-bound
rooflines) one table priced GQA 20% low and MHA 25% high. calibrate now stores compute roofline / measured
time (``roofline: compute``). The geometric mean is multiplicative, so the old cell converts exactly:
new = old x t_compute / geomean(roofline_MHA, roofline_GQA), with the grid, heads and head_dim calibrate
measured (calibrate.measure_attention_tables) and the spec's own measured peak and bandwidth.

    python benchmarks/convert_prefill_attention.py SPEC.yaml [OUT.yaml]   # default: SPEC.yaml in place
"""

import copy
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roofline.formulas import causal_pairs, flash_attention  # noqa: E402
from roofline.measure import calibrate as C  # noqa: E402
from roofline.specs import parse_spec  # noqa: E402
from roofline.validate import load_mapping  # noqa: E402

HEADS = {"prefill": (128, 32), "prefill/d64": (64, 16)}  # key -> (head_dim, query heads) as calibrate measures them


def convert(raw: dict) -> dict:
    bare = copy.deepcopy(raw)
    bare["measured"].pop("attention")  # the old tables cannot be parsed any more; only the ceilings are needed
    spec = parse_spec(bare, "<converting>")
    out = copy.deepcopy(raw)
    for key, (d, heads) in HEADS.items():
        table = out["measured"]["attention"].get(key)
        if table is None or table.get("roofline") == "compute":
            continue
        rows = []
        for s, old_row in zip(table["query_len"], table["efficiency"]):
            row = []
            for fpp, old in zip(table["flops_per_pair"], old_row):
                bh = fpp // (4 * d)
                b = bh // heads
                roofs, t_c = [], None
                for kv in (heads, heads // 4):
                    cost = C._cost_row(
                        flash_attention(b, s, s, causal_pairs(s), heads, kv, d, "bf16", "bf16", False), "bf16"
                    )
                    roof = C._roofline_s(spec, [cost])[0]
                    if roof <= C.MAX_KERNEL_S:
                        roofs.append(roof)
                        t_c = C._roofline_s(spec, [cost], "time_compute_s")[0]
                if not roofs:
                    raise SystemExit(f"{key}: cell {s} x {fpp} was not measured; calibrate it again instead")
                mean_roof = math.exp(sum(math.log(r) for r in roofs) / len(roofs))
                row.append(float(f"{old * t_c / mean_roof:.4g}"))
            rows.append(row)
        out["measured"]["attention"][key] = {"roofline": "compute", **{k: v for k, v in table.items() if k != "efficiency"}, "efficiency": rows}  # fmt: skip
    return out


def main():
    src = Path(sys.argv[1])
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else src
    raw = convert(load_mapping(src, "spec"))
    raw["measured"]["conditions"]["attention.prefill"] = (
        "efficiency re-expressed over the compute roofline by benchmarks/convert_prefill_attention.py (exact: see there)"
    )
    C.write_spec(raw, dst)
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()
