"""The ops of a decoder-only transformer for one phase of a workload, as a list of ``Op``.

Op names (the GPU reference model uses the same names, one ``record_function`` each):
  embedding, pos_embedding (gpt2), embed_all_reduce (tp > 1)
  per layer: attn_norm, q_proj, k_proj, v_proj, rope, kv_cache_write,
             attention (flash) | qk_matmul, softmax, sv_matmul (naive),
             o_proj, attn_all_reduce (tp > 1), attn_residual, mlp_norm,
             gate_proj, up_proj, act, down_proj | router, [moe_dispatch], experts, [moe_combine] (MoE; ep > 1),
             mlp_all_reduce (tp > 1), mlp_residual
  pp_send (pp > 1, once per stage boundary)
  final_norm, lm_head, logits_all_gather (tp > 1)

Conventions (beyond formulas.py):
1. Counts are per GPU of a tensor-parallel group, over the whole pipeline: with pipeline parallelism
   the rows still add up to one forward pass through every stage (the latency of one micro-batch);
   analysis.py divides them into stages. With tensor parallelism degree N, heads, KV heads (replicated when there are
   fewer than N), the MLP width and the vocabulary are split N ways (Megatron), and collectives
   are added after the row-parallel projections, the vocab-parallel embedding and the lm_head.
2. Only the decoder's linear layers take the weight dtype; embeddings, lm_head, norms, router and
   biases stay in 16-bit (bf16, or fp16 when weights or activations are fp16), as GPTQ/AWQ/fp8
   checkpoints ship them.
3. lm_head runs on the last position of each sequence only (what serving engines do), in prefill too.
4. Attention computes in the activation dtype when it is 16-bit, else in the 16-bit param dtype.
5. Prefill processes ``prompt_len`` tokens per sequence into an empty cache; a decode step processes
   one token per sequence against ``context_len`` cached keys (``sliding_window`` caps both).
"""

import math
from dataclasses import dataclass

import numpy as np

from roofline.config import ModelConfig, Workload
from roofline.dtypes import DTYPE_BYTES, compute_dtype
from roofline.formulas import (
    ACTIVATION_KIND, ELEMENTWISE_FLOPS, Cost, all_gather, all_reduce, all_to_all, causal_pairs, elementwise, embedding, experts,
    flash_attention, kv_cache_write, linear, norm, p2p_send, pos_embedding, qk_matmul, rope, softmax, sv_matmul,
    weight_storage_bytes,
)
from roofline.quant import linear_weight_dtype

