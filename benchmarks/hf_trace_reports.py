"""Write reports/h200-hf-<case>/ from the HF transformers traces recorded on an H200
(benchmarks/record_hf_traces.py): per-op GPU time beside the prediction (`roofline trace --model`),
the roofline chart, the independent join of the same trace, and the commands.

  python benchmarks/hf_trace_reports.py --traces reports/h200-hf-traces [--cases llama-2-7b,...] [--out reports]

Runs on a CPU (the traces are read, nothing is run on a GPU).
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {  # case: model file
    "llama-2-7b": "examples/llama-2-7b.yaml",
    "llama-3-8b-b8": "examples/llama-3-8b.yaml",
    "mixtral-8x7b": "examples/mixtral-8x7b.yaml",
    "llama-3-8b-graph": "tests/data/llama_3_8b_4_layers.yaml",
    "llama-3-8b-compile": "tests/data/llama_3_8b_4_layers.yaml",
}


# cases the aten-op join cannot read, and why; tests/test_attribute.py checks them by counts instead
NO_JOIN = {
    "llama-3-8b-graph": "Not run: the decode steps are CUDA graph replays, whose kernels have no aten op for the "
    "independent join to group by. tests/test_attribute.py checks the mapping by counts (8 replays "
    "x 239 kernels, 36 decode calls of each projection = 9 passes x 4 layers).",
    "llama-3-8b-compile": "Not run: Inductor fuses the embedding into a Triton kernel, so the independent join finds "
    "no aten::embedding to split passes at. tests/test_attribute.py checks the mapping by counts "
    "(1 prefill + 8 decode passes, 4 and 32 calls of each projection).",
}


def run(cmd, out_file=None):
    text = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    if out_file:
        Path(out_file).write_text(text.stdout)
    return text.stdout, text.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", required=True, help="folder with CASE.json.gz and cases.json")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", default="reports")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import hf_independent_join

    cases = json.loads((Path(args.traces) / "cases.json").read_text())
    info = {c["case"]: c for c in cases["cases"]}
    for case in args.cases.split(","):
        model = CASES[case]
        trace = str(Path(args.traces) / f"{case}.json.gz")
        out = Path(args.out) / f"h200-hf-{case}"
        out.mkdir(parents=True, exist_ok=True)
        base = [sys.executable, "-m", "roofline.cli", "trace", trace, "--model", model]
        table, notes = run(base + ["--format", "markdown"], out / "ops.md")
        run(base + ["--format", "csv"], out / "ops.csv")
        run(base + ["--format", "json"], out / "trace_model.json")
        run(base + ["--plot", str(out / "roofline.png")])
        from roofline.attribute import attribute

        kernels = attribute(trace, model).kernels
        rows = [] if case in NO_JOIN else hf_independent_join.compare(trace, model, kernels)
        per_call = hf_independent_join.kernels_per_call(kernels)
        uneven = [f"{ph} {op} ({lo}..{hi})" for ph, op, _, lo, hi in per_call if lo != hi]
        join = ["| phase | group | independent join | roofline trace --model | difference |", "|---|---|---|---|---|"]
        join += [f"| {p} | {g} | {a * 1e3:.4f} ms | {b * 1e3:.4f} ms | {r:.2%} |" for p, g, a, b, r in rows]
        worst = max((r for *_, r in rows), default=float("nan"))
        payload = json.loads((out / "trace_model.json").read_text())
        s = payload["summary"]
        c = info.get(case, {})
        readme = [
            f"# {case}: Hugging Face transformers on an H200, kernels on the analytic rows",
            "",
            f"Trace: `{case}.json.gz` recorded by `benchmarks/record_hf_traces.py` (torch {cases['env']['torch']}, "
            f"transformers {cases['env']['transformers']}, {cases['env']['gpu']}): {model}, batch {c.get('batch_size')}, "
            f"prompt {c.get('prompt_len')}, {c.get('decode_steps')} decode steps, {c.get('mode')}, bf16, sdpa; "
            "random weights, the model's own forward and cache (DynamicCache; StaticCache for the compiled and "
            "CUDA-graph cases).",
            "",
            "```bash",
            f"roofline trace {case}.json.gz --model {model}            # ops.md (--format markdown), ops.csv, "
            "trace_model.json",
            f"roofline trace {case}.json.gz --model {model} --plot roofline.png",
            f"python benchmarks/hf_independent_join.py {case}.json.gz {model}   # the table below",
            "```",
            "",
            f"GPU time {s['gpu_time_s'] * 1e3:.2f} ms over {s['forward_passes']['prefill']} prefill and "
            f"{s['forward_passes']['decode']} decode passes; {s['attributed_share']:.2%} of it on op rows; "
            f"inferred workload: batch {s['workload']['batch_size']:.0f}, prompt {s['workload']['prompt_len']:.0f}.",
            "",
            "## Notes (departures from the analytic assumptions)",
            "",
            *[f"- {n}" for n in payload["notes"]],
            "",
            "## Per-op GPU time beside the prediction (ops.md)",
            "",
            table.strip(),
            "",
            "## Independent join" + (f" (largest difference {worst:.2%})" if rows else ""),
            "",
            *([NO_JOIN[case], ""] if case in NO_JOIN else []),
            "`benchmarks/hf_independent_join.py` re-reads the JSON with its own join (kernel -> launch -> outermost "
            "cpu_op by a stack sweep), its own pass boundaries (each aten::embedding) and groups by aten op alone: "
            "linears by weight shape, SDPA, grouped GEMMs, the rest ('other'), and what follows lm_head ('outside').",
            "It checks the pass boundaries, the phases and the GEMM/attention/expert rows; it cannot split 'other' "
            "(norms, rope, kv_cache_write, act, residuals, routing), which roofline places by position. For those, "
            "the structure below, and on a GPU the module ranges of a capture (benchmarks/hf_capture_join.py, "
            "run by benchmarks/gpu_hf.sh), are the check.",
            "",
            *join,
            "",
            "## Kernels per call",
            "",
            "Per (phase, op): calls (per-layer ops: layer x pass) and the fewest and most kernels in one call. Equal "
            "numbers mean the position rules put the same kernels on the op in every layer of every pass"
            + (": all equal." if not uneven else f"; uneven: {', '.join(uneven)}.")
            + (
                " rope's call in layer 0 also holds the rotary embedding's cos/sin set-up, computed once per pass."
                if any(u.split()[1] == "rope" for u in uneven)
                else ""
            ),
            "",
            "| phase | op | calls | kernels per call |",
            "|---|---|---|---|",
            *[f"| {ph} | {op} | {n} | {lo}" + (f"..{hi}" if hi != lo else "") + " |" for ph, op, n, lo, hi in per_call],
            "",
            "![roofline](roofline.png)",
            "",
        ]
        (out / "README.md").write_text("\n".join(readme))
        print(
            f"{case}: {s['attributed_share']:.2%} attributed, independent join within {worst:.2%} "
            f"({len(rows)} groups); wrote {out}"
        )


if __name__ == "__main__":
    main()
