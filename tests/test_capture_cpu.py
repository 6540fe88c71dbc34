"""roofline.capture on the CPU: module ranges named by module path on a tiny HF Llama and Mixtral
(transformers' own modeling code, random weights), hooks removed afterwards, and the mapping of
module paths to analytic ops. No kernels on a CPU: the kernel mapping is tested on the committed
H200 traces (tests/test_attribute.py)."""

import pandas as pd
import pytest
import torch

import roofline
from roofline.config import parse_model
from roofline.errors import DeviceError
from roofline.measure import hf
from roofline.measure.capture import ModuleRanges, capture

pytest.importorskip("transformers")

TINY = {
    "name": "tiny",
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 128,
    "hidden_act": "silu",
    "max_position_embeddings": 64,
    "tie_word_embeddings": False,
}
CPU = [torch.profiler.ProfilerActivity.CPU]


def _model(raw):
    m = parse_model(dict(raw), "test")
    return m, hf.build_hf_model(m, device="cpu", dtype="fp32")


def _hooks(model):
    return sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks) for mod in model.modules())


def test_module_ranges_name_every_module_and_map_to_ops():
    m, model = _model(TINY)
    with capture(model, m, activities=CPU) as cap:
        hf.generate_steps(model, batch=2, prompt_len=8, steps=3, device="cpu")
    assert cap.run is None and cap.comparison is None  # no kernels on a CPU
    r = cap.module_ranges.set_index("module")
    # every forward (1 prefill + 3 decode steps) enters each module once
    assert r.loc["model.layers.1.self_attn.q_proj", "calls"] == 4
    expect = {
        "model.embed_tokens": ("embedding", None),
        "model.rotary_emb": ("rope", None),
        "model.layers.0.input_layernorm": ("attn_norm", 0),
        "model.layers.0.self_attn.q_proj": ("q_proj", 0),
        "model.layers.1.self_attn.k_proj": ("k_proj", 1),
        "model.layers.1.self_attn.v_proj": ("v_proj", 1),
        "model.layers.0.self_attn.o_proj": ("o_proj", 0),
        "model.layers.0.post_attention_layernorm": ("mlp_norm", 0),
        "model.layers.1.mlp.gate_proj": ("gate_proj", 1),
        "model.layers.1.mlp.up_proj": ("up_proj", 1),
        "model.layers.1.mlp.act_fn": ("act", 1),
        "model.layers.1.mlp.down_proj": ("down_proj", 1),
        "model.norm": ("final_norm", None),
        "lm_head": ("lm_head", None),
    }
    for module, (op, layer) in expect.items():
        got = r.loc[module]
        assert got["op"] == op and (got["layer"] == layer or (layer is None and pd.isna(got["layer"]))), module
    # modules that launch work themselves (rope, attention, residuals) are left to shapes and positions
    assert pd.isna(r.loc["model.layers.0.self_attn", "op"]) and pd.isna(r.loc["model.layers.0", "op"])
    assert (r["cpu_time_s"] > 0).all()
    assert _hooks(model) == 0
    assert cap.trace_path.endswith(".json.gz")


def test_moe_modules_map_to_router_and_experts():
    raw = dict(TINY, model_type="mixtral", num_local_experts=4, num_experts_per_tok=2, name="tiny-moe")
    m, model = _model(raw)
    with capture(model, m, activities=CPU) as cap:
        hf.generate_steps(model, batch=1, prompt_len=4, steps=1, device="cpu")
    r = cap.module_ranges.set_index("module")
    assert r.loc["model.layers.0.mlp.gate", "op"] == "router"
    assert r.loc["model.layers.0.mlp.experts", "op"] == "experts"


def test_hooks_are_removed_when_the_block_raises():
    m, model = _model(TINY)
    with pytest.raises(RuntimeError, match="boom"), capture(model, m, activities=CPU):
        model(torch.zeros(1, 4, dtype=torch.long))
        raise RuntimeError("boom")
    assert _hooks(model) == 0


def test_a_forward_that_raises_inside_a_module_closes_its_range():
    _, model = _model(TINY)
    with pytest.raises(IndexError), ModuleRanges(model) as ranges:
        model(torch.full((1, 4), 10_000, dtype=torch.long))  # ids beyond the vocabulary: embedding raises
    assert not any(ranges.open.values()) and _hooks(model) == 0


def test_capture_refuses_what_is_not_a_module():
    with pytest.raises(TypeError, match="capture needs a torch.nn.Module, not str"):
        roofline.capture("model", "examples/llama-2-7b.yaml")


def test_hf_config_of_our_model_files():
    keys = hf.hf_config_dict(parse_model(dict(TINY, head_dim=32), "test"))
    assert keys["head_dim"] == 32 and keys["num_key_value_heads"] == 2 and keys["model_type"] == "llama"
    _, model = _model(TINY)
    # the HF model's parameters equal ours: 2 x (4 x 64 x 16 ... ) counted by roofline
    from roofline.transformer import parameter_count

    assert sum(p.numel() for p in model.parameters()) == parameter_count(parse_model(dict(TINY), "test"))
    assert hf.with_layers(parse_model(dict(TINY), "t"), 1).num_hidden_layers == 1


def test_profile_hf_without_a_gpu_says_so():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    m = parse_model(dict(TINY), "test")
    with pytest.raises(DeviceError, match=r"no CUDA GPU found .* --impl transformers needs an NVIDIA GPU"):
        hf.profile_hf(m, roofline.config.Workload(batch_size=(1,), prompt_len=(8,)))


OWN_MODULE = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "lm_head",
    "attn_norm",
    "mlp_norm",
    "final_norm",
)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_capture_on_the_gpu_agrees_with_the_shape_only_mapping():
    """On a live tiny HF model: module ranges and the shape/position rules (the range column dropped)
    put the same GPU time on every op that is a module of its own (within 5%): the independent join
    of a capture."""
    from roofline.attribute import attribute_kernels
    from roofline.measure.trace import analyze_trace

    m = parse_model(
        dict(
            TINY, hidden_size=256, intermediate_size=688, num_attention_heads=8, num_key_value_heads=4, vocab_size=1024
        ),
        "test",
    )
    model = hf.build_hf_model(m, device="cuda", dtype="bf16")
    hf.generate_steps(model, 2, 32, 4, "cuda")
    with roofline.capture(model, m) as cap:
        hf.generate_steps(model, 2, 32, 4, "cuda")
    assert cap.run.summary["attributed_share"] >= 0.95  # tiny: the argmax and position fills outside are ~3%
    assert set(cap.run.unattributed["op"]) <= {"(outside forward)"}
    by_module = cap.run.kernels[cap.run.kernels["evidence"] == "module"]
    shapes, _, _ = attribute_kernels(analyze_trace(cap.trace_path, cap.run.spec).kernels.drop(columns="range"), m)
    for (phase, op), t in by_module.groupby(["phase", "op"])["dur_s"].sum().items():
        if op not in OWN_MODULE:
            continue  # rotary_emb holds the cos/sin set-up only, act_fn the silu only: their rows hold more
        s = shapes[(shapes["phase"] == phase) & (shapes["op"] == op)]["dur_s"].sum()
        assert s == pytest.approx(t, rel=0.05), (phase, op)
    assert {"q_proj", "attention", "mlp_norm", "lm_head"} <= set(cap.comparison["op"])
