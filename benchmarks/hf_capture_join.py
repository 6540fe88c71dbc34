"""The independent join of a trace made by roofline.capture (module ranges): per (phase, op) that is a
module of its own, the GPU time its module ranges hold against the time the shape/position rules
give when the ranges are ignored. Prints one line per op and exits 1 when any differs by 5% or more.

  python benchmarks/hf_capture_join.py TRACE.json.gz MODEL.yaml
"""

import sys

from roofline.attribute import attribute, attribute_kernels
from roofline.config import load_model
from roofline.measure.trace import analyze_trace

OWN_MODULE = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "router",
    "experts",
    "lm_head",
    "attn_norm",
    "mlp_norm",
    "final_norm",
)


def main(trace, model_file):
    m = load_model(model_file)
    a = attribute(trace, m)
    by_module = a.kernels[a.kernels["evidence"] == "module"]
    shapes, _, _ = attribute_kernels(analyze_trace(trace, a.spec).kernels.drop(columns="range"), m)
    worst = 0.0
    print(f"{'phase':8} {'op':12} {'module ranges':>14} {'shapes only':>12} {'diff':>7}")
    for (phase, op), t in by_module.groupby(["phase", "op"])["dur_s"].sum().items():
        if op not in OWN_MODULE:
            continue
        s = shapes[(shapes["phase"] == phase) & (shapes["op"] == op)]["dur_s"].sum()
        rel = abs(s - t) / t if t else 0.0
        worst = max(worst, rel)
        print(f"{phase:8} {op:12} {t * 1e3:12.4f}ms {s * 1e3:10.4f}ms {rel:7.2%}")
    print(f"largest difference {worst:.2%}")
    return 0 if worst < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
