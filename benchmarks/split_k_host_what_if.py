"""What pricing the second kernel of a split-K projection would do to the eager decode steps of every committed
validate run: a what-if on committed measurements, no GPU, before the calibration measures it (issue 10).

    python benchmarks/split_k_host_what_if.py [--host-us 4.0]

cuBLAS runs the 7-8B models' q, k, v, o and down projections at up to 8 tokens as two kernels (split-K and a
reduction), where the calibration's small model runs every projection as one; each such call costs the host
about 4 us more (reports/h200/host-kernels/projection_host.csv: 18.2-19.0 against 14.2-15.2 us per call). Per
dense eager decode case of each run: the extra kernels the profiler counted in its projections (ops.csv
n_kernels - 1, times the op's count), the committed error, and the error with ``--host-us`` added per extra
kernel to the predicted step (additively: the steps that gain are host-bound, where the host's time is the
step's). Prints the median and worst per case and the worst per run. The MoE cases are left out: their loop
has its own kernel count (reports/validate-h200/window5/README.md).
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "reports" / "validate-h200"
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def folders() -> list:
    """Every committed run of the whole matrix (or of its decode cases) that has steps.csv and ops.csv."""
    found = [RUNS] + sorted(p for sub in ("repeats", "host-reference", "window5") for p in (RUNS / sub).glob("*"))
    return [p for p in found if (p / "steps.csv").is_file() and (p / "ops.csv").is_file()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host-us", type=float, default=4.0, help="host time of one extra projection kernel, µs")
    args = ap.parse_args()
    rows = []
    for folder in folders():
        steps, ops = pd.read_csv(folder / "steps.csv"), pd.read_csv(folder / "ops.csv")
        eager = steps[(steps["mode"] == "eager") & (steps["phase"] == "decode") & (steps["model"] != "mixtral-8x7b")]
        for r in eager.itertuples(index=False):
            o = ops[(ops["case"] == r.case) & ops["op"].isin(PROJECTIONS)]
            extra = float(((o["n_kernels"] - 1.0).clip(lower=0.0) * o["count"]).sum())
            adjusted = r.predicted_step_s + extra * args.host_us * 1e-6
            run = folder.relative_to(RUNS).as_posix() if folder != RUNS else "committed"
            rows.append(
                {
                    "run": run,
                    "case": r.case,
                    "extra_kernels": extra,
                    "error": r.error,
                    "error_priced": adjusted / r.measured_step_s - 1.0,
                }
            )
    if not rows:
        sys.exit("no committed validate runs found under reports/validate-h200")
    d = pd.DataFrame(rows)
    by_case = d.groupby("case").agg(
        extra_kernels=("extra_kernels", "median"),
        error_median=("error", "median"),
        priced_median=("error_priced", "median"),
        error_worst=("error", "min"),
        priced_worst=("error_priced", "min"),
    )
    print(f"dense eager decode steps of {d['run'].nunique()} runs, {args.host_us:g} µs per extra projection kernel")
    print((by_case * [1, 100, 100, 100, 100]).round(1).to_string())
    worst = d.assign(error=d["error"].abs(), error_priced=d["error_priced"].abs()).groupby("run", sort=False)
    print("\nworst |error| per run, %: as committed, priced")
    print((worst[["error", "error_priced"]].max() * 100).round(1).T.to_string())


if __name__ == "__main__":
    main()
