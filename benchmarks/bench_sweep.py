"""How long a sweep of a 70B model takes, and how much memory `roofline analyze` needs to write it.

    python benchmarks/bench_sweep.py            # both parts
    python benchmarks/bench_sweep.py --speed    # only the wall time of analyze()
    python benchmarks/bench_sweep.py --memory   # only peak memory, 10k / 100k / 1M points

Speed: the wall time of roofline.analyze for sweeps of increasing size, best of 3 repeats each, and
the number of op rows produced (target: 10,000 points in under a second).

Memory: what `roofline analyze MODEL --gpu h100-sxm --batch ... --context-len ... --format csv
--summary -o FILE` needs, each size in a fresh process, two ways:
  whole:    analyze() builds the whole grid's frames, then the CSV is written a slice at a time (the
            command before sweeps were streamed);
  streamed: the grid analysed a chunk of roofline.sweep.POINTS_PER_CHUNK points at a time
            (roofline.sweep.iter_analysis), each chunk's rows written before the next is built (the
            command now).
Peak RSS is the child's own ru_maxrss (Linux: KiB); the CSV goes to a temporary file that is removed.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "llama-3-70b.yaml"
# points = batches x contexts, both phases, prompt 128
MEMORY_SIZES = {10_000: (100, 100), 100_000: (1000, 100), 1_000_000: (1000, 1000)}


def best_of(n, fn):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def speed():
    import roofline

    print(f"{'points':>8} {'op rows':>10} {'best of 3 (s)':>14}")
    for n_batch, n_ctx in ((1, 1), (10, 10), (100, 10), (100, 100)):
        sweep = dict(
            batch_size=list(range(1, n_batch + 1)), prompt_len=128, context_len=list(range(1024, 1024 + 64 * n_ctx, 64))
        )
        seconds, result = best_of(3, lambda sweep=sweep: roofline.analyze(MODEL, "h100-sxm", **sweep))
        print(f"{len(result.summary):>8} {len(result.ops):>10} {seconds:>14.3f}")


CHILD = """
import json, resource, sys, time
from roofline import io, render
from roofline.errors import RooflineError
mode, model, n_batch, n_ctx, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
flags = dict(batch_size=f"1:{n_batch}", prompt_len=128, context_len=f"1024:{1024 + 64 * (n_ctx - 1)}:64")
start = time.perf_counter()
try:
    if mode == "whole":
        from roofline.analysis import analyze
        io.write_chunks(out, render.csv_chunks(analyze(model, "h100-sxm", **flags).summary))
    else:
        from roofline.sweep import iter_analysis
        io.write_chunks(out, render.csv_frames(a.summary for a in iter_analysis(model, "h100-sxm", **flags)))
    error = None
except RooflineError as exc:  # the whole-frame path refuses a grid beyond analysis.MAX_ROWS
    error = str(exc).split(";")[0]
seconds = time.perf_counter() - start
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mib": peak_mib, "error": error}))
"""


def memory(sizes=MEMORY_SIZES):
    print(f"{'points':>10} {'mode':>9} {'peak RSS (MiB)':>15} {'wall (s)':>9} {'CSV rows':>10}")
    for points, (n_batch, n_ctx) in sizes.items():
        for mode in ("whole", "streamed"):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "summary.csv"
                env = {**os.environ, "PYTHONPATH": str(ROOT)}
                args = [sys.executable, "-c", CHILD, mode, str(MODEL), str(n_batch), str(n_ctx), str(out)]
                done = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
                r = json.loads(done.stdout.strip().splitlines()[-1])
                rows = sum(1 for _ in out.open()) - 1 if out.exists() else 0
            if r["error"]:
                print(f"{points:>10,} {mode:>9} {r['peak_mib']:>15,.0f} {r['seconds']:>9.1f} refused: {r['error']}")
            else:
                print(f"{points:>10,} {mode:>9} {r['peak_mib']:>15,.0f} {r['seconds']:>9.1f} {rows:>10,}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true", help="only the wall time of analyze()")
    parser.add_argument("--memory", action="store_true", help="only the peak memory of writing a sweep")
    args = parser.parse_args()
    # memory first: a child's ru_maxrss starts from its parent's peak (Linux keeps it across fork and exec), so
    # the children must be spawned before speed() grows this process to hundreds of MiB
    if args.memory or not args.speed:
        memory()
    if args.speed or not args.memory:
        if not args.speed:
            print()
        speed()


if __name__ == "__main__":
    main()
