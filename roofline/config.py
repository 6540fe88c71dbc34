"""ModelConfig and Workload: load and validate a model YAML or a Hugging Face config.json.

A model file uses Hugging Face config.json key names, so a real config.json is accepted as it is
(GPT-2's n_embd / n_layer / n_head / n_inner / activation_function aliases included). An optional
``workload:`` section says what to run; CLI flags override it field by field.

Supported architectures (``model_type``), the table FAMILIES below:
  llama, mistral, qwen2, qwen3   gated SiLU MLP, RMSNorm, RoPE (qwen2: biases on q/k/v; qwen3: per-head q/k norms;
                                 llama: attention_bias puts biases on q/k/v and o_proj)
  mixtral                        as mistral, with a routed mixture-of-experts MLP
  qwen2_moe, qwen3_moe           routed experts of moe_intermediate_size (qwen2_moe: a shared expert and its sigmoid
                                 gate); dense layers from mlp_only_layers / decoder_sparse_step
  deepseek_v2, deepseek_v3       multi-head latent attention (MLA), shared + routed experts, first_k_dense_replace
                                 dense layers
  gemma2, gemma3_text            four norms per layer, scaled tied embeddings, GELU-tanh, sliding and global layers
                                 (gemma3_text: per-head q/k norms; gemma2: logit soft-capping)
  phi3                           fused qkv_proj and gate_up_proj, partial rotary
  falcon (RefinedWebModel)       multi-query or grouped attention, attention and MLP in parallel, GELU MLP, LayerNorm
  olmo2                          q/k norms over the whole projection, norms after attention and MLP (no pre-norms)
  gpt_oss                        sliding (128) and full layers alternating, attention sinks, routed experts with biases
  gpt2                           GELU MLP, LayerNorm, learned positions, biases everywhere, tied lm_head

Sliding windows per layer, as the modeling code decides: ``layer_types`` when given (gemma2/3, gpt_oss, qwen2/3);
else ``sliding_window_pattern`` (gemma3: every N-th layer is global); else qwen2/qwen2_moe/qwen3/qwen3_moe window
the layers from ``max_window_layers`` on when ``use_sliding_window`` is true; else gemma2 alternates (even
layers windowed); else (mistral, mixtral, phi3) ``sliding_window`` applies to every layer.
"""

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from roofline.dtypes import ACT_DTYPES, STORAGE_DTYPES
from roofline.errors import ConfigError, InputFileError
from roofline.quant import CHECKPOINT_SOURCE, WeightQuant, parse_quantization_config
from roofline.validate import load_mapping, number, suggest


@dataclass(frozen=True)
class Family:
    """What a model_type fixes about the architecture (the config keys give the sizes)."""

    gated_mlp: bool = True
    norm: str = "rmsnorm"  # rmsnorm | layernorm
    position: str = "rope"  # rope | learned
    qkv_bias: bool = False  # default for q/k/v biases when the config has no attention_bias
    o_bias_follows_attention_bias: bool = True  # llama-style: attention_bias covers o_proj too
    tie: bool = False  # default tie_word_embeddings
    act: str = "silu"
    attention: str = "gqa"  # gqa | mla
    layout: str = "pre"  # pre | sandwich (gemma: 4 norms) | post (olmo2) | parallel (falcon)
    qk_norm: str = ""  # "" | head (RMSNorm over each head's dim) | full (over the whole projection)
    fused_qkv: bool = False  # one qkv_proj op instead of q_proj, k_proj, v_proj
    fused_gate_up: bool = False  # one gate_up_proj op
    embed_scale: bool = False  # embeddings multiplied by sqrt(hidden_size)
    moe: str = ""  # "" | mixtral | qwen_moe | deepseek | gpt_oss
    windows: str = "all"  # how per-layer windows are chosen when layer_types is absent: all | qwen | gemma2 | gemma3


FAMILIES = {
    "llama": Family(),
    "mistral": Family(),
    "mixtral": Family(moe="mixtral"),
    "qwen2": Family(qkv_bias=True, o_bias_follows_attention_bias=False, windows="qwen"),
    "qwen3": Family(qk_norm="head", windows="qwen"),
    "qwen2_moe": Family(qkv_bias=True, o_bias_follows_attention_bias=False, moe="qwen_moe", windows="qwen"),
    "qwen3_moe": Family(qk_norm="head", moe="qwen_moe", windows="qwen"),
    "deepseek_v2": Family(attention="mla", moe="deepseek"),
    "deepseek_v3": Family(attention="mla", moe="deepseek"),
    "gemma2": Family(layout="sandwich", tie=True, act="gelu_pytorch_tanh", embed_scale=True, windows="gemma2"),
    "gemma3_text": Family(
        layout="sandwich", tie=True, act="gelu_pytorch_tanh", embed_scale=True, qk_norm="head", windows="gemma3"
    ),
    "phi3": Family(fused_qkv=True, fused_gate_up=True),
    "falcon": Family(gated_mlp=False, norm="layernorm", layout="parallel", tie=True, act="gelu", fused_qkv=True),
    "olmo2": Family(layout="post", qk_norm="full"),
    "gpt_oss": Family(moe="gpt_oss"),
    "gpt2": Family(gated_mlp=False, norm="layernorm", position="learned", qkv_bias=True, tie=True, act="gelu_new"),
}
MODEL_TYPE_ALIASES = {"RefinedWebModel": "falcon", "RefinedWeb": "falcon"}
MULTIMODAL_WRAPPERS = {"gemma3": "gemma3_text"}  # configs whose decoder sits under text_config
# kept for callers that list the supported architectures
ARCHITECTURES = tuple(FAMILIES)
ACTIVATIONS = ("silu", "swish", "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu")

