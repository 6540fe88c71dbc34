"""Time the parts of roofline calibrate's kernel model one by one (issue 10: calibrate in at most 5 minutes).

Session 4 ran this body inline, after `roofline calibrate` stopped at the attention tables (the bug fixed with
it), to time the parts after that point and check the attention tables against the committed ones:

    OUT=/tmp/out python benchmarks/gpu_calibrate_parts.py attention projection_host_us kernel_min_us bandwidth_curve

-> $OUT/parts_log.txt (reports/h200/calibrate_wall_time_stop11.txt quotes it). Parts: calibrate.kernel_model_parts.
"""

import json
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
    out_dir = Path(os.environ.get("OUT", "out"))
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = load_mapping(ROOT / "reports" / "h200" / "calibration.yaml", "spec")
    parts = C.kernel_model_parts(parse_spec(raw, "x"), raw["measured"])
    out = {}
    for key in sys.argv[1:] or list(parts):
        t0 = time.perf_counter()
        out[key] = parts[key]()
        print(f"{time.strftime('%H:%M:%S')} {key}: {time.perf_counter() - t0:.1f} s", flush=True)
    committed = raw["measured"]
    if "attention" in out:
        a, c = out["attention"], committed["attention"]
        for table, label, row in (("prefill", "prefill d128 row 512", 2), ("prefill/d64", "prefill/d64 row 512", 2)):
            print(f"{label}:", a[table]["efficiency"][row], "committed:", c[table]["efficiency"][row])
        print("decode row 2MB:", a["decode"]["efficiency"][1], "committed:", c["decode"]["efficiency"][1])
        (out_dir / "attention_check.json").write_text(json.dumps(a))
    if "projection_host_us" in out:
        print("projection_host_us:", out["projection_host_us"], "committed:", committed["projection_host_us"])


if __name__ == "__main__":
    main()
