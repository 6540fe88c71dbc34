"""The ops of a decoder-only transformer for one phase of a workload, as a list of ``Op``.

Op names (the GPU reference model uses the same names, one ``record_function`` each):
  embedding, pos_embedding (gpt2), embed_scale (gemma), embed_all_reduce (tp > 1)
  per layer, attention block:
    attn_norm (not olmo2), q_proj, k_proj, v_proj | qkv_proj (phi3, falcon), q_norm, k_norm (qwen3, gemma3:
    per head; olmo2: over the projection), rope, kv_cache_write,
    attention (flash) | qk_matmul, softmax, sv_matmul (naive); with both windowed and global layers
    (gemma, gpt-oss, qwen max_window_layers) the windowed ones are separate rows: sliding_attention
    (sliding_qk_matmul, sliding_softmax, sliding_sv_matmul),
    o_proj, post_attn_norm (gemma, olmo2), attn_all_reduce (tp > 1), attn_residual
  MLA attention block (deepseek): q_a_proj, q_a_norm, q_b_proj (or q_proj without q_lora_rank), kv_a_proj,
    kv_a_norm, rope, kv_cache_write (the latent), then absorbed: q_absorb, attention, v_absorb |
    decompressed: kv_b_proj, attention; o_proj
  per layer, MLP block: mlp_norm (not olmo2; falcon: only with two parallel norms), gate_proj, up_proj
    | gate_up_proj (phi3), act, down_proj; post_mlp_norm (gemma, olmo2);
    MoE layers: router, [moe_dispatch], experts, [moe_combine] (ep > 1), shared_experts (deepseek) |
    shared_expert, shared_expert_gate (qwen2_moe); dense layers of an MoE model keep the dense names;
    mlp_all_reduce (tp > 1), mlp_residual
  pp_send (pp > 1, once per stage boundary)
  final_norm, lm_head, logit_softcap (gemma2), logits_all_gather (tp > 1)

Conventions (beyond formulas.py):
1. Counts are per GPU of a tensor-parallel group, over the whole pipeline: with pipeline parallelism
   the rows still add up to one forward pass through every stage (the latency of one micro-batch);
   analysis.py divides them into stages. With tensor parallelism degree N, heads, KV heads (replicated when there are
   fewer than N), the MLP width and the vocabulary are split N ways (Megatron), and collectives
   are added after the row-parallel projections, the vocab-parallel embedding and the lm_head.
   MLA's down-projections (q_a_proj, kv_a_proj) and its latent cache are replicated, as vLLM runs them.
2. Only the decoder's linear layers take the weight dtype (``weight_dtype_of`` decides, the one place);
   embeddings, lm_head, norms, routers, gates and biases stay in 16-bit (bf16, or fp16 when weights or
   activations are fp16), as GPTQ/AWQ/fp8 checkpoints ship them.
3. lm_head runs on the last position of each sequence only (what serving engines do), in prefill too.
4. Attention computes in the activation dtype when it is 16-bit, else in the 16-bit param dtype.
   Soft-capping of attention logits (gemma2) and attention sinks (gpt-oss) live inside the attention
   kernel and, like its softmax, add no counted FLOPs; the sinks' parameters are the attention op's.
5. Prefill processes ``prompt_len`` tokens per sequence into an empty cache; a decode step processes
   one token per sequence against ``context_len`` cached keys; a windowed layer sees at most
   ``sliding_window`` of them, in both phases. The KV cache of a windowed layer holds the window only.
6. MLA: prefill runs the decompressed form and decode the absorbed form unless the workload's
   ``mla_form`` says otherwise; the cache holds the latent (kv_lora_rank + qk_rope_head_dim values per
   token and layer) in both forms. Decompressed decode rebuilds k and v for every cached key each step.
7. MoE: each token runs top-k routed experts (uniform routing for the weights read, formulas.experts);
   shared experts run on every token.
"""

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from roofline.config import ModelConfig, Workload
from roofline.dtypes import DTYPE_BYTES, compute_dtype
from roofline.formulas import (
    ACTIVATION_KIND,
    ELEMENTWISE_FLOPS,
    Cost,
    all_gather,
    all_reduce,
    all_to_all,
    causal_pairs,
    elementwise,
    embedding,
    experts,
    flash_attention,
    kv_cache_write,
    latent_cache_write,
    linear,
    mla_attention,
    norm,
    p2p_send,
    per_head_linear,
    pos_embedding,
    qk_matmul,
    rope,
    softmax,
    sv_matmul,
    weight_storage_bytes,
)
from roofline.quant import linear_weight_dtype

