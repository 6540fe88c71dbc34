"""Cost of one occurrence of an op: FLOPs and the bytes an ideal kernel must move.

Conventions, stated once:
1. One multiply-add is 2 FLOP. A matmul [M, K] @ [K, N] is 2*M*K*N FLOP; a bias add is fused into
   the matmul and its FLOPs are not counted (as torch.utils.flop_counter does), its bytes are.
2. Bytes are the minimum traffic of an ideal kernel: every input read once from device memory, every
   output written once, at the dtype's size (int4 = 0.5 byte). No cache reuse across ops is assumed,
   and none of a real kernel's re-reads (a flash-attention kernel re-reads K/V once per query block).
3. Bytes are split by kind: weights (read), activations (read, written), KV cache (read, written).
   Quantised weights carry their scales and zero points (dtypes.Format: int4 one fp16 scale per 128
   values, nvfp4 one e4m3 per 16, mxfp4 one e8m0 per 32, or a checkpoint's own layout), counted as
   weight bytes (weight_storage_bytes).
4. Prefill attention with a causal mask counts the useful work: query i attends to min(i+1, window)
   keys, so s*(s+1)/2 pairs without a window. Naive attention counts what it executes: the full
   s_q x s_k score matrix, written and read back. GQA: FLOPs use query heads, KV bytes KV heads.
5. Element-wise work runs on CUDA cores; its FLOPs per element are the table ELEMENTWISE_FLOPS.
   Softmax inside a flash-attention kernel is not counted (its FLOPs are the two matmuls).
6. Collectives (tensor parallelism) carry comm_bytes: the bytes each GPU sends over the link.

Every argument may be a numpy array (a sweep); the functions see shapes only, never tensors.
"""

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from roofline.dtypes import DTYPE_BYTES, Format, as_format, scale_bytes

Count = float | np.ndarray  # a size or a count: one number, or one per sweep point (every formula is vectorised)

# FLOPs per output element of element-wise work (CUDA cores)
ELEMENTWISE_FLOPS = {
    "add": 1,  # residual add
    "silu": 4,  # x / (1 + exp(-x)): negate, exp, add, divide
    "gelu": 8,  # tanh approximation: x^3, 2 mul, add, tanh, add, 2 mul
    "relu": 1,
    "gated_product": 1,  # act(gate) * up
    "softmax": 5,  # max, subtract, exp, sum, divide
    "rope": 3,  # x*cos + rotate(x)*sin: 2 mul + 1 add
    "rmsnorm": 4,  # square, sum, multiply by rsqrt, multiply by gamma
    "layernorm": 7,  # sum, subtract mean, square, sum, multiply by rsqrt, multiply by gamma, add beta
}
ACTIVATION_KIND = {"silu": "silu", "swish": "silu", "relu": "relu"}  # every gelu variant -> "gelu"


@dataclass(frozen=True)
class Cost:
    """FLOPs and bytes of one occurrence of an op (numbers or numpy arrays)."""

    flops: object = 0.0
    weight_bytes_read: object = 0.0
    act_bytes_read: object = 0.0
    act_bytes_written: object = 0.0
    kv_bytes_read: object = 0.0
    kv_bytes_written: object = 0.0
    comm_bytes: object = 0.0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def scaled(self, factor: Count) -> "Cost":
        return Cost(*(getattr(self, f.name) * factor for f in fields(self)))

    @property
    def bytes_read(self) -> Count:
        return self.weight_bytes_read + self.act_bytes_read + self.kv_bytes_read

    @property
    def bytes_written(self) -> Count:
        return self.act_bytes_written + self.kv_bytes_written


FORMULAS = {}


def formula(kind: str) -> Callable[[Callable], Callable]:
    """Register a cost function under ``kind``; a second registration of a kind is refused."""

    def register(fn):
        if kind in FORMULAS:
            raise ValueError(f"formula '{kind}' is registered twice")
        FORMULAS[kind] = fn
        return fn

    return register


def _b(dtype: str) -> float:
    return DTYPE_BYTES[dtype]


def weight_storage_bytes(n_params: Count, dtype: str | Format, fan_in: Count | None = None) -> Count:
    """Bytes to store ``n_params`` weights of ``dtype`` (a name or a dtypes.Format) in one tensor,
    quantisation scales and zero points included (dtypes.scale_bytes; ``fan_in`` gives the rows
    for block and per-channel scales), plus the format's per-tensor scale."""
    fmt = as_format(dtype)
    return n_params * fmt.value_bytes + scale_bytes(fmt, n_params, fan_in=fan_in) + fmt.tensor_bytes


# ---------------------------------------------------------------------------------------------
# matmul-type


@formula("linear")
def linear(
    tokens: Count,
    in_features: Count,
    out_features: Count,
    weight_dtype: str,
    act_dtype: str,
    bias: bool = False,
    bias_dtype: str = "bf16",
) -> Cost:
    """x [tokens, in] @ W^T [in, out] (+ b) -> y [tokens, out]."""
    return Cost(
        flops=2.0 * tokens * in_features * out_features,
        weight_bytes_read=weight_storage_bytes(in_features * out_features, weight_dtype, fan_in=in_features)
        + (out_features * _b(bias_dtype) if bias else 0.0),
        act_bytes_read=tokens * in_features * _b(act_dtype),
        act_bytes_written=tokens * out_features * _b(act_dtype),
    )


def causal_pairs(seq: Count, window: Count | None = None) -> Count:
    """Query-key pairs of causal attention over ``seq`` tokens: query i sees min(i+1, window) keys."""
    seq = np.asarray(seq, dtype=float)
    full = seq * (seq + 1) / 2
    if window is None:
        return full
    w = float(window)
    return np.where(seq <= w, full, w * (w + 1) / 2 + (seq - w) * w)


