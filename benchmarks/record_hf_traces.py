"""Record torch.profiler traces of Hugging Face transformers models, as a user would, for `roofline trace --model`.

Each case builds the HF implementation from one of our model files (examples/*.yaml use config.json key names)
with random weights in bf16 on the GPU (sdpa attention), runs one prefill and N greedy decode steps through the
model's own forward and cache (DynamicCache, or StaticCache for the compiled cases), and writes the Chrome trace
(record_shapes=True) as CASE.json.gz, plus one line per case in cases.json (model, batch, prompt, decode steps,
wall times, the transformers/torch versions). A warm-up pass runs before the profiled one.

  python benchmarks/record_hf_traces.py --out DIR [--cases llama-2-7b,llama-3-8b-b8,...] [--device cuda]

Cases (name: model file, batch, prompt, decode steps, mode):
  tiny-llama         2-layer Llama (hidden 256), batch 2, prompt 32, 4 steps, eager: small enough to commit whole
  tiny-mixtral       2-layer Mixtral (4 experts, top 2), batch 2, prompt 32, 4 steps, eager
  llama-2-7b         examples/llama-2-7b.yaml, batch 1, prompt 2048, 8 steps, eager (MHA)
  llama-3-8b-b8      examples/llama-3-8b.yaml, batch 8, prompt 512, 8 steps, eager (GQA)
  mixtral-8x7b       examples/mixtral-8x7b.yaml, batch 1, prompt 512, 8 steps, eager (MoE)
  llama-3-8b-compile 4 layers of Llama-3-8B, batch 4, prompt 256, 8 steps, torch.compile (default mode)
  llama-3-8b-graph   4 layers of Llama-3-8B, batch 4, prompt 256, 8 steps, StaticCache, each decode step one
                     replay of a CUDA graph captured from the HF forward (torch.cuda.CUDAGraph, gpt-fast style;
                     torch.compile's "reduce-overhead" skips cudagraphs here: StaticCache mutates its inputs)
"""

import argparse
import gzip
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY_LLAMA = {
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "vocab_size": 1024,
    "hidden_act": "silu",
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
    "name": "tiny-llama",
}
TINY_MIXTRAL = dict(TINY_LLAMA, model_type="mixtral", num_local_experts=4, num_experts_per_tok=2, name="tiny-mixtral")
CASES = {
    "tiny-llama": (TINY_LLAMA, 2, 32, 4, "eager", None),
    "tiny-mixtral": (TINY_MIXTRAL, 2, 32, 4, "eager", None),
    "llama-2-7b": ("examples/llama-2-7b.yaml", 1, 2048, 8, "eager", None),
    "llama-3-8b-b8": ("examples/llama-3-8b.yaml", 8, 512, 8, "eager", None),
    "mixtral-8x7b": ("examples/mixtral-8x7b.yaml", 1, 512, 8, "eager", None),
    "llama-3-8b-compile": ("examples/llama-3-8b.yaml", 4, 256, 8, "compile", 4),
    "llama-3-8b-graph": ("examples/llama-3-8b.yaml", 4, 256, 8, "graph", 4),
}
NOT_HF = {"name", "workload"}


def hf_config(source, layers=None):
    from transformers import AutoConfig

    raw = dict(source) if isinstance(source, dict) else yaml.safe_load((ROOT / source).read_text())
    keys = {k: v for k, v in raw.items() if k not in NOT_HF and v is not None}
    if layers:
        keys["num_hidden_layers"] = layers
    cfg = AutoConfig.for_model(keys.pop("model_type"), **keys)
    cfg._attn_implementation = "sdpa"
    return cfg, raw.get("name", "model")


def build(cfg, device):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16, attn_implementation="sdpa")
    return model.eval()


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def generate(model, cfg, batch, prompt, steps, device, cache):
    """One prefill, then ``steps`` greedy decode steps through the model's forward and cache."""
    ids = torch.randint(0, cfg.vocab_size, (batch, prompt), device=device)
    times = []
    with torch.no_grad():
        t0 = time.perf_counter()
        out = model(input_ids=ids, past_key_values=cache(), use_cache=True)
        nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
        sync(device)
        times.append(time.perf_counter() - t0)
        past = out.past_key_values
        for i in range(steps):
            t0 = time.perf_counter()
            pos = torch.full((batch, 1), prompt + i, device=device, dtype=torch.long)
            out = model(input_ids=nxt, past_key_values=past, use_cache=True, position_ids=pos, cache_position=pos[0])
            nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
            past = out.past_key_values
            sync(device)
            times.append(time.perf_counter() - t0)
    return times


