"""Is a slow eager step a property of the time (the host's episode) or of the process that timed it?

    OUT=/tmp/out python benchmarks/gpu_process_rounds.py [--rounds 3] [--spec SPEC]

validate times every case in one fresh process, the fastest of three rounds about a minute apart
(steptime.time_with_reference). In stop 16's two runs single cases ran 13-23% slow through all three rounds
(reports/validate-h200/depth). Either the host was slow for minutes at a time, or something of the process
made that case slow in it. This probe tells the two apart: two persistent worker processes, A and B, take
turns, one round each (A1 B1 A2 B2 ...; only one runs at a time), each round the host reference and the
matrix's 2-layer eager decode cases (the eager step only, as steptime.time_steps_here times it). A slow
episode slows A's and B's rounds alike around it; a slow process slows its own rounds, all of them, and not
the other's interleaved ones.

Writes $OUT/process_rounds.csv (process, round, case, start_s, eager_us) and prints per case the fastest
round of each process, their ratio, and the spread of each process's rounds.
"""

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

CASES = (
    "mha-decode-b1-c512",
    "mha-decode-b64-c2048",
    "mha-decode-b16-c32k",
    "gqa-decode-b1-c128",
    "gqa-decode-b256-c1024",
    "gqa-decode-b8-c32k",
    "moe-decode-b8-c1024",
    "small-decode-b1-c512",
    "small-decode-b64-c1024",
)


def worker(conn, device: str) -> None:
    """One process: receives a list of (label, job), times each job's eager step, sends [(label, start_s, us)]."""
    import torch  # noqa: F401 - the CUDA context once, as steptime's child makes it

    from roofline.measure.steptime import time_steps_here

    while True:
        jobs = conn.recv()
        if jobs is None:
            return
        out = []
        for label, job in jobs:
            t0 = time.time()
            r = time_steps_here(
                job["config"], job["workload"], job["layers"], job["timing_iters"], device, time_graph=False
            )
            phase = next(iter(r))
            out.append((label, t0, r[phase]["eager_s"] * 1e6))
        conn.send(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the probe's plumbing")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated cases of validation.MATRIX")
    ap.add_argument("--spec", default=str(ROOT / "reports/validate-h200/depth/calibration.yaml"))
    args = ap.parse_args()
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)

    from roofline.measure.calibrate import recorded_reference_job
    from roofline.specs import load_spec
    from roofline.validation import MATRIX, case_job

    jobs = [("host-reference", recorded_reference_job(load_spec(args.spec)))]
    jobs += [(case[0], case_job(case)) for case in MATRIX if case[0] in args.cases.split(",")]

    ctx = mp.get_context("spawn")
    procs = {}
    for name in ("A", "B"):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=worker, args=(child, args.device), daemon=True)
        p.start()
        procs[name] = (p, parent)
    rows, t_start = [], time.time()
    for r in range(1, args.rounds + 1):
        for name, (_, conn) in procs.items():
            conn.send(jobs)
            for label, t0, us in conn.recv():
                rows.append(
                    {
                        "process": name,
                        "round": r,
                        "case": label,
                        "start_s": round(t0 - t_start, 2),
                        "eager_us": round(us, 2),
                    }
                )
                print(f"{name}{r} {label:24s} {t0 - t_start:7.1f} s {us:9.1f} us", flush=True)
            pd.DataFrame(rows).to_csv(out / "process_rounds.csv", index=False)
    for _, conn in procs.values():
        conn.send(None)
    for p, _ in procs.values():
        p.join(timeout=30)

    df = pd.DataFrame(rows)
    best = df.pivot_table(index="case", columns="process", values="eager_us", aggfunc="min")
    spread = df.groupby(["case", "process"])["eager_us"].agg(lambda s: s.max() / s.min() - 1).unstack()
    table = pd.DataFrame(
        {
            "A_fastest_us": best["A"],
            "B_fastest_us": best["B"],
            "B/A": best["B"] / best["A"],
            "A_rounds_spread": spread["A"],
            "B_rounds_spread": spread["B"],
        }
    ).reindex([label for label, _ in jobs])
    print(table.round(3).to_string())


if __name__ == "__main__":
    main()