# HF key -> our field, for the keys that change a count
_MODEL_KEYS = {
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "vocab_size",
    "hidden_act",
    "tie_word_embeddings",
    "num_local_experts",
    "num_experts_per_tok",
    "attention_bias",
    "mlp_bias",
    "max_position_embeddings",
    "sliding_window",
    "use_sliding_window",
    "name",
    "workload",
    "quantization_config",
    # per-layer windows
    "layer_types",
    "max_window_layers",
    "sliding_window_pattern",
    # mixture of experts
    "num_experts",
    "n_routed_experts",
    "moe_intermediate_size",
    "shared_expert_intermediate_size",
    "n_shared_experts",
    "first_k_dense_replace",
    "moe_layer_freq",
    "decoder_sparse_step",
    "mlp_only_layers",
    "experts_per_token",
    # multi-head latent attention
    "q_lora_rank",
    "kv_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
    # gemma, phi3, falcon
    "hidden_activation",
    "final_logit_softcapping",
    "attn_logit_softcapping",
    "query_pre_attn_scalar",
    "partial_rotary_factor",
    "lm_head_bias",
    "multi_query",
    "new_decoder_architecture",
    "parallel_attn",
    "num_kv_heads",
    "num_ln_in_parallel_attn",
    "bias",
    "alibi",
    "ffn_hidden_size",
    "activation",
    # names transformers 5 writes when it saves these configs
    "qkv_bias",
    "_sliding_window_pattern",
    "use_bidirectional_attention",
}
_GPT2_ALIASES = {
    "n_embd": "hidden_size",
    "n_layer": "num_hidden_layers",
    "n_head": "num_attention_heads",
    "n_inner": "intermediate_size",
    "activation_function": "hidden_act",
    "n_positions": "max_position_embeddings",
}
# HF keys that change no FLOP or byte count here, each with the reason; accepted silently. The one list.
IGNORED_KEYS = {
    # bookkeeping
    **dict.fromkeys(
        (
            "architectures",
            "auto_map",
            "transformers_version",
            "_name_or_path",
            "name_or_path",
            "torch_dtype",
            "dtype",
            "tokenizer_class",
            "is_decoder",
            "id2label",
            "label2id",
            "task_specific_params",
            "use_cache",
            "cache_implementation",
            "initial_context_length",
        ),
        "metadata: names, versions, defaults of the HF runtime",
    ),
    **dict.fromkeys(("bos_token_id", "eos_token_id", "pad_token_id"), "token ids of the tokenizer"),
    # numerics that change values, not shapes
    **dict.fromkeys(
        (
            "rope_theta",
            "rope_scaling",
            "rope_parameters",
            "rope_local_base_freq",
            "original_max_position_embeddings",
            "interpolate_factor",
        ),
        "rope frequencies and scaling (YaRN, longrope, ...) change the cos/sin values, not the work",
    ),
    **dict.fromkeys(("rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps"), "norm epsilon: a value, not a shape"),
    **dict.fromkeys(
        (
            "initializer_range",
            "pretraining_tp",
            "scale_attn_weights",
            "reorder_and_upcast_attn",
            "scale_attn_by_inverse_layer_idx",
            "apply_residual_connection_post_layernorm",
            "swiglu_limit",
            "routed_scaling_factor",
            "norm_topk_prob",
            "scoring_func",
            "topk_method",
            "n_group",
            "topk_group",
            "sliding_window_size",
            "full_attn_mod",
        ),
        "values, scales and routing choices that keep every shape (group-limited routing picks "
        "which experts, not how many)",
    ),
    # training only
    **dict.fromkeys(
        (
            "attention_dropout",
            "resid_pdrop",
            "embd_pdrop",
            "attn_pdrop",
            "hidden_dropout",
            "output_router_logits",
            "router_aux_loss_coef",
            "router_jitter_noise",
            "aux_loss_alpha",
            "seq_aux",
            "summary_activation",
            "summary_first_dropout",
            "summary_proj_to_labels",
            "summary_type",
            "summary_use_proj",
            "n_ctx",
            "ep_size",
        ),
        "training only (dropout, auxiliary losses, heads for other tasks)",
    ),
    "num_nextn_predict_layers": "multi-token-prediction module: used in training and speculative decoding only; "
    "HF transformers does not build it either",
    "qk_head_dim": "derived by transformers 5: qk_nope_head_dim + qk_rope_head_dim",
    "swiglu_alpha": "a value inside gpt-oss's activation, not a shape",
    "rope_interleave": "the order of the rotated pairs, not the work",
}

