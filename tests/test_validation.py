"""Bad specs, models and workloads: one line naming the file, the key and the fix."""

from pathlib import Path

import pytest
import yaml

from roofline.config import load_model_and_workload, parse_model, parse_sweep, parse_workload
from roofline.errors import ConfigError, InputFileError, SpecError, UnknownHardware
from roofline.specs import load_spec

DATA = Path(__file__).resolve().parent / "data"
TINY_GPU = yaml.safe_load((DATA / "tiny_gpu.yaml").read_text())
TINY_MODEL = yaml.safe_load((DATA / "tiny_llama.yaml").read_text())


def write(tmp_path, data, name="x.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def spec_with(tmp_path, **changes):
    data = {**TINY_GPU, **changes}
    for k, v in changes.items():
        if v is None and k != "gpu_link":
            del data[k]
    return write(tmp_path, data)


def test_tiny_spec_has_round_numbers():
    spec = load_spec(DATA / "tiny_gpu.yaml")
    assert spec.ridge("bf16") == pytest.approx(10.0)  # 100 FLOP/s / 10 B/s
    assert spec.gpu_link_bytes_per_s == pytest.approx(2.0)  # 4 B/s bidirectional = 2 per direction


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"mem_bandwidth_gb_per_s": None}, "missing key 'mem_bandwidth_gb_per_s'"),
        ({"mem_bandwith_gb_per_s": 1}, "unknown key 'mem_bandwith_gb_per_s' (did you mean 'mem_bandwidth_gb_per_s'?)"),
        ({"mem_capacity_gb": "lots"}, "mem_capacity_gb: expected a number, got 'lots'"),
        ({"mem_capacity_gb": 0}, "mem_capacity_gb: must be greater than zero, got 0"),
        ({"launch_overhead_us": -5}, "launch_overhead_us: must be greater than zero, got -5"),
        ({"peak_tflops": {"bf61": 1.0}}, "peak_tflops: unknown dtype 'bf61' (did you mean 'bf16'?)"),
        ({"peak_tflops": {"bf16": True}}, "peak_tflops.bf16: expected a number, got True"),
        ({"host_link": {"name": "bus"}}, "host_link.bidirectional_gb_per_s is missing"),
        ({"sources": {**TINY_GPU["sources"], "l2_cache_mb": ""}}, "sources.l2_cache_mb is missing; cite where"),
    ],
)
def test_bad_spec(tmp_path, changes, message):
    path = spec_with(tmp_path, **changes)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_spec_accepts_yaml_exponent_strings(tmp_path):
    spec = load_spec(spec_with(tmp_path, mem_bandwidth_gb_per_s="2e1"))  # PyYAML reads 2e1 as a string
    assert spec.mem_bytes_per_s == 20e9


def test_unknown_gpu_lists_known_and_nearest():
    with pytest.raises(UnknownHardware) as err:
        load_spec("h100-smx")
    msg = str(err.value)
    assert msg.startswith("unknown GPU 'h100-smx' (did you mean 'h100-sxm'?); known: a10, a100-40gb-sxm")
    assert msg.endswith("(or pass a YAML path)")


def test_missing_spec_file():
    with pytest.raises(UnknownHardware, match="hardware spec file not found: nowhere/gpu.yaml"):
        load_spec("nowhere/gpu.yaml")


def test_spec_without_the_dtype():
    spec = load_spec("a100-80gb-sxm")
    with pytest.raises(SpecError, match="a100-80gb-sxm has no fp8 peak in its spec"):
        spec.ceiling_flops("fp8")


# --- model files