def _kv_read_bytes(batch, keys, kv_heads, head_dim, kv_dtype):
    """K and V of ``keys`` positions per sequence, read from the cache (scales included)."""
    n = 2.0 * batch * keys * kv_heads * head_dim
    return n * _b(kv_dtype) + scale_bytes(kv_dtype, n, group_size=head_dim)


@formula("flash_attention")
def flash_attention(
    batch: Count,
    q_len: Count,
    kv_len: Count,
    pairs: Count,
    heads: Count,
    kv_heads: Count,
    head_dim: Count,
    act_dtype: str,
    kv_dtype: str,
    from_cache: bool,
    v_head_dim: Count | None = None,
) -> Cost:
    """softmax(q k^T) v in one kernel: q [b, h, s_q, d], k [b, h_kv, s_k, d], v [b, h_kv, s_k, d_v] -> o [b, h, s_q, d_v].

    ``pairs`` = query-key pairs per sequence and head (causal_pairs for prefill, s_q*s_k in decode).
    ``from_cache``: K/V are read from the KV cache (decode, kv dtype) or from fresh activations (prefill).
    ``v_head_dim``: the value head size when it differs from the query/key one (decompressed MLA: 192 vs 128).
    """
    dv = head_dim if v_head_dim is None else v_head_dim
    q_bytes = batch * q_len * heads * head_dim * _b(act_dtype)
    o_bytes = batch * q_len * heads * dv * _b(act_dtype)
    if from_cache:
        kv_read = _kv_read_bytes(batch, kv_len, kv_heads, (head_dim + dv) / 2, kv_dtype)
        act_kv = 0.0
    else:
        kv_read, act_kv = 0.0, batch * kv_len * kv_heads * (head_dim + dv) * _b(act_dtype)
    return Cost(
        flops=2.0 * batch * heads * (head_dim + dv) * pairs,  # q k^T (2*d per pair) and p v (2*d_v per pair)
        act_bytes_read=q_bytes + act_kv,
        act_bytes_written=o_bytes,
        kv_bytes_read=kv_read,
    )


def _attention_matmul(
    batch, q_len, kv_len, heads, kv_heads, head_dim, act_dtype, kv_dtype, from_cache, left_elements, out_elements
):
    """One of naive attention's two matmuls: a left operand (q, or the probabilities) times one half of
    the KV cache (K^T or V), 2*d FLOP per query-key pair per head. The K or V half is read from the
    cache (kv dtype) in decode, from fresh activations in prefill."""
    half = batch * kv_len * kv_heads * head_dim
    return Cost(
        flops=2.0 * batch * heads * q_len * kv_len * head_dim,
        act_bytes_read=left_elements * _b(act_dtype) + (0.0 if from_cache else half * _b(act_dtype)),
        kv_bytes_read=_kv_read_bytes(batch, kv_len, kv_heads, head_dim, kv_dtype) / 2 if from_cache else 0.0,
        act_bytes_written=out_elements * _b(act_dtype),
    )


@formula("qk_matmul")
def qk_matmul(
    batch: Count,
    q_len: Count,
    kv_len: Count,
    heads: Count,
    kv_heads: Count,
    head_dim: Count,
    act_dtype: str,
    kv_dtype: str,
    from_cache: bool,
) -> Cost:
    """q [b, h, s_q, d] @ k^T [b, h, d, s_k] -> scores [b, h, s_q, s_k], all of it (mask applied later)."""
    return _attention_matmul(
        batch,
        q_len,
        kv_len,
        heads,
        kv_heads,
        head_dim,
        act_dtype,
        kv_dtype,
        from_cache,
        left_elements=batch * q_len * heads * head_dim,
        out_elements=batch * heads * q_len * kv_len,
    )


@formula("softmax")
def softmax(batch: Count, q_len: Count, kv_len: Count, heads: Count, act_dtype: str) -> Cost:
    """scores [b, h, s_q, s_k] -> probabilities, same shape (the causal mask is applied here)."""
    n = batch * heads * q_len * kv_len
    return Cost(
        flops=ELEMENTWISE_FLOPS["softmax"] * n,
        act_bytes_read=n * _b(act_dtype),
        act_bytes_written=n * _b(act_dtype),
    )


@formula("sv_matmul")
def sv_matmul(
    batch: Count,
    q_len: Count,
    kv_len: Count,
    heads: Count,
    kv_heads: Count,
    head_dim: Count,
    act_dtype: str,
    kv_dtype: str,
    from_cache: bool,
) -> Cost:
    """p [b, h, s_q, s_k] @ v [b, h, s_k, d] -> o [b, h, s_q, d]."""
    return _attention_matmul(
        batch,
        q_len,
        kv_len,
        heads,
        kv_heads,
        head_dim,
        act_dtype,
        kv_dtype,
        from_cache,
        left_elements=batch * heads * q_len * kv_len,
        out_elements=batch * q_len * heads * head_dim,
    )