# what each op computes on: tensor cores (matmul, attention), CUDA cores (elementwise), nothing
# (memory: gathers and copies), or the GPU link (collective)
CATEGORIES = ("matmul", "attention", "elementwise", "memory", "collective")
VECTOR_DTYPE = "fp32"  # element-wise work is classified against the fp32 CUDA-core peak


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

    @classmethod
    def of(cls, m: ModelConfig, tp: int) -> "Shard":
        return cls(
            heads=m.num_attention_heads // tp,
            kv_heads=max(m.num_key_value_heads // tp, 1),
            intermediate=m.intermediate_size // tp,
            vocab=math.ceil(m.vocab_size / tp),
        )


def param16_dtype(w: Workload) -> str:
    """The 16-bit dtype of the weights that are never quantised (convention 2)."""
    if w.weight_dtype in ("bf16", "fp16"):
        return w.weight_dtype
    return "fp16" if w.act_dtype == "fp16" else "bf16"


def model_ops(m: ModelConfig, w: Workload, phase: str, batch, prompt_len, context_len) -> list:
    """The ops of one forward pass of ``phase`` ('prefill' or 'decode').

    ``batch``, ``prompt_len`` and ``context_len`` are numbers or equal-length numpy arrays (a sweep);
    every cost comes back with the same shape.
    """
    b = np.asarray(batch, dtype=float) / w.ep  # expert parallelism: each GPU takes 1/ep of the sequences
    if phase == "prefill":
        s = np.asarray(prompt_len, dtype=float)
        kv_len = s
        pairs = causal_pairs(s, m.sliding_window)
        from_cache = False
    elif phase == "decode":
        s = np.ones_like(b)
        kv_len = np.asarray(context_len, dtype=float)
        if m.sliding_window:
            kv_len = np.minimum(kv_len, m.sliding_window)
        pairs = kv_len
        from_cache = True
    else:
        raise ValueError(f"phase must be prefill or decode, not {phase!r}")

    tokens = b * s
    tp = w.tp
    sh = Shard.of(m, tp)
    h, d, L = m.hidden_size, m.head_dim, m.num_hidden_layers
    act, p16 = w.act_dtype, param16_dtype(w)
    head_dtype = compute_dtype(p16, act)
    attn_dtype = act if act in ("bf16", "fp16") else p16
    ops = []

    def add(name, count, category, dtype, cost, params=0.0, param_dtype=None, fan_in=None):
        pbytes = weight_storage_bytes(params, param_dtype, fan_in=fan_in) if params else 0.0
        ops.append(Op(name, count, category, dtype, cost, float(params), float(pbytes)))

    def proj(name, count, fan_in, fan_out, bias, quantised=True):
        wd = linear_weight_dtype(m, w, name, p16) if quantised else p16  # checkpoint format, or not converted
        cost = linear(tokens, fan_in, fan_out, wd, act, bias=bias, bias_dtype=p16)
        params = fan_in * fan_out
        add(name, count, "matmul", compute_dtype(wd, act) if quantised else head_dtype, cost, params, wd, fan_in)
        if bias:  # stored in 16-bit beside the (maybe quantised) weight
            ops[-1] = _with_params(ops[-1], fan_out, fan_out * DTYPE_BYTES[p16])

    def norm_op(name, count):
        params = h * (2 if m.norm == "layernorm" else 1)
        add(name, count, "elementwise", VECTOR_DTYPE, norm(tokens, h, m.norm, p16, act), params, p16)

    def all_reduce_op(name, count, n_elements):
        if tp > 1:
            add(name, count, "collective", VECTOR_DTYPE, all_reduce(n_elements, tp, act))

    # --- embeddings
    add("embedding", 1, "memory", VECTOR_DTYPE, embedding(tokens, sh.vocab, h, p16, act), sh.vocab * h, p16)
    if m.position == "learned":
        n_pos = m.max_position_embeddings or 1024
        add("pos_embedding", 1, "elementwise", VECTOR_DTYPE, pos_embedding(tokens, s, h, p16, act), n_pos * h, p16)
    all_reduce_op("embed_all_reduce", 1, tokens * h)

    # --- attention block, per layer
    norm_op("attn_norm", L)
    proj("q_proj", L, h, sh.heads * d, m.qkv_bias)
    proj("k_proj", L, h, sh.kv_heads * d, m.qkv_bias)
    proj("v_proj", L, h, sh.kv_heads * d, m.qkv_bias)
    if m.position == "rope":
        add("rope", L, "elementwise", VECTOR_DTYPE, rope(tokens, s, sh.heads, sh.kv_heads, d, act))
    add("kv_cache_write", L, "memory", VECTOR_DTYPE, kv_cache_write(tokens, sh.kv_heads, d, act, w.kv_dtype))
    attn_args = dict(heads=sh.heads, kv_heads=sh.kv_heads, head_dim=d, act_dtype=act, kv_dtype=w.kv_dtype,
                     from_cache=from_cache)
    if w.attn_impl == "flash":
        add("attention", L, "attention", attn_dtype, flash_attention(b, s, kv_len, pairs, **attn_args))
    else:
        add("qk_matmul", L, "attention", attn_dtype, qk_matmul(b, s, kv_len, **attn_args))
        add("softmax", L, "elementwise", VECTOR_DTYPE, softmax(b, s, kv_len, sh.heads, act))
        add("sv_matmul", L, "attention", attn_dtype, sv_matmul(b, s, kv_len, **attn_args))
    proj("o_proj", L, sh.heads * d, h, m.o_bias)
    all_reduce_op("attn_all_reduce", L, tokens * h)
    add("attn_residual", L, "elementwise", VECTOR_DTYPE, elementwise(tokens * h, 2, ELEMENTWISE_FLOPS["add"], act))

    # --- MLP block, per layer
    norm_op("mlp_norm", L)
    act_kind = ACTIVATION_KIND.get(m.hidden_act, "gelu")
    if m.is_moe:
        E, k = m.num_local_experts, m.num_experts_per_tok
        add("router", L, "matmul", head_dtype, linear(tokens, h, E, p16, act), h * E, p16)
        if w.ep > 1:
            add("moe_dispatch", L, "collective", VECTOR_DTYPE, all_to_all(tokens * k * h, w.ep, act))
        ed = linear_weight_dtype(m, w, "experts", p16)
        cost = experts(tokens, h, sh.intermediate, E, k, ed, act, gated=m.gated_mlp, ep=w.ep)
        n_mats = 3 if m.gated_mlp else 2
        add("experts", L, "matmul", compute_dtype(ed, act), cost, E // w.ep * n_mats * h * sh.intermediate, ed)
        if w.ep > 1:
            add("moe_combine", L, "collective", VECTOR_DTYPE, all_to_all(tokens * k * h, w.ep, act))
    else:
        if m.gated_mlp:
            proj("gate_proj", L, h, sh.intermediate, m.mlp_bias)
        proj("up_proj", L, h, sh.intermediate, m.mlp_bias)
        n_in = 2 if m.gated_mlp else 1
        per_elem = ELEMENTWISE_FLOPS[act_kind] + (ELEMENTWISE_FLOPS["gated_product"] if m.gated_mlp else 0)
        add("act", L, "elementwise", VECTOR_DTYPE, elementwise(tokens * sh.intermediate, n_in, per_elem, act))
        proj("down_proj", L, sh.intermediate, h, m.mlp_bias)
    all_reduce_op("mlp_all_reduce", L, tokens * h)
    add("mlp_residual", L, "elementwise", VECTOR_DTYPE, elementwise(tokens * h, 2, ELEMENTWISE_FLOPS["add"], act))
    if w.pp > 1:  # hidden states to the next stage, at each of the pp - 1 stage boundaries
        add("pp_send", w.pp - 1, "collective", VECTOR_DTYPE, p2p_send(tokens * h / tp, act))

    # --- head
    norm_op("final_norm", 1)
    head = linear(b, h, sh.vocab, p16, act)  # last position of each sequence only
    add("lm_head", 1, "matmul", head_dtype, head, 0.0 if m.tie_word_embeddings else h * sh.vocab, p16)
    if tp > 1:
        add("logits_all_gather", 1, "collective", VECTOR_DTYPE, all_gather(b * sh.vocab * tp, tp, act))
    return ops


def _with_params(op: Op, extra_params: float, extra_bytes: float) -> Op:
    return Op(op.name, op.count, op.category, op.compute_dtype, op.cost, op.params + extra_params,
              op.param_bytes + extra_bytes)


def parameter_count(m: ModelConfig, w: Workload = None) -> float:
    """Parameters stored per GPU (the whole model when tp = 1), tied embeddings counted once."""
    w = w or Workload()
    ops = model_ops(m, w, "decode", 1, 1, 1)
    return float(sum(op.count * op.params for op in ops))
