"""ModelConfig and Workload: load and validate a model YAML or a Hugging Face config.json.

A model file uses Hugging Face config.json key names, so a real config.json is accepted as it is
(GPT-2's n_embd / n_layer / n_head / n_inner / activation_function aliases included). An optional
``workload:`` section says what to run; CLI flags override it field by field.

Supported architectures (``model_type``):
  llama, mistral, qwen2, qwen3   gated SiLU MLP, RMSNorm, RoPE (qwen2: biases on q/k/v)
  mixtral                        as mistral, with a routed mixture-of-experts MLP
  gpt2                           GELU MLP, LayerNorm, learned positions, biases everywhere, tied lm_head
"""

from dataclasses import dataclass, replace
from typing import Optional

from roofline.dtypes import ACT_DTYPES, STORAGE_DTYPES
from roofline.errors import ConfigError
from roofline.validate import load_mapping, number, suggest

ARCHITECTURES = {
    # model_type: (gated_mlp, norm, position, qkv_bias, default tie_word_embeddings)
    "llama": (True, "rmsnorm", "rope", False, False),
    "mistral": (True, "rmsnorm", "rope", False, False),
    "mixtral": (True, "rmsnorm", "rope", False, False),
    "qwen2": (True, "rmsnorm", "rope", True, False),
    "qwen3": (True, "rmsnorm", "rope", False, False),
    "gpt2": (False, "layernorm", "learned", True, True),
}
ACTIVATIONS = ("silu", "swish", "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu")

# HF key -> our field, for the keys that change a count
_MODEL_KEYS = {
    "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
    "intermediate_size", "vocab_size", "hidden_act", "tie_word_embeddings", "num_local_experts",
    "num_experts_per_tok", "attention_bias", "mlp_bias", "max_position_embeddings", "sliding_window",
    "use_sliding_window", "name", "workload",
}
_GPT2_ALIASES = {
    "n_embd": "hidden_size", "n_layer": "num_hidden_layers", "n_head": "num_attention_heads",
    "n_inner": "intermediate_size", "activation_function": "hidden_act", "n_positions": "max_position_embeddings",
}
# HF keys that change no FLOP or byte count here; accepted silently
_HF_IGNORED = {
    "architectures", "auto_map", "bos_token_id", "eos_token_id", "pad_token_id", "torch_dtype", "dtype",
    "transformers_version", "initializer_range", "use_cache", "rope_theta", "rope_scaling", "rope_parameters",
    "attention_dropout", "pretraining_tp", "max_window_layers", "rms_norm_eps", "layer_norm_epsilon",
    "layer_norm_eps", "output_router_logits", "router_aux_loss_coef", "router_jitter_noise", "resid_pdrop",
    "embd_pdrop", "attn_pdrop", "summary_activation", "summary_first_dropout", "summary_proj_to_labels",
    "summary_type", "summary_use_proj", "task_specific_params", "scale_attn_weights",
    "reorder_and_upcast_attn", "scale_attn_by_inverse_layer_idx", "n_ctx", "_name_or_path", "name_or_path",
    "layer_types", "quantization_config", "is_decoder", "id2label", "label2id", "tokenizer_class",
}

PHASES = ("prefill", "decode", "both")
ATTN_IMPLS = ("flash", "naive")
MAX_SWEEP_POINTS = 1_000_000


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer's shape. Build with ``load_model`` or ``parse_model``."""

    name: str
    model_type: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    hidden_act: str
    tie_word_embeddings: bool
    head_dim_override: Optional[int] = None
    num_local_experts: int = 0  # 0 = dense MLP
    num_experts_per_tok: int = 0
    qkv_bias: bool = False
    mlp_bias: bool = False
    max_position_embeddings: Optional[int] = None
    sliding_window: Optional[int] = None
    ignored_keys: tuple = ()

    @property
    def head_dim(self) -> int:
        return self.head_dim_override or self.hidden_size // self.num_attention_heads

    @property
    def gated_mlp(self) -> bool:
        return ARCHITECTURES[self.model_type][0]

    @property
    def norm(self) -> str:
        return ARCHITECTURES[self.model_type][1]

    @property
    def position(self) -> str:
        return ARCHITECTURES[self.model_type][2]

    @property
    def is_moe(self) -> bool:
        return self.num_local_experts > 0

    @property
    def o_bias(self) -> bool:
        """gpt2 has a bias on its output projection; llama-style models do not."""
        return self.model_type == "gpt2"


