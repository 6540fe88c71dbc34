#!/usr/bin/env bash
# The multi-GPU CLI end to end on a 2-GPU machine (NVLink multicast off), from the repo root:
#   bash benchmarks/gpu_cli_tp.sh
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-/tmp/out}
R="python3 -m roofline.cli"
{
echo "== roofline profile --tp 2"
$R profile examples/llama-2-7b.yaml --tp 2 --phase decode --batch 8 --prompt-len 1024 --context-len 1024 \
   --gpu reports/h200x2/calibration.yaml --plot $OUT/profile_tp2.png
echo "rc=$?"
echo "== roofline calibrate --collectives --quick"
$R calibrate --collectives --quick --output /tmp/cal.yaml
echo "rc=$?"
echo "== roofline profile --tp 4 on 2 GPUs (must fail cleanly)"
$R profile examples/llama-2-7b.yaml --tp 4 --phase decode
echo "rc=$?"
ps aux | grep -c "[r]oofline.measure.distributed" | sed 's/^/leftover worker processes: /'
} 2>&1 | tee $OUT/cli_tp.txt
