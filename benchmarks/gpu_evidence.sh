#!/usr/bin/env bash
# The H100 evidence in one call on the GPU machine, from the repository root:
#   bash benchmarks/gpu_evidence.sh        (OUT = where the files to keep go; default ./gpu_evidence_out)
# Calibrates, profiles the 2-layer Llama-2-7B reference (prefill 2048; decode b1 / b64 at context 1024),
# runs Nsight Compute on the batch-1 decode step, then the GPU tests. Everything lands in $OUT.
set -u
OUT=${OUT:-gpu_evidence_out}
W=/tmp/roofline_evidence
rm -rf "$W"; mkdir -p "$W" "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1
python3 benchmarks/gpu_evidence.py all --out "$W" > "$W/log.txt" 2>&1; echo "gpu_evidence exit $?" >> "$W/log.txt"
python3 -m pytest tests/test_measure_gpu.py tests/test_reference_cpu.py -v -p no:cacheprovider > "$W/pytest.txt" 2>&1
echo "pytest exit $?" >> "$W/pytest.txt"
cp "$W/calibration.yaml" "$OUT/" 2>/dev/null
cp "$W/traces/prefill/prefill_trace.json.gz" "$OUT/h100_prefill_trace.json.gz" 2>/dev/null
cp "$W/traces/decode_b1/decode_trace.json.gz" "$OUT/h100_decode_trace.json.gz" 2>/dev/null
cp "$W/log.txt" "$W/pytest.txt" "$OUT/"
tar czf "$OUT/evidence.tar.gz" -C "$W" --exclude='*profiled_steps*' .
ls -la "$OUT"
grep -E "^\[|FAILED|Error" "$W/log.txt" | grep -v "^\[.*note:" | tail -n 40
tail -n 25 "$W/pytest.txt"
sed -n '/^## Steps/,/^## prefill/p' "$W/summary.md" 2>/dev/null | head -c 4000
sed -n '/^## ncu/,$p' "$W/summary.md" 2>/dev/null | head -c 3500
