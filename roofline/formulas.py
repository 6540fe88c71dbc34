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

from dataclasses import dataclass, fields

import numpy as np

from roofline.dtypes import DTYPE_BYTES, as_format, scale_bytes

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

    def scaled(self, factor) -> "Cost":
        return Cost(*(getattr(self, f.name) * factor for f in fields(self)))

    @property
    def bytes_read(self):
        return self.weight_bytes_read + self.act_bytes_read + self.kv_bytes_read

    @property
    def bytes_written(self):
        return self.act_bytes_written + self.kv_bytes_written


FORMULAS = {}


def formula(kind: str):
    """Register a cost function under ``kind``; a second registration of a kind is refused."""

    def register(fn):
        if kind in FORMULAS:
            raise ValueError(f"formula '{kind}' is registered twice")
        FORMULAS[kind] = fn
        return fn

    return register


def _b(dtype: str) -> float:
    return DTYPE_BYTES[dtype]


def weight_storage_bytes(n_params, dtype, fan_in=None):
    """Bytes to store ``n_params`` weights of ``dtype`` (a name or a dtypes.Format) in one tensor,
    quantisation scales and zero points included (dtypes.scale_bytes; ``fan_in`` gives the rows
    for block and per-channel scales), plus the format's per-tensor scale."""
    fmt = as_format(dtype)
    return n_params * fmt.value_bytes + scale_bytes(fmt, n_params, fan_in=fan_in) + fmt.tensor_bytes


# ---------------------------------------------------------------------------------------------
# matmul-type

@formula("linear")
def linear(tokens, in_features, out_features, weight_dtype, act_dtype, bias=False, bias_dtype="bf16"):
    """x [tokens, in] @ W^T [in, out] (+ b) -> y [tokens, out]."""
    return Cost(
        flops=2.0 * tokens * in_features * out_features,
        weight_bytes_read=weight_storage_bytes(in_features * out_features, weight_dtype, fan_in=in_features)
        + (out_features * _b(bias_dtype) if bias else 0.0),
        act_bytes_read=tokens * in_features * _b(act_dtype),
        act_bytes_written=tokens * out_features * _b(act_dtype),
    )


def causal_pairs(seq, window=None):
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
def flash_attention(batch, q_len, kv_len, pairs, heads, kv_heads, head_dim, act_dtype, kv_dtype, from_cache):
    """softmax(q k^T) v in one kernel: q [b, h, s_q, d], k/v [b, h_kv, s_k, d] -> o [b, h, s_q, d].

    ``pairs`` = query-key pairs per sequence and head (causal_pairs for prefill, s_q*s_k in decode).
    ``from_cache``: K/V are read from the KV cache (decode, kv dtype) or from fresh activations (prefill).
    """
    q_bytes = batch * q_len * heads * head_dim * _b(act_dtype)
    if from_cache:
        kv_read, act_kv = _kv_read_bytes(batch, kv_len, kv_heads, head_dim, kv_dtype), 0.0
    else:
        kv_read, act_kv = 0.0, 2.0 * batch * kv_len * kv_heads * head_dim * _b(act_dtype)
    return Cost(
        flops=4.0 * batch * heads * head_dim * pairs,  # q k^T and p v: 2 matmuls of 2*d FLOP per pair
        act_bytes_read=q_bytes + act_kv,
        act_bytes_written=q_bytes,
        kv_bytes_read=kv_read,
    )


def _attention_matmul(batch, q_len, kv_len, heads, kv_heads, head_dim, act_dtype, kv_dtype, from_cache,
                      left_elements, out_elements):
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
def qk_matmul(batch, q_len, kv_len, heads, kv_heads, head_dim, act_dtype, kv_dtype, from_cache):
    """q [b, h, s_q, d] @ k^T [b, h, d, s_k] -> scores [b, h, s_q, s_k], all of it (mask applied later)."""
    return _attention_matmul(batch, q_len, kv_len, heads, kv_heads, head_dim, act_dtype, kv_dtype, from_cache,
                             left_elements=batch * q_len * heads * head_dim,
                             out_elements=batch * heads * q_len * kv_len)


@formula("softmax")
def softmax(batch, q_len, kv_len, heads, act_dtype):
    """scores [b, h, s_q, s_k] -> probabilities, same shape (the causal mask is applied here)."""
    n = batch * heads * q_len * kv_len
    return Cost(
        flops=ELEMENTWISE_FLOPS["softmax"] * n,
        act_bytes_read=n * _b(act_dtype),
        act_bytes_written=n * _b(act_dtype),
    )


@formula("sv_matmul")
def sv_matmul(batch, q_len, kv_len, heads, kv_heads, head_dim, act_dtype, kv_dtype, from_cache):
    """p [b, h, s_q, s_k] @ v [b, h, s_k, d] -> o [b, h, s_q, d]."""
    return _attention_matmul(batch, q_len, kv_len, heads, kv_heads, head_dim, act_dtype, kv_dtype, from_cache,
                             left_elements=batch * heads * q_len * kv_len,
                             out_elements=batch * q_len * heads * head_dim)


