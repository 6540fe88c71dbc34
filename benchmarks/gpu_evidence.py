#!/usr/bin/env python3
"""Evidence from a real GPU: calibrate it, profile the 2-layer reference of Llama-2-7B for a 2048-token
prefill and for decode steps at batch 1 and 64 with a 1024-token context (bf16), and read DRAM bytes per
kernel of the batch-1 decode step with Nsight Compute.

Usage, from the repository root on a CUDA machine:
    PYTHONPATH=. python benchmarks/gpu_evidence.py all --out OUTDIR [--no-ncu]
    PYTHONPATH=. python benchmarks/gpu_evidence.py ncu-target    # the program Nsight Compute runs

Writes into OUTDIR: calibration.yaml, {case}_ops.csv / _kernels.csv / _sequence.csv / _clocks.csv,
steps.csv, traces/{case}/{phase}_trace.json.gz, ncu_raw.csv, ncu_vs_analytic.csv, summary.md.
"""

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

MODEL = "examples/llama-2-7b.yaml"
LAYERS = 2
CASES = {  # name: workload overrides (bf16 everywhere, from the model file)
    "prefill": dict(batch_size=(1,), prompt_len=(2048,), context_len=None, phase="prefill"),
    "decode_b1": dict(batch_size=(1,), prompt_len=(1024,), context_len=(1024,), phase="decode"),
    "decode_b64": dict(batch_size=(64,), prompt_len=(1024,), context_len=(1024,), phase="decode"),
}
NCU_CASE = "decode_b1"
NCU_METRICS = "dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum"
T0 = time.time()


def log(*args):
    print(f"[{time.time() - T0:6.1f}s]", *args, flush=True)


def model_and_workload(case: str):
    from roofline.config import load_model_and_workload

    m, w = load_model_and_workload(MODEL)
    return m, replace(w, gen_tokens=None, **CASES[case])


def md_table(frame: pd.DataFrame, formats: dict) -> str:
    """A markdown table of ``frame``'s columns named in ``formats`` (column -> format spec or callable)."""
    cols = list(formats)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in frame.iterrows():
        cells = []
        for c in cols:
            v, f = row[c], formats[c]
            if v is None or (isinstance(v, float) and v != v):
                cells.append("")
            elif callable(f):
                cells.append(f(v))
            elif f:
                cells.append(format(v, f))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def us(v):
    return f"{v * 1e6:.1f}"


def ops_table(ops: pd.DataFrame) -> str:
    f = ops.assign(
        measured_us=ops["measured_time_s"],
        predicted_us=ops["predicted_time_s"],
        tflops=ops["achieved_flops_per_s"] / 1e12,
        gbps=ops["achieved_bytes_per_s"] / 1e9,
    )
    return md_table(
        f,
        {
            "op": "",
            "count": "d",
            "n_kernels": ".0f",
            "measured_us": us,
            "predicted_us": us,
            "measured_over_predicted": ".2f",
            "predicted_bound": "",
            "measured_bound": "",
            "tflops": ".1f",
            "gbps": ".0f",
            "roofline_fraction": ".0%",
        },
    )


def steps_table(steps: pd.DataFrame) -> str:
    return md_table(
        steps,
        {
            "case": "",
            "phase": "",
            "batch_size": "d",
            "kernel_time_ref_s": us,
            "eager_step_ref_s": us,
            "graph_step_ref_s": us,
            "host_overhead_ref_s": us,
            "kernel_time_full_s": us,
            "predicted_time_full_s": us,
            "measured_over_predicted_full": ".2f",
            "step_full_est_s": us,
            "tokens_per_s_est": ".0f",
        },
    )


# ------------------------------------------------------------------------------------------------
def run_calibration(out: Path):
    from roofline.measure.calibrate import calibrate

    log("calibrate: start")
    raw = calibrate(out / "calibration.yaml")
    meas = raw["measured"]
    log("calibrate:", json.dumps({k: v for k, v in meas.items() if k != "conditions"}))
    log("calibrate conditions:", json.dumps(meas["conditions"], default=str))
    return out / "calibration.yaml"


def save_case(out: Path, case: str, c, extra: dict = None, clocks_label: str = "clocks") -> None:
    """Write one profiled case's frames (a roofline.compare.Comparison; ``extra``: more name -> frame)
    and log its notes and clocks."""
    frames = {"ops": c.ops, **(extra or {}), "kernels": c.run.kernels, "sequence": c.run.sequence}
    for name, frame in frames.items():
        frame.assign(case=case).to_csv(out / f"{case}_{name}.csv", index=False)
    c.run.clocks.to_csv(out / f"{case}_clocks.csv", index=False)
    (out / f"{case}_device.json").write_text(
        json.dumps({"device": c.run.device, "notes": c.notes}, indent=1, default=str)
    )
    for note in c.notes:
        log(f"  note: {note}")
    log(f"  {clocks_label}: {json.dumps(c.run.device.get('clocks'), default=str)}")