@formula("experts")
def experts(
    tokens: Count,
    hidden: Count,
    intermediate: Count,
    n_experts: Count,
    top_k: Count,
    weight_dtype: str,
    act_dtype: str,
    gated: bool = True,
    ep: Count = 1,
    bias: bool = False,
    bias_dtype: str = "bf16",
    routed: float | None = None,
) -> Cost:
    """Routed MLPs: each token runs top_k experts (gate/up -> act -> down), then a weighted sum.

    Built from the dense pieces over rows = tokens * top_k: the projections (linear), the
    activation (elementwise) and the combine (read top_k outputs and fp32 routing weights per
    token, multiply-add, write one row). Weights read: only the experts that receive a token.
    With routing uniform over experts the expected number is E * (1 - (1 - k/E)^tokens), which
    is every expert once tokens >> E/k; ``routed``: the experts (of one GPU) that a real step's router sent
    tokens to, in its place (config.Workload.routed_experts). ``bias``: each expert's projections carry biases (gpt-oss),
    read with its weights. With expert parallelism over ``ep`` GPUs, ``tokens`` is one
    GPU's share: it holds E/ep experts, which see the routed tokens of all ep GPUs, and (balanced
    routing) runs as many token-expert rows as its own tokens produce.
    """
    rows = tokens * top_k
    mats = ("gate", "up", "down") if gated else ("up", "down")
    cost = Cost()
    for m in mats:
        fan_in, fan_out = (intermediate, hidden) if m == "down" else (hidden, intermediate)
        cost = cost + linear(rows, fan_in, fan_out, weight_dtype, act_dtype)
    act_flops = ELEMENTWISE_FLOPS["silu"] + (ELEMENTWISE_FLOPS["gated_product"] if gated else 0)
    cost = cost + elementwise(rows * intermediate, 2 if gated else 1, act_flops, act_dtype)
    combine = Cost(
        flops=2.0 * rows * hidden,
        act_bytes_read=rows * hidden * _b(act_dtype) + rows * DTYPE_BYTES["fp32"],
        act_bytes_written=tokens * hidden * _b(act_dtype),
    )
    touched = expected_routed_experts(tokens, n_experts, top_k, ep) if routed is None else routed
    per_expert = sum(
        weight_storage_bytes(hidden * intermediate, weight_dtype, fan_in=intermediate if m == "down" else hidden)
        for m in mats
    )
    if bias:
        per_expert = per_expert + ((len(mats) - 1) * intermediate + hidden) * _b(bias_dtype)
    return Cost(
        flops=cost.flops + combine.flops,
        weight_bytes_read=touched * per_expert,
        act_bytes_read=cost.act_bytes_read + combine.act_bytes_read,
        act_bytes_written=cost.act_bytes_written + combine.act_bytes_written,
    )


def expected_routed_experts(tokens: Count, n_experts: Count, top_k: Count, ep: Count = 1) -> Count:
    """The experts of one GPU (E/ep of the ``n_experts`` = E) that receive at least one token, in expectation,
    when each of ``ep`` GPUs routes ``tokens`` tokens, each to ``top_k`` of the E experts uniformly: an expert is
    missed by one token with probability 1 - k/E, by all tokens x ep of them with its power, so
    E/ep (1 - (1 - k/E)^(tokens ep)). At ep 1, E (1 - (1 - k/E)^tokens): Mixtral (E 8, k 2) at 8 tokens, 7.20."""
    t = np.asarray(tokens, dtype=float) * ep
    return n_experts / ep * (1.0 - (1.0 - top_k / n_experts) ** t)


# ---------------------------------------------------------------------------------------------
# memory-type


@formula("embedding")
def embedding(tokens: Count, rows_in_table: Count, hidden: Count, param_dtype: str, act_dtype: str) -> Cost:
    """Gather one table row per token: ids [tokens] -> x [tokens, hidden]. No FLOPs.

    Rows read: at most one per token and at most the whole table (``rows_in_table``).
    """
    return Cost(
        weight_bytes_read=np.minimum(tokens, rows_in_table) * hidden * _b(param_dtype),
        act_bytes_written=tokens * hidden * _b(act_dtype),
    )


@formula("pos_embedding")
def pos_embedding(tokens: Count, positions: Count, hidden: Count, param_dtype: str, act_dtype: str) -> Cost:
    """Learned positions (gpt2): x [tokens, hidden] += wpe[positions]; ``positions`` distinct rows read."""
    return Cost(
        flops=1.0 * tokens * hidden,
        weight_bytes_read=positions * hidden * _b(param_dtype),
        act_bytes_read=tokens * hidden * _b(act_dtype),
        act_bytes_written=tokens * hidden * _b(act_dtype),
    )


@formula("norm")
def norm(tokens: Count, hidden: Count, kind: str, param_dtype: str, act_dtype: str) -> Cost:
    """RMSNorm (gamma) or LayerNorm (gamma, beta) over the last dim: x [tokens, hidden] -> same."""
    n_params = hidden * (2 if kind == "layernorm" else 1)
    return Cost(
        flops=ELEMENTWISE_FLOPS[kind] * tokens * hidden,
        weight_bytes_read=n_params * _b(param_dtype),
        act_bytes_read=tokens * hidden * _b(act_dtype),
        act_bytes_written=tokens * hidden * _b(act_dtype),
    )


@formula("elementwise")
def elementwise(n_out: Count, n_inputs: Count, flops_per_element: Count, act_dtype: str) -> Cost:
    """``n_inputs`` tensors of ``n_out`` elements in, one out (residual add, activation)."""
    return Cost(
        flops=float(flops_per_element) * n_out,
        act_bytes_read=n_inputs * n_out * _b(act_dtype),
        act_bytes_written=n_out * _b(act_dtype),
    )


@formula("rope")
def rope(tokens: Count, seq_positions: Count, heads: Count, kv_heads: Count, head_dim: Count, act_dtype: str) -> Cost:
    """Rotary embedding on q [tokens, h, d] and k [tokens, h_kv, d] in place; cos/sin tables
    [positions, d] read once each."""
    n = tokens * (heads + kv_heads) * head_dim
    return Cost(
        flops=ELEMENTWISE_FLOPS["rope"] * n,
        act_bytes_read=n * _b(act_dtype) + 2.0 * seq_positions * head_dim * _b(act_dtype),
        act_bytes_written=n * _b(act_dtype),
    )


@formula("kv_cache_write")
def kv_cache_write(tokens: Count, kv_heads: Count, head_dim: Count, act_dtype: str, kv_dtype: str) -> Cost:
    """Store the new k and v [tokens, h_kv, d] into the cache (quantising to the kv dtype)."""
    n = 2.0 * tokens * kv_heads * head_dim
    return Cost(
        act_bytes_read=n * _b(act_dtype),
        kv_bytes_written=n * _b(kv_dtype) + scale_bytes(kv_dtype, n, group_size=head_dim),
    )