@formula("experts")
def experts(tokens, hidden, intermediate, n_experts, top_k, weight_dtype, act_dtype, gated=True, ep=1):
    """Routed MLPs: each token runs top_k experts (gate/up -> act -> down), then a weighted sum.

    Built from the dense pieces over rows = tokens * top_k: the projections (linear), the
    activation (elementwise) and the combine (read top_k outputs and fp32 routing weights per
    token, multiply-add, write one row). Weights read: only the experts that receive a token.
    With routing uniform over experts the expected number is E * (1 - (1 - k/E)^tokens), which
    is every expert once tokens >> E/k. With expert parallelism over ``ep`` GPUs, ``tokens`` is one
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
    all_tokens = np.asarray(tokens, dtype=float) * ep
    touched = n_experts / ep * (1.0 - (1.0 - top_k / n_experts) ** all_tokens)
    per_expert = sum(weight_storage_bytes(hidden * intermediate, weight_dtype, fan_in=intermediate if m == "down" else hidden)
                     for m in mats)
    return Cost(
        flops=cost.flops + combine.flops,
        weight_bytes_read=touched * per_expert,
        act_bytes_read=cost.act_bytes_read + combine.act_bytes_read,
        act_bytes_written=cost.act_bytes_written + combine.act_bytes_written,
    )


# ---------------------------------------------------------------------------------------------
# memory-type

@formula("embedding")
def embedding(tokens, rows_in_table, hidden, param_dtype, act_dtype):
    """Gather one table row per token: ids [tokens] -> x [tokens, hidden]. No FLOPs.

    Rows read: at most one per token and at most the whole table (``rows_in_table``).
    """
    return Cost(
        weight_bytes_read=np.minimum(tokens, rows_in_table) * hidden * _b(param_dtype),
        act_bytes_written=tokens * hidden * _b(act_dtype),
    )


@formula("pos_embedding")
def pos_embedding(tokens, positions, hidden, param_dtype, act_dtype):
    """Learned positions (gpt2): x [tokens, hidden] += wpe[positions]; ``positions`` distinct rows read."""
    return Cost(
        flops=1.0 * tokens * hidden,
        weight_bytes_read=positions * hidden * _b(param_dtype),
        act_bytes_read=tokens * hidden * _b(act_dtype),
        act_bytes_written=tokens * hidden * _b(act_dtype),
    )


@formula("norm")
def norm(tokens, hidden, kind, param_dtype, act_dtype):
    """RMSNorm (gamma) or LayerNorm (gamma, beta) over the last dim: x [tokens, hidden] -> same."""
    n_params = hidden * (2 if kind == "layernorm" else 1)
    return Cost(
        flops=ELEMENTWISE_FLOPS[kind] * tokens * hidden,
        weight_bytes_read=n_params * _b(param_dtype),
        act_bytes_read=tokens * hidden * _b(act_dtype),
        act_bytes_written=tokens * hidden * _b(act_dtype),
    )


@formula("elementwise")
def elementwise(n_out, n_inputs, flops_per_element, act_dtype):
    """``n_inputs`` tensors of ``n_out`` elements in, one out (residual add, activation)."""
    return Cost(
        flops=float(flops_per_element) * n_out,
        act_bytes_read=n_inputs * n_out * _b(act_dtype),
        act_bytes_written=n_out * _b(act_dtype),
    )


@formula("rope")
def rope(tokens, seq_positions, heads, kv_heads, head_dim, act_dtype):
    """Rotary embedding on q [tokens, h, d] and k [tokens, h_kv, d] in place; cos/sin tables
    [positions, d] read once each."""
    n = tokens * (heads + kv_heads) * head_dim
    return Cost(
        flops=ELEMENTWISE_FLOPS["rope"] * n,
        act_bytes_read=n * _b(act_dtype) + 2.0 * seq_positions * head_dim * _b(act_dtype),
        act_bytes_written=n * _b(act_dtype),
    )


@formula("kv_cache_write")
def kv_cache_write(tokens, kv_heads, head_dim, act_dtype, kv_dtype):
    """Store the new k and v [tokens, h_kv, d] into the cache (quantising to the kv dtype)."""
    n = 2.0 * tokens * kv_heads * head_dim
    return Cost(
        act_bytes_read=n * _b(act_dtype),
        kv_bytes_written=n * _b(kv_dtype) + scale_bytes(kv_dtype, n, group_size=head_dim),
    )


# ---------------------------------------------------------------------------------------------
# collectives

@formula("all_reduce")
def all_reduce(n_elements, world, act_dtype):
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
def p2p_send(n_elements, act_dtype):
    """Point-to-point send of [n_elements] from one pipeline stage to the next: the whole message
    crosses the link once; device memory: read on one side, written on the other."""
    msg = n_elements * _b(act_dtype)
    return Cost(act_bytes_read=msg, act_bytes_written=msg, comm_bytes=msg)


@formula("all_to_all")
def all_to_all(n_elements, world, act_dtype):
    """All-to-all of [n_elements] per GPU over ``world`` GPUs, evenly spread: each GPU keeps 1/N of its
    message and sends the rest; device memory: the message read once and written once."""
    msg = n_elements * _b(act_dtype)
    return Cost(act_bytes_read=msg, act_bytes_written=msg, comm_bytes=(world - 1) / world * msg)


@formula("all_gather")
def all_gather(n_elements_total, world, act_dtype):
    """Ring all-gather: each GPU holds 1/N of [n_elements_total] and receives the rest;
    each GPU sends (N-1)/N of the gathered message."""
    msg = n_elements_total * _b(act_dtype)
    return Cost(
        act_bytes_read=msg / world,
        act_bytes_written=msg,
        comm_bytes=(world - 1) / world * msg,
    )
