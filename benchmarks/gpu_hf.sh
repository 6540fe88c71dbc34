#!/usr/bin/env bash
# Hugging Face transformers models measured live on one GPU: `roofline profile --impl transformers`
# (roofline.capture: module ranges, kernels on the analytic rows, beside the prediction), the same
# trace re-read by `roofline trace --model`, and two independent joins of it. Writes
# reports/h200-hf-<case>-live/ (profile.json, roofline.png/svg, hf_trace.json.gz, trace_model.md: the
# per-op table of the same trace, independent_join.txt, capture_join.txt, commands.txt). Then the GPU tests.
#
#   bash benchmarks/gpu_hf.sh            # on the H200, from the repository root, with roofline[hf] installed
set -euo pipefail
OUT=${OUT:-reports}
PY=${PY:-python}
CASES=(
  "llama-2-7b|examples/llama-2-7b.yaml|--batch 1 --prompt-len 2048"
  "llama-3-8b-b8|examples/llama-3-8b.yaml|--batch 8 --prompt-len 512"
  "mixtral-8x7b|examples/mixtral-8x7b.yaml|--batch 1 --prompt-len 512"
)
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, torch.cuda.get_device_name(0))"
for entry in "${CASES[@]}"; do
  IFS='|' read -r case model flags <<< "$entry"
  dir="$OUT/h200-hf-$case-live"
  mkdir -p "$dir"
  cmd="roofline profile $model --impl transformers $flags --gen-tokens 8 --trace-dir $dir --format json --output $dir/profile.json --plot $dir/roofline.png"
  echo "$cmd" > "$dir/commands.txt"
  # shellcheck disable=SC2086
  $PY -m roofline.cli profile "$model" --impl transformers $flags --gen-tokens 8 --trace-dir "$dir" \
      --format json --output "$dir/profile.json" --plot "$dir/roofline.png" 2> "$dir/profile.stderr.txt"
  echo "roofline trace $dir/hf_trace.json.gz --model $model --format markdown" >> "$dir/commands.txt"
  $PY -m roofline.cli trace "$dir/hf_trace.json.gz" --model "$model" --format markdown --output "$dir/trace_model.md"
  echo "python benchmarks/hf_independent_join.py $dir/hf_trace.json.gz $model" >> "$dir/commands.txt"
  $PY benchmarks/hf_independent_join.py "$dir/hf_trace.json.gz" "$model" > "$dir/independent_join.txt"
  echo "python benchmarks/hf_capture_join.py $dir/hf_trace.json.gz $model" >> "$dir/commands.txt"
  $PY benchmarks/hf_capture_join.py "$dir/hf_trace.json.gz" "$model" > "$dir/capture_join.txt" || echo "capture join over 5%: see $dir/capture_join.txt"
  tail -n 1 "$dir/capture_join.txt"
done
$PY -m pytest -q -m gpu tests/test_capture_cpu.py tests/test_attribute.py
