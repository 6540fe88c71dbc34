"""What an eager op costs the host as its shape changes, and what a host sync costs: two open questions of
issue 10's eager steps (reports/h200/host-kernels/README.md).

    OUT=/tmp/out python benchmarks/gpu_host_kernels_probe.py [--moe-processes 3]

1. Projections. The calibration prices each op's host cost on a small model (hidden 512), where cuBLAS runs one
   kernel per projection; at hidden 4096 and few tokens it runs two (split-K and a reduction), and the 7-8B
   models' eager decode steps come out 7-12% longer than predicted with the same ops. Per shape (tokens, in,
   out): the host time of one ``F.linear`` call (HOST_CALLS calls issued back to back without a sync, the
   queue never full: the host's own time per call; the fastest of at least 5 windows and 0.5 s), and the
   kernels per call (torch.profiler, after every host timing: a profiler raises later host costs).
2. Host syncs. The MoE expert loop syncs once per expert (torch.where), and its eager decode step has two modes
   (3.8 and 4.2 ms at batch 8) that the sync-free host reference does not see. Per fresh process: the MoE
   model's decode step at batch 8 (2 layers, 5-step windows, as validate times it) and, interleaved round by
   round, the cost of one sync: a GPU wait of about 100 us (torch.cuda._sleep) then ``torch.nonzero`` of a
   small mask, each iteration's wall time less the wait's GPU time (CUDA events), the fastest of 5-step windows
   as the step's; and the host reference's 5-step step. If the sync cost moves with the MoE step's mode and
   the reference does not, the loop's syncs need their own reference.
Writes $OUT/projection_host.csv and $OUT/sync_probe.csv, and prints both.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from roofline.measure.steptime import host_per_call  # noqa: E402

HOST_CALLS = 64
# (label, tokens, in_features, out_features): the projections of the calibration's small model, gpt2 and the
# validate matrix's 7-8B models at decode batch 1 and 8, and one prefill point
SHAPES = [
    ("small q/o", 1, 512, 512),
    ("small k/v", 1, 512, 128),
    ("small gate/up", 1, 512, 1408),
    ("small down", 1, 1408, 512),
    ("gpt2 qkv", 1, 768, 2304),
    ("gpt2 fc", 1, 768, 3072),
    ("gpt2 proj", 1, 3072, 768),
    ("7b q/o", 1, 4096, 4096),
    ("8b k/v", 1, 4096, 1024),
    ("8b gate/up", 1, 4096, 14336),
    ("8b down", 1, 14336, 4096),
    ("7b gate/up", 1, 4096, 11008),
    ("7b down", 1, 11008, 4096),
    ("7b q/o b8", 8, 4096, 4096),
    ("8b down b8", 8, 14336, 4096),
    ("7b q/o b64", 64, 4096, 4096),
    ("7b q/o s512", 512, 4096, 4096),
]


def projections(out: Path) -> None:
    rows, calls = [], {}
    for label, t, k, n in SHAPES:
        x = torch.randn(t, k, device="cuda", dtype=torch.bfloat16)
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        calls[label] = (x, w)
        for _ in range(50):
            F.linear(x, w)
        torch.cuda.synchronize()
    for r in range(3):  # interleaved rounds: the host's slow episodes last seconds
        for label, t, k, n in SHAPES:
            x, w = calls[label]
            rows.append(
                {
                    "round": r,
                    "shape": label,
                    "tokens": t,
                    "in": k,
                    "out": n,
                    "host_us": host_per_call(lambda x=x, w=w: F.linear(x, w), HOST_CALLS) * 1e6,
                }
            )
    frame = pd.DataFrame(rows).groupby(["shape", "tokens", "in", "out"], sort=False)["host_us"].min().reset_index()
    from torch.profiler import ProfilerActivity, profile

    kernels = []
    for label, *_ in SHAPES:
        x, w = calls[label]
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(10):
                F.linear(x, w)
            torch.cuda.synchronize()
        names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        kernels.append({"kernels": len(names) / 10, "kernel_names": "|".join(sorted(set(names)))[:300]})
    frame = pd.concat([frame, pd.DataFrame(kernels)], axis=1)
    frame.to_csv(out / "projection_host.csv", index=False)
    print(frame.drop(columns="kernel_names").round(2).to_string(index=False))


def sync_child(rounds: int) -> list:
    """In a fresh process: per round, the MoE decode step (5-step windows), one sync's cost and the reference."""
    from roofline.config import load_model, parse_workload
    from roofline.measure.calibrate import host_reference_job
    from roofline.measure.reference import build_reference, decode_context
    from roofline.measure.steptime import fastest_window, warm_up
    from roofline.specs import load_spec

    moe_w = parse_workload({"batch_size": 8, "prompt_len": 1024, "context_len": 1024, "phase": "decode"})
    ref_job = host_reference_job(load_spec(str(ROOT / "reports/h200/calibration.yaml")))
    steps = {}
    for name, config, w in (
        ("moe_b8", load_model("mixtral-8x7b"), moe_w),
        ("reference", ref_job["config"], ref_job["workload"]),
    ):
        ref = build_reference(config, w, layers=2, device="cuda", max_context=decode_context(w))
        ref.annotate = False
        steps[name] = ref.make_step("decode", w.prompt_len[0], decode_context(w))
        with torch.no_grad():
            warm_up(steps[name], True)
    mask = torch.zeros(16, 2, dtype=torch.bool, device="cuda")
    mask[3, 1] = True
    cycles = 200_000
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        torch.cuda._sleep(cycles)
    end.record()
    torch.cuda.synchronize()
    sleep_s = start.elapsed_time(end) * 1e-3 / 20

    def synced():
        torch.cuda._sleep(cycles)
        torch.nonzero(mask)  # a host sync, as torch.where in the expert loop

    def no_wait():
        torch.nonzero(mask)

    rows = []
    with torch.no_grad():
        for r in range(rounds):
            row = {"round": r, "sleep_us": sleep_s * 1e6}
            row["moe_b8_us"] = fastest_window(steps["moe_b8"], 5, True) * 1e6
            row["sync_after_wait_us"] = fastest_window(synced, 5, True) * 1e6 - sleep_s * 1e6
            row["sync_idle_us"] = fastest_window(no_wait, 5, True) * 1e6
            row["reference_us"] = fastest_window(steps["reference"], 5, True) * 1e6
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moe-processes", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(sync_child(args.rounds)))
        return
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    projections(out)
    rows = []
    for p in range(args.moe_processes):  # fresh processes: the MoE step's mode may be a process's
        done = subprocess.run(
            [sys.executable, __file__, "--child", "--rounds", str(args.rounds)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            print(f"process {p} failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        rows += [dict(r, process=p) for r in json.loads(done.stdout.strip().splitlines()[-1])]
        pd.DataFrame(rows).to_csv(out / "sync_probe.csv", index=False)
        print(pd.DataFrame(rows).round(1).to_string(index=False), flush=True)


if __name__ == "__main__":
    main()