PHASES = ("prefill", "decode", "both")
ATTN_IMPLS = ("flash", "naive")
MLA_FORMS = ("auto", "absorbed", "decompressed")
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
    intermediate_size: int  # the dense MLP's width (dense layers of an MoE model too)
    vocab_size: int
    hidden_act: str
    tie_word_embeddings: bool
    head_dim_override: Optional[int] = None
    num_local_experts: int = 0  # 0 = dense MLP
    num_experts_per_tok: int = 0
    qkv_bias: bool = False
    mlp_bias: bool = False
    max_position_embeddings: Optional[int] = None
    sliding_window: Optional[int] = None  # the window of the windowed layers (None: no layer is windowed)
    ignored_keys: tuple = ()
    o_bias: bool = False
    window_layers: Optional[tuple] = None  # per layer: True if windowed; None = every layer when sliding_window
    moe_intermediate_size: Optional[int] = None  # routed experts' width (None: intermediate_size, as mixtral)
    moe_layers: Optional[int] = None  # layers with routed experts (None: all, when num_local_experts)
    shared_expert_intermediate_size: int = 0  # one always-on expert of this width (0: none)
    shared_expert_gate: bool = False  # qwen2_moe: sigmoid(x @ w[h, 1]) scales the shared expert
    expert_bias: bool = False  # gpt_oss: biases on the router and on every expert's projections
    q_lora_rank: Optional[int] = None  # MLA: None = a plain q_proj
    kv_lora_rank: int = 0  # MLA latent width (0: not MLA)
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    partial_rotary_factor: float = 1.0
    lm_head_bias: bool = False
    final_logit_softcapping: Optional[float] = None
    attention_sinks: bool = False  # gpt_oss: one learned logit per head joins each softmax
    parallel_norms: int = 1  # falcon: norms feeding the parallel attention and MLP (1, or 2 in the new layout)

    @property
    def family(self) -> Family:
        return FAMILIES[self.model_type]

    quant: Optional[WeightQuant] = None  # the checkpoint's quantization_config (roofline/quant.py)

    @property
    def head_dim(self) -> int:
        """Query/key head size (MLA: the nope and rope parts together)."""
        if self.is_mla:
            return self.qk_nope_head_dim + self.qk_rope_head_dim
        return self.head_dim_override or self.hidden_size // self.num_attention_heads

    @property
    def gated_mlp(self) -> bool:
        return self.family.gated_mlp

    @property
    def norm(self) -> str:
        return self.family.norm

    @property
    def position(self) -> str:
        return self.family.position

    @property
    def is_moe(self) -> bool:
        return self.num_local_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def expert_intermediate_size(self) -> int:
        return self.moe_intermediate_size or self.intermediate_size

    @property
    def moe_layer_count(self) -> int:
        if not self.is_moe:
            return 0
        return self.num_hidden_layers if self.moe_layers is None else self.moe_layers

    @property
    def layer_windows(self) -> tuple:
        """Per layer, the sliding window (keys a query sees) or None for full attention."""
        if not self.sliding_window:
            return (None,) * self.num_hidden_layers
        flags = self.window_layers if self.window_layers is not None else (True,) * self.num_hidden_layers
        return tuple(self.sliding_window if f else None for f in flags)


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

    MoE routing: the routed experts of a layer that receive tokens in a step are, by default, the expectation
    under uniform routing, E (1 - (1 - k/E)^tokens) (formulas.experts). ``routed_experts`` replaces it with a
    count seen in a real step (per MoE layer and GPU, a mean over the layers): the reference's router sent 8
    decode tokens of Mixtral to 7.0 experts a layer on an H200 (reports/validate-h200/window5/0244), where
    uniform routing expects 7.2. It fixes one step's routing, so it needs one phase and one batch_size,
    prompt_len and context_len.
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
    mla_form: str = "auto"  # MLA models: auto = decompressed in prefill, absorbed in decode (what vLLM runs)
    tp: int = 1
    pp: int = 1
    ep: int = 1
    microbatches: int = 1
    cuda_graph: bool = False
    routed_experts: Optional[float] = None  # experts with tokens per MoE layer and GPU, as measured; None: expected
    weight_dtype_source: str = "default"  # where weight_dtype came from: a flag, the file, the checkpoint
    kv_dtype_source: str = "default"  # where kv_dtype came from

    @property
    def phases(self) -> tuple:
        return ("prefill", "decode") if self.phase == "both" else (self.phase,)


