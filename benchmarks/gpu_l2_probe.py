"""Probe (issue 10, gpt2 decode in a CUDA graph): do the small kernels of a decode step run slower when the
step's weights do not fit in the L2?

Stop 10's validate: gpt2 (two layers, vocabulary 50257, tied head: about 79 MB of weights read per step) at
decode batch 1 ran its LayerNorms 3.3 µs and its d64 attention 6.6 µs, where the calibration's one- and
two-layer models (vocabulary 32000 at hidden 512-768: 33-49 MB, inside the H200's 50 MB L2) measured 2.4 and
3.6 µs. This profiles the same decode step with the vocabulary changed only, one model family at a time:
gpt2-768 (validate's small model) at 50257 and 8192, the calibration's gpt2-style model (hidden 512) and its
llama-style op-cost model (SMALL_MODEL) each at 32000 and 131072. Per op: kernel time per call (profiler),
kernels per call; per model: the eager, graph and pipelined-graph step (fresh process) and the kernel sum.

    OUT=/tmp/out python benchmarks/gpu_l2_probe.py   # -> $OUT/l2_probe_ops.csv, $OUT/l2_probe_steps.csv
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roofline.config import Workload, load_model, parse_model  # noqa: E402
from roofline.io import write_rows  # noqa: E402
from roofline.measure import calibrate as C  # noqa: E402

GPT2 = {"name": "gpt2", "model_type": "gpt2", "n_embd": 768, "n_layer": 2, "n_head": 12, "n_positions": 1024}
GPT2.update({"activation_function": "gelu_new", "layer_norm_epsilon": 1e-5})


def models():
    base = load_model(ROOT / "examples" / "gpt2.yaml")
    assert base.hidden_size == 768
    for vocab in (50257, 8192):
        yield "gpt2-768", vocab, parse_model(dict(GPT2, vocab_size=vocab), f"gpt2-768-v{vocab}"), 512
    small_gpt2 = {"model_type": "gpt2", "n_embd": 512, "n_layer": 1, "n_head": 8, "n_positions": 8192}
    small_gpt2["activation_function"] = "gelu_new"
    for vocab in (32000, 131072):
        yield "gpt2-512", vocab, parse_model(dict(small_gpt2, vocab_size=vocab), f"gpt2-512-v{vocab}"), 128
    for vocab in (32000, 131072):
        yield "llama-512", vocab, parse_model(dict(C.SMALL_MODEL, vocab_size=vocab), f"llama-512-v{vocab}"), 128


def main():
    out = Path(os.environ.get("OUT", "out"))
    out.mkdir(parents=True, exist_ok=True)
    op_rows, step_rows = [], []
    for family, vocab, model, ctx in models():
        w = Workload(batch_size=(1,), prompt_len=(ctx,), context_len=(ctx,), phase="decode")
        ops, step = C.profiled(model, w, "h200", layers=2, warmup=5, iters=10, timing_iters=50, timing_rounds=2)
        for r in ops.itertuples(index=False):
            op_rows.append(
                {
                    "family": family,
                    "vocab": vocab,
                    "op": r.op,
                    "calls": r.calls,
                    "kernels": r.n_kernels,
                    "kernel_us": round(r.gpu_time_s * 1e6, 3),
                }
            )
        row = {"family": family, "vocab": vocab}
        for key in ("kernel_time_ref_s", "eager_step_ref_s", "graph_step_ref_s", "graph_pipelined_ref_s"):
            v = step.get(key)
            row[key.replace("_ref_s", "_us")] = round(float(v) * 1e6, 2) if v == v and v is not None else None
        step_rows.append(row)
        print(row, flush=True)
        for r in op_rows[-len(ops) :]:
            print("   ", r, flush=True)
    write_rows(out / "l2_probe_ops.csv", op_rows)
    write_rows(out / "l2_probe_steps.csv", step_rows)


if __name__ == "__main__":
    main()