# ---------------------------------------------------------------------------------------------
# multi-head latent attention (DeepSeek-V2/V3)
#
# Per token and layer the cache holds one latent c_kv [kv_lora_rank] and one shared rotary key k_pe
# [rope_dim], for all heads. Per head, k = [c_kv @ W_UK, k_pe] and v = c_kv @ W_UV (W_UK, W_UV: the
# two halves of kv_b_proj). Decompressed form: kv_b_proj rebuilds k and v for every key, then ordinary
# attention with d_qk = nope + rope and d_v. Absorbed form (FlashMLA, vLLM decode): W_UK is folded into
# the query (q_absorb), attention runs over the latent directly (one shared "KV head" of width
# kv_lora_rank + rope_dim), and W_UV is applied to the output (v_absorb).


@formula("per_head_linear")
def per_head_linear(
    tokens: Count, heads: Count, in_features: Count, out_features: Count, weight_dtype: str, act_dtype: str
) -> Cost:
    """x [tokens, h, in] @ W [h, in, out] -> y [tokens, h, out]: one matrix per head (a batched matmul)."""
    return Cost(
        flops=2.0 * tokens * heads * in_features * out_features,
        weight_bytes_read=weight_storage_bytes(heads * in_features * out_features, weight_dtype),
        act_bytes_read=tokens * heads * in_features * _b(act_dtype),
        act_bytes_written=tokens * heads * out_features * _b(act_dtype),
    )


@formula("mla_attention")
def mla_attention(
    batch: Count,
    q_len: Count,
    kv_len: Count,
    pairs: Count,
    heads: Count,
    kv_lora_rank: Count,
    rope_dim: Count,
    act_dtype: str,
    kv_dtype: str,
    from_cache: bool,
) -> Cost:
    """Absorbed MLA: q [b, h, s_q, r + p] . [c_kv, k_pe] [b, s_k, r + p] -> scores; scores @ c_kv -> o [b, h, s_q, r].

    r = kv_lora_rank, p = rope_dim; per query-key pair and head 2(r + p) FLOP for the scores and 2r for
    the output. The latent is read once for all heads (from the cache in decode, kv dtype).
    """
    width = kv_lora_rank + rope_dim
    latent = batch * kv_len * width
    return Cost(
        flops=2.0 * batch * heads * pairs * (2 * kv_lora_rank + rope_dim),
        act_bytes_read=batch * q_len * heads * width * _b(act_dtype) + (0.0 if from_cache else latent * _b(act_dtype)),
        act_bytes_written=batch * q_len * heads * kv_lora_rank * _b(act_dtype),
        kv_bytes_read=latent * _b(kv_dtype) + scale_bytes(kv_dtype, latent, group_size=width) if from_cache else 0.0,
    )


@formula("latent_cache_write")
def latent_cache_write(tokens: Count, width: Count, act_dtype: str, kv_dtype: str) -> Cost:
    """Store the new latent [tokens, kv_lora_rank + rope_dim] into the MLA cache (one vector per token)."""
    n = 1.0 * tokens * width
    return Cost(
        act_bytes_read=n * _b(act_dtype),
        kv_bytes_written=n * _b(kv_dtype) + scale_bytes(kv_dtype, n, group_size=width),
    )


# ---------------------------------------------------------------------------------------------
# collectives


@formula("all_reduce")
def all_reduce(n_elements: Count, world: Count, act_dtype: str) -> Cost:
    """Ring all-reduce of [n_elements] over ``world`` GPUs: each GPU sends 2(N-1)/N of the message
    and does (N-1)/N of the additions; device memory: input read once, output written once."""
    msg = n_elements * _b(act_dtype)
    return Cost(
        flops=(world - 1) / world * n_elements,
        act_bytes_read=msg,
        act_bytes_written=msg,
        comm_bytes=2.0 * (world - 1) / world * msg,
    )


@formula("p2p_send")
def p2p_send(n_elements: Count, act_dtype: str) -> Cost:
    """Point-to-point send of [n_elements] from one pipeline stage to the next: the whole message
    crosses the link once; device memory: read on one side, written on the other."""
    msg = n_elements * _b(act_dtype)
    return Cost(act_bytes_read=msg, act_bytes_written=msg, comm_bytes=msg)


@formula("all_to_all")
def all_to_all(n_elements: Count, world: Count, act_dtype: str) -> Cost:
    """All-to-all of [n_elements] per GPU over ``world`` GPUs, evenly spread: each GPU keeps 1/N of its
    message and sends the rest; device memory: the message read once and written once."""
    msg = n_elements * _b(act_dtype)
    return Cost(act_bytes_read=msg, act_bytes_written=msg, comm_bytes=(world - 1) / world * msg)


@formula("all_gather")
def all_gather(n_elements_total: Count, world: Count, act_dtype: str) -> Cost:
    """Ring all-gather: each GPU holds 1/N of [n_elements_total] and receives the rest;
    each GPU sends (N-1)/N of the gathered message."""
    msg = n_elements_total * _b(act_dtype)
    return Cost(
        act_bytes_read=msg / world,
        act_bytes_written=msg,
        comm_bytes=(world - 1) / world * msg,
    )


