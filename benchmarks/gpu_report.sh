#!/usr/bin/env bash
# GPU evidence for the report, advisor checks and CLI (run on the device machine from the repo root):
#   bash benchmarks/gpu_report.sh
# Writes $OUT/report_h100.tgz (the report folder), $OUT/cli.txt (CLI outputs) and $OUT/pytest_gpu.txt.
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
R="python3 -m roofline.cli"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.mem,power.limit --format=csv | tee $OUT/cli.txt
rm -rf /tmp/rep && $R report examples/llama-2-7b.yaml --gpu reports/h100/calibration.yaml --profile \
    --phase decode --batch 1 --prompt-len 1024 --context-len 1024 --out /tmp/rep 2>&1 | tee -a $OUT/cli.txt
tar czf $OUT/report_h100.tgz -C /tmp rep
{ echo "== roofline profile --plot"; $R profile examples/llama-2-7b.yaml --phase decode --batch 1,8 --context-len 1024 \
    --prompt-len 1024 --plot /tmp/profile.png --iters 5; } 2>&1 | tee -a $OUT/cli.txt
cp /tmp/profile.png $OUT/ 2>/dev/null
{ echo "== roofline calibrate --quick"; $R calibrate --quick; } 2>&1 | tee -a $OUT/cli.txt
python3 -m pytest tests -q -m gpu -p no:cacheprovider 2>&1 | tail -15 | tee $OUT/pytest_gpu.txt
