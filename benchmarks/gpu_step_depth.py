"""Probe (issue 10, the eager step): what a layer costs the host, from the step's slope over depth.

Every validate case runs 2 layers, and so does the model the calibration scales its host costs to; a real model
runs 24-80. Profiled at 2 layers, the host spans put 181 us of the reference's step outside its layers, where its
steps at 2 to 32 layers extrapolate to 42-73 us: a layer was priced 15% short, a 32-layer step 11% short
(reports/h200/step-depth; calibrate.split_layer_hosts since).

This times eager steps (steptime.time_steps, fresh process, the fastest of STEP_ROUNDS interleaved rounds,
STEP_WINDOW-step windows, no profiler) at decode batch 1 (exactly top-k experts routed a layer), context 128, of
the models and layer counts --points names:
  dense     the host reference model (calibrate.host_reference_job)
  moe       calibrate.small_moe_model
  mixtral   mixtral-8x7b
  llama     llama-2-7b
and the host reference itself; then predicts each with --spec (routed_experts 2), plain and host-normalised
(predict.with_host_reference), and prints measured, predicted and the per-layer slopes.

    OUT=/tmp/out python benchmarks/gpu_step_depth.py [--spec ...] [--points "dense:2,8,32;moe:2,8"]   # -> $OUT/step_depth.csv
    python benchmarks/gpu_step_depth.py --rescore reports/h200/step-depth/0652.csv --spec SPEC         # no GPU
"""

import argparse
import csv
import os
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roofline.analysis import analyze  # noqa: E402
from roofline.config import Workload, load_model  # noqa: E402
from roofline.io import write_rows  # noqa: E402
from roofline.measure.calibrate import (  # noqa: E402
    SMALL_MODEL,
    STEP_ROUNDS,
    _timed_steps,
    cold_vocab,
    host_reference_job,
    small_moe_model,
)
from roofline.measure.steptime import STEP_WINDOW  # noqa: E402
from roofline.predict import with_host_reference  # noqa: E402
from roofline.specs import data_dir, load_spec  # noqa: E402

POINTS = "dense:2,4,8;moe:2,4,8;mixtral:2,4,8"
WORKLOAD = Workload(batch_size=(1,), prompt_len=(128,), context_len=(128,), phase="decode")


def models_for(spec) -> dict:
    """The probe's models by name (their layer counts set per point)."""
    return {
        "dense": host_reference_job(spec)["config"],
        "moe": small_moe_model(cold_vocab(spec, SMALL_MODEL["hidden_size"])),
        "mixtral": load_model(data_dir("examples") / "mixtral-8x7b.yaml"),
        "llama": load_model(data_dir("examples") / "llama-2-7b.yaml"),
    }


def score(spec, measured: list, reference_us: float) -> list:
    """One row per (model, layers, measured_us) of ``measured``: predicted with ``spec``, plain and host-normalised
    to the host reference timed beside them (``reference_us``)."""
    models = models_for(spec)
    host_spec, _ = with_host_reference(spec, reference_us * 1e-6)
    rows = []
    for name, n, meas_us in measured:
        m = replace(models[name], num_hidden_layers=int(n))
        wl = replace(WORKLOAD, routed_experts=2.0) if m.is_moe else WORKLOAD
        pred = float(analyze(m, spec, workload=wl).summary["decode_time_s"].iloc[0]) * 1e6
        pred_h = float(analyze(m, host_spec, workload=wl).summary["decode_time_s"].iloc[0]) * 1e6
        rows.append(
            {
                "model": name,
                "layers": int(n),
                "measured_us": round(meas_us, 2),
                "predicted_us": round(pred, 2),
                "predicted_host_us": round(pred_h, 2),
                "error": round(pred / meas_us - 1, 4),
                "error_host": round(pred_h / meas_us - 1, 4),
                "host_reference_us": round(reference_us, 2),
            }
        )
    return rows


def print_rows(rows: list) -> None:
    for r in rows:
        print(r, flush=True)
    for name in dict.fromkeys(r["model"] for r in rows):
        r = [x for x in rows if x["model"] == name]
        for a, b in zip(r, r[1:]):
            dl = b["layers"] - a["layers"]
            print(
                f"{name} per layer {a['layers']}->{b['layers']}: measured "
                f"{(b['measured_us'] - a['measured_us']) / dl:.1f} us, predicted "
                f"{(b['predicted_us'] - a['predicted_us']) / dl:.1f} (host-normalised "
                f"{(b['predicted_host_us'] - a['predicted_host_us']) / dl:.1f})"
            )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default=str(ROOT / "reports" / "validate-h200" / "split-k" / "calibration-routed.yaml"))
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the script's plumbing")
    ap.add_argument("--points", default=POINTS, help="MODEL:LAYERS,...;MODEL:... of dense, moe, mixtral, llama")
    ap.add_argument(
        "--rescore", help="a step_depth.csv this probe wrote: its measurements predicted with --spec, no GPU"
    )
    args = ap.parse_args()
    spec = load_spec(args.spec)
    if args.rescore:
        with open(args.rescore, newline="") as fh:
            old = list(csv.DictReader(fh))
        measured = [(r["model"], int(r["layers"]), float(r["measured_us"])) for r in old]
        print_rows(score(spec, measured, float(old[0]["host_reference_us"])))
        return
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    reference = host_reference_job(spec)
    models = models_for(spec)
    points = [
        (name, int(n)) for part in args.points.split(";") for name, ns in [part.split(":")] for n in ns.split(",")
    ]
    jobs = [dict(reference, graph=False)] + [
        {
            "config": replace(models[name], num_hidden_layers=n),
            "workload": WORKLOAD,
            "layers": n,
            "timing_iters": STEP_WINDOW,
            "graph": False,
        }
        for name, n in points
    ]
    for job in jobs:
        job["device"] = args.device
    timed = _timed_steps(jobs, STEP_ROUNDS, "the layer probe")
    ref_s = timed[0]["decode"]["eager_s"]
    print(f"host reference {ref_s * 1e6:.1f} us", flush=True)
    rows = score(spec, [(n, k, t["decode"]["eager_s"] * 1e6) for (n, k), t in zip(points, timed[1:])], ref_s * 1e6)
    print_rows(rows)
    write_rows(out / "step_depth.csv", rows)


if __name__ == "__main__":
    main()