def generate_graph(model, cfg, batch, prompt, steps, device, cache):
    """Prefill eagerly into a StaticCache, then replay one captured CUDA graph per decode step."""
    ids = torch.randint(0, cfg.vocab_size, (batch, prompt), device=device)
    times = []
    with torch.no_grad():
        past = cache()
        t0 = time.perf_counter()
        out = model(
            input_ids=ids, past_key_values=past, use_cache=True, cache_position=torch.arange(prompt, device=device)
        )
        nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
        sync(device)
        times.append(time.perf_counter() - t0)
        static_ids = nxt.clone()
        static_pos = torch.full((1,), prompt, device=device, dtype=torch.long)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm the decode path once outside the graph
            model(
                input_ids=static_ids,
                past_key_values=past,
                use_cache=True,
                cache_position=static_pos,
                position_ids=static_pos.expand(batch, 1),
            )
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = model(
                input_ids=static_ids,
                past_key_values=past,
                use_cache=True,
                cache_position=static_pos,
                position_ids=static_pos.expand(batch, 1),
            )
        for i in range(steps):
            t0 = time.perf_counter()
            static_ids.copy_(nxt)
            static_pos.fill_(prompt + i)
            graph.replay()
            nxt = static_out.logits[:, -1, :].argmax(-1, keepdim=True)
            sync(device)
            times.append(time.perf_counter() - t0)
    return times


def run_case(name, out_dir: Path, device: str) -> dict:
    source, batch, prompt, steps, mode, layers = CASES[name]
    cfg, model_name = hf_config(source, layers)
    t_build = time.perf_counter()
    model = build(cfg, device)
    sync(device)
    t_build = time.perf_counter() - t_build
    if mode == "eager":
        from transformers import DynamicCache

        def cache():
            return DynamicCache(config=cfg)
    else:
        from transformers import StaticCache

        def cache():
            return StaticCache(config=cfg, max_cache_len=prompt + steps + 1)

        if mode == "compile":
            model.forward = torch.compile(model.forward, fullgraph=False)
    gen = generate_graph if mode == "graph" else generate
    warm = []
    for _ in range(2 if mode == "compile" else 1):  # compiled: compile, then run compiled
        warm.append(gen(model, cfg, batch, prompt, steps, device, cache))
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
        times = gen(model, cfg, batch, prompt, steps, device, cache)
    raw = out_dir / f"{name}.json"
    prof.export_chrome_trace(str(raw))
    with open(raw, "rb") as src, gzip.open(f"{raw}.gz", "wb", compresslevel=9) as dst:
        shutil.copyfileobj(src, dst)
    raw.unlink()
    info = {
        "case": name,
        "model": model_name,
        "model_source": source if isinstance(source, str) else "inline tiny config",
        "num_hidden_layers": cfg.num_hidden_layers,
        "batch_size": batch,
        "prompt_len": prompt,
        "decode_steps": steps,
        "mode": mode,
        "dtype": "bf16",
        "attn_implementation": "sdpa",
        "build_s": round(t_build, 2),
        "profiled_step_wall_s": [round(t, 6) for t in times],
        "warmup_step_wall_s": [[round(t, 6) for t in w] for w in warm],
        "trace": f"{name}.json.gz",
        "trace_bytes": os.path.getsize(f"{raw}.gz"),
    }
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    import transformers

    env = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
    }
    print(json.dumps(env), flush=True)
    results = []
    for name in args.cases.split(","):
        t0 = time.perf_counter()
        try:
            info = run_case(name, out_dir, args.device)
            info["case_wall_s"] = round(time.perf_counter() - t0, 1)
            print(json.dumps(info), flush=True)
        except Exception as exc:  # keep going: one failed case must not lose the others
            info = {"case": name, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
            print(f"[{name}] FAILED: {info['error']}", file=sys.stderr, flush=True)
            print(info["traceback"], file=sys.stderr, flush=True)
            if args.device == "cuda":
                torch.cuda.empty_cache()
        results.append(info)
        (out_dir / "cases.json").write_text(json.dumps({"env": env, "cases": results}, indent=1))


if __name__ == "__main__":
    main()