_WORKLOAD_KEYS = {f for f in Workload.__dataclass_fields__}


def load_model(path: str | Path) -> ModelConfig:
    """Load a model YAML / config.json. Raises InputFileError or ConfigError."""
    model, _ = load_model_and_workload(path)
    return model


def load_model_and_workload(path: str | Path, overrides: Optional[dict] = None) -> "tuple[ModelConfig, Workload]":
    """(ModelConfig, Workload) from a file, with ``overrides`` (CLI flags, None = not given) applied."""
    path = resolve_model_path(path)
    raw = load_mapping(path, "model")
    if path.name == "config.json" and not (raw.get("name") or raw.get("_name_or_path")):
        raw = {**raw, "_name_or_path": checkpoint_name(path)}
    model = parse_model(raw, str(path))
    workload_raw = raw.get("workload") or {}
    if not isinstance(workload_raw, dict):
        raise ConfigError(f"{path}: workload must be a mapping of settings, e.g. {{batch_size: 1}}")
    merged = dict(workload_raw)
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    merged["weight_dtype_source"] = weight_dtype_source(overrides or {}, workload_raw)
    merged["kv_dtype_source"] = weight_dtype_source(overrides or {}, workload_raw, "kv_dtype")
    workload = with_checkpoint_weights(model, parse_workload(merged, f"{path}: workload"))
    check_fit(model, workload, str(path))
    return model, workload


def parse_model(raw: dict, where: str = "<model>") -> ModelConfig:
    """Validate a config mapping with HF key names. Raises ConfigError naming the key and the fix.

    The architecture is checked first: an unknown model_type is refused before any other key is read.
    """
    data = {}
    for key, value in raw.items():
        target = _GPT2_ALIASES.get(key, key)
        if target in data and key != target:
            continue  # the HF name wins over its alias
        data[target] = value

    model_type = data.get("model_type")
    if model_type is None:
        raise ConfigError(f"{where}: missing key 'model_type' (one of: {', '.join(FAMILIES)})")
    if not isinstance(model_type, str):
        raise ConfigError(
            f"{where}: model_type must be a name (one of: {', '.join(FAMILIES)}), got a {type(model_type).__name__}"
        )
    model_type = MODEL_TYPE_ALIASES.get(model_type, model_type)
    if model_type in MULTIMODAL_WRAPPERS:
        raise ConfigError(
            f"{where}: model_type '{model_type}' is a multimodal wrapper; give its text_config "
            f"section as the model (model_type {MULTIMODAL_WRAPPERS[model_type]})"
        )
    if model_type not in FAMILIES:
        raise ConfigError(
            f"{where}: model_type '{model_type}' is not supported{suggest(str(model_type), FAMILIES)}; "
            f"supported: {', '.join(FAMILIES)}"
        )
    fam = FAMILIES[model_type]

    ignored = []
    for key in data:
        if key in _MODEL_KEYS or key in IGNORED_KEYS:
            continue
        if key in ("text_config", "vision_config", "audio_config") and isinstance(data[key], dict):
            raise ConfigError(
                f"{where}: a {key} section: this is a multimodal model's config; roofline models the decoder, so "
                f"give its text_config section as the model (its own model_type), or a text-only config"
            )
        hint = suggest(key, _MODEL_KEYS - {"workload", "name"})
        if hint:
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")
        ignored.append(key)

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
    vocab = need("vocab_size")
    qkv_bias = flag("attention_bias", flag("qkv_bias", fam.qkv_bias))
    if flag("use_bidirectional_attention", False):
        raise ConfigError(
            f"{where}: use_bidirectional_attention (an encoder's attention) is not modelled; "
            f"roofline models causal decoders"
        )
    o_bias = model_type == "gpt2" or (fam.o_bias_follows_attention_bias and flag("attention_bias", False))
    parallel_norms = 1
    if model_type == "falcon":
        qkv_bias = o_bias = flag("bias", False)
        if flag("alibi", False):
            raise ConfigError(f"{where}: falcon with alibi positions is not modelled; only rotary falcon models are")
        new_arch = flag("new_decoder_architecture", False)
        if new_arch:
            kv_heads = opt_int("num_kv_heads", heads)
            parallel_norms = opt_int("num_ln_in_parallel_attn", 2)
        else:
            kv_heads = 1 if flag("multi_query", True) else heads
        if not new_arch and not flag("parallel_attn", True):
            raise ConfigError(f"{where}: falcon with parallel_attn false is not modelled; only the parallel block is")
        data.setdefault("intermediate_size", data.get("ffn_hidden_size"))
        data.setdefault("hidden_act", data.get("activation"))
    if fam.gated_mlp:
        intermediate = need("intermediate_size")
    else:
        intermediate = opt_int("intermediate_size", 4 * hidden)  # gpt2, falcon: null means 4 * hidden
    act = data.get("hidden_activation") or data.get("hidden_act") or fam.act
    if act not in ACTIVATIONS:
        raise ConfigError(
            f"{where}: hidden_act '{act}' is not supported{suggest(act, ACTIVATIONS)}; supported: {', '.join(ACTIVATIONS)}"
        )

    if head_dim is None and hidden % heads:
        raise ConfigError(
            f"{where}: num_attention_heads {heads} does not divide hidden_size {hidden}; "
            f"fix one of them or give head_dim explicitly"
        )
    if heads % kv_heads:
        raise ConfigError(
            f"{where}: num_key_value_heads {kv_heads} does not divide num_attention_heads {heads} (GQA needs whole groups)"
        )

    moe = _parse_moe(data, fam, model_type, layers, where, opt_int)
    mla = _parse_mla(data, fam, where, opt_int, need)
    if mla:
        kv_heads = heads  # MLA: every head has its own (decompressed) k and v

    partial = data.get("partial_rotary_factor")
    if partial is None and isinstance(data.get("rope_parameters"), dict):  # where transformers 5 saves it
        partial = data["rope_parameters"].get("partial_rotary_factor")
    partial = 1.0 if partial is None else number(partial, f"{where}: partial_rotary_factor", ConfigError)
    if partial > 1:
        raise ConfigError(f"{where}: partial_rotary_factor {partial} is above 1; it is the rotated share of head_dim")
    softcap = data.get("final_logit_softcapping")
    if softcap is not None:
        softcap = number(softcap, f"{where}: final_logit_softcapping", ConfigError)

    window, window_layers = _parse_windows(data, fam, layers, where, opt_int, flag)

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
        tie_word_embeddings=flag("tie_word_embeddings", fam.tie),
        head_dim_override=head_dim,
        qkv_bias=qkv_bias,
        o_bias=o_bias,
        mlp_bias=flag("mlp_bias", model_type == "gpt2"),
        max_position_embeddings=opt_int("max_position_embeddings"),
        sliding_window=window,
        window_layers=window_layers,
        ignored_keys=tuple(ignored),
        partial_rotary_factor=float(partial),
        lm_head_bias=flag("lm_head_bias", False),
        final_logit_softcapping=softcap,
        attention_sinks=model_type == "gpt_oss",
        parallel_norms=parallel_norms,
        **moe,
        **mla,
        quant=parse_quantization_config(raw["quantization_config"], where) if raw.get("quantization_config") else None,
    )


