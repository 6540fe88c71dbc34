#!/usr/bin/env bash
# The tensor-parallel evidence on one host of N GPUs (2, 4 or 8), from the repository root:
#   bash benchmarks/gpu_evidence_tp.sh [N] [STAGE]      N: GPUs (default 2); STAGE (default all):
#     env        the device: nvidia-smi (GPUs, driver, clocks, power), topo -m, nvlink -s; torch, CUDA, NCCL versions
#     calibrate  roofline calibrate --collectives (GPU 0's ceilings and kernel model, then all-reduce, all-gather,
#                reduce-scatter, all-to-all over the N GPUs, 1 KiB - 1 GiB) -> calibration.yaml, collectives.csv
#     profile    the reference models at tp N, every rank profiled, against calibration.yaml (N = 2: Llama-2-7B;
#                N = 4, 8: Llama-3-70B prefill b1 / b64 and decode b1 / b64, Mixtral-8x7B prefill b1, decode b1 / b64)
#     tp1        the Llama cases at tp 1 on GPU 0: the advisor's tp speedup, predicted against achieved
#     cli        roofline profile --tp N and roofline advise through the CLI, with the calibrated spec
#     tests      the GPU tests (tests/test_collectives_gpu.py, test_distributed_gpu.py, test_measure_gpu.py)
#     summary    summary.md from what the stages wrote
#     all        every stage in that order (for N = 4 or 8 more than one 10-minute call: run the stages one by one)
# Files: W=/tmp/roofline_tp${N}_evidence (kept between calls on a warm machine), copied to OUT (default
# ./gpu_evidence_tp_out) after every stage. NVLink multicast (NVLS) stays off in every process: on hosts whose
# NVSwitch fabric is shared it can take the GPUs out of service (roofline's own workers set the same three).
set -u
N=${1:-${NGPU:-2}}
STAGE=${2:-all}
OUT=${OUT:-gpu_evidence_tp_out}
W=${W:-/tmp/roofline_tp${N}_evidence}
mkdir -p "$W" "$OUT"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONPATH=. PYTHONUNBUFFERED=1
PY="python3 benchmarks/gpu_evidence_tp.py --gpus $N --out $W ${DRY:+--dry-run}"  # DRY=1: gloo on the CPU, a tiny model
R="python3 -m roofline.cli"
SPEC="$W/calibration.yaml"

stage() {
  local name=$1
  echo "== $name (N=$N) $(date -u +%FT%TZ)"
  case $name in
    env)
      { nvidia-smi --query-gpu=index,name,pci.bus_id,driver_version,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.draw,power.limit,temperature.gpu,clocks_throttle_reasons.active --format=csv
        nvidia-smi topo -m
        nvidia-smi nvlink -s
        python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'nccl', '.'.join(map(str, torch.cuda.nccl.version())), 'gpus', torch.cuda.device_count())"
        env | grep -E '^(NCCL_|TORCH_SYMM_MEM_|NVSHMEM_|CUDA_VISIBLE)' | sort
      } > "$W/device.txt" 2>&1
      cat "$W/device.txt" ;;
    calibrate) timeout 580 $PY calibrate > "$W/log_calibrate.txt" 2>&1; echo "rc $?"; tail -n 40 "$W/log_calibrate.txt" ;;
    profile) timeout 580 $PY profile > "$W/log_profile.txt" 2>&1; echo "rc $?"
      grep -E "FAILED|step check" -A12 "$W/log_profile.txt" | head -n 60 ;;
    tp1) timeout 580 $PY tp1 > "$W/log_tp1.txt" 2>&1; echo "rc $?"; tail -n 12 "$W/log_tp1.txt" ;;
    cli)
      { if [ "$N" = 2 ]; then M=examples/llama-2-7b.yaml; else M=examples/llama-3-70b.yaml; fi
        echo "\$ roofline profile $M --tp $N --phase decode --batch 1 --prompt-len 1024 --context-len 1024 --gpu $SPEC --cuda-graph"
        timeout 280 $R profile $M --tp $N --phase decode --batch 1 --prompt-len 1024 --context-len 1024 --gpu "$SPEC" --cuda-graph
        echo "rc=$?"
        echo "\$ roofline advise $M --tp 1 --phase decode --batch 1 --prompt-len 1024 --context-len 1024 --cuda-graph --gpu $SPEC"
        timeout 120 $R advise $M --tp 1 --phase decode --batch 1 --prompt-len 1024 --context-len 1024 --cuda-graph --gpu "$SPEC"
        echo "rc=$?"
        ps aux | grep -c "[r]oofline.measure.distributed" | sed 's/^/leftover worker processes: /'
      } > "$W/cli_tp.txt" 2>&1
      tail -n 40 "$W/cli_tp.txt" ;;
    tests) timeout 400 python3 -m pytest tests/test_collectives_gpu.py tests/test_distributed_gpu.py tests/test_measure_gpu.py -v -p no:cacheprovider \
        > "$W/pytest.txt" 2>&1; echo "pytest exit $?" >> "$W/pytest.txt"; tail -n 8 "$W/pytest.txt" ;;
    summary) $PY summary > "$W/log_summary.txt" 2>&1; echo "rc $?"; head -c 6000 "$W/summary.md" ;;
    *) echo "unknown stage $name (env, calibrate, profile, tp1, cli, tests, summary, all)"; exit 2 ;;
  esac
  # what to keep: everything but the profiled-steps traces (large); the trimmed traces beside
  tar czf "$OUT/evidence_tp$N.tar.gz" -C "$W" --exclude='*profiled_steps*' . 2>/dev/null
  cp "$W"/*.md "$W"/*.txt "$W"/*.csv "$W"/*.yaml "$OUT/" 2>/dev/null
  cp "$W"/h200x*_rank*_decode_trace.json.gz "$OUT/" 2>/dev/null
  true
}

if [ "$STAGE" = all ]; then
  for s in env calibrate profile tp1 cli tests summary; do stage $s; done
else
  stage "$STAGE"
fi
ls -la "$OUT" | tail -n 5