# ---------------------------------------------------------------------------------------------
# aten ops as a profiler trace records them
#
# torch.profiler with record_shapes=True writes, per aten op call, 'Input Dims' (a shape per
# argument: [] for a non-tensor, a list of shapes for a TensorList), 'Input type' ('c10::BFloat16',
# 'float', 'long int', 'Scalar', 'ScalarList', 'TensorList', '' for None ...) and 'Concrete Inputs'
# (scalar arguments as text: '-1', 'True', '[-1]'). ATEN_COSTS maps an op name to a function of an
# AtenCall that returns the Cost of one call, built from the formulas above where one fits, or
# raises AtenShapeError when the recorded arguments are not of the form it reads; the trace then
# reports that call with its GPU time and no count, never a count of zero.
# Conventions, beyond 1-6 at the top of the file:
#  a. Every tensor argument is read once at its recorded size (a broadcast input at its own size),
#     and each output written once. A trace does not say which tensor is a weight: bytes are
#     activation bytes, except a matmul's right operand and a norm's or embedding's parameters,
#     which the formulas above count as weight bytes (the sum is the same).
#  b. Element-wise FLOPs per output element: ATEN_ELEMENTWISE_FLOPS (each arithmetic or
#     transcendental operation 1 FLOP, as ELEMENTWISE_FLOPS). Pure data movement (copy, cat,
#     gather, where, fill) is 0 FLOP. A reduction counts 1 FLOP per element read (an add or a
#     compare), mean one more per element written (the divide).
#  c. The output has the element size of the first tensor argument, unless the op says otherwise
#     (argmax and topk indices are int64).
#  d. Attention: a top-left causal mask keeps min(i + 1, s_k) keys of query row i when
#     'Concrete Inputs' records is_causal; else the full s_q x s_k (aten_causal_known says which).
#     Backward counts five matmuls per kept score, as torch.utils.flop_counter does (2.13): the
#     recomputed q k^T, dO v^T, P^T dO, dS k and dS^T q: 2 * (3 d + 2 d_v) FLOP per pair.

# 'Input type' strings -> bytes per element, and the dtype names of dtypes.py (float types only)
ATEN_ELEM_BYTES = {
    "c10::BFloat16": 2,
    "c10::Half": 2,
    "float": 4,
    "double": 8,
    "c10::Float8_e4m3fn": 1,
    "c10::Float8_e5m2": 1,
    "c10::Float8_e4m3fnuz": 1,
    "c10::Float8_e5m2fnuz": 1,
    "signed char": 1,
    "unsigned char": 1,
    "bool": 1,
    "short int": 2,
    "int": 4,
    "long int": 8,
    "c10::complex<float>": 8,
}
ATEN_DTYPE = {
    "c10::BFloat16": "bf16",
    "c10::Half": "fp16",
    "float": "fp32",
    "double": "fp64",
    "c10::Float8_e4m3fn": "fp8",
    "c10::Float8_e5m2": "fp8",
    "c10::Float8_e4m3fnuz": "fp8",
    "c10::Float8_e5m2fnuz": "fp8",
    "signed char": "int8",
}
INDEX_BYTES = 8  # int64 indices: what argmax and topk return


class AtenShapeError(ValueError):
    """An aten call's recorded arguments are not of the form its cost formula reads."""


@dataclass(frozen=True)
class AtenCall:
    """One aten op call's recorded arguments: ``dims``, ``types`` and ``concrete`` per argument."""

    dims: list
    types: list
    concrete: list = ()

    def is_tensor(self, i: int) -> bool:
        return i < len(self.types) and self.types[i] in ATEN_ELEM_BYTES and isinstance(self.dims[i], list)

    def shape(self, i: int) -> list:
        """The shape of tensor argument i; AtenShapeError when it is not a tensor."""
        if not self.is_tensor(i):
            raise AtenShapeError(f"argument {i} is not a tensor")
        return [_dim(d) for d in self.dims[i]]

    def elem_bytes(self, i: int) -> float:
        self.shape(i)
        return ATEN_ELEM_BYTES[self.types[i]]

    def dtype(self, i: int = 0) -> str:
        """dtypes.py's name of tensor argument i's type (float types only)."""
        try:
            return ATEN_DTYPE[self.types[i]]
        except (KeyError, IndexError):
            raise AtenShapeError(f"argument {i} has no floating dtype") from None

    def numel(self, i: int) -> int:
        return _prod(self.shape(i))

    def nbytes(self, i: int) -> float:
        return self.numel(i) * self.elem_bytes(i)

    def tensors(self) -> list:
        """Indices of the tensor arguments."""
        return [i for i in range(len(self.types)) if self.is_tensor(i)]

    def tensor_list(self, i: int) -> list:
        """The shapes of a TensorList argument."""
        if i >= len(self.types) or self.types[i] != "TensorList" or not isinstance(self.dims[i], list):
            raise AtenShapeError(f"argument {i} is not a TensorList")
        return [[_dim(d) for d in shape] for shape in self.dims[i]]

    def arg(self, i: int) -> int | float | bool | list | None:
        """Concrete argument i parsed: an int, a float, a bool, a list of ints; None when not recorded."""
        if i >= len(self.concrete):
            return None
        text = str(self.concrete[i]).strip()
        if text in ("", "None"):
            return None
        if text in ("True", "False"):
            return text == "True"
        try:
            if text.startswith("[") and text.endswith("]"):
                return [int(x) for x in text[1:-1].split(",") if x.strip()]
            return int(text) if text.lstrip("-").isdigit() else float(text)
        except ValueError:
            raise AtenShapeError(f"argument {i} ({text[:20]!r}) is not a number") from None


