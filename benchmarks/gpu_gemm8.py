"""The 8-bit tables of the kernel model alone, added to a calibrated spec, each written as soon as it is
measured: calibrate.eight_bit_parts (gemm.fp8 / gemm.int8 (W8A8), gemm.fp8/weight_only / gemm.int8/weight_only:
the reference's QuantWeight paths; attention.decode/kv_fp8: an fp8 cache converted for SDPA, as the reference
reads it) and projection_host_us (calibrate.measure_projection_host: the
8-bit projections' extra eager host cost). The same functions roofline calibrate runs. Parts already in the
spec are measured again.

    OUT=/tmp/out python benchmarks/gpu_gemm8.py reports/h200/calibration.yaml [PART ...]

PART: gemm.fp8, gemm.int8, gemm.fp8/weight_only, gemm.int8/weight_only, attention.decode/kv_fp8,
projection_host_us (default: all).
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
    parts = [(section, key, measure) for (section, key), measure in C.eight_bit_parts(spec).items()]
    parts.append((None, "projection_host_us", lambda: C.measure_projection_host(spec)))
    only = set(sys.argv[2:])  # part names (gemm.fp8, projection_host_us, ...): only those
    for section, key, measure in parts:
        if only and (f"{section}.{key}" if section else key) not in only:
            continue
        t0 = time.perf_counter()
        if section is None:
            raw["measured"][key] = measure()
        else:
            raw["measured"][section][key] = measure()
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        name = f"{section}.{key}" if section else key
        raw["measured"]["conditions"][name] = f"measured {when} by benchmarks/gpu_gemm8.py"
        C.write_spec(raw, out / "calibration.yaml")
        print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