# what each op computes on: tensor cores (matmul, attention), CUDA cores (elementwise), nothing
# (memory: gathers and copies), or the GPU link (collective)
CATEGORIES = ("matmul", "attention", "elementwise", "memory", "collective")
VECTOR_DTYPE = "fp32"  # element-wise work is classified against the fp32 CUDA-core peak
# the decoder's linear layers: their weights take the workload's weight dtype (convention 2)
QUANTISABLE_OPS = frozenset(
    {
        "q_proj",
        "k_proj",
        "v_proj",
        "qkv_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "gate_up_proj",
        "down_proj",
        "experts",
        "shared_experts",
        "shared_expert",
        "q_a_proj",
        "q_b_proj",
        "kv_a_proj",
        "kv_b_proj",
        "q_absorb",
        "v_absorb",
    }
)
SOFTCAP_FLOPS = 3  # cap * tanh(x / cap): divide, tanh, multiply


@dataclass(frozen=True)
class Op:
    """One op of the model: its cost per occurrence and how many times it runs per forward pass."""

    name: str
    count: int
    category: str
    compute_dtype: str
    cost: Cost
    params: float  # parameters stored per GPU for one occurrence (0 for tied lm_head)
    param_bytes: float  # bytes to store them (quantisation scales included)


@dataclass(frozen=True)
class Shard:
    """Per-GPU sizes under tensor parallelism."""

    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    expert_intermediate: int = 0
    shared_intermediate: int = 0

    @classmethod
    def of(cls, m: ModelConfig, tp: int) -> "Shard":
        return cls(
            heads=m.num_attention_heads // tp,
            kv_heads=max(m.num_key_value_heads // tp, 1),
            intermediate=m.intermediate_size // tp,
            vocab=math.ceil(m.vocab_size / tp),
            expert_intermediate=m.expert_intermediate_size // tp,
            shared_intermediate=m.shared_expert_intermediate_size // tp,
        )


def param16_dtype(w: Workload) -> str:
    """The 16-bit dtype of the weights that are never quantised (convention 2)."""
    if w.weight_dtype in ("bf16", "fp16"):
        return w.weight_dtype
    return "fp16" if w.act_dtype == "fp16" else "bf16"


def weight_dtype_of(m: ModelConfig, w: Workload, op_name: str) -> str:
    """The storage dtype of ``op_name``'s weights: the workload's for the decoder's linear layers,
    16-bit for the rest (convention 2). The one place a weight dtype is chosen."""
    p16 = param16_dtype(w)
    return linear_weight_dtype(m, w, op_name, p16) if op_name in QUANTISABLE_OPS else p16


def mla_form(w: Workload, phase: str) -> str:
    """'absorbed' or 'decompressed': the workload's choice, or by phase (convention 6)."""
    if w.mla_form != "auto":
        return w.mla_form
    return "decompressed" if phase == "prefill" else "absorbed"


def window_groups(m: ModelConfig) -> list:
    """[(window or None, number of layers)], global layers first."""
    counts = Counter(m.layer_windows)
    return sorted(counts.items(), key=lambda kv: (kv[0] is not None, kv[0] or 0))


def model_ops(
    m: ModelConfig,
    w: Workload,
    phase: str,
    batch: "float | np.ndarray",
    prompt_len: "float | np.ndarray",
    context_len: "float | np.ndarray",
) -> list:
    """The ops of one forward pass of ``phase`` ('prefill' or 'decode').

    ``batch``, ``prompt_len`` and ``context_len`` are numbers or equal-length numpy arrays (a sweep);
    every cost comes back with the same shape.
    """
    b = np.asarray(batch, dtype=float) / w.ep  # expert parallelism: each GPU takes 1/ep of the sequences
    if phase == "prefill":
        s = np.asarray(prompt_len, dtype=float)
        keys = s
        from_cache = False
    elif phase == "decode":
        s = np.ones_like(b)
        keys = np.asarray(context_len, dtype=float)
        from_cache = True
    else:
        raise ValueError(f"phase must be prefill or decode, not {phase!r}")

    tokens = b * s
    tp = w.tp
    sh = Shard.of(m, tp)
    h, d, L = m.hidden_size, m.head_dim, m.num_hidden_layers
    fam = m.family
    act, p16 = w.act_dtype, param16_dtype(w)
    head_dtype = compute_dtype(p16, act)
    attn_dtype = act if act in ("bf16", "fp16") else p16
    ops = []

    def add(name, count, category, dtype, cost, params=0.0, param_dtype=None, fan_in=None):
        if count <= 0:
            return
        pbytes = weight_storage_bytes(params, param_dtype, fan_in=fan_in) if params else 0.0
        ops.append(Op(name, count, category, dtype, cost, float(params), float(pbytes)))

    def proj(name, count, fan_in, fan_out, bias, rows=None):
        wd = weight_dtype_of(m, w, name)
        quantised = name in QUANTISABLE_OPS
        cost = linear(tokens if rows is None else rows, fan_in, fan_out, wd, act, bias=bias, bias_dtype=p16)
        add(
            name,
            count,
            "matmul",
            compute_dtype(wd, act) if quantised else head_dtype,
            cost,
            fan_in * fan_out,
            wd,
            fan_in,
        )
        if bias and ops and ops[-1].name == name:  # stored in 16-bit beside the (maybe quantised) weight
            ops[-1] = _with_params(ops[-1], fan_out, fan_out * DTYPE_BYTES[p16])

    def norm_op(name, count, rows=None, width=None, shared_params=None):
        width = width or h
        params = width * (2 if m.norm == "layernorm" else 1) if shared_params is None else shared_params
        cost = norm(tokens if rows is None else rows, width, m.norm, p16, act)
        add(name, count, "elementwise", VECTOR_DTYPE, cost, params, p16)

    def all_reduce_op(name, count, n_elements):
        if tp > 1:
            add(name, count, "collective", VECTOR_DTYPE, all_reduce(n_elements, tp, act))

    def residual(name, count):
        add(name, count, "elementwise", VECTOR_DTYPE, elementwise(tokens * h, 2, ELEMENTWISE_FLOPS["add"], act))

    # --- embeddings
    add("embedding", 1, "memory", VECTOR_DTYPE, embedding(tokens, sh.vocab, h, p16, act), sh.vocab * h, p16)
    if m.position == "learned":
        n_pos = m.max_position_embeddings or 1024
        add("pos_embedding", 1, "elementwise", VECTOR_DTYPE, pos_embedding(tokens, s, h, p16, act), n_pos * h, p16)
    if fam.embed_scale:  # x * sqrt(hidden_size)
        add("embed_scale", 1, "elementwise", VECTOR_DTYPE, elementwise(tokens * h, 1, 1, act))
    all_reduce_op("embed_all_reduce", 1, tokens * h)

    # --- attention block, per layer
    if fam.layout in ("pre", "sandwich", "parallel"):
        norm_op("attn_norm", L)
    if m.is_mla:
        _mla_block(m, w, phase, ops, add, proj, norm_op, b, s, tokens, keys, from_cache, sh, act, attn_dtype)
    else:
        if fam.fused_qkv:
            proj("qkv_proj", L, h, (sh.heads + 2 * sh.kv_heads) * d, m.qkv_bias)
        else:
            proj("q_proj", L, h, sh.heads * d, m.qkv_bias)
            proj("k_proj", L, h, sh.kv_heads * d, m.qkv_bias)
            proj("v_proj", L, h, sh.kv_heads * d, m.qkv_bias)
        if fam.qk_norm == "head":  # RMSNorm over each head's d values, one gamma of d shared by the heads
            norm_op("q_norm", L, rows=tokens * sh.heads, width=d, shared_params=d)
            norm_op("k_norm", L, rows=tokens * sh.kv_heads, width=d, shared_params=d)
        elif fam.qk_norm == "full":  # over the whole projection
            norm_op("q_norm", L, width=sh.heads * d)
            norm_op("k_norm", L, width=sh.kv_heads * d)
        if m.position == "rope":
            rot = int(d * m.partial_rotary_factor)
            add("rope", L, "elementwise", VECTOR_DTYPE, rope(tokens, s, sh.heads, sh.kv_heads, rot, act))
        add("kv_cache_write", L, "memory", VECTOR_DTYPE, kv_cache_write(tokens, sh.kv_heads, d, act, w.kv_dtype))
        groups = window_groups(m)
        for window, count in groups:
            prefix = "sliding_" if window is not None and len(groups) > 1 else ""
            kv_len = keys if window is None else np.minimum(keys, window)
            pairs = causal_pairs(s, window) if phase == "prefill" else kv_len
            attn_args = dict(
                heads=sh.heads,
                kv_heads=sh.kv_heads,
                head_dim=d,
                act_dtype=act,
                kv_dtype=w.kv_dtype,
                from_cache=from_cache,
            )
            sinks = sh.heads if m.attention_sinks else 0.0
            if w.attn_impl == "flash":
                add(
                    prefix + "attention",
                    count,
                    "attention",
                    attn_dtype,
                    flash_attention(b, s, kv_len, pairs, **attn_args),
                    sinks,
                    p16,
                )
            else:
                add(prefix + "qk_matmul", count, "attention", attn_dtype, qk_matmul(b, s, kv_len, **attn_args))
                add(
                    prefix + "softmax",
                    count,
                    "elementwise",
                    VECTOR_DTYPE,
                    softmax(b, s, kv_len, sh.heads, act),
                    sinks,
                    p16,
                )
                add(prefix + "sv_matmul", count, "attention", attn_dtype, sv_matmul(b, s, kv_len, **attn_args))
        proj("o_proj", L, sh.heads * d, h, m.o_bias)
    if fam.layout in ("sandwich", "post"):
        norm_op("post_attn_norm", L)
    all_reduce_op("attn_all_reduce", L, tokens * h)
    residual("attn_residual", L)

    # --- MLP block, per layer
    if fam.layout in ("pre", "sandwich") or (fam.layout == "parallel" and m.parallel_norms == 2):
        norm_op("mlp_norm", L)
    act_kind = ACTIVATION_KIND.get(m.hidden_act, "gelu")
    n_moe = m.moe_layer_count
    if n_moe:
        _moe_block(m, w, ops, add, proj, tokens, sh, n_moe, act, p16, head_dtype)
    n_dense = L - n_moe
    if m.gated_mlp and fam.fused_gate_up:
        proj("gate_up_proj", n_dense, h, 2 * sh.intermediate, m.mlp_bias)
    elif m.gated_mlp:
        proj("gate_proj", n_dense, h, sh.intermediate, m.mlp_bias)
    if not fam.fused_gate_up:
        proj("up_proj", n_dense, h, sh.intermediate, m.mlp_bias)
    n_in = 2 if m.gated_mlp else 1
    per_elem = ELEMENTWISE_FLOPS[act_kind] + (ELEMENTWISE_FLOPS["gated_product"] if m.gated_mlp else 0)
    add("act", n_dense, "elementwise", VECTOR_DTYPE, elementwise(tokens * sh.intermediate, n_in, per_elem, act))
    proj("down_proj", n_dense, sh.intermediate, h, m.mlp_bias)
    if fam.layout in ("sandwich", "post"):
        norm_op("post_mlp_norm", L)
    all_reduce_op("mlp_all_reduce", L, tokens * h)
    residual("mlp_residual", L)
    if w.pp > 1:  # hidden states to the next stage, at each of the pp - 1 stage boundaries
        add("pp_send", w.pp - 1, "collective", VECTOR_DTYPE, p2p_send(tokens * h / tp, act))

    # --- head
    norm_op("final_norm", 1)
    head = linear(b, h, sh.vocab, p16, act, bias=m.lm_head_bias, bias_dtype=p16)  # last position of each sequence
    head_params = 0.0 if m.tie_word_embeddings else h * sh.vocab
    add("lm_head", 1, "matmul", head_dtype, head, head_params, p16)
    if m.lm_head_bias:
        ops[-1] = _with_params(ops[-1], sh.vocab, sh.vocab * DTYPE_BYTES[p16])
    if m.final_logit_softcapping:
        add("logit_softcap", 1, "elementwise", VECTOR_DTYPE, elementwise(b * sh.vocab, 1, SOFTCAP_FLOPS, act))
    if tp > 1:
        add("logits_all_gather", 1, "collective", VECTOR_DTYPE, all_gather(b * sh.vocab * tp, tp, act))
    return ops


def _mla_block(m, w, phase, ops, add, proj, norm_op, b, s, tokens, keys, from_cache, sh, act, attn_dtype):
    """Multi-head latent attention, from the normed input to o_proj (formulas.py, the MLA section)."""
    h, L, H = m.hidden_size, m.num_hidden_layers, sh.heads
    nope, rope_dim, r, dv = m.qk_nope_head_dim, m.qk_rope_head_dim, m.kv_lora_rank, m.v_head_dim
    dq = nope + rope_dim
    if m.q_lora_rank:
        proj("q_a_proj", L, h, m.q_lora_rank, False)
        norm_op("q_a_norm", L, width=m.q_lora_rank)
        proj("q_b_proj", L, m.q_lora_rank, H * dq, False)
    else:
        proj("q_proj", L, h, H * dq, False)
    proj("kv_a_proj", L, h, r + rope_dim, False)
    norm_op("kv_a_norm", L, width=r)
    add("rope", L, "elementwise", VECTOR_DTYPE, rope(tokens, s, H, 1, rope_dim, act))
    add("kv_cache_write", L, "memory", VECTOR_DTYPE, latent_cache_write(tokens, r + rope_dim, act, w.kv_dtype))
    window = m.sliding_window
    kv_len = keys if window is None else np.minimum(keys, window)
    pairs = causal_pairs(s, window) if phase == "prefill" else kv_len
    p_wd = weight_dtype_of(m, w, "q_absorb")
    mm = compute_dtype(p_wd, act)
    if mla_form(w, phase) == "absorbed":
        add("q_absorb", L, "matmul", mm, per_head_linear(tokens, H, nope, r, p_wd, act), H * nope * r, p_wd)
        add(
            "attention",
            L,
            "attention",
            attn_dtype,
            mla_attention(b, s, kv_len, pairs, H, r, rope_dim, act, w.kv_dtype, from_cache),
        )
        add("v_absorb", L, "matmul", mm, per_head_linear(tokens, H, r, dv, p_wd, act), H * r * dv, p_wd)
    else:
        rows = b * kv_len if from_cache else tokens  # decode: rebuild k, v for every cached key
        proj("kv_b_proj", L, r, H * (nope + dv), False, rows=rows)
        if from_cache:  # its input is the cached latent, read in the kv dtype
            c = ops[-1].cost
            latent = b * kv_len * (r + rope_dim)
            ops[-1] = Op(
                ops[-1].name,
                L,
                "matmul",
                ops[-1].compute_dtype,
                Cost(
                    flops=c.flops,
                    weight_bytes_read=c.weight_bytes_read,
                    act_bytes_written=c.act_bytes_written,
                    kv_bytes_read=latent * DTYPE_BYTES[w.kv_dtype],
                ),
                ops[-1].params,
                ops[-1].param_bytes,
            )
        add(
            "attention",
            L,
            "attention",
            attn_dtype,
            flash_attention(b, s, kv_len, pairs, H, H, dq, act, w.kv_dtype, from_cache=False, v_head_dim=dv),
        )
    proj("o_proj", L, H * dv, h, m.o_bias)


def _moe_block(m, w, ops, add, proj, tokens, sh, n_moe, act, p16, head_dtype):
    """Router, routed experts and shared experts of the MoE layers."""
    h, E, k = m.hidden_size, m.num_local_experts, m.num_experts_per_tok
    router = linear(tokens, h, E, p16, act, bias=m.expert_bias, bias_dtype=p16)
    add("router", n_moe, "matmul", head_dtype, router, h * E + (E if m.expert_bias else 0), p16)
    if w.ep > 1:
        add("moe_dispatch", n_moe, "collective", VECTOR_DTYPE, all_to_all(tokens * k * h, w.ep, act))
    wd = weight_dtype_of(m, w, "experts")
    inter = sh.expert_intermediate
    cost = experts(
        tokens,
        h,
        inter,
        E,
        k,
        wd,
        act,
        gated=m.gated_mlp,
        ep=w.ep,
        bias=m.expert_bias,
        bias_dtype=p16,
        routed=w.routed_experts,
    )
    n_mats = 3 if m.gated_mlp else 2
    add("experts", n_moe, "matmul", compute_dtype(wd, act), cost, E // w.ep * n_mats * h * inter, wd)
    if m.expert_bias:
        bias_params = E // w.ep * ((n_mats - 1) * inter + h)
        ops[-1] = _with_params(ops[-1], bias_params, bias_params * DTYPE_BYTES[p16])
    if w.ep > 1:
        add("moe_combine", n_moe, "collective", VECTOR_DTYPE, all_to_all(tokens * k * h, w.ep, act))
    if sh.shared_intermediate:
        name = "shared_expert" if m.shared_expert_gate else "shared_experts"
        swd = weight_dtype_of(m, w, name)
        cost = experts(tokens, h, sh.shared_intermediate, 1, 1, swd, act, gated=m.gated_mlp)
        add(name, n_moe, "matmul", compute_dtype(swd, act), cost, n_mats * h * sh.shared_intermediate, swd)
        if m.shared_expert_gate:  # sigmoid(x @ w[h, 1]) scales the shared expert's output
            add("shared_expert_gate", n_moe, "matmul", head_dtype, linear(tokens, h, 1, p16, act), h, p16)


def kv_cache_layers(m: ModelConfig, w: Workload) -> list:
    """[(window or None, KV-cache bytes per cached token per sequence of all such layers on one GPU)].

    A windowed layer caches at most ``window`` tokens (analysis.py caps it); the bytes per token come
    from the kv_cache_write op, so MLA's latent and the kv dtype's scales are included.
    """
    ops = model_ops(m, w, "decode", 1, 1, 1)
    write = next(op for op in ops if op.name == "kv_cache_write")
    per_layer = float(write.cost.kv_bytes_written)
    return [(window, per_layer * count) for window, count in window_groups(m)]


def _with_params(op: Op, extra_params: float, extra_bytes: float) -> Op:
    return Op(
        op.name,
        op.count,
        op.category,
        op.compute_dtype,
        op.cost,
        op.params + extra_params,
        op.param_bytes + extra_bytes,
    )


def parameter_count(m: ModelConfig, w: Workload = None) -> float:
    """Parameters stored per GPU (the whole model when tp = 1), tied embeddings counted once."""
    w = w or Workload()
    ops = model_ops(m, w, "decode", 1, 1, 1)
    return float(sum(op.count * op.params for op in ops))