def _parse_moe(data, fam: Family, model_type: str, layers: int, where: str, opt_int) -> dict:
    """The mixture-of-experts fields, under each family's key names."""
    experts = 0
    for key in ("num_local_experts", "num_experts", "n_routed_experts"):
        if data.get(key):
            experts = opt_int(key)
            break
    if not experts:
        if model_type == "mixtral":
            raise ConfigError(f"{where}: mixtral needs num_local_experts and num_experts_per_tok")
        if fam.moe and fam.moe != "mixtral":
            raise ConfigError(
                f"{where}: {model_type} needs its number of experts "
                f"(num_experts, n_routed_experts or num_local_experts)"
            )
        return {}
    top_k = opt_int("num_experts_per_tok", 0) or opt_int("experts_per_token", 0)
    if not top_k:
        raise ConfigError(f"{where}: num_local_experts is set, so num_experts_per_tok is needed (experts per token)")
    if top_k > experts:
        raise ConfigError(
            f"{where}: num_experts_per_tok {top_k} is more than num_local_experts {experts}; a token picks distinct experts"
        )
    out = dict(
        num_local_experts=experts, num_experts_per_tok=top_k, moe_intermediate_size=opt_int("moe_intermediate_size")
    )
    if fam.moe in ("qwen_moe", "deepseek") and out["moe_intermediate_size"] is None:
        raise ConfigError(f"{where}: {model_type} needs moe_intermediate_size (the routed experts' width)")
    if fam.moe == "qwen_moe":
        step = opt_int("decoder_sparse_step", 1)
        dense = set(data.get("mlp_only_layers") or [])
        out["moe_layers"] = sum(1 for i in range(layers) if i not in dense and (i + 1) % step == 0)
        shared = opt_int("shared_expert_intermediate_size", 0)
        out["shared_expert_intermediate_size"] = shared
        out["shared_expert_gate"] = bool(shared)
    elif fam.moe == "deepseek":
        first_dense = opt_int("first_k_dense_replace", 0)
        freq = opt_int("moe_layer_freq", 1)
        out["moe_layers"] = sum(1 for i in range(layers) if i >= first_dense and i % freq == 0)
        out["shared_expert_intermediate_size"] = opt_int("n_shared_experts", 0) * out["moe_intermediate_size"]
    elif fam.moe == "gpt_oss":
        out["expert_bias"] = True
    return out