def model_error(tmp_path, **changes):
    data = {**TINY_MODEL, **changes}
    for k, v in changes.items():
        if v is None:
            del data[k]
    with pytest.raises((ConfigError, InputFileError)) as err:
        load_model_and_workload(write(tmp_path, data))
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"hidden_size": None}, "missing key 'hidden_size'"),
        ({"hidden_sise": 64, "hidden_size": None}, "unknown key 'hidden_sise' (did you mean 'hidden_size'?)"),
        (
            {"num_attention_heads": 6},
            "num_attention_heads 6 does not divide hidden_size 64; fix one of them or give head_dim",
        ),
        ({"num_key_value_heads": 3}, "num_key_value_heads 3 does not divide num_attention_heads 8"),
        ({"num_hidden_layers": -2}, "num_hidden_layers: must be greater than zero, got -2"),
        ({"num_hidden_layers": 2.5}, "num_hidden_layers: expected a whole number, got 2.5"),
        ({"model_type": "lama"}, "model_type 'lama' is not supported (did you mean 'llama'?)"),
        ({"model_type": None}, "missing key 'model_type'"),
        ({"hidden_act": "swiglu"}, "hidden_act 'swiglu' is not supported"),
        ({"tie_word_embeddings": "no"}, "tie_word_embeddings must be true or false, got 'no'"),
        (
            {"model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 6},
            "num_experts_per_tok 6 is more than num_local_experts 4",
        ),
        ({"workload": {"batch_size": -1}}, "workload: batch_size: must be greater than zero, got -1"),
        ({"workload": {"batch_sise": 1}}, "workload: unknown key 'batch_sise' (did you mean 'batch_size'?)"),
        ({"workload": {"weight_dtype": "int3"}}, "weight_dtype 'int3' is not one of bf16, fp16, fp8, int8, int4"),
        ({"workload": {"prompt_len": 100, "context_len": 50}}, "context_len 50 is shorter than prompt_len 100"),
        ({"workload": {"tp": 3}}, "tp 3 does not divide num_attention_heads 8"),
        (
            {"workload": {"batch_size": "1:100000", "prompt_len": "1:100000"}},
            "the sweep has 10,000,000,000 points, more than 1,000,000; narrow the ranges",
        ),
        ({"workload": "fast"}, "workload must be a mapping"),
    ],
)
def test_bad_model(tmp_path, changes, message):
    assert message in model_error(tmp_path, **changes)


def test_missing_model_file(tmp_path):
    with pytest.raises(InputFileError, match="model file not found: .*nope.yaml"):
        load_model_and_workload(tmp_path / "nope.yaml")


def test_unparsable_yaml(tmp_path):
    path = write(tmp_path, "hidden_size: [64\nnum_hidden_layers: 2\n")
    with pytest.raises(InputFileError) as err:
        load_model_and_workload(path)
    assert str(err.value).startswith(f"{path}: not valid YAML (line ")


def test_top_level_not_a_mapping(tmp_path):
    with pytest.raises(InputFileError, match="expected a mapping of keys to values at the top level, got list"):
        load_model_and_workload(write(tmp_path, "- 1\n- 2\n"))


def test_real_hf_config_json_is_accepted(tmp_path):
    """A Llama-2 config.json as Hugging Face ships it, unknown-to-us keys and all."""
    config = {
        "architectures": ["LlamaForCausalLM"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 4096,
        "initializer_range": 0.02,
        "intermediate_size": 11008,
        "max_position_embeddings": 4096,
        "model_type": "llama",
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 32,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "transformers_version": "4.32.0.dev0",
        "use_cache": True,
        "vocab_size": 32000,
        "some_future_key": 3,
    }
    import json

    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    model, workload = load_model_and_workload(path)
    assert model.hidden_size == 4096 and workload.batch_size == (1,)
    assert model.ignored_keys == ("some_future_key",)


def test_gpt2_aliases():
    m = parse_model({"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257})
    assert (m.hidden_size, m.num_hidden_layers, m.intermediate_size, m.hidden_act) == (768, 12, 3072, "gelu_new")
    assert m.tie_word_embeddings and m.norm == "layernorm" and m.position == "learned"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1,8,64", (1, 8, 64)),
        ("1:256:x2", (1, 2, 4, 8, 16, 32, 64, 128, 256)),
        ("128:512:128", (128, 256, 384, 512)),
        ("4", (4,)),
        ([2, 3], (2, 3)),
    ],
)
def test_parse_sweep(text, expected):
    assert parse_sweep(text, "batch") == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("0", "must be greater than zero"),
        ("3:2", "ends before it starts"),
        ("1:8:x1", "the factor after x must be above 1"),
        ("a,b", "expected a number, got 'a'"),
        ("1:2:3:4", "must be start:stop"),
    ],
)
def test_bad_sweep(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_sweep(text, "batch")


def test_gen_tokens_decodes_at_the_mean_context():
    w = parse_workload({"prompt_len": 100, "gen_tokens": 9})
    from roofline.analysis import sweep_points

    assert sweep_points(w)["context_len"][0] == 105  # contexts 101..109, mean 105
