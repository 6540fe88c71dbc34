"""How Hugging Face config.json keys are read: the architecture first, every key either modelled or
ignored with a reason, per-layer windows as the modeling code decides them. (No transformers needed.)"""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from roofline.cli import main
from roofline.config import FAMILIES, IGNORED_KEYS, Workload, load_model, parse_model
from roofline.errors import ConfigError
from roofline.transformer import model_ops

CONFIGS = Path(__file__).resolve().parent / "data" / "hf_configs"
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.json")), ids=lambda p: p.stem)
def test_real_configs_load_as_shipped_with_no_key_left_unexplained(path):
    m = load_model(path)
    assert m.ignored_keys == ()  # every key is modelled or listed in IGNORED_KEYS with its reason


def test_every_ignored_key_has_a_reason():
    assert all(isinstance(why, str) and len(why) > 10 for why in IGNORED_KEYS.values())
    assert "rope_scaling" in IGNORED_KEYS
    assert "quantization_config" not in IGNORED_KEYS  # read: roofline/quant.py


def test_an_unknown_architecture_is_refused_by_its_model_type_before_any_key():
    raw = {"model_type": "rwkv", "hidden_sise": 64, "attention_hidden_size": 16, "num_hidden_layers": 2}
    with pytest.raises(ConfigError) as err:
        parse_model(raw, "m.json")
    message = str(err.value)
    assert message.startswith("m.json: model_type 'rwkv' is not supported; supported: llama, mistral, ")
    assert "hidden_sise" not in message and "\n" not in message
    for family in FAMILIES:
        assert family in message


def test_refinedwebmodel_is_falcon():
    raw = json.loads((CONFIGS / "falcon-7b.json").read_text())
    assert parse_model(dict(raw, model_type="RefinedWebModel")).model_type == "falcon"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"layer_types": ["full_attention"] * 3}, "layer_types must list one entry per layer (24), got 3"),
        ({"layer_types": ["linear_attention"] * 24}, "layer_types entry 'linear_attention' is not modelled"),
        ({"sliding_window": None}, "layer_types has sliding_attention layers but no sliding_window size"),
    ],
)
def test_bad_layer_types(change, message):
    raw = json.loads((CONFIGS / "gpt-oss-20b.json").read_text())
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_model({**raw, **change})


def test_falcon_alibi_is_refused_not_miscounted():
    raw = json.loads((CONFIGS / "falcon-7b.json").read_text())
    with pytest.raises(ConfigError, match="falcon with alibi positions is not modelled"):
        parse_model(dict(raw, alibi=True))


def test_windows_per_layer_as_the_modeling_code_decides():
    gemma3 = load_model(CONFIGS / "gemma-3-1b.json")  # sliding_window_pattern 6: layers 5, 11, ... global
    assert gemma3.layer_windows[:7] == (512,) * 5 + (None, 512)
    oss = load_model(CONFIGS / "gpt-oss-20b.json")  # layer_types
    assert oss.layer_windows[:2] == (128, None)
    phi3 = load_model(CONFIGS / "phi-3-mini-4k.json")  # sliding_window on every layer (mistral-style)
    assert set(phi3.layer_windows) == {2047}
    qwen_moe = load_model(CONFIGS / "qwen1.5-moe-a2.7b.json")  # use_sliding_window false
    assert set(qwen_moe.layer_windows) == {None}


def test_moe_layers_and_shared_experts():
    r1 = load_model(CONFIGS / "deepseek-r1.json")
    ops = {op.name: op for op in model_ops(r1, Workload(), "decode", 1, 1, 1)}
    assert ops["experts"].count == 58 and ops["gate_proj"].count == 3  # first_k_dense_replace 3 of 61
    assert ops["shared_experts"].params == 3 * 7168 * 2048  # one shared expert of moe_intermediate_size
    qwen = load_model(CONFIGS / "qwen1.5-moe-a2.7b.json")
    ops = {op.name: op for op in model_ops(qwen, Workload(), "decode", 1, 1, 1)}
    assert ops["shared_expert"].params == 3 * 2048 * 5632 and ops["shared_expert_gate"].params == 2048
    mixed = parse_model(dict(json.loads((CONFIGS / "qwen3-30b-a3b.json").read_text()), mlp_only_layers=[0, 1]))
    ops = {op.name: op for op in model_ops(mixed, Workload(), "decode", 1, 1, 1)}
    assert ops["experts"].count == 46 and ops["up_proj"].count == 2  # dense layers use intermediate_size
    assert ops["up_proj"].params == 2048 * 6144


def test_cli_mla_flag_selects_the_form():
    args = [
        "analyze",
        str(ROOT / "examples" / "deepseek-v2-lite.yaml"),
        "--gpu",
        "h100-sxm",
        "--phase",
        "decode",
        "--format",
        "csv",
    ]
    absorbed = CliRunner().invoke(main, args)
    decompressed = CliRunner().invoke(main, args + ["--mla", "decompressed"])
    assert absorbed.exit_code == 0 and decompressed.exit_code == 0, absorbed.output + decompressed.output
    assert "q_absorb" in absorbed.output and "kv_b_proj" not in absorbed.output
    assert "kv_b_proj" in decompressed.output and "q_absorb" not in decompressed.output
    bad = CliRunner().invoke(main, args + ["--mla", "latent"])
    assert bad.exit_code == 2 and "'latent' is not one of 'auto', 'absorbed', 'decompressed'" in bad.output


def test_a_multimodal_wrapper_points_to_its_text_config():
    with pytest.raises(
        ConfigError,
        match="model_type 'gemma3' is a multimodal wrapper; give its text_config section "
        "as the model \\(model_type gemma3_text\\)",
    ):
        parse_model({"model_type": "gemma3", "text_config": {}})


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_analyses_both_phases(path):
    from roofline import analyze

    s = analyze(path, "h200", batch_size=[1, 16], context_len=4096, phase="both").summary
    for key in ("prefill_time_s", "decode_time_s", "kv_cache_bytes", "weight_bytes"):
        assert (s[key] > 0).all() and s[key].notna().all(), key


def test_the_table_says_which_mla_form_runs():
    args = ["analyze", str(ROOT / "examples" / "deepseek-v2-lite.yaml"), "--gpu", "h100-sxm"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    assert "MLA decompressed in prefill, absorbed in decode (--mla), latent KV cache" in out.output
    forced = CliRunner().invoke(main, args + ["--mla", "absorbed"])
    assert "MLA absorbed in prefill, absorbed in decode" in forced.output


def test_partial_rotary_factor_inside_rope_parameters():
    """transformers 5 saves partial_rotary_factor inside rope_parameters; it changes the rope op's work."""
    raw = json.loads((CONFIGS / "phi-4-mini.json").read_text())
    top = parse_model(raw)
    del raw["partial_rotary_factor"]
    nested = parse_model(dict(raw, rope_parameters={"rope_type": "default", "partial_rotary_factor": 0.75}))
    assert nested.partial_rotary_factor == top.partial_rotary_factor == 0.75
    rope = next(op for op in model_ops(nested, Workload(), "decode", 1, 1, 1) if op.name == "rope")
    assert rope.cost.flops == 3 * (24 + 8) * 96  # 3 FLOP x (24 query + 8 KV heads) x 96 rotated dims of 128


def test_bidirectional_attention_is_refused_not_counted_as_causal():
    raw = json.loads((CONFIGS / "gemma-3-1b.json").read_text())
    with pytest.raises(ConfigError, match="use_bidirectional_attention \\(an encoder's attention\\) is not modelled"):
        parse_model(dict(raw, use_bidirectional_attention=True))
