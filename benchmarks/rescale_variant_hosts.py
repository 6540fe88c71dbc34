"""Historical (session 2, 18:17; reports/h200/README.md cites the run): `roofline calibrate` applies this rescale
itself since, and its gpt2-style model now has the L2-cold head of calibrate.cold_vocab, which this script's
model does not: on a spec from today's calibrate it would not reproduce calibrate's own factor. Kept for the record.

Apply calibrate.scale_variant_hosts to a spec calibrated before it existed (no GPU): the gpt2-style ops' eager
host costs (NAME/VARIANT entries and the ops only gpt2 has) rescaled so that the gpt2-style calibration model's
step, priced with the llama-style entries for its other ops, equals the eager step the same calibration measured
(measured.conditions.ops_measured_on.gpt2_style_eager_step_us). The occurrences per step are the model's own
(transformer.model_ops of calibrate.table_model('gpt2', 512), 2 layers, decode batch 1, context 128: the run
measure_op_costs profiles). Writes the spec in place and records the factor in measured.conditions.

    python benchmarks/rescale_variant_hosts.py reports/h200/calibration.yaml
"""

import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roofline.config import Workload, parse_model  # noqa: E402
from roofline.measure import calibrate as C  # noqa: E402
from roofline.predict import op_variants  # noqa: E402
from roofline.transformer import model_ops  # noqa: E402
from roofline.validate import load_mapping  # noqa: E402


def main():
    path = Path(sys.argv[1])
    raw = load_mapping(path, "spec")
    ops = raw["measured"]["ops"]
    cond = raw["measured"]["conditions"]["ops_measured_on"]
    if "gpt2_style_variant_host_scale" in cond:
        sys.exit(f"{path}: already rescaled (factor {cond['gpt2_style_variant_host_scale']}); nothing to do")
    gpt2 = C.table_model("gpt2", 512)
    gpt2 = replace(gpt2, num_hidden_layers=2)
    w = Workload(batch_size=(1,), prompt_len=(128,), context_len=(128,), phase="decode")
    calls = {op.name: float(op.count) for op in model_ops(gpt2, w, "decode", 1, 128, 128)}
    variants = op_variants(gpt2)
    costs = {name: dict(ops[f"{name}/{v}"]) for name, v in variants.items() if f"{name}/{v}" in ops and name in calls}
    small = parse_model(dict(C.SMALL_MODEL), "calibration-small")
    llama = {op.name for op in model_ops(small, w, "decode", 1, 128, 128)}
    gpt2_only = [name for name in calls if name not in variants and name in ops and name not in llama]
    for name in gpt2_only:
        costs[name] = dict(ops[name])
    shared = {name: e for name, e in ops.items() if name not in gpt2_only}
    factor = C.scale_variant_hosts(shared, costs, calls, variants, float(cond["gpt2_style_eager_step_us"]))
    for name, entry in costs.items():
        key = f"{name}/{variants[name]}" if name in variants else name
        ops[key]["host_eager_us"] = entry["host_eager_us"]
    cond["gpt2_style_variant_host_scale"] = round(factor, 4)
    cond["gpt2_style_variant_host_note"] = (
        "host_eager_us of the gpt2-style entries rescaled after measurement by benchmarks/rescale_variant_hosts.py "
        "(calibrate.scale_variant_hosts), from the values this run measured"
    )
    C.write_spec(raw, path)
    print(f"{path}: gpt2-style host costs x {factor:.4f} ({', '.join(sorted(costs))})")


if __name__ == "__main__":
    main()