@dataclass(frozen=True)
class Workload:
    """What to run. Sweepable fields are tuples; the analysis takes their cartesian product.

    Parallelism: ``tp`` splits every layer across GPUs (Megatron); ``pp`` splits the layers into equal
    stages, one GPU group each, with ``microbatches`` in flight through the pipeline; ``ep`` (MoE only)
    spreads the experts over GPUs that each run 1/ep of the batch's sequences through attention
    (data parallel) and exchange routed tokens with an all-to-all before and after the experts.

    Decode convention: one decode step generates one token per sequence and attends to
    ``context_len`` keys (the prompt plus the tokens generated so far, the new one included).
    With ``gen_tokens`` instead of ``context_len``, the step is evaluated at the mean context
    ``prompt_len + (gen_tokens + 1) / 2``; every cost is affine in the context, so this is the
    exact average step over the generation.
    """

    batch_size: tuple = (1,)
    prompt_len: tuple = (512,)
    context_len: Optional[tuple] = None
    gen_tokens: Optional[int] = None
    phase: str = "both"
    weight_dtype: str = "bf16"
    act_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    attn_impl: str = "flash"
    tp: int = 1
    pp: int = 1
    ep: int = 1
    microbatches: int = 1
    cuda_graph: bool = False

    @property
    def phases(self) -> tuple:
        return ("prefill", "decode") if self.phase == "both" else (self.phase,)


_WORKLOAD_KEYS = {f for f in Workload.__dataclass_fields__}


def load_model(path) -> ModelConfig:
    """Load a model YAML / config.json. Raises InputFileError or ConfigError."""
    model, _ = load_model_and_workload(path)
    return model


def load_model_and_workload(path, overrides: Optional[dict] = None):
    """(ModelConfig, Workload) from a file, with ``overrides`` (CLI flags, None = not given) applied."""
    raw = load_mapping(path, "model")
    model = parse_model(raw, str(path))
    workload_raw = raw.get("workload") or {}
    if not isinstance(workload_raw, dict):
        raise ConfigError(f"{path}: workload must be a mapping of settings, e.g. {{batch_size: 1}}")
    merged = dict(workload_raw)
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    workload = parse_workload(merged, f"{path}: workload")
    check_fit(model, workload, str(path))
    return model, workload


