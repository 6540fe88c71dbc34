#!/usr/bin/env bash
# The tensor-parallel evidence in one call on a host with 2 GPUs, from the repository root:
#   bash benchmarks/gpu_evidence_tp.sh        (OUT = where the files to keep go; default ./gpu_evidence_tp_out)
# All-reduce calibration + calibrated spec; the 2-layer Llama-2-7B reference at tp 2 (prefill 2048; decode b1 / b64
# at context 1024), every rank profiled; the decode b1 traces trimmed for tests/data; then the GPU tests.
set -u
OUT=${OUT:-gpu_evidence_tp_out}
W=/tmp/roofline_tp_evidence
rm -rf "$W"; mkdir -p "$W" "$OUT"
# NVLink multicast (NVLS) stays off in every process: on shared hosts it can take the GPUs out of service
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONPATH=. PYTHONUNBUFFERED=1
timeout 420 python3 benchmarks/gpu_evidence_tp.py all --out "$W" > "$W/log.txt" 2>&1
echo "gpu_evidence_tp exit $?" >> "$W/log.txt"
# the GPU tests, with the traces just recorded where the CPU join test reads them
cp "$W"/h200x2_rank*_decode_trace.json.gz tests/data/ 2>/dev/null
timeout 150 python3 -m pytest tests/test_distributed_gpu.py tests/test_measure_gpu.py \
  tests/test_distributed_cpu.py::test_committed_h200x2_traces_join_every_nccl_kernel_to_its_collective \
  -v -p no:cacheprovider > "$W/pytest.txt" 2>&1
echo "pytest exit $?" >> "$W/pytest.txt"
cp "$W/summary.md" "$W/log.txt" "$W/pytest.txt" "$W/calibration.yaml" "$OUT/" 2>/dev/null
cp "$W"/h200x2_rank*_decode_trace.json.gz "$OUT/" 2>/dev/null
tar czf "$OUT/evidence.tar.gz" -C "$W" --exclude='*profiled_steps*' .
ls -la "$OUT"
grep -E "^\[|FAILED|Error" "$W/log.txt" | grep -v "^\[.*note:" | grep -v "^\[.*clocks" | tail -n 30
tail -n 8 "$W/pytest.txt"
sed -n '/^## decode_b1: coll/,/^## Steps/p' "$W/summary.md" | head -c 3000
