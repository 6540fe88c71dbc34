"""The W8A8 GEMM tables alone (gemm.fp8, gemm.int8: calibrate.measure_gemm_table as the reference's QuantWeight
runs them), added to a calibrated spec, each written as soon as it is measured.

    OUT=/tmp/out python benchmarks/gpu_gemm8.py reports/h200/calibration.yaml
"""

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roofline.measure import calibrate as C  # noqa: E402
from roofline.specs import parse_spec  # noqa: E402
from roofline.validate import load_mapping  # noqa: E402


def main():
    src = Path(sys.argv[1])
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    raw = load_mapping(src, "spec")
    spec = parse_spec(raw, str(src))
    for dtype in C.W8A8_IMPLS:
        if not spec.has_dtype(dtype):
            continue
        t0 = time.perf_counter()
        raw["measured"]["gemm"][dtype] = C.measure_gemm_table(spec, dtype)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        raw["measured"]["conditions"][f"gemm_{dtype}"] = f"measured {when} by benchmarks/gpu_gemm8.py"
        C.write_spec(raw, out / "calibration.yaml")
        print(f"gemm.{dtype}: {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