def _dim(d) -> int:
    if isinstance(d, bool) or not isinstance(d, int) or d < 0:
        raise AtenShapeError(f"dimension {d!r} is not a size")
    return d


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _broadcast(*shapes) -> list:
    """The broadcast shape of ``shapes`` (numpy's rule); AtenShapeError when they do not broadcast."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(-ndim, 0):
        sizes = {s[axis] for s in shapes if len(s) >= -axis} - {1}
        if len(sizes) > 1:
            raise AtenShapeError(f"shapes {shapes} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return out


ATEN_COSTS = {}


def aten_cost(*names: str) -> Callable[[Callable], Callable]:
    """Register a cost function of an AtenCall under each aten op name; a second one is refused."""

    def register(fn):
        for name in names:
            if name in ATEN_COSTS:
                raise ValueError(f"aten cost '{name}' is registered twice")
            ATEN_COSTS[name] = fn
        return fn

    return register


# --- matmul-type: built from linear (a [m, k] @ b [k, n] is linear(m, k, n) with b as the weight)


@aten_cost("aten::mm")
def aten_mm(call: AtenCall) -> Cost:
    """a [m, k] @ b [k, n] -> [m, n]."""
    (m, k), (k2, n) = call.shape(0), call.shape(1)
    _same(k, k2)
    return linear(m, k, n, call.dtype(0), call.dtype(0))


@aten_cost("aten::addmm")
def aten_addmm(call: AtenCall) -> Cost:
    """bias [n] or [m, n] + a [m, k] @ b [k, n] -> [m, n]; the add's FLOPs are not counted."""
    mm = aten_mm(AtenCall(call.dims[1:3], call.types[1:3]))
    return mm + Cost(act_bytes_read=call.nbytes(0))


@aten_cost("aten::bmm")
def aten_bmm(call: AtenCall) -> Cost:
    """a [b, m, k] @ c [b, k, n] -> [b, m, n]: b matmuls, each with its own right operand."""
    (b, m, k), (b2, k2, n) = call.shape(0), call.shape(1)
    _same(k, k2)
    _same(b, b2)
    return linear(m, k, n, call.dtype(0), call.dtype(0)).scaled(b)


@aten_cost("aten::baddbmm")
def aten_baddbmm(call: AtenCall) -> Cost:
    """self [b, m, n] (or broadcastable) + a [b, m, k] @ c [b, k, n] -> [b, m, n]."""
    return aten_bmm(AtenCall(call.dims[1:3], call.types[1:3])) + Cost(act_bytes_read=call.nbytes(0))


@aten_cost("aten::linear")
def aten_linear(call: AtenCall) -> Cost:
    """x [..., k] @ W^T (W [n, k]) (+ bias [n]) -> [..., n]."""
    x, w = call.shape(0), call.shape(1)
    if len(w) != 2 or not x:
        raise AtenShapeError("linear needs x [..., k] and W [n, k]")
    n, k = w
    _same(x[-1], k)
    bias = call.is_tensor(2)
    return linear(
        _prod(x[:-1]), k, n, call.dtype(1), call.dtype(0), bias=bias, bias_dtype=call.dtype(2) if bias else "bf16"
    )


@aten_cost("aten::matmul")
def aten_matmul(call: AtenCall) -> Cost:
    """torch.matmul's rules: a [..., m, k] @ b [k, n] is linear; batch dims broadcast otherwise;
    a 1-D operand gains (and loses) a unit dim."""
    a, b = call.shape(0), call.shape(1)
    if not a or not b:
        raise AtenShapeError("matmul of a 0-d tensor")
    if len(b) <= 2:
        k, n = (b[0], 1) if len(b) == 1 else b
        _same(a[-1], k)
        return linear(_prod(a[:-1]), k, n, call.dtype(1), call.dtype(0))
    a2 = [1] + a if len(a) == 1 else a
    m, k = a2[-2:]
    k2, n = b[-2:]
    _same(k, k2)
    batch = _prod(_broadcast(a2[:-2], b[:-2]))
    return Cost(
        flops=2.0 * batch * m * k * n,
        act_bytes_read=call.nbytes(0) + call.nbytes(1),
        act_bytes_written=batch * m * n * call.elem_bytes(0),
    )


@aten_cost("aten::_grouped_mm")
def aten_grouped_mm(call: AtenCall) -> Cost:
    """torch._grouped_mm (mixture-of-experts): a [tokens, k] @ b [g, k, n] with offs splitting the
    tokens over g groups -> [tokens, n]; a [g, m, k] @ b [g, k, n] is a bmm; a [m, K] @ b [K, n]
    with offs splitting K -> [g, m, n]. All of b is read (every group's weights)."""
    a, b = call.shape(0), call.shape(1)
    size = call.elem_bytes(0)
    if len(a) == 2 and len(b) == 3:
        (t, k), (g, k2, n) = a, b
        _same(k, k2)
        flops, out = 2.0 * t * k * n, t * n
    elif len(a) == 3 and len(b) == 3:
        (g, m, k), (g2, k2, n) = a, b
        _same(k, k2)
        _same(g, g2)
        flops, out = 2.0 * g * m * k * n, g * m * n
    elif len(a) == 2 and len(b) == 2 and call.is_tensor(2):
        (m, k), (k2, n) = a, b
        _same(k, k2)
        g = _prod(call.shape(2))
        flops, out = 2.0 * m * k * n, g * m * n
    else:
        raise AtenShapeError(f"_grouped_mm of shapes {a} and {b}")
    return Cost(
        flops=flops, act_bytes_read=call.nbytes(0), weight_bytes_read=call.nbytes(1), act_bytes_written=out * size
    )


def _same(a, b):
    if a != b:
        raise AtenShapeError(f"inner sizes {a} and {b} differ")


# --- attention: every SDPA backend's aten op, forward and backward


def attention_flops(q: list, k: list, v: list, causal: bool, backward: bool = False) -> float:
    """q [..., s_q, d] @ k^T [..., d, s_k] -> scores; scores @ v [..., s_k, d_v] -> [..., s_q, d_v].
    FLOPs use the query heads (GQA: K/V heads are fewer); 2 FLOP per multiply-add (d + d_v per pair).
    Equals flash_attention's 4 * d per pair when d_v == d. ``backward``: 2 * (3 d + 2 d_v) per pair."""
    batch = _prod(q[:-2])
    s_q, d, s_k, d_v = q[-2], q[-1], k[-2], v[-1]
    if causal:  # row i of a top-left causal mask keeps min(i + 1, s_k) keys
        kept = s_q * (s_q + 1) // 2 if s_q <= s_k else s_k * (s_k + 1) // 2 + (s_q - s_k) * s_k
    else:
        kept = s_q * s_k
    return 2.0 * batch * kept * ((3 * d + 2 * d_v) if backward else (d + d_v))


