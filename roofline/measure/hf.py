"""Build the Hugging Face transformers implementation of a model file, with random weights, and run
one prefill plus N decode steps through its own forward and cache under ``capture``.

transformers is optional (``pip install 'roofline[hf]'``); without it these functions raise one
DeviceError that says so. The model files use config.json key names, so the HF config is the
file's keys (``head_dim`` for head_dim_override; GPT-2's n_* names for gpt2).

The run, as benchmarks/record_hf_traces.py recorded the committed H200 traces:
  1. ``AutoModelForCausalLM.from_config`` in the activation dtype, sdpa attention, on the device
     (random weights: timing does not depend on their values), eval mode, no grad.
  2. Warm-up: the same prefill + decode steps once, unprofiled.
  3. Profiled: a prefill of ``batch x prompt_len`` random token ids into a fresh DynamicCache, then
     ``steps`` greedy decode steps (argmax of the last logits), each a forward of one token per
     sequence with the cache; wall time per step with a device sync, outside the profiler too.
"""

import time
from dataclasses import replace
from typing import Optional

import torch

from roofline.config import ModelConfig, Workload
from roofline.errors import ConfigError, DeviceError

HF_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def require_transformers():
    """The transformers module, or DeviceError naming the fix."""
    try:
        import transformers
    except ImportError:
        raise DeviceError(
            "--impl transformers needs the transformers package, which is not installed; "
            "pip install 'roofline[hf]' (or pip install transformers)"
        ) from None
    return transformers


def hf_config_dict(m: ModelConfig) -> dict:
    """config.json keys of ``m`` for transformers' AutoConfig.for_model."""
    if m.model_type == "gpt2":
        return {
            "model_type": "gpt2",
            "n_embd": m.hidden_size,
            "n_layer": m.num_hidden_layers,
            "n_head": m.num_attention_heads,
            "n_inner": m.intermediate_size,
            "vocab_size": m.vocab_size,
            "n_positions": m.max_position_embeddings or 1024,
            "tie_word_embeddings": m.tie_word_embeddings,
        }
    keys = {
        "model_type": m.model_type,
        "hidden_size": m.hidden_size,
        "intermediate_size": m.intermediate_size,
        "num_hidden_layers": m.num_hidden_layers,
        "num_attention_heads": m.num_attention_heads,
        "num_key_value_heads": m.num_key_value_heads,
        "vocab_size": m.vocab_size,
        "hidden_act": m.hidden_act,
        "tie_word_embeddings": m.tie_word_embeddings,
    }
    if m.head_dim_override:
        keys["head_dim"] = m.head_dim_override
    if m.max_position_embeddings:
        keys["max_position_embeddings"] = m.max_position_embeddings
    if m.sliding_window:
        keys["sliding_window"] = m.sliding_window
    if m.is_moe:
        keys["num_local_experts"] = m.num_local_experts
        keys["num_experts_per_tok"] = m.num_experts_per_tok
    return keys


def with_layers(m: ModelConfig, layers) -> ModelConfig:
    """``m`` cut to ``layers`` decoder layers (None or more than it has: all)."""
    if not layers or layers >= m.num_hidden_layers:
        return m
    return replace(m, num_hidden_layers=int(layers))


def build_hf_model(m: ModelConfig, device="cuda", dtype: str = "bf16", attn: str = "sdpa", seed: int = 0):
    """The HF causal-LM of ``m`` with random weights on ``device``, in eval mode.

    Raises DeviceError (transformers missing, out of memory), ConfigError (a model type or dtype HF
    cannot build here)."""
    require_transformers()
    from transformers import AutoConfig, AutoModelForCausalLM

    if dtype not in HF_DTYPES:
        raise ConfigError(f"--impl transformers runs in {', '.join(HF_DTYPES)}; not act dtype {dtype}")
    keys = hf_config_dict(m)
    try:
        cfg = AutoConfig.for_model(keys.pop("model_type"), **keys)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"transformers cannot build model_type '{m.model_type}': {exc}") from None
    torch.manual_seed(seed)
    try:
        with torch.device(device):
            try:
                model = AutoModelForCausalLM.from_config(cfg, dtype=HF_DTYPES[dtype], attn_implementation=attn)
            except TypeError:  # transformers before 4.56 names it torch_dtype
                model = AutoModelForCausalLM.from_config(cfg, torch_dtype=HF_DTYPES[dtype], attn_implementation=attn)
    except torch.OutOfMemoryError:
        raise DeviceError(
            f"out of GPU memory building {m.name} ({m.num_hidden_layers} layers); use --layers to build fewer"
        ) from None
    return model.eval()


def generate_steps(model, batch: int, prompt_len: int, steps: int, device) -> list:
    """One prefill and ``steps`` greedy decode steps through the model's forward and DynamicCache.
    Returns the wall time of each (seconds, after a device sync)."""
    import inspect

    from transformers import DynamicCache

    # the cache argument is ``cache`` since transformers 5.2x, ``past_key_values`` before
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def new_cache():
        try:
            return DynamicCache(config=model.config)
        except TypeError:  # transformers before 4.56 builds it empty
            return DynamicCache()

    def cache_of(out):
        return getattr(out, "cache", None) if name == "cache" else out.past_key_values

    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, prompt_len), device=device)
    cuda = torch.device(device).type == "cuda"
    times = []
    with torch.no_grad():
        t0 = time.perf_counter()
        out = model(input_ids=ids, use_cache=True, **{name: new_cache()})
        nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        past = cache_of(out)
        for i in range(steps):
            t0 = time.perf_counter()
            pos = torch.full((batch, 1), prompt_len + i, device=device, dtype=torch.long)
            out = model(input_ids=nxt, use_cache=True, position_ids=pos, **{name: past})
            nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
            past = cache_of(out)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return times


def profile_hf(
    m: ModelConfig,
    w: Workload,
    spec=None,
    layers=None,
    steps: Optional[int] = None,
    warmup: int = 1,
    trace_path=None,
    compare=None,
    device: str = "cuda",
):
    """Build the HF model of ``m`` (``layers`` of them; default all), warm up, and run one prefill and
    ``steps`` decode steps (default: the workload's gen_tokens, else 8) under ``capture``.

    Returns (Capture, step wall times of the profiled run, step wall times of the last warm-up).
    Raises DeviceError (no GPU, no transformers, out of memory), ConfigError (a sweep).
    """
    from roofline.measure.capture import capture

    for key in ("batch_size", "prompt_len"):
        if len(getattr(w, key)) != 1:
            raise ConfigError(f"--impl transformers runs one point at a time; {key} has {len(getattr(w, key))} values")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            "no CUDA GPU found (torch.cuda.is_available() is False); roofline profile --impl transformers needs "
            "an NVIDIA GPU with a CUDA build of PyTorch"
        )
    m = with_layers(m, layers)
    batch, prompt = int(w.batch_size[0]), int(w.prompt_len[0])
    steps = steps or w.gen_tokens or 8
    model = build_hf_model(m, device=device, dtype=w.act_dtype)
    warm = []
    for _ in range(warmup):
        warm = generate_steps(model, batch, prompt, steps, device)
    with capture(model, m, gpu=spec, trace_path=trace_path, compare=compare) as cap:
        times = generate_steps(model, batch, prompt, steps, device)
    return cap, times, warm