def run_profiles(out: Path, spec):
    from roofline.analysis import analyze
    from roofline.compare import compare
    from roofline.measure.profile import profile_model

    all_steps, results = [], {}
    for case in CASES:
        m, w = model_and_workload(case)
        log(f"profile {case}: batch {w.batch_size[0]} prompt {w.prompt_len[0]} context {w.context_len} phase {w.phase}")
        try:
            run = profile_model(
                m,
                w,
                spec=spec,
                layers=LAYERS,
                warmup=5,
                iters=10,
                timing_iters=20,
                cuda_graph=True,
                trace_dir=out / "traces" / case,
            )
            r = compare(analyze(m, spec, workload=run.workload), run)
        except Exception as exc:  # noqa: BLE001 - keep the other cases
            log(f"profile {case} FAILED: {type(exc).__name__}: {exc}")
            continue
        results[case] = r
        save_case(out, case, r)
        all_steps.append(r.steps.assign(case=case))
    steps = pd.concat(all_steps, ignore_index=True) if all_steps else pd.DataFrame()
    steps.to_csv(out / "steps.csv", index=False)
    return results, steps


# ------------------------------------------------------------------------------------------------
def ncu_target():
    """Build the decode_b1 reference exactly as profile_model does, warm up, then one step between
    cudaProfilerStart/Stop with an NVTX range per op (ncu --profile-from-start off)."""
    import torch

    from roofline.measure.reference import build_reference, decode_context

    m, w = model_and_workload(NCU_CASE)
    ctx = decode_context(w)
    ref = build_reference(m, w, layers=LAYERS, device="cuda", seed=0, max_context=ctx)
    step = ref.make_step("decode", w.prompt_len[0], ctx)
    with torch.no_grad():
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        ref.nvtx = True
        torch.cuda.profiler.start()
        torch.cuda.nvtx.range_push("roofline_ncu")
        step()
        torch.cuda.nvtx.range_pop()
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()
    print("ncu-target done", file=sys.stderr)


def parse_ncu_csv(text: str) -> pd.DataFrame:
    """ncu --csv --page raw output: header row, units row, one row per kernel."""
    lines = [ln for ln in text.splitlines() if ln.startswith('"')]
    if len(lines) < 3:
        return pd.DataFrame()
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    header, body = rows[0], rows[2:]
    frame = pd.DataFrame(body, columns=header)
    for col in ("dram__bytes_read.sum", "dram__bytes_write.sum", "gpu__time_duration.sum"):
        if col in frame:
            frame[col] = pd.to_numeric(frame[col].str.replace(",", ""), errors="coerce")
    return frame