def _parse_mla(data, fam: Family, where: str, opt_int, need) -> dict:
    """Multi-head latent attention sizes (deepseek_v2/v3)."""
    if fam.attention != "mla":
        return {}
    return dict(
        q_lora_rank=opt_int("q_lora_rank"),
        kv_lora_rank=need("kv_lora_rank"),
        qk_nope_head_dim=need("qk_nope_head_dim"),
        qk_rope_head_dim=need("qk_rope_head_dim"),
        v_head_dim=need("v_head_dim"),
    )


def _parse_windows(data, fam: Family, layers: int, where: str, opt_int, flag):
    """(window, per-layer flags or None) as the modeling code decides which layers are windowed."""
    window = None if data.get("sliding_window") in (None, 0) else opt_int("sliding_window")  # 0: none (HF saves it)
    types = data.get("layer_types")
    if fam.windows == "qwen" and not flag("use_sliding_window", False):
        window = None  # qwen2/3 configs ship a sliding_window they do not use
    elif fam.windows == "all" and not flag("use_sliding_window", True):
        window = None
    if types is not None:
        if not isinstance(types, list) or len(types) != layers:
            raise ConfigError(
                f"{where}: layer_types must list one entry per layer ({layers}), "
                f"got {len(types) if isinstance(types, list) else repr(types)}"
            )
        known = ("full_attention", "sliding_attention")
        bad = [t for t in types if t not in known]
        if bad:
            raise ConfigError(f"{where}: layer_types entry '{bad[0]}' is not modelled; known: {', '.join(known)}")
        flags = tuple(t == "sliding_attention" for t in types)
        if any(flags) and not window:
            raise ConfigError(f"{where}: layer_types has sliding_attention layers but no sliding_window size")
        return (window if any(flags) else None), flags
    if window is None:
        return None, None
    if fam.windows == "qwen":
        first = opt_int("max_window_layers", layers)
        return window, tuple(i >= first for i in range(layers))
    if fam.windows == "gemma2":
        return window, tuple(i % 2 == 0 for i in range(layers))
    if fam.windows == "gemma3":
        pattern = opt_int("sliding_window_pattern", opt_int("_sliding_window_pattern", 6))
        return window, tuple((i + 1) % pattern != 0 for i in range(layers))
    return window, None


def parse_sweep(value: object, where: str, integer: bool = True) -> tuple:
    """A sweepable value -> tuple of positive numbers.

    Accepts a number, a list, or a string: '1,8,64', 'a:b' (step 1), 'a:b:s' (step s) or
    'a:b:xF' (geometric, factor F); ends are inclusive.
    """
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str):
        items = []
        parts = [part.strip() for part in value.split(",")]
        if len(parts) > 1 and not all(parts):
            raise ConfigError(f"{where}: an empty item in '{value}'; separate values with single commas (1,8,64)")
        for part in parts:
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
        if (stop / start) > factor**64:
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
            raise ConfigError(
                f"{where}: unknown key '{key}'{suggest(key, _WORKLOAD_KEYS)}; allowed: {', '.join(sorted(_WORKLOAD_KEYS))}"
            )
    w = Workload()
    values = {}
    for key in ("batch_size", "prompt_len", "context_len"):
        if raw.get(key) is not None:
            values[key] = parse_sweep(raw[key], f"{where}: {key}")
    if raw.get("gen_tokens") is not None:
        values["gen_tokens"] = number(raw["gen_tokens"], f"{where}: gen_tokens", ConfigError, integer=True)
    if raw.get("routed_experts") is not None:
        values["routed_experts"] = number(raw["routed_experts"], f"{where}: routed_experts", ConfigError)
    for key in ("tp", "pp", "ep", "microbatches"):
        if raw.get(key) is not None:
            values[key] = number(raw[key], f"{where}: {key}", ConfigError, integer=True)
    for key, choices in (
        ("phase", PHASES),
        ("attn_impl", ATTN_IMPLS),
        ("mla_form", MLA_FORMS),
        ("weight_dtype", STORAGE_DTYPES),
        ("kv_dtype", STORAGE_DTYPES),
        ("act_dtype", ACT_DTYPES),
    ):
        if raw.get(key) is not None:
            value = str(raw[key]).lower()
            if value not in choices:
                raise ConfigError(
                    f"{where}: {key} '{raw[key]}' is not one of {', '.join(choices)}{suggest(value, choices)}"
                )
            values[key] = value
    for key in ("weight_dtype_source", "kv_dtype_source"):
        if raw.get(key):
            values[key] = str(raw[key])
    if raw.get("cuda_graph") is not None:
        if not isinstance(raw["cuda_graph"], bool):
            raise ConfigError(f"{where}: cuda_graph must be true or false")
        values["cuda_graph"] = raw["cuda_graph"]
    if "context_len" in values and "gen_tokens" in values:
        raise ConfigError(f"{where}: give context_len or gen_tokens, not both")
    if values.get("microbatches", 1) > 1 and values.get("pp", 1) == 1:
        raise ConfigError(
            f"{where}: microbatches {values['microbatches']} needs pp > 1 (micro-batches fill a pipeline of stages); "
            f"give pp, or leave microbatches out"
        )
    w = replace(w, **values)
    n_points = len(w.batch_size) * len(w.prompt_len) * len(w.context_len or (0,))
    if n_points > MAX_SWEEP_POINTS:
        raise ConfigError(
            f"{where}: the sweep has {n_points:,} points, more than {MAX_SWEEP_POINTS:,}; narrow the ranges"
        )
    if w.context_len and w.phase != "prefill":
        shortest, longest_prompt = min(w.context_len), max(w.prompt_len)
        if shortest < longest_prompt:
            raise ConfigError(
                f"{where}: context_len {shortest} is shorter than prompt_len {longest_prompt}; "
                f"the decode context includes the prompt, so context_len >= prompt_len"
            )
    return w


