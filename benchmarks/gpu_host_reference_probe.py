"""Does the host reference track the host as the matrix's eager steps see it, and does the host cost per op grow
with the model? Two questions issue 10 left open (reports/validate-h200/host-reference/README.md).

    OUT=/tmp/out python benchmarks/gpu_host_reference_probe.py [--rounds 8] [--device cuda]

Run it as a fresh process: it never starts the profiler, so its launches cost what a user's do
(roofline/measure/steptime.py says why that matters). Models, each two layers, decode at batch 1 (host-bound):
the host reference (calibrate.host_reference_job: the small llama-style model with the cold vocabulary), gpt2,
Llama-2-7B (context 512) and Llama-3-8B (context 128), as validate's matrix runs them. Per round, each model in
turn, timed four ways (steptime.fastest_window, at least 5 windows and 1 s each):
  synced_5, synced_50   the step synced after every step, windows of 5 and of 50 steps (validate times its cases
                        with 5, the calibration its reference with 50)
  issue_5, issue_50     back to back, synced once per window: with the GPU faster than the host, the host's
                        time to issue one step (its Python, dispatch and launches), without the tail or wake-up
Writes $OUT/host_reference_probe.csv (round, model, way, step_us) and prints, per model, the median over rounds
and each way's correlation with the host reference's same way over the rounds. Each way takes at least 1 s, so a
round takes at least 16 s plus the models' builds. The reference and the two Llama models run the same ops per
step (15 a layer and 3 outside), so their issue_* times compare host cost per op directly. Run on an H200 in stop 14 (8 rounds, 158 s):
reports/h200/host-reference/probe.csv and probe_log.txt, read in reports/h200/README.md (session 7). `--device
cpu` runs the same code (3 rounds in about 9 minutes on this project's CPU machine, with CPU times that mean
nothing for the questions above).

What the answers decide:
- If the reference's synced_5 follows the cases' synced_5 round to round better than its synced_50 does, time
  the reference with the cases' window, in calibration and validation both (then --recalibrate ops).
- If issue_* per op is larger on the 7-8B models than on the reference, a model's host cost per op grows with
  its size, and the calibration's per-op host costs (scaled to the small model) under-predict large models'
  eager steps: the in-sample -5 to -9% of eager decode at batch 1.
"""

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from roofline.config import load_model, parse_workload  # noqa: E402
from roofline.measure.calibrate import host_reference_job  # noqa: E402
from roofline.measure.reference import build_reference, decode_context  # noqa: E402
from roofline.measure.steptime import fastest_window, warm_up  # noqa: E402
from roofline.specs import load_spec  # noqa: E402

WAYS = (("synced_5", 5, True), ("synced_50", 50, True), ("issue_5", 5, False), ("issue_50", 50, False))
CASES = (("gpt2", 512, 512), ("llama-2-7b", 512, 512), ("llama-3-8b", 128, 128))


def models(spec, device: str) -> list:
    """(name, config, workload) of the reference and CASES (examples/NAME.yaml), each at decode batch 1."""
    ref = host_reference_job(spec)
    out = [("reference", ref["config"], ref["workload"])]
    for name, prompt, context in CASES:
        w = parse_workload({"batch_size": 1, "prompt_len": prompt, "context_len": context, "phase": "decode"})
        out.append((name, load_model(name), w))
    return out


def time_model(config, workload, device: str) -> dict:
    """{way: seconds per step} of two layers of ``config`` at ``workload``'s point, after ``warm_up``."""
    cuda = torch.device(device).type == "cuda"
    with torch.no_grad():
        ref = build_reference(config, workload, layers=2, device=device, max_context=decode_context(workload))
        ref.annotate = False
        step = ref.make_step("decode", workload.prompt_len[0], decode_context(workload))
        warm_up(step, cuda)
        out = {way: fastest_window(step, iters, cuda, sync_each=synced) for way, iters, synced in WAYS}
        del ref, step
    if cuda:
        torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--spec", default="reports/h200/calibration.yaml", help="its L2 sets the cold vocabulary")
    args = ap.parse_args()
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    todo = models(load_spec(args.spec), args.device)
    rows = []
    for r in range(args.rounds):
        for name, config, workload in todo:
            for way, seconds in time_model(config, workload, args.device).items():
                rows.append({"round": r, "model": name, "way": way, "step_us": round(seconds * 1e6, 2)})
            print(f"round {r} {name}: " + ", ".join(f"{x['way']} {x['step_us']:.0f}" for x in rows[-len(WAYS) :]))
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "host_reference_probe.csv", index=False)
    wide = frame.pivot_table(index="round", columns=["model", "way"], values="step_us")
    for name, _, _ in todo:
        parts = []
        for way, _, _ in WAYS:
            x, ref = wide[(name, way)], wide[("reference", way)]
            corr = np.corrcoef(x, ref)[0, 1] if len(x) > 2 and x.std() > 0 and ref.std() > 0 else float("nan")
            parts.append(f"{way} {x.median():.0f} µs (r with reference {corr:+.2f})")
        print(f"{name}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
