"""Each supported family against Hugging Face transformers' own modeling code, built from a real
config.json (tests/data/hf_configs, sources in SOURCES.md there) on the meta device: no weights, no memory.

How the two sides are made comparable, stated once:
1. Parameters: every nn.Parameter of the full-size HF model equals ``parameter_count`` exactly; weight
   bytes at bf16 are 2 per HF parameter. (DeepSeek-V3/R1's multi-token-prediction layer is built by
   neither side: num_nextn_predict_layers is ignored, with its reason, in config.IGNORED_KEYS.)
2. FLOPs: ``FlopCounterMode`` over a forward of the HF model cut to a few layers (every kind of layer at
   least once: dense and MoE, windowed and global), summed per module group: attention (``self_attn``:
   projections and core), MLP (``mlp``: dense MLP, router, experts, shared experts) and ``lm_head``.
   It counts matmuls only, so our rows of the matmul and attention categories are compared.
3. lm_head runs on the last position on both sides (HF: ``logits_to_keep=1``).
4. Causal masking: HF computes the full s x s square of masked scores in prefill (sdpa or eager) and
   FlopCounterMode counts all of it, windowed layers included; we count the useful causal (windowed)
   pairs. Our attention rows are scaled to the full square, x s*s / causal_pairs(s, window), before
   comparing. In decode both sides count the keys a query sees (a windowed HF layer caches its window).
5. Routed experts: HF's routing looks at values, which meta tensors do not have, so each experts
   module's forward is replaced by a fixed assignment with the module's own weights: every token runs
   the gate/up and down matmuls of top_k experts. Both sides count top_k experts per token.
6. MLA: HF (transformers 5) caches the latent (kv_lora_rank + qk_rope_head_dim values per token and
   layer) and rebuilds k and v from it with kv_b_proj at every step: our decompressed form, which the
   decode comparison selects (mla_form). The absorbed form, our decode default, is checked against
   FlopCounterMode in test_formulas; both forms keep the same latent cache, compared with HF's here.
7. DeepSeek-R1 in full (61 layers of 256 experts) takes HF ~50 s to build even on meta, so its full
   parameter count is composed from a 4-layer build: embedding and head, plus each layer's parameters
   times the layers of its kind (3 dense, 58 MoE).
"""

import json
import re
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from roofline import analyze
from roofline.config import Workload, parse_model
from roofline.formulas import causal_pairs
from roofline.transformer import model_ops, parameter_count

transformers = pytest.importorskip("transformers", minversion="5.0")  # 5: fused experts, latent MLA cache
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

CONFIGS = Path(__file__).resolve().parent / "data" / "hf_configs"
# layers kept in the FLOP builds: enough for every kind of layer (R1: 3 dense + 1 MoE; gemma3: 5 windowed + 1 global)
CUT_LAYERS = {"deepseek-r1": 4, "gemma-3-1b": 6}
NAMES = sorted(p.stem for p in CONFIGS.glob("*.json"))
ATTENTION_OPS = {
    "q_proj",
    "k_proj",
    "v_proj",
    "qkv_proj",
    "o_proj",
    "q_a_proj",
    "q_b_proj",
    "kv_a_proj",
    "kv_b_proj",
    "q_absorb",
    "v_absorb",
    "attention",
    "sliding_attention",
}
MLP_OPS = {
    "gate_proj",
    "up_proj",
    "gate_up_proj",
    "down_proj",
    "router",
    "experts",
    "shared_experts",
    "shared_expert",
    "shared_expert_gate",
}


def raw_config(name: str, layers: int = None) -> dict:
    raw = json.loads((CONFIGS / f"{name}.json").read_text())
    if layers:
        raw["num_hidden_layers"] = layers
        if raw.get("layer_types"):
            raw["layer_types"] = raw["layer_types"][:layers]
    return raw


_BUILT = {}


def hf_model(raw: dict):
    """The HF model of ``raw`` on the meta device, experts with the fixed routing (convention 5); built once."""
    key = json.dumps(raw, sort_keys=True)
    if key not in _BUILT:
        _BUILT[key] = _build(raw)
    return _BUILT[key]


def _build(raw: dict):
    cfg = transformers.AutoConfig.for_model(**raw)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    for module_name, module in model.named_modules():
        if module_name.endswith("mlp.experts"):
            module.forward = types.MethodType(_fixed_routing_experts, module)
    return model