def beyond_positions(model: ModelConfig, w: Workload) -> Optional[str]:
    """A warning when the workload reaches more positions than the model's max_position_embeddings (the last
    generated token, the longest context or prompt of the sweep); None when it does not or the model names
    no limit. A warning, not an error: RoPE scaling or a longer-context checkpoint of the same shape may allow it."""
    limit = model.max_position_embeddings
    if not limit:
        return None
    prompt = max(w.prompt_len)
    longest = max(prompt, max(w.context_len) if w.context_len else 0)
    if w.gen_tokens and not w.context_len:
        longest = max(longest, prompt + w.gen_tokens)
    if longest <= limit:
        return None
    return (
        f"the workload reaches {longest:,} positions but {model.name} has max_position_embeddings {limit:,}: "
        f"the figures are for a model of this shape run that long (RoPE scaling or a long-context checkpoint)"
    )


def check_fit(model: ModelConfig, w: Workload, where: str) -> None:
    """Checks that need both the model and the workload (parallel splits, a measured MoE routing)."""
    if w.pp > 1 and model.num_hidden_layers % w.pp:
        raise ConfigError(
            f"{where}: pp {w.pp} does not divide num_hidden_layers {model.num_hidden_layers} into equal stages"
        )
    if w.ep > 1:
        if not model.is_moe:
            raise ConfigError(f"{where}: ep {w.ep} needs a mixture-of-experts model (num_local_experts)")
        if model.num_local_experts % w.ep:
            raise ConfigError(f"{where}: ep {w.ep} does not divide num_local_experts {model.num_local_experts}")
        if w.tp > 1:
            raise ConfigError(f"{where}: ep together with tp is not modelled; use one of them")
        if min(w.batch_size) % w.ep:
            raise ConfigError(
                f"{where}: ep {w.ep} does not divide batch_size {min(w.batch_size)}; each GPU takes "
                f"an equal share of the sequences"
            )
    if w.routed_experts is not None:
        points = len(w.batch_size) * len(w.prompt_len) * len(w.context_len or (0,))
        if w.phase == "both" or points > 1 or w.gen_tokens:
            raise ConfigError(
                f"{where}: routed_experts fixes the routing of one step: give one phase (prefill or decode) and "
                f"one batch_size, prompt_len and context_len (no gen_tokens), or leave routed_experts out"
            )
        if not model.is_moe:
            raise ConfigError(f"{where}: routed_experts needs a mixture-of-experts model (num_local_experts)")
        per_gpu = model.num_local_experts // max(w.ep, 1)
        if w.routed_experts > per_gpu:
            raise ConfigError(
                f"{where}: routed_experts {w.routed_experts:g} is more than the {per_gpu} routed experts a GPU holds"
            )
    tp = w.tp
    if tp > 1:
        if model.num_attention_heads % tp:
            raise ConfigError(f"{where}: tp {tp} does not divide num_attention_heads {model.num_attention_heads}")
        kv = model.num_key_value_heads
        if kv % tp and tp % kv:
            raise ConfigError(f"{where}: tp {tp} and num_key_value_heads {kv}: one must divide the other")
        if model.intermediate_size % tp:
            raise ConfigError(f"{where}: tp {tp} does not divide intermediate_size {model.intermediate_size}")
        for key in ("moe_intermediate_size", "shared_expert_intermediate_size"):
            size = getattr(model, key) or 0
            if size % tp:
                raise ConfigError(f"{where}: tp {tp} does not divide {key} {size}")


def with_changes(w: Workload, **changes: object) -> Workload:
    """``w`` with fields replaced, a single value of a sweepable field (batch_size, prompt_len,
    context_len) taken as a one-point tuple: with_changes(w, batch_size=8) -> batch_size (8,)."""
    from dataclasses import replace

    fields = {
        k: ((v,) if k in ("batch_size", "prompt_len", "context_len") and not isinstance(v, tuple) else v)
        for k, v in changes.items()
    }
    return replace(w, **fields)