# the position of is_causal in each op's schema (torch.ops.aten.<op>.default._schema)
ATEN_CAUSAL_INDEX = {
    "aten::scaled_dot_product_attention": 5,
    "aten::_scaled_dot_product_flash_attention": 4,
    "aten::_scaled_dot_product_efficient_attention": 6,
    "aten::_scaled_dot_product_cudnn_attention": 6,
    "aten::_scaled_dot_product_flash_attention_backward": 11,
    "aten::_scaled_dot_product_efficient_attention_backward": 11,
    "aten::_scaled_dot_product_cudnn_attention_backward": 14,
}


def aten_causal_known(name: str, call: AtenCall) -> bool:
    """Whether an attention call's is_causal was recorded (always True for other ops)."""
    index = ATEN_CAUSAL_INDEX.get(name)
    return index is None or isinstance(_arg_or_none(call, index), bool)


def _arg_or_none(call, index):
    try:
        return call.arg(index)
    except AtenShapeError:
        return None


def _sdpa(index):
    def cost(call: AtenCall) -> Cost:
        """q [b, h, s_q, d], k [b, h_kv, s_k, d], v [b, h_kv, s_k, d_v] -> o [b, h, s_q, d_v]."""
        q, k, v = call.shape(0), call.shape(1), call.shape(2)
        if min(len(q), len(k), len(v)) < 2:
            raise AtenShapeError("attention needs [..., s, d] inputs")
        causal = _arg_or_none(call, index) is True
        out = _prod(q[:-1]) * v[-1] * call.elem_bytes(0)
        return Cost(
            flops=attention_flops(q, k, v, causal),
            act_bytes_read=call.nbytes(0) + call.nbytes(1) + call.nbytes(2),
            act_bytes_written=out,
        )

    return cost


def _sdpa_backward(index):
    def cost(call: AtenCall) -> Cost:
        """grad_out, q, k, v, out, logsumexp, ... -> grad_q, grad_k, grad_v: every tensor read."""
        q, k, v = call.shape(1), call.shape(2), call.shape(3)
        causal = _arg_or_none(call, index) is True
        read = sum(call.nbytes(i) for i in call.tensors())
        written = call.nbytes(1) + call.nbytes(2) + call.nbytes(3)
        return Cost(
            flops=attention_flops(q, k, v, causal, backward=True), act_bytes_read=read, act_bytes_written=written
        )

    return cost


for _name, _index in ATEN_CAUSAL_INDEX.items():
    aten_cost(_name)((_sdpa_backward if _name.endswith("_backward") else _sdpa)(_index))


# --- element-wise, normalisation, reductions, data movement

ATEN_ELEMENTWISE_FLOPS = {
    **{
        f"aten::{op}{inplace}": 1
        for op in (
            "add",
            "sub",
            "mul",
            "div",
            "neg",
            "rsqrt",
            "sqrt",
            "pow",
            "exp",
            "log",
            "reciprocal",
            "relu",
            "clamp",
            "clamp_min",
            "tanh",
            "abs",
        )
        for inplace in ("", "_")
    },
    "aten::silu": ELEMENTWISE_FLOPS["silu"],
    "aten::silu_": ELEMENTWISE_FLOPS["silu"],
    "aten::sigmoid": 4,  # 1 / (1 + exp(-x)): negate, exp, add, divide
    "aten::gelu": ELEMENTWISE_FLOPS["gelu"],
    "aten::gelu_": ELEMENTWISE_FLOPS["gelu"],
    "aten::threshold_backward": 1,  # relu's backward: a compare-select
    "aten::where": 0,
    "aten::masked_fill": 0,
    "aten::masked_fill_": 0,
}


def _pointwise(flops_per_element):
    def cost(call: AtenCall) -> Cost:
        """Tensor arguments broadcast to the output, which has the first tensor's element size."""
        tensors = call.tensors()
        if not tensors:
            raise AtenShapeError("no tensor argument")
        out = _prod(_broadcast(*(call.shape(i) for i in tensors)))
        return elementwise_bytes(
            out, sum(call.nbytes(i) for i in tensors), out * call.elem_bytes(tensors[0]), flops_per_element
        )

    return cost


def elementwise_bytes(n_out: Count, bytes_read: Count, bytes_written: Count, flops_per_element: Count) -> Cost:
    """elementwise() for inputs of mixed sizes and element types: bytes given, FLOPs per output element."""
    return Cost(flops=float(flops_per_element) * n_out, act_bytes_read=bytes_read, act_bytes_written=bytes_written)


for _name, _flops in ATEN_ELEMENTWISE_FLOPS.items():
    aten_cost(_name)(_pointwise(_flops))


@aten_cost("aten::copy_")
def aten_copy_(call: AtenCall) -> Cost:
    """self.copy_(src): src read, self written (a dtype cast included). 0 FLOP."""
    return elementwise_bytes(call.numel(0), call.nbytes(1), call.nbytes(0), 0)


@aten_cost("aten::clone", "aten::contiguous")
def aten_clone(call: AtenCall) -> Cost:
    """A copy of self: read once, written once."""
    return elementwise_bytes(call.numel(0), call.nbytes(0), call.nbytes(0), 0)


@aten_cost("aten::fill_", "aten::zero_")
def aten_fill_(call: AtenCall) -> Cost:
    """self filled with a value: written once, nothing read."""
    return elementwise_bytes(call.numel(0), 0.0, call.nbytes(0), 0)