def parse_model(raw: dict, where: str = "<model>") -> ModelConfig:
    """Validate a config mapping with HF key names. Raises ConfigError naming the key and the fix."""
    data = {}
    for key, value in raw.items():
        target = _GPT2_ALIASES.get(key, key)
        if target in data and key != target:
            continue  # the HF name wins over its alias
        data[target] = value

    ignored = []
    for key in data:
        if key in _MODEL_KEYS or key in _HF_IGNORED:
            continue
        hint = suggest(key, _MODEL_KEYS - {"workload", "name"})
        if hint:
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")
        ignored.append(key)

    model_type = data.get("model_type")
    if model_type is None:
        raise ConfigError(f"{where}: missing key 'model_type' (one of: {', '.join(ARCHITECTURES)})")
    if not isinstance(model_type, str):
        raise ConfigError(f"{where}: model_type must be a name (one of: {', '.join(ARCHITECTURES)}), "
                          f"got a {type(model_type).__name__}")
    if model_type not in ARCHITECTURES:
        raise ConfigError(
            f"{where}: model_type '{model_type}' is not supported{suggest(model_type, ARCHITECTURES)}; "
            f"supported: {', '.join(ARCHITECTURES)}"
        )
    gated, _, _, qkv_bias, tie_default = ARCHITECTURES[model_type]

    def need(key):
        if data.get(key) is None:
            raise ConfigError(f"{where}: missing key '{key}' (a positive whole number)")
        return number(data[key], f"{where}: {key}", ConfigError, integer=True)

    def opt_int(key, default=None):
        if data.get(key) is None:
            return default
        return number(data[key], f"{where}: {key}", ConfigError, integer=True)

    def flag(key, default):
        value = data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
        return value

    hidden = need("hidden_size")
    layers = need("num_hidden_layers")
    heads = need("num_attention_heads")
    kv_heads = opt_int("num_key_value_heads", heads)
    head_dim = opt_int("head_dim")
    if gated:
        intermediate = need("intermediate_size")
    else:
        intermediate = opt_int("intermediate_size", 4 * hidden)  # gpt2: n_inner null means 4 * n_embd
    vocab = need("vocab_size")
    act = data.get("hidden_act", "silu" if gated else "gelu_new")
    if act not in ACTIVATIONS:
        raise ConfigError(f"{where}: hidden_act '{act}' is not supported{suggest(act, ACTIVATIONS)}; supported: {', '.join(ACTIVATIONS)}")

    if head_dim is None and hidden % heads:
        raise ConfigError(
            f"{where}: num_attention_heads {heads} does not divide hidden_size {hidden}; "
            f"fix one of them or give head_dim explicitly"
        )
    if heads % kv_heads:
        raise ConfigError(
            f"{where}: num_key_value_heads {kv_heads} does not divide num_attention_heads {heads} (GQA needs whole groups)"
        )

    experts = opt_int("num_local_experts", 0) if data.get("num_local_experts") not in (None, 0) else 0
    top_k = opt_int("num_experts_per_tok", 0) if experts else 0
    if model_type == "mixtral" and not experts:
        raise ConfigError(f"{where}: mixtral needs num_local_experts and num_experts_per_tok")
    if experts and not top_k:
        raise ConfigError(f"{where}: num_local_experts is set, so num_experts_per_tok is needed (experts per token)")
    if top_k > experts:
        raise ConfigError(
            f"{where}: num_experts_per_tok {top_k} is more than num_local_experts {experts}; a token picks distinct experts"
        )

    window = None
    if flag("use_sliding_window", True) and data.get("sliding_window") is not None:
        window = opt_int("sliding_window")

    return ModelConfig(
        name=str(data.get("name") or raw.get("_name_or_path") or model_type),
        model_type=model_type,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=intermediate,
        vocab_size=vocab,
        hidden_act=act,
        tie_word_embeddings=flag("tie_word_embeddings", tie_default),
        head_dim_override=head_dim,
        num_local_experts=experts,
        num_experts_per_tok=top_k,
        qkv_bias=flag("attention_bias", qkv_bias),
        mlp_bias=flag("mlp_bias", model_type == "gpt2"),
        max_position_embeddings=opt_int("max_position_embeddings"),
        sliding_window=window,
        ignored_keys=tuple(ignored),
    )


def parse_sweep(value, where: str, integer: bool = True) -> tuple:
    """A sweepable value -> tuple of positive numbers.

    Accepts a number, a list, or a string: '1,8,64', 'a:b' (step 1), 'a:b:s' (step s) or
    'a:b:xF' (geometric, factor F); ends are inclusive.
    """
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        items = []
        for part in value.split(","):
            part = part.strip()
            if ":" in part:
                items.extend(_range(part, where))
            elif part:
                items.append(part)
    else:
        items = [value]
    if not items:
        raise ConfigError(f"{where}: no values given")
    out = tuple(number(v, where, ConfigError, integer=integer) for v in items)
    return out


def _range(text: str, where: str) -> list:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ConfigError(f"{where}: range '{text}' must be start:stop, start:stop:step or start:stop:xFACTOR")
    start = number(parts[0], where, ConfigError, integer=True)
    stop = number(parts[1], where, ConfigError, integer=True)
    if stop < start:
        raise ConfigError(f"{where}: range '{text}' ends before it starts")
    step = parts[2] if len(parts) == 3 else "1"
    if step.startswith("x"):
        factor = number(step[1:], where, ConfigError)
        if factor <= 1:
            raise ConfigError(f"{where}: range '{text}': the factor after x must be above 1")
        if (stop / start) > factor ** 64:
            raise ConfigError(f"{where}: range '{text}' has too many points")
        values, v = [], float(start)
        while v <= stop * (1 + 1e-12):
            values.append(int(round(v)))
            v *= factor
        return sorted(set(values))
    step = number(step, where, ConfigError, integer=True)
    if (stop - start) // step + 1 > MAX_SWEEP_POINTS:
        raise ConfigError(f"{where}: range '{text}' has more than {MAX_SWEEP_POINTS:,} points; use a larger step")
    return list(range(start, stop + 1, step))