def weight_dtype_source(flags: dict, workload_raw: dict, key: str = "weight_dtype") -> str:
    """Where the weight (or KV, ``key``) dtype comes from: the flag wins over the model file's workload
    section, which wins over the checkpoint's quantization_config (``with_checkpoint_weights``), then
    the default."""
    if flags.get(key) is not None:
        return "--" + key.replace("_", "-")
    if workload_raw.get(key) is not None:
        return f"workload.{key} in the model file"
    return "default"


def workload_sources(path: str | Path, flags: dict) -> dict:
    """{setting: where its value comes from} for every setting of a Workload, for the model file ``path``
    with CLI ``flags`` ({field: value, None when not given}): the flag ('--tp'), the file's workload
    section ('the model file') or 'default' (weight_dtype_source's rule, for every field; a Workload's
    own weight_dtype_source and kv_dtype_source also know the checkpoint). Raises what
    ``load_model_and_workload`` raises for the file."""
    raw = load_mapping(resolve_model_path(path), "model").get("workload") or {}
    raw = raw if isinstance(raw, dict) else {}
    return {
        key: weight_dtype_source(flags, raw, key).replace(f"workload.{key} in the model file", "the model file")
        for key in _WORKLOAD_KEYS
        if not key.endswith("_source")
    }


def with_checkpoint_weights(model: ModelConfig, w: Workload) -> Workload:
    """``w`` with the checkpoint's weight dtype, and the KV cache dtype its kv_cache_scheme declares,
    where nothing else chose one (source 'default')."""
    q = model.quant
    if q is None:
        return w
    if w.weight_dtype_source == "default":
        w = replace(w, weight_dtype=q.dtype, weight_dtype_source=f"{CHECKPOINT_SOURCE} ({q.describe()})")
    if q.kv_dtype and w.kv_dtype_source == "default":
        w = replace(w, kv_dtype=q.kv_dtype, kv_dtype_source=f"{CHECKPOINT_SOURCE} (kv_cache_scheme)")
    return w


HUB_CACHE_PREFIX = "models--"


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A model argument -> the file to read, offline. Raises InputFileError naming the fix.

    Accepts a YAML/JSON file; a folder holding config.json (a downloaded checkpoint or a Hugging Face
    hub cache snapshot, ``models--org--name/snapshots/<hash>/``); a hub cache repo folder
    (``models--org--name``: the snapshot refs/main points at, else the only one); or the name of a
    shipped example ('llama-2-7b', from ``roofline.specs.data_dir('examples')``).
    """
    from roofline.specs import data_dir

    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file() or (path.exists() and not path.is_dir()):
        return path  # a FIFO or a device too: the loader refuses it with its reason (roofline.io)
    if path.is_dir():
        if (path / "config.json").is_file():
            return path / "config.json"
        snapshot = _hub_snapshot(path)
        if snapshot is not None:
            return snapshot / "config.json"
        raise InputFileError(f"model folder {text} holds no config.json; pass the checkpoint folder or a model file")
    shipped = sorted(p.stem for p in data_dir("examples").glob("*.yaml"))
    looks_like_path = path.suffix in (".yaml", ".yml", ".json") or "/" in text or "\\" in text
    if not looks_like_path and (data_dir("examples") / f"{text}.yaml").is_file():
        return data_dir("examples") / f"{text}.yaml"
    if looks_like_path:
        raise InputFileError(f"model file not found: {text}")
    raise InputFileError(
        f"unknown model '{text}'{suggest(text, shipped)}: no such file or folder, and no shipped example of that "
        f"name; shipped: {', '.join(shipped)} (or pass a model YAML, a config.json or a checkpoint folder)"
    )


def checkpoint_name(config_json: Path) -> str:
    """A name for a checkpoint's config.json: 'org/name' inside a hub cache, else its folder's name."""
    for folder in config_json.resolve().parents:
        if folder.name.startswith(HUB_CACHE_PREFIX):
            return folder.name[len(HUB_CACHE_PREFIX) :].replace("--", "/", 1)
    return config_json.resolve().parent.name


def _hub_snapshot(repo: Path) -> Optional[Path]:
    """The snapshot folder of a hub cache repo folder (models--org--name) that holds a config.json."""
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        candidate = snapshots / ref.read_text().strip()
        if (candidate / "config.json").is_file():
            return candidate
    found = [p for p in snapshots.iterdir() if (p / "config.json").is_file()]
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(sorted(p.name for p in found))
        raise InputFileError(
            f"{repo}: {len(found)} snapshots hold a config.json ({names}) and refs/main names none of "
            f"them; pass the snapshot folder you mean"
        )
    return None