@aten_cost("aten::cat", "aten::stack")
def aten_cat(call: AtenCall) -> Cost:
    """cat(tensors, dim) / stack: every input read once, the result written once. The trace records
    a TensorList's shapes but not its element type: costed only when a tensor argument (out=) gives it."""
    n = sum(_prod(s) for s in call.tensor_list(0))
    typed = call.tensors()
    if not typed:
        raise AtenShapeError("a TensorList's element type is not recorded")
    size = call.elem_bytes(typed[0])
    return elementwise_bytes(n, n * size, n * size, 0)


def _reduced(call: AtenCall, dim_index: int) -> tuple:
    """(elements read, elements written) of a reduction of argument 0 over the dims recorded at
    dim_index ('[-1]', '1'; '[]' or None: all of them)."""
    shape = call.shape(0)
    dims = call.arg(dim_index)
    if dims is None or dims == []:
        return _prod(shape), 1
    dims = [dims] if isinstance(dims, int) and not isinstance(dims, bool) else dims
    if not isinstance(dims, list) or not shape:
        raise AtenShapeError("reduction dims not recorded as integers")
    kept = [s for axis, s in enumerate(shape) if axis not in {d % len(shape) for d in dims}]
    return _prod(shape), _prod(kept)


@aten_cost("aten::sum", "aten::amax", "aten::amin")
def aten_sum(call: AtenCall) -> Cost:
    """A reduction over the recorded dims: 1 FLOP (add or compare) per element read."""
    n_in, n_out = _reduced(call, 1)
    size = call.elem_bytes(0)
    return elementwise_bytes(n_out, n_in * size, n_out * size, 0) + Cost(flops=float(n_in))


@aten_cost("aten::mean")
def aten_mean(call: AtenCall) -> Cost:
    """A sum over the recorded dims, then one divide per element written."""
    return aten_sum(call) + Cost(flops=float(_reduced(call, 1)[1]))


@aten_cost("aten::argmax", "aten::argmin")
def aten_argmax(call: AtenCall) -> Cost:
    """1 compare per element read; int64 indices written (dim None: one)."""
    n_in, n_out = _reduced(call, 1)
    return Cost(flops=float(n_in), act_bytes_read=n_in * call.elem_bytes(0), act_bytes_written=n_out * INDEX_BYTES)


@aten_cost("aten::topk")
def aten_topk(call: AtenCall) -> Cost:
    """topk(self, k, dim=-1): 1 compare per element read; k values and k int64 indices written per row."""
    shape, k = call.shape(0), call.arg(1)
    dim = call.arg(2)
    if not isinstance(k, int) or not shape:
        raise AtenShapeError("topk's k not recorded")
    dim = -1 if dim is None else dim
    rows = _prod(shape) // max(shape[dim], 1)
    return Cost(
        flops=float(_prod(shape)),
        act_bytes_read=call.nbytes(0),
        act_bytes_written=rows * k * (call.elem_bytes(0) + INDEX_BYTES),
    )


@aten_cost("aten::softmax", "aten::_softmax", "aten::log_softmax", "aten::_log_softmax")
def aten_softmax(call: AtenCall) -> Cost:
    """x -> softmax(x) over one dim, same shape: ELEMENTWISE_FLOPS['softmax'] per element."""
    n = call.numel(0)
    return elementwise_bytes(n, call.nbytes(0), call.nbytes(0), ELEMENTWISE_FLOPS["softmax"])


def _norm(kind, weight_index):
    def cost(call: AtenCall) -> Cost:
        """x [..., hidden] normalised over the recorded normalized_shape (argument 1), scaled by a
        weight (and bias) when given: norm() over tokens = numel / hidden."""
        normalized = call.arg(1)
        if not isinstance(normalized, list) or not normalized:
            raise AtenShapeError("normalized_shape not recorded")
        hidden = _prod(normalized)
        c = norm(call.numel(0) // hidden, hidden, kind, call.dtype(0), call.dtype(0))
        params = sum(call.nbytes(i) for i in (weight_index, weight_index + 1) if call.is_tensor(i))
        return Cost(
            flops=c.flops,
            weight_bytes_read=params,
            act_bytes_read=c.act_bytes_read,
            act_bytes_written=c.act_bytes_written,
        )

    return cost


aten_cost("aten::rms_norm", "aten::_fused_rms_norm")(_norm("rmsnorm", 2))
aten_cost("aten::layer_norm", "aten::native_layer_norm")(_norm("layernorm", 2))


@aten_cost("aten::embedding")
def aten_embedding(call: AtenCall) -> Cost:
    """embedding(weight [rows, hidden], indices [...]) -> [..., hidden]: embedding() plus the indices read."""
    (rows, hidden), tokens = call.shape(0), call.numel(1)
    c = embedding(tokens, rows, hidden, call.dtype(0), call.dtype(0))
    return c + Cost(act_bytes_read=call.nbytes(1))


@aten_cost("aten::index_select")
def aten_index_select(call: AtenCall) -> Cost:
    """index_select(self, dim, index [n]): n slices of self along dim read and written, plus the index."""
    shape, dim, n = call.shape(0), call.arg(1), call.numel(2)
    if not isinstance(dim, int) or isinstance(dim, bool) or not shape:
        raise AtenShapeError("index_select's dim not recorded")
    out = _prod(shape) // max(shape[dim], 1) * n
    size = call.elem_bytes(0)
    return elementwise_bytes(out, out * size + call.nbytes(2), out * size, 0)


@aten_cost("aten::gather")
def aten_gather(call: AtenCall) -> Cost:
    """gather(self, dim, index) -> index's shape: one element of self read per index, the index read."""
    out, size = call.numel(2), call.elem_bytes(0)
    return elementwise_bytes(out, out * size + call.nbytes(2), out * size, 0)
