"""How long a 10,000-point sweep of a 70B model takes (target: under a second).

    python benchmarks/bench_sweep.py

Prints the wall time of roofline.analyze for sweeps of increasing size, side by side in one run,
best of 3 repeats each, and the number of op rows produced.
"""

import time
from pathlib import Path

import roofline

MODEL = Path(__file__).resolve().parent.parent / "examples" / "llama-3-70b.yaml"


def best_of(n, fn):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main():
    print(f"{'points':>8} {'op rows':>10} {'best of 3 (s)':>14}")
    for n_batch, n_ctx in ((1, 1), (10, 10), (100, 10), (100, 100)):
        sweep = dict(
            batch_size=list(range(1, n_batch + 1)), prompt_len=128, context_len=list(range(1024, 1024 + 64 * n_ctx, 64))
        )
        seconds, result = best_of(3, lambda sweep=sweep: roofline.analyze(MODEL, "h100-sxm", **sweep))
        print(f"{len(result.summary):>8} {len(result.ops):>10} {seconds:>14.3f}")


if __name__ == "__main__":
    main()