def _fixed_routing_experts(self, hidden_states, top_k_index, top_k_weights):
    """Every token through top_k experts' matmuls (convention 5), with this module's weight shapes."""
    x = hidden_states.repeat_interleave(top_k_index.shape[-1], dim=0)
    gate_up, down = self.gate_up_proj[0], self.down_proj[0]
    transposed = gate_up.shape[0] == x.shape[-1]  # gpt-oss stores [hidden, 2 * inter]
    y = x @ gate_up if transposed else F.linear(x, gate_up)
    y = y[..., : y.shape[-1] // 2]  # act(gate) * up has the width of one half
    y @ down if transposed else F.linear(y, down)
    return torch.zeros_like(hidden_states)


def hf_group_flops(counts: dict) -> dict:
    groups = {"attention": 0, "mlp": 0, "lm_head": 0}
    for module, per_op in counts.items():
        if re.search(r"\.(self_attn|self_attention)$", module):
            groups["attention"] += sum(per_op.values())
        elif re.search(r"\.(h|layers)\.\d+\.mlp$", module):
            groups["mlp"] += sum(per_op.values())
        elif module.endswith("lm_head"):
            groups["lm_head"] += sum(per_op.values())
    return groups


def our_group_flops(ops, s, window_of, phase) -> dict:
    groups = {"attention": 0.0, "mlp": 0.0, "lm_head": 0.0}
    for op in ops:
        flops = op.count * float(op.cost.flops)
        if op.name in ("attention", "sliding_attention") and phase == "prefill":
            window = window_of[op.name]
            flops *= s * s / float(causal_pairs(s, window))  # convention 4: the full masked square
        if op.name in ATTENTION_OPS:
            groups["attention"] += flops
        elif op.name in MLP_OPS:
            groups["mlp"] += flops
        elif op.name == "lm_head":
            groups["lm_head"] += flops
    return groups


def past_the_window(model) -> int:
    """A prompt 40 tokens longer than the sliding window (when it is at most 4096), so windows bite."""
    window = model.sliding_window or 0
    return window + 40 if 0 < window <= 4096 else 24


@pytest.fixture(scope="module")
def hf_runs():
    """name -> (our model, {phase: HF group FLOPs}, HF cache after prefill), built once per module."""
    runs = {}

    def run(name):
        if name in runs:
            return runs[name]
        raw = raw_config(name, CUT_LAYERS.get(name, 2))
        model = hf_model(raw)
        b, s = 2, past_the_window(parse_model(raw))
        ids = torch.zeros(b, s, dtype=torch.long, device="meta")
        with FlopCounterMode(display=False) as counter:
            out = model(input_ids=ids, logits_to_keep=1, use_cache=True)
        prefill = hf_group_flops(counter.get_flop_counts())
        one = torch.zeros(b, 1, dtype=torch.long, device="meta")
        with FlopCounterMode(display=False) as counter:
            model(input_ids=one, past_key_values=out.past_key_values, logits_to_keep=1, use_cache=True)
        decode = hf_group_flops(counter.get_flop_counts())
        runs[name] = (parse_model(raw), {"prefill": prefill, "decode": decode}, (b, s))
        return runs[name]

    return run


def hf_parameters(name: str) -> int:
    if name != "deepseek-r1":
        return sum(p.numel() for p in hf_model(raw_config(name)).parameters())
    raw = raw_config(name)
    cut = hf_model(raw_config(name, 4))  # convention 7: layers 0-2 dense, 3 MoE
    per_layer = [sum(p.numel() for p in layer.parameters()) for layer in cut.model.layers]
    rest = sum(p.numel() for p in cut.parameters()) - sum(per_layer)
    dense = raw["first_k_dense_replace"]
    return rest + dense * per_layer[0] + (raw["num_hidden_layers"] - dense) * per_layer[3]


@pytest.mark.parametrize("name", NAMES)
def test_parameters_and_weight_bytes_equal_hf(name):
    raw = raw_config(name)
    hf_params = hf_parameters(name)
    ours = parse_model(raw)
    assert parameter_count(ours) == hf_params
    ops = model_ops(ours, Workload(), "decode", 1, 1, 1)
    assert sum(op.count * op.param_bytes for op in ops) == 2 * hf_params  # bf16


@pytest.mark.parametrize("phase", ["prefill", "decode"])
@pytest.mark.parametrize("name", NAMES)
def test_flops_per_module_group_match_hf(name, phase, hf_runs):
    ours_model, hf, (b, s) = hf_runs(name)
    window_of = {"attention": None, "sliding_attention": ours_model.sliding_window}
    if len(set(ours_model.layer_windows)) == 1:
        window_of["attention"] = ours_model.layer_windows[0]
    if phase == "prefill":
        ops = model_ops(ours_model, Workload(), "prefill", b, s, s)
    else:  # the HF step sees the s prompt tokens and itself: s + 1 keys
        w = Workload(mla_form="decompressed") if ours_model.is_mla else Workload()
        ops = model_ops(ours_model, w, "decode", b, s, s + 1)
    ours = our_group_flops(ops, s, window_of, phase)
    for group in ("attention", "mlp", "lm_head"):
        assert ours[group] == pytest.approx(hf[phase][group], rel=2e-3), group


@pytest.mark.parametrize("name", NAMES)
def test_kv_cache_bytes_match_the_cache_hf_keeps(name):
    """Bytes of the cache after a prefill longer than every window; MLA: the latent, not HF's cache."""
    raw = raw_config(name, CUT_LAYERS.get(name, 2))
    ours = parse_model(raw)
    b, s = 2, past_the_window(ours)
    summary = analyze(ours, "h100-sxm", batch_size=b, prompt_len=s, phase="prefill").summary.iloc[0]
    model = hf_model(raw)
    out = model(input_ids=torch.zeros(b, s, dtype=torch.long, device="meta"), logits_to_keep=1, use_cache=True)
    hf_bytes = 0
    for layer in out.past_key_values.layers:
        kept = layer.keys.shape[-2]
        if getattr(layer, "sliding_window", None) and kept == layer.sliding_window - 1:
            kept += 1  # HF keeps window - 1 keys between steps; the step's own key makes the window we count
        per_position = (layer.keys.numel() + layer.values.numel()) / layer.keys.shape[-2]
        hf_bytes += per_position * kept * 2  # bf16
    assert summary["kv_cache_bytes"] == hf_bytes


def test_deepseek_v3_caches_576_values_per_token_and_layer():
    m = parse_model(raw_config("deepseek-r1"))
    assert m.kv_lora_rank + m.qk_rope_head_dim == 576  # what serving engines allocate
    r = analyze(m, "h200", batch_size=1, prompt_len=1000, phase="decode").summary.iloc[0]
    assert r["kv_cache_bytes"] == 1000 * 576 * 2 * 61


# --- the small gaps of the families that worked before, and falcon's new decoder layout, against HF

SMALL = {
    # llama with attention_bias: biases on q, k, v and o_proj
    "llama-attention-bias": dict(
        model_type="llama",
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=1000,
        attention_bias=True,
    ),
    # qwen3: per-head q/k norms
    "qwen3": dict(
        model_type="qwen3",
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        head_dim=64,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=1000,
        tie_word_embeddings=True,
    ),
    # qwen2 windowing only the layers from max_window_layers on
    "qwen2-max-window-layers": dict(
        model_type="qwen2",
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=1000,
        use_sliding_window=True,
        sliding_window=32,
        max_window_layers=2,
    ),
    # falcon-40b's layout: grouped KV heads, two parallel norms
    "falcon-new-decoder": dict(
        model_type="falcon",
        hidden_size=256,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_kv_heads=2,
        new_decoder_architecture=True,
        parallel_attn=True,
        bias=False,
        vocab_size=1000,
    ),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_configs_match_hf(name):
    raw = SMALL[name]
    model = hf_model(raw)
    ours = parse_model(raw)
    assert parameter_count(ours) == sum(p.numel() for p in model.parameters())
    b, s = 2, 40  # past qwen2's window of 32
    with FlopCounterMode(display=False) as counter:
        out = model(input_ids=torch.zeros(b, s, dtype=torch.long, device="meta"), logits_to_keep=1, use_cache=True)
    hf = hf_group_flops(counter.get_flop_counts())
    window_of = {"attention": None, "sliding_attention": ours.sliding_window}
    flops = our_group_flops(model_ops(ours, Workload(), "prefill", b, s, s), s, window_of, "prefill")
    for group in ("attention", "mlp", "lm_head"):
        assert flops[group] == pytest.approx(hf[group], rel=2e-3), group
    summary = analyze(ours, "h100-sxm", batch_size=b, prompt_len=s, phase="prefill").summary.iloc[0]
    hf_bytes = 0
    for layer in out.past_key_values.layers:
        kept = layer.keys.shape[-2]
        if getattr(layer, "sliding_window", None) and kept == layer.sliding_window - 1:
            kept += 1  # as in test_kv_cache_bytes_match_the_cache_hf_keeps
        hf_bytes += (layer.keys.numel() + layer.values.numel()) / layer.keys.shape[-2] * kept * 2
    if name == "falcon-new-decoder":
        # HF's falcon broadcasts k and v to every query head before caching them (_split_heads); we count the
        # num_kv_heads that serving engines cache, 8 / 2 = 4 times less
        hf_bytes /= ours.num_attention_heads // ours.num_key_value_heads
    assert summary["kv_cache_bytes"] == hf_bytes


def test_absorbed_mla_decode_counts_the_matmuls_it_runs_with_hf_weights():
    """The absorbed form written out with HF's own kv_b_proj split into W_UK and W_UV (FlashMLA's order)."""
    raw = raw_config("deepseek-v2-lite", 2)
    attn = hf_model(raw).model.layers[0].self_attn
    m = parse_model(raw)
    H, nope, rope, r, dv = (m.num_attention_heads, m.qk_nope_head_dim, m.qk_rope_head_dim, m.kv_lora_rank, m.v_head_dim)
    w = attn.kv_b_proj.weight.view(H, nope + dv, r)
    w_uk, w_uv = w[:, :nope], w[:, nope:]
    b, L = 2, 100

    def empty(*shape):
        return torch.empty(*shape, device="meta", dtype=torch.bfloat16)

    q_nope, q_pe, latent, k_pe = empty(b, H, nope), empty(b, H, rope), empty(b, L, r), empty(b, L, rope)
    with FlopCounterMode(display=False) as counter:
        q_latent = torch.einsum("bhn,hnr->bhr", q_nope, w_uk)  # q_absorb
        scores = torch.einsum("bhr,blr->bhl", q_latent, latent) + torch.einsum("bhp,blp->bhl", q_pe, k_pe)
        o_latent = torch.einsum("bhl,blr->bhr", scores.softmax(-1), latent)  # attention over the latent
        torch.einsum("bhr,hvr->bhv", o_latent, w_uv)  # v_absorb
    ops = {op.name: op for op in model_ops(m, Workload(), "decode", b, 1, L)}
    ours = sum(float(ops[n].cost.flops) for n in ("q_absorb", "attention", "v_absorb"))
    assert ours == counter.get_total_flops()


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_examples_have_the_parameters_of_the_hf_build(path):
    """The families that worked before issue 9 still agree with HF, and so do the new examples."""
    import yaml

    from roofline.config import IGNORED_KEYS

    raw = yaml.safe_load(path.read_text())
    ours = parse_model(raw)
    keep = {k: v for k, v in raw.items() if k not in ("name", "workload") and k not in IGNORED_KEYS}
    if raw["model_type"] == "deepseek_v3":  # 61 layers of 256 experts: composed as in convention 7
        assert parameter_count(ours) == hf_parameters("deepseek-r1")
        return
    assert parameter_count(ours) == sum(p.numel() for p in hf_model(keep).parameters())


@pytest.mark.parametrize("name", NAMES)
def test_a_config_saved_by_transformers_reads_the_same(name):
    """What save_pretrained writes (transformers 5 renames and adds keys) gives the same model."""
    raw = raw_config(name)
    saved = json.loads(transformers.AutoConfig.for_model(**raw).to_json_string())
    a, b = parse_model(raw), parse_model(saved)
    assert b.ignored_keys == ()
    assert parameter_count(a) == parameter_count(b)
    assert a.layer_windows == b.layer_windows and a.partial_rotary_factor == b.partial_rotary_factor
    assert model_ops(a, Workload(), "decode", 1, 1, 100) == model_ops(b, Workload(), "decode", 1, 1, 100)