def parse_workload(raw: dict, where: str = "workload") -> Workload:
    """Validate workload settings (YAML section merged with CLI overrides)."""
    for key in raw:
        if key not in _WORKLOAD_KEYS:
            raise ConfigError(f"{where}: unknown key '{key}'{suggest(key, _WORKLOAD_KEYS)}; allowed: {', '.join(sorted(_WORKLOAD_KEYS))}")
    w = Workload()
    values = {}
    for key in ("batch_size", "prompt_len", "context_len"):
        if raw.get(key) is not None:
            values[key] = parse_sweep(raw[key], f"{where}: {key}")
    if raw.get("gen_tokens") is not None:
        values["gen_tokens"] = number(raw["gen_tokens"], f"{where}: gen_tokens", ConfigError, integer=True)
    for key in ("tp", "pp", "ep", "microbatches"):
        if raw.get(key) is not None:
            values[key] = number(raw[key], f"{where}: {key}", ConfigError, integer=True)
    for key, choices in (("phase", PHASES), ("attn_impl", ATTN_IMPLS), ("weight_dtype", STORAGE_DTYPES),
                         ("kv_dtype", STORAGE_DTYPES), ("act_dtype", ACT_DTYPES)):
        if raw.get(key) is not None:
            value = str(raw[key]).lower()
            if value not in choices:
                raise ConfigError(f"{where}: {key} '{raw[key]}' is not one of {', '.join(choices)}{suggest(value, choices)}")
            values[key] = value
    if raw.get("cuda_graph") is not None:
        if not isinstance(raw["cuda_graph"], bool):
            raise ConfigError(f"{where}: cuda_graph must be true or false")
        values["cuda_graph"] = raw["cuda_graph"]
    if "context_len" in values and "gen_tokens" in values:
        raise ConfigError(f"{where}: give context_len or gen_tokens, not both")
    w = replace(w, **values)
    n_points = len(w.batch_size) * len(w.prompt_len) * len(w.context_len or (0,))
    if n_points > MAX_SWEEP_POINTS:
        raise ConfigError(f"{where}: the sweep has {n_points:,} points, more than {MAX_SWEEP_POINTS:,}; narrow the ranges")
    if w.context_len and w.phase != "prefill":
        shortest, longest_prompt = min(w.context_len), max(w.prompt_len)
        if shortest < longest_prompt:
            raise ConfigError(
                f"{where}: context_len {shortest} is shorter than prompt_len {longest_prompt}; "
                f"the decode context includes the prompt, so context_len >= prompt_len"
            )
    return w


def check_fit(model: ModelConfig, w: Workload, where: str) -> None:
    """Checks that need both the model and the workload (tensor-parallel splits)."""
    if w.pp > 1 and model.num_hidden_layers % w.pp:
        raise ConfigError(f"{where}: pp {w.pp} does not divide num_hidden_layers {model.num_hidden_layers} into equal stages")
    if w.ep > 1:
        if not model.is_moe:
            raise ConfigError(f"{where}: ep {w.ep} needs a mixture-of-experts model (num_local_experts)")
        if model.num_local_experts % w.ep:
            raise ConfigError(f"{where}: ep {w.ep} does not divide num_local_experts {model.num_local_experts}")
        if w.tp > 1:
            raise ConfigError(f"{where}: ep together with tp is not modelled; use one of them")
        if min(w.batch_size) % w.ep:
            raise ConfigError(f"{where}: ep {w.ep} does not divide batch_size {min(w.batch_size)}; each GPU takes "
                              f"an equal share of the sequences")
    tp = w.tp
    if tp > 1:
        if model.num_attention_heads % tp:
            raise ConfigError(f"{where}: tp {tp} does not divide num_attention_heads {model.num_attention_heads}")
        kv = model.num_key_value_heads
        if kv % tp and tp % kv:
            raise ConfigError(f"{where}: tp {tp} and num_key_value_heads {kv}: one must divide the other")
        if model.intermediate_size % tp:
            raise ConfigError(f"{where}: tp {tp} does not divide intermediate_size {model.intermediate_size}")