def run_ncu(out: Path, results: dict, timeout_s: int):
    ncu = shutil.which("ncu")
    if not ncu:
        log("ncu: not on PATH; skipped")
        return None
    cmd = [
        ncu,
        "--clock-control",
        "none",
        "--profile-from-start",
        "off",
        "--nvtx",
        "--metrics",
        NCU_METRICS,
        "--csv",
        "--page",
        "raw",
        "--print-units",
        "base",
        sys.executable,
        __file__,
        "ncu-target",
    ]
    log("ncu:", " ".join(cmd))
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=dict(os.environ, PYTHONUNBUFFERED="1")
        )
    except subprocess.TimeoutExpired:
        log(f"ncu: timed out after {timeout_s} s")
        return None
    (out / "ncu_stdout.txt").write_text(proc.stdout)
    (out / "ncu_stderr.txt").write_text(proc.stderr[-20000:])
    log(f"ncu: exit {proc.returncode}; {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
    raw = parse_ncu_csv(proc.stdout)
    if raw.empty:
        log("ncu: no kernel rows in its output; see ncu_stdout.txt / ncu_stderr.txt")
        return None
    raw.to_csv(out / "ncu_raw.csv", index=False)
    log(f"ncu: {len(raw)} kernels profiled")
    if NCU_CASE not in results:
        return raw
    ops = results[NCU_CASE].ops
    # --nvtx adds the push/pop range stack per kernel: "<default domain>:roofline_ncu:..." "<default domain>:q_proj:..."
    nvtx_col = next((c for c in raw.columns if "Push/Pop" in c), None)
    if nvtx_col is None:
        log("ncu: no NVTX column in its output; no per-op attribution")
        return raw
    stacks = raw[nvtx_col].astype(str).str.findall(r"<default domain>:([^:]+):")
    name_col = "Kernel Name" if "Kernel Name" in raw else raw.columns[6]
    aligned = pd.DataFrame(
        {
            "op": [s[-1] if s else None for s in stacks],
            "ncu_kernel": raw[name_col].to_numpy(),
            "dram_read": raw["dram__bytes_read.sum"].to_numpy(),
            "dram_write": raw["dram__bytes_write.sum"].to_numpy(),
            "ncu_time_s": raw["gpu__time_duration.sum"].to_numpy() * 1e-9,
        }
    )
    aligned.to_csv(out / "ncu_kernels_by_op.csv", index=False)
    log(f"ncu: {int(aligned['op'].isin(ops['op']).sum())} of {len(aligned)} kernels inside an op's NVTX range")
    per_op = aligned.groupby("op", sort=False)[["dram_read", "dram_write", "ncu_time_s"]].sum()
    per_op["ncu_kernels"] = aligned.groupby("op", sort=False).size()
    cmp = ops.set_index("op")[
        ["ref_count", "category", "predicted_bound", "measured_bound", "bytes_read", "bytes_written", "measured_time_s"]
    ].join(per_op)
    for c in ("dram_read", "dram_write", "ncu_time_s", "ncu_kernels"):
        cmp[c] = cmp[c] / cmp["ref_count"]  # per occurrence, like the analytic bytes
    cmp["read_ratio"] = cmp["dram_read"] / cmp["bytes_read"]
    cmp["write_ratio"] = cmp["dram_write"] / cmp["bytes_written"]
    cmp = cmp.reset_index()
    cmp.to_csv(out / "ncu_vs_analytic.csv", index=False)
    return cmp


# ------------------------------------------------------------------------------------------------
def main_all(out: Path, no_ncu: bool, ncu_timeout: int):
    import torch

    out.mkdir(parents=True, exist_ok=True)
    log(f"torch {torch.__version__} cuda {torch.version.cuda} device {torch.cuda.get_device_name()}")
    try:
        smi = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,"
                "power.draw,power.limit,temperature.gpu",
                "--format=csv",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        log("nvidia-smi:\n" + smi.stdout.strip())
    except Exception as exc:  # noqa: BLE001
        log(f"nvidia-smi failed: {exc}")

    from roofline.specs import load_spec

    spec = "h100-sxm"
    try:
        spec = load_spec(run_calibration(out))
    except Exception as exc:  # noqa: BLE001 - profile against the datasheet then
        log(f"calibrate FAILED: {type(exc).__name__}: {exc}; profiling against the shipped h100-sxm spec")
    results, steps = run_profiles(out, spec)
    cmp = None
    if not no_ncu:
        try:
            cmp = run_ncu(out, results, ncu_timeout)
        except Exception as exc:  # noqa: BLE001
            log(f"ncu FAILED: {type(exc).__name__}: {exc}")

    parts = ["# GPU evidence summary\n"]
    if isinstance(spec, object) and hasattr(spec, "measured_peak_flops_per_s"):
        parts.append("## Calibration\n```\n" + (out / "calibration.yaml").read_text().split("measured:")[-1] + "```\n")
    if len(steps):
        parts.append(
            "## Steps (reference = 2 layers; full = 32 layers, scaled by kernel time)\n" + steps_table(steps) + "\n"
        )
        cols = [
            c
            for c in steps.columns
            if c.startswith(("one_step_", "driver_", "kernels_per", "idle_", "unattr", "gpu_busy", "profiled_"))
        ]
        parts.append("```\n" + steps[["case"] + cols].T.to_string() + "\n```\n")
    for case, r in results.items():
        parts.append(
            f"## {case}: ops (per occurrence; count = occurrences in the full model)\n" + ops_table(r.ops) + "\n"
        )
    if cmp is not None and "read_ratio" in getattr(cmp, "columns", []):
        t = cmp.assign(
            analytic_read_MB=cmp["bytes_read"] / 1e6,
            ncu_read_MB=cmp["dram_read"] / 1e6,
            analytic_write_MB=cmp["bytes_written"] / 1e6,
            ncu_write_MB=cmp["dram_write"] / 1e6,
        )
        parts.append(
            "## ncu DRAM bytes vs analytic bytes (decode batch 1, per occurrence)\n"
            + md_table(
                t,
                {
                    "op": "",
                    "predicted_bound": "",
                    "analytic_read_MB": ".3f",
                    "ncu_read_MB": ".3f",
                    "read_ratio": ".2f",
                    "analytic_write_MB": ".3f",
                    "ncu_write_MB": ".3f",
                    "write_ratio": ".2f",
                    "ncu_time_s": us,
                },
            )
            + "\n"
        )
    summary = "\n".join(parts)
    (out / "summary.md").write_text(summary)
    print(summary, flush=True)
    log("done")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["all", "ncu-target"])
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu_evidence_out"))
    parser.add_argument("--no-ncu", action="store_true")
    parser.add_argument("--ncu-timeout", type=int, default=240)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    if args.mode == "ncu-target":
        ncu_target()
    else:
        main_all(Path(args.out), args.no_ncu, args.ncu_timeout)


if __name__ == "__main__":
    main()
