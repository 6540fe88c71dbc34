"""Issue 10 on one GPU, in one call: calibrate the kernel model, then validate the prediction.

    OUT=/tmp/out python benchmarks/gpu_calib_validate.py [--spec h200] [--quick]

1. roofline calibrate's measurements (bandwidth, matmul peaks, launch floor) and its kernel model
   (roofline.measure.calibrate.measure_kernel_model's parts, each timed and logged; a part that fails is
   logged and left out, so one failure does not lose the rest) -> $OUT/calibration.yaml
2. roofline validate over the matrix with that spec -> $OUT/validate-<spec>/ (tarred to
   $OUT/validate.tar.gz: the device returns at most 8 files), then the advisor scored on the
   advice cases of the matrix (validation.score_advice; about 2-3 minutes on an H200)
3. the checks table last on stdout.
Everything is logged to $OUT/log.txt as it happens, so a run cut short still returns what it did.

The advisor alone (no calibration, no per-op matrix), with the committed calibrated spec:

    OUT=/tmp/out python benchmarks/gpu_calib_validate.py --advice-only --skip-calibrate reports/h200/calibration.yaml [--quick]

writes $OUT/advice.csv after each case and $OUT/validate-advice.tar.gz (advice.csv, summary.md, device.json).
"""

import argparse
import os
import sys
import tarfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from roofline import render  # noqa: E402
from roofline.measure import calibrate as C  # noqa: E402
from roofline.predict import describe_host_reference, host_reference_record  # noqa: E402
from roofline.specs import load_spec, parse_spec  # noqa: E402
from roofline.validation import (  # noqa: E402
    ADVICE_CASES,
    ADVICE_TABLE,
    CHECK_TABLE,
    FRESH_EACH_ROUND,
    MATRIX,
    QUICK_MATRIX,
    TIMING_ROUNDS,
    Validation,
    advice_count,
    error_summary,
    score_advice,
    step_table,
    time_matrix,
    validate,
    write_validation,
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default=None, help="shipped spec to extend (default: from the GPU's name)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-calibrate", help="use this calibrated spec instead of measuring one")
    ap.add_argument("--calibrate-only", action="store_true", help="stop after writing calibration.yaml")
    ap.add_argument("--no-advice", action="store_true", help="validate without scoring the advisor")
    ap.add_argument(
        "--recalibrate",
        help="with --skip-calibrate SPEC: measure these kernel-model parts again (comma-separated, e.g. ops) "
        "into a copy of SPEC at $OUT/calibration.yaml, then go on",
    )
    ap.add_argument(
        "--advice-only",
        action="store_true",
        help="only score the advisor (needs --skip-calibrate): no calibration, no per-op matrix",
    )
    ap.add_argument(
        "--fresh-each-round",
        action=argparse.BooleanOptionalAction,
        default=FRESH_EACH_ROUND,
        help="time each round of the matrix's steps in a fresh process of its own (validation.time_matrix; "
        "the default since stop 17); --no-fresh-each-round: all rounds in one process, as before",
    )
    ap.add_argument(
        "--only", help="only these cases of the matrix (comma-separated labels), e.g. to finish a cut-short run"
    )
    args = ap.parse_args()
    if args.advice_only and not args.skip_calibrate:
        ap.error("--advice-only needs --skip-calibrate SPEC (e.g. reports/h200/calibration.yaml)")
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "log.txt", "a", buffering=1)

    def log(line):
        line = f"[{time.strftime('%H:%M:%S')}] {line}"
        print(line, flush=True)
        logf.write(line + "\n")

    log(f"{torch.cuda.get_device_name(0)}; torch {torch.__version__}, CUDA {torch.version.cuda}")
    cal_path = out / "calibration.yaml"
    if args.skip_calibrate and not args.recalibrate:
        cal_path = Path(args.skip_calibrate)
    else:
        t0 = time.perf_counter()
        if args.recalibrate:  # the given spec, with the named parts of its kernel model measured again
            from roofline.validate import load_mapping

            raw = load_mapping(Path(args.skip_calibrate), "spec")
        else:
            raw = C.calibrate(spec=args.spec, quick=args.quick, kernels=False)
        C.write_spec(raw, cal_path)
        log(
            f"ceilings in {time.perf_counter() - t0:.1f} s: { ({k: v for k, v in raw['measured'].items() if k != 'conditions'}) }"
        )
        spec = parse_spec(raw, "<calibrating>")
        parts = C.kernel_model_parts(spec, raw["measured"])
        if args.recalibrate:
            wanted = args.recalibrate.split(",")
            parts = {k: v for k, v in parts.items() if k in wanted}
        t_all = time.perf_counter()
        for key, fn in parts.items():
            t0 = time.perf_counter()
            try:
                value = fn()
            except Exception as exc:  # keep the rest of the run
                log(f"{key}: FAILED {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                logf.write(traceback.format_exc())
                continue
            if key == "ops":
                value, cond = value
                raw["measured"]["conditions"]["ops_measured_on"] = cond
                for copied in ("kernel_gap_us", "graph_replay_us"):
                    if cond.get(copied) is not None:
                        raw["measured"][copied] = cond[copied]
            elif key == "op_tables":
                value, raw["measured"]["conditions"]["op_tables_measured_on"] = value
            if value is None:  # nothing to measure (split_kernel_host_us: no call ran a second kernel)
                log(f"{key}: none ({time.perf_counter() - t0:.1f} s)")
                continue
            raw["measured"][key] = value
            C.write_spec(raw, cal_path)  # after each part: a cut-short run keeps what it measured
            log(f"{key}: {time.perf_counter() - t0:.1f} s")
        if args.recalibrate:
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            cond = raw["measured"]["conditions"]
            earlier = cond.get("recalibrated")  # kept: each recalibration adds its line
            cond["recalibrated"] = (f"{earlier}; " if earlier else "") + f"{args.recalibrate} measured again {when}"
        else:
            raw["measured"]["conditions"]["kernel_model_seconds"] = round(time.perf_counter() - t_all, 1)
            raw["sources"]["measured"] += (
                " Kernel model (roofline/predict.py), measured by benchmarks/gpu_calib_validate.py with the "
                "functions roofline calibrate calls: see measured.conditions and reports/h200/README.md."
            )
        C.write_spec(raw, cal_path)
        log(f"wrote {cal_path}")

    if args.calibrate_only:
        return
    matrix = QUICK_MATRIX if args.quick else MATRIX
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {c[0] for c in MATRIX})
        if unknown:
            ap.error(f"--only: no case {', '.join(unknown)} in the matrix")
        matrix = tuple(c for c in MATRIX if c[0] in wanted)
    if args.advice_only:
        advice_only(str(cal_path), matrix, out, log)
        return
    runs = []
    # every case's step times first, the fastest of TIMING_ROUNDS rounds over the whole matrix (validation.time_matrix)
    t0 = time.perf_counter()
    timed, host = time_matrix(matrix, layers=2, spec=str(cal_path), fresh_each_round=args.fresh_each_round)
    log(
        f"step times of {len(matrix)} cases, {TIMING_ROUNDS} rounds over the matrix"
        f"{', each in a fresh process' if args.fresh_each_round else ''}: {time.perf_counter() - t0:.1f} s"
    )
    if host:
        log(describe_host_reference(host_reference_record(host, load_spec(str(cal_path)))))
    for case, times in zip(matrix, timed):  # one case at a time, the partial tables rewritten after each
        runs.append(
            validate(
                spec=str(cal_path),
                matrix=[case],
                layers=2,
                log=log,
                advice=False,
                timed=[times],
                host_reference=host,
            )
        )
        pd.concat([r.ops for r in runs]).to_csv(out / "partial_ops.csv", index=False)
        pd.concat([r.steps for r in runs]).to_csv(out / "partial_steps.csv", index=False)
    advice, advice_notes = run_advice(str(cal_path), matrix, out, log) if not args.no_advice else (pd.DataFrame(), [])
    v = Validation(
        ops=pd.concat([r.ops for r in runs], ignore_index=True),
        steps=pd.concat([r.steps for r in runs], ignore_index=True),
        clocks=pd.concat([r.clocks for r in runs], ignore_index=True),
        device=runs[-1].device,
        notes=tuple(n for r in runs for n in r.notes) + tuple(advice_notes),
        advice=advice,
    )
    name = f"validate-{v.device['spec']}"
    folder = write_validation(
        v, out / name, command=f"OUT=... python benchmarks/gpu_calib_validate.py {' '.join(sys.argv[1:])}"
    )
    with tarfile.open(out / "validate.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname=name)
    import shutil

    shutil.rmtree(folder)
    for name in ("partial_ops.csv", "partial_steps.csv"):
        (out / name).unlink()
    print(render.text_table(v.steps, step_table(v.steps), False))
    print(render.text_table(error_summary(v.ops, v.steps), CHECK_TABLE, False))
    if len(advice):
        print(render.text_table(advice, ADVICE_TABLE, False))
        print(advice_count(advice))
    log("done")


def run_advice(spec: str, matrix, out: Path, log) -> tuple:
    """The advice cases of ``matrix`` one at a time, $OUT/advice.csv rewritten after each (a cut-short
    run keeps what it scored); each case's rows are logged as they come. Returns (rows, notes)."""
    frames, notes = [], []
    t0 = time.perf_counter()
    for case in ADVICE_CASES:
        try:
            f, n = score_advice(spec, [case], matrix=matrix, layers=2, log=log)
        except Exception as exc:  # keep the other cases
            log(f"advice {case[0]}: FAILED {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            traceback.print_exc()
            continue
        notes.extend(n)
        if len(f):
            frames.append(f)
            pd.concat(frames, ignore_index=True).to_csv(out / "advice.csv", index=False)
    advice = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    log(f"advice: {time.perf_counter() - t0:.1f} s" + (f"; {advice_count(advice)}" if len(advice) else ""))
    return advice, notes


def advice_only(spec: str, matrix, out: Path, log) -> None:
    """--advice-only: the advisor scored, written as a validate folder of its own, tarred."""
    import shutil

    from roofline.measure.nvml import gpu_info

    advice, notes = run_advice(spec, matrix, out, log)
    device = {
        "gpu": torch.cuda.get_device_name(0),
        "spec": "advice",
        "spec_path": spec,
        "spec_calibrated": bool(load_spec(spec).measured_kernels),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "layers": 2,
    }
    device.update({k: v for k, v in gpu_info(0).items() if k != "name"})
    v = Validation(
        ops=pd.DataFrame(),
        steps=pd.DataFrame(),
        clocks=pd.DataFrame(),
        device=device,
        notes=tuple(notes),
        advice=advice,
    )
    command = f"OUT=... python benchmarks/gpu_calib_validate.py {' '.join(sys.argv[1:])}"
    folder = write_validation(v, out / "validate-advice", command=command)
    with tarfile.open(out / "validate-advice.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="validate-advice")
    shutil.rmtree(folder)
    if len(advice):
        print(render.text_table(advice, ADVICE_TABLE, False))
        print(advice_count(advice))
    log("done")


if __name__ == "__main__":
    main()
