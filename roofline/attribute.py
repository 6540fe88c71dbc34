"""Map the kernels of any torch.profiler trace to the analytic model's (phase, op) rows.

``attribute(trace, model)`` reads a trace (``roofline.measure.trace.analyze_trace``), finds the forward
passes in it, puts every kernel on a row ``(phase, op)`` of ``roofline.transformer.model_ops`` (or
names why it could not), infers the workload (batch, prompt length, decode contexts) from the
recorded shapes, and returns measured frames only. ``join_predicted(ops, analysis)`` then puts the
analytic time of the same calls beside each row. Nothing here imports torch.

Evidence, best first (the ``evidence`` column says which one placed each kernel):
  module    the innermost ``record_function`` range is a module path whose last name is a known
            layer (``model.layers.3.self_attn.q_proj`` -> q_proj): ``roofline.capture`` writes these.
  shape     the recorded shapes of the op that launched the kernel (record_shapes=True): a GEMM's
            (K, N) against the model's projections (q/k/v/o, fused qkv and gate_up, gate/up/down,
            router, expert GEMMs grouped or looped, lm_head by the vocabulary), attention ops and
            kernels (SDPA, flash, efficient, cuDNN, paged), the embedding gather.
  position  element-wise and reduction kernels between two of those anchors, by where they sit in
            the layer: between the embedding and the first projection, rope set-up then
            attn_norm; after q/k/v, rope and kv_cache_write (cache cat / index_copy_) until the
            attention; after o_proj, attn_residual (the add of two hidden-sized tensors) then
            mlp_norm; between gate/up and down, act; between the router and the experts, the
            routing up to the top-k and its renormalisation (router), then the dispatch bookkeeping
            (experts); after the last expert GEMM, the combine (experts); after
            down_proj/experts, mlp_residual then the next attn_norm (or final_norm before lm_head).

Forward passes come from the trace itself: each starts at the embedding gather; its phase is
prefill when it embeds more than one token per sequence, else decode. Kernels after lm_head and
before the next pass (sampling, argmax, position bookkeeping) are outside the model's forward and
are reported as unattributed with that reason, as are kernels before the first pass.
"""

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from roofline.config import ModelConfig
from roofline.errors import TraceError
from roofline.formulas import expected_routed_experts

if TYPE_CHECKING:
    from roofline.analysis import Analysis
    from roofline.specs import HardwareSpec

# the analytic ops, in the order they run in one layer (transformer.py); fused projections after
LAYER_ORDER = (
    "embedding",
    "attn_norm",
    "q_proj",
    "qkv_proj",
    "k_proj",
    "v_proj",
    "rope",
    "kv_cache_write",
    "attention",
    "o_proj",
    "attn_residual",
    "mlp_norm",
    "router",
    "experts",
    "gate_proj",
    "gate_up_proj",
    "up_proj",
    "act",
    "down_proj",
    "mlp_residual",
    "final_norm",
    "lm_head",
)
RANK = {name: i for i, name in enumerate(LAYER_ORDER)}
# measured rows that stand for several analytic rows (one fused GEMM)
FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
ONCE_PER_PASS = ("embedding", "final_norm", "lm_head")
OUTSIDE = "(outside forward)"
UNATTRIBUTED = "(unattributed)"

ATTN_ENTRY = ("q_proj", "qkv_proj", "k_proj", "v_proj")
MLP_ENTRY = ("router", "experts", "gate_proj", "gate_up_proj", "up_proj")
MLP_EXIT = ("down_proj", "experts")
ROUTING_EPILOGUE = {"aten::topk", "aten::sum", "aten::div", "aten::div_"}  # top-k weights renormalised

GEMM_OPS = {
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::baddbmm",
    "aten::linear",
    "aten::matmul",
    "aten::_grouped_mm",
    "aten::_scaled_mm",
    "aten::_scaled_grouped_mm",
}
_ATTN_OP = re.compile(r"attention|flash_attn|fmha|paged_attn", re.IGNORECASE)
_ATTN_KERNEL = re.compile(r"flash|fmha|sdpa|attention|attn", re.IGNORECASE)
KV_WRITE_OPS = {
    "aten::index_copy_",
    "aten::index_copy",
    "aten::index_put_",
    "aten::_index_put_impl_",
    "aten::slice_scatter",
    "aten::scatter_",
    "aten::copy_",
    "aten::cat",
}
FLOAT_TYPES = {"c10::BFloat16", "c10::Half", "float", "double", "c10::Float8_e4m3fn", "c10::Float8_e5m2"}

# module names (the last part of a module path) -> analytic op; "gate" is the router of a MoE block
MODULE_OPS = {
    "embed_tokens": "embedding",
    "wte": "embedding",
    "word_embeddings": "embedding",
    "tok_embeddings": "embedding",
    "input_layernorm": "attn_norm",
    "ln_1": "attn_norm",
    "attention_norm": "attn_norm",
    "post_attention_layernorm": "mlp_norm",
    "ln_2": "mlp_norm",
    "ffn_norm": "mlp_norm",
    "q_proj": "q_proj",
    "k_proj": "k_proj",
    "v_proj": "v_proj",
    "o_proj": "o_proj",
    "qkv_proj": "qkv_proj",
    "c_attn": "qkv_proj",
    "wq": "q_proj",
    "wk": "k_proj",
    "wv": "v_proj",
    "wo": "o_proj",
    "gate_proj": "gate_proj",
    "up_proj": "up_proj",
    "down_proj": "down_proj",
    "gate_up_proj": "gate_up_proj",
    "c_fc": "up_proj",
    "w1": "gate_proj",
    "w3": "up_proj",
    "w2": "down_proj",
    "act_fn": "act",
    "act": "act",
    "router": "router",
    "experts": "experts",
    "rotary_emb": "rope",
    "norm": "final_norm",
    "ln_f": "final_norm",
    "final_layernorm": "final_norm",
    "lm_head": "lm_head",
    "output": "lm_head",
}
_LAYER = re.compile(r"\.(?:layers|h|blocks)\.(\d+)(?:\.|$)")
COMPILED_RANGE = "## Call CompiledFxGraph"  # torch.compile's range around a compiled graph's kernels


@dataclass(frozen=True, eq=False)
class Attribution:
    """What ``attribute`` found; times in seconds, raw floats.

    kernels:      the trace's kernels frame (launch order) with rank, pass_id, phase, layer, op, evidence,
                  reason (why a kernel is unattributed; empty otherwise)
    ops:          one row per (rank, phase, op): gpu_time_s (all its kernels over the whole trace),
                  n_kernels, calls (per-layer ops: (pass, layer) pairs that ran it; others: passes),
                  n_passes, span_s (host time from the first launch to the last launch end, summed over
                  calls), flops, bytes (from recorded shapes where the trace has them), top_kernels,
                  share (of all GPU time), evidence, and the measured class columns of classify_measured
    unattributed: one row per (rank, phase, reason, kernel short name) of GPU time on no op row
    passes:       one row per forward pass: rank, pass_id, phase, batch_size, tokens (per sequence),
                  context_len (keys attended), gpu_time_s, n_kernels
    workload:     the inferred workload: batch_size, prompt_len, decode context_lens (one per decode pass),
                  n_prefill, n_decode, dtype (of the projections' recorded inputs; the prediction uses it)
    notes:        where the run departs from the analytic assumptions
    summary:      gpu_time_s, unattributed_gpu_time_s, attributed_share, forward passes per phase, ...
    spec:         the HardwareSpec used (given, or named by the trace's deviceProperties)
    """

    kernels: pd.DataFrame
    ops: pd.DataFrame
    unattributed: pd.DataFrame
    passes: pd.DataFrame
    workload: dict
    notes: list
    summary: dict = field(default_factory=dict)
    spec: object = None  # the HardwareSpec the measured classes used


# ----------------------------------------------------------------------------------------------
# shapes


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _tensors(dims) -> list:
    """The tensor shapes among an op's recorded inputs (scalars record as [])."""
    if not isinstance(dims, list):
        return []
    return [d for d in dims if isinstance(d, list) and d and all(isinstance(x, int) for x in d)]


def gemm_shape(op: str, dims: list) -> tuple | None:
    """(M, K, N, groups) of a GEMM op from its recorded input shapes, or None.

    mm: a [M, K] @ b [K, N]; addmm: bias, a, b; linear: x [..., K] @ w[N, K]^T; matmul with a 2-D
    right operand; bmm: [G, M, K] @ [G, K, N]; _grouped_mm: tokens [T, K] @ experts [E, K, N].
    """
    if op not in GEMM_OPS or not isinstance(dims, list):
        return None
    try:
        if op in ("aten::mm", "aten::_scaled_mm"):
            (m, k), (_, n) = dims[0], dims[1]
            return m, k, n, 1
        if op == "aten::addmm":
            (m, k), (_, n) = dims[1], dims[2]
            return m, k, n, 1
        if op == "aten::linear":
            x, w = dims[0], dims[1]
            return _numel(x[:-1]), x[-1], w[0], 1
        if op == "aten::matmul":
            a, b = dims[0], dims[1]
            if len(b) != 2:
                return None  # batched right operand: attention-like, not a weight
            return _numel(a[:-1]), a[-1], b[1], 1
        if op in ("aten::bmm", "aten::baddbmm"):
            a, b = (dims[1], dims[2]) if op == "aten::baddbmm" else (dims[0], dims[1])
            return a[1], a[2], b[2], a[0]
        if op in ("aten::_grouped_mm", "aten::_scaled_grouped_mm"):
            a, b = dims[0], dims[1]
            if len(a) == 2 and len(b) == 3:
                return a[0], a[1], b[2], b[0]
            return None
    except (ValueError, TypeError, IndexError):
        return None
    return None


def projection_table(m: ModelConfig) -> dict:
    """(K, N) of every weight GEMM of the model -> the ops it can be, in layer order."""
    h, d, hq, hkv, inter = m.hidden_size, m.head_dim, m.num_attention_heads, m.num_key_value_heads, m.intermediate_size
    shapes = [
        ((h, hq * d), "q_proj"),
        ((h, (hq + 2 * hkv) * d), "qkv_proj"),
        ((h, hkv * d), "k_proj"),
        ((h, hkv * d), "v_proj"),
        ((hq * d, h), "o_proj"),
    ]
    if m.is_moe:
        shapes += [
            ((h, m.num_local_experts), "router"),
            ((h, inter), "experts"),
            ((h, 2 * inter), "experts"),
            ((inter, h), "experts"),
        ]
    else:
        shapes += [
            ((h, inter), "gate_proj"),
            ((h, 2 * inter), "gate_up_proj"),
            ((h, inter), "up_proj"),
            ((inter, h), "down_proj"),
        ]
    shapes.append(((h, m.vocab_size), "lm_head"))
    table = {}
    for kn, name in shapes:
        if name not in table.setdefault(kn, []):
            table[kn].append(name)
    for names in table.values():
        names.sort(key=RANK.__getitem__)
    return table


def module_op(path: str, m: ModelConfig) -> tuple[str | None, int | None]:
    """(op, layer) for a module path such as 'model.layers.3.mlp.gate', or (None, None)."""
    if not isinstance(path, str) or not path:
        return None, None
    leaf = path.rsplit(".", 1)[-1]
    op = MODULE_OPS.get(leaf) or (path if path in RANK else None)  # or a bare range named like the row
    if leaf == "gate":
        op = "router" if m.is_moe else "gate_proj"
    if op == "final_norm" and _LAYER.search(path):
        op = None  # a norm inside a layer that is not one of the two known ones (q_norm, ...)
    if op is not None and m.is_moe and ".experts." in path + ".":
        op = "experts"  # looped experts: each expert's own w1/w2/w3 or gate/up/down
    layer = _LAYER.search(path)
    return op, (int(layer.group(1)) if layer else None)


# ----------------------------------------------------------------------------------------------
# per-kernel features


@dataclass
class _K:
    """What the mapping needs of one kernel."""

    name: str
    dur: float
    op: str
    dims: list
    types: list
    outer: str
    outer_dims: list
    outer_types: list
    owner: str
    owner_dims: list
    rng: str
    uid: int  # the outermost op call that launched it (-1: none); a GEMM's memset and split-K reduce share it
    iid: int  # the innermost op call (-1: none)


def _same_call(a: _K, b: _K) -> bool:
    """b was launched by the same op call as the anchor a: the same innermost op (a cuBLAS memset, a
    split-K reduce), or the same outermost op when that is the GEMM itself (not a wrapper such as a
    compiled graph's)."""
    if a.iid >= 0 and b.iid == a.iid:
        return True
    return a.uid >= 0 and b.uid == a.uid and gemm_shape(a.outer, a.outer_dims) is not None


def _is_attention(k: _K) -> bool:
    for name in (k.owner, k.outer, k.op):
        if isinstance(name, str) and not name.startswith("triton_") and _ATTN_OP.search(name):
            return True
    return k.op is None and not k.name.startswith("triton_") and bool(_ATTN_KERNEL.search(k.name))


def _attention_dims(k: _K):
    """q, k shapes of the attention op around the kernel, or None."""
    for name, dims in ((k.owner, k.owner_dims), (k.outer, k.outer_dims), (k.op, k.dims)):
        t = _tensors(dims)
        if isinstance(name, str) and _ATTN_OP.search(name) and len(t) >= 2 and len(t[0]) == 4:
            return t[0], t[1]
    return None


def _is_embedding(k: _K) -> bool:
    return k.outer == "aten::embedding" or k.op == "aten::embedding"


def _compiled_start(k: _K, before) -> bool:
    """The first kernel of a torch.compile'd forward: an Inductor kernel that fuses the embedding gather
    (its first input the integer token ids), launched as the compiled graph is entered (the kernel
    before it ran outside that graph). Later layers' residual kernels recompute the embedding too, so
    the entry is what tells a pass."""
    if not (k.op or "").startswith("triton_") or "embedding" not in k.op:
        return False
    if not (k.rng or "").startswith(COMPILED_RANGE) or (before is not None and before.rng == k.rng):
        return False
    return _ids_shape(k.dims, k.types) is not None


def _ids_shape(dims, types):
    """The [batch, tokens] shape of the first integer 2-D input, or None."""
    if not isinstance(dims, list) or not isinstance(types, list):
        return None
    for d, t in zip(dims, types):
        if t in ("long int", "int") and isinstance(d, list) and len(d) == 2:
            return d
    return None


def _embedding_tokens(k: _K):
    """(batch, tokens per sequence) from the embedding's index shape."""
    if k.outer != "aten::embedding" and k.op != "aten::embedding":
        ids = _ids_shape(k.dims, k.types)  # a fused (compiled) embedding
        return (ids[0], ids[1]) if ids else None
    dims = k.outer_dims if k.outer == "aten::embedding" else k.dims
    t = _tensors(dims)
    if len(t) >= 2:
        ids = t[1]
        if len(ids) >= 2:
            return ids[0], _numel(ids[1:])
        return 1, ids[0]
    return None


def _gemm(k: _K):
    return gemm_shape(k.op, k.dims) or gemm_shape(k.outer, k.outer_dims)


def _first_tensor(k: _K):
    for dims in (k.outer_dims, k.dims):
        t = _tensors(dims)
        if t:
            return t[0]
    return None


def _integer(k: _K) -> bool:
    types = k.outer_types if isinstance(k.outer_types, list) else k.types
    return isinstance(types, list) and bool(types) and types[0] not in FLOAT_TYPES and types[0] != "TensorList"


def _on_hidden(k: _K, tokens: int, h: int) -> bool:
    t = _first_tensor(k)
    return t is not None and t[-1] == h and _numel(t) == tokens * h


def _is_residual(k: _K, tokens: int, h: int) -> bool:
    if k.outer not in ("aten::add", "aten::add_"):
        return False
    t = _tensors(k.outer_dims)
    return len(t) >= 2 and t[0] == t[1] and t[0][-1] == h and _numel(t[0]) == tokens * h


def _is_kv_write(k: _K, head_dim: int) -> bool:
    op = k.outer if k.outer in KV_WRITE_OPS else k.op
    if op not in KV_WRITE_OPS:
        return False
    if op == "aten::cat":  # the cache's cat (DynamicCache) joins [.., d] tensors; rope's joins two halves
        dims = k.outer_dims if k.outer == "aten::cat" else k.dims
        parts = dims[0] if isinstance(dims, list) and dims and isinstance(dims[0], list) else []
        parts = [p for p in parts if isinstance(p, list)]
        return bool(parts) and not all(p and p[-1] == head_dim // 2 for p in parts)
    return not (op == "aten::copy_" and k.outer in ("aten::to", "aten::_to_copy", "aten::type_as", "aten::float"))


def _attention_like(k: _K) -> bool:
    """Kernels of an eager attention: batched matmuls and softmax over scores."""
    if _is_attention(k):
        return True
    for op, dims in ((k.op, k.dims), (k.outer, k.outer_dims)):
        if op in ("aten::bmm", "aten::baddbmm", "aten::_softmax", "aten::softmax"):
            return True
        if op == "aten::matmul" and len(_tensors(dims)) >= 2 and len(_tensors(dims)[1]) >= 3:
            return True
    return False


# ----------------------------------------------------------------------------------------------
# the walk over one trace


def _features(kernels: pd.DataFrame) -> list:
    def col(name):
        return kernels[name].to_numpy() if name in kernels.columns else np.full(len(kernels), None, dtype=object)

    cols = [
        col(c)
        for c in (
            "name",
            "dur_s",
            "cpu_op",
            "op_dims",
            "op_types",
            "outer_op",
            "outer_dims",
            "outer_types",
            "cost_op",
            "owner_dims",
            "range",
        )
    ]
    none = np.full(len(kernels), -1)
    uid = kernels["outer_id"].to_numpy() if "outer_id" in kernels.columns else none
    iid = kernels["op_id"].to_numpy() if "op_id" in kernels.columns else none
    out = []
    for (name, dur, op, dims, types, outer, odims, otypes, owner, owdims, rng), u, v in zip(zip(*cols), uid, iid):
        out.append(
            _K(
                str(name),
                float(dur),
                op if isinstance(op, str) else None,
                dims,
                types,
                outer if isinstance(outer, str) else None,
                odims,
                otypes,
                owner if isinstance(owner, str) else None,
                owdims,
                rng if isinstance(rng, str) else None,
                int(u),
                int(v),
            )
        )
    return out


class _Walker:
    """Assigns (pass, phase, layer, op, evidence) to kernels taken in launch order."""

    def __init__(self, m: ModelConfig, n: int):
        self.m = m
        self.table = projection_table(m)
        self.h, self.d = m.hidden_size, m.head_dim
        self.op = np.full(n, UNATTRIBUTED, dtype=object)
        self.evidence = np.full(n, "", dtype=object)
        self.reason = np.full(n, "", dtype=object)
        self.pass_id = np.full(n, -1, dtype=np.int64)
        self.layer = np.full(n, -1, dtype=np.int64)
        self.passes = []  # dicts: pass_id, phase, batch_size, tokens, context_len
        self.notes = Counter()

    def run(self, feats: list, order: np.ndarray):
        self.feats = feats
        i, n = 0, len(order)
        current = None  # the pass being walked
        gap = []  # kernel indices since the last anchor
        prev = None  # op of the last anchor
        pos = -1  # layer-order rank of the last anchor
        layer = -1
        while i < n:
            k_i = order[i]
            k = feats[k_i]
            compiled = _compiled_start(k, feats[order[i - 1]] if i else None)
            if compiled:
                self.notes[
                    "torch.compile'd passes: a fused (Inductor) kernel is charged to the op at its position; "
                    "the first kernel of a pass, which also computes attn_norm, to embedding, and residual + "
                    "norm kernels to the norm"
                ] = 1
            if _is_embedding(k) or compiled:
                if current is not None:
                    self._close(current, prev, gap, layer)
                # consecutive embedding kernels belong to one gather
                run = [k_i]
                while not compiled and i + 1 < n and _is_embedding(feats[order[i + 1]]):
                    i += 1
                    run.append(order[i])
                current = self._open(k, len(self.passes))
                for j in run:
                    self._put(j, current, 0, "embedding", "shape")
                gap, prev, pos, layer = [], "embedding", RANK["embedding"], 0
                i += 1
                continue
            if current is None:
                self._outside(k_i, "before the first forward pass (no embedding gather yet)")
                i += 1
                continue
            anchor = self._anchor(k, current, pos, prev)
            if anchor is None:
                gap.append(k_i)
                i += 1
                continue
            op, evidence = anchor
            before = layer
            if (
                op != "lm_head"
                and prev != "lm_head"
                and (RANK[op] < pos or (RANK[op] == pos and op not in ("experts", "attention")))
            ):
                layer += 1  # a new layer starts at its first projection
            self._resolve_gap(current, before, layer, prev, op, gap)
            gap = []
            self._put(k_i, current, layer, op, evidence)
            while i + 1 < n and _same_call(k, feats[order[i + 1]]):  # the rest of the same op call
                i += 1
                self._put(order[i], current, layer, op, evidence)
            if op == "attention":
                self._attention_seen(k, current)
            prev, pos = op, RANK[op]
            i += 1
        if current is not None:
            self._close(current, prev, gap, layer)

    # -- passes

    def _open(self, k: _K, pass_id: int) -> dict:
        bt = _embedding_tokens(k)
        batch, tokens = bt if bt else (np.nan, np.nan)
        p = {
            "pass_id": pass_id,
            "phase": "prefill" if not math.isnan(tokens) and tokens > 1 else "decode",
            "batch_size": batch,
            "tokens": tokens,
            "context_len": np.nan,
            "layers": 0,
        }
        if not bt:
            self.notes["an embedding gather without recorded shapes: its pass is taken as a decode step"] += 1
        self.passes.append(p)
        return p

    def _close(self, current, prev, gap, layer):
        if prev == "lm_head":
            for j in gap:
                self._outside(j, "after lm_head: sampling and bookkeeping outside the model's forward")
        else:
            self._resolve_gap(current, layer, layer, prev, None, gap)

    def _attention_seen(self, k: _K, current: dict):
        qk = _attention_dims(k)
        if qk and math.isnan(current["context_len"]):
            current["context_len"] = qk[1][2]

    # -- anchors

    def _anchor(self, k: _K, current: dict, pos: int, prev):
        if _is_attention(k):
            return "attention", "shape"
        g = _gemm(k)
        if g is None:
            return None
        _, kk, nn, groups = g
        names = self.table.get((kk, nn))
        if not names:
            return None
        if groups > 1 and "experts" not in names:
            return None  # a batched GEMM that is not an expert GEMM (attention scores, rope set-up)
        if len(names) == 1:
            return names[0], "shape"
        later = [n for n in names if RANK[n] > pos or (n == "experts" and prev == "experts")]
        return (later or names)[0], "shape"

    # -- gaps between anchors

    def _resolve_gap(self, current, before, layer, prev, nxt, gap):
        """Place the kernels between anchors ``prev`` and ``nxt``: ``before`` is the layer of
        ``prev``, ``layer`` that of ``nxt`` (one more when ``nxt`` opens a layer)."""
        if not gap:
            return
        tokens = int(current["batch_size"] * current["tokens"]) if current["tokens"] == current["tokens"] else -1
        h, d = self.h, self.d
        feats = self.feats
        ks = [feats[j] for j in gap]

        def put_all(items, op):
            for j in items:
                self._put(j, current, layer, op, "position")

        def split_residual(residual_op, after_op, before_op):
            r = next((n for n, k in enumerate(ks) if _is_residual(k, tokens, h)), None)
            if r is None:
                put_all(gap, after_op)
                return
            for j in gap[:r]:
                self._put(j, current, before, before_op, "position")
            self._put(gap[r], current, before, residual_op, "position")
            put_all(gap[r + 1 :], after_op)

        if prev == "embedding" and nxt in ATTN_ENTRY:
            start = next((n for n, k in enumerate(ks) if _on_hidden(k, tokens, h) and not _integer(k)), len(gap))
            for j, k in zip(gap[:start], ks[:start]):
                self._put(j, current, layer, "embedding" if _integer(k) else "rope", "position")
            put_all(gap[start:], "attn_norm")
        elif prev == "o_proj" and nxt in MLP_ENTRY:
            split_residual("attn_residual", "mlp_norm", "o_proj")
        elif prev in MLP_EXIT and nxt in ATTN_ENTRY + ("lm_head",):
            split_residual("mlp_residual", "final_norm" if nxt == "lm_head" else "attn_norm", prev)
        elif prev in ATTN_ENTRY and nxt in ATTN_ENTRY + ("attention", "o_proj"):
            started = False
            for j, k in zip(gap, ks):
                started = started or _attention_like(k)
                op = "attention" if started else "kv_cache_write" if _is_kv_write(k, d) else "rope"
                self._put(j, current, layer, op, "position")
        elif prev == "attention" and nxt in ("attention", "o_proj"):
            put_all(gap, "attention")
        elif prev in ("gate_proj", "up_proj", "gate_up_proj") and nxt in ("up_proj", "down_proj"):
            put_all(gap, "act")
        elif prev == "router" and nxt == "experts":
            # the routing (softmax, top-k and its renormalisation) is the router's; what follows the top-k
            # (sorting tokens by expert, histograms, index bookkeeping) is the experts' dispatch, as the
            # experts module runs it (module ranges agree)
            cut = len(gap)
            seen_topk = False
            for n, k in enumerate(ks):
                if k.op == "aten::topk":
                    seen_topk = True
                elif seen_topk and k.op not in ROUTING_EPILOGUE:
                    cut = n
                    break
            put_all(gap[:cut], "router")
            put_all(gap[cut:], "experts")
        elif prev == "experts" and nxt == "experts":
            put_all(gap, "experts")
        elif prev == "router" and nxt is None:
            put_all(gap, "router")
        elif prev in MLP_EXIT and nxt is None:
            split_residual("mlp_residual", "final_norm", prev)
        else:
            why = f"between {prev or 'the pass start'} and {nxt or 'the pass end'}: no rule places it"
            for j in gap:
                self._put(j, current, layer, UNATTRIBUTED, "")
                self.reason[j] = why

    # -- bookkeeping

    def _put(self, j, current, layer, op, evidence):
        self.op[j] = op
        self.evidence[j] = evidence
        self.pass_id[j] = current["pass_id"]
        self.layer[j] = -1 if op in ONCE_PER_PASS else max(layer, 0)
        if op == "q_proj" or op == "qkv_proj":
            current["layers"] = max(current["layers"], layer + 1)

    def _outside(self, j, why):
        self.op[j] = OUTSIDE
        self.reason[j] = why
        if self.passes:
            self.pass_id[j] = self.passes[-1]["pass_id"]


# ----------------------------------------------------------------------------------------------
# the public functions


def attribute_kernels(kernels: pd.DataFrame, model: ModelConfig, rank: int = 0) -> tuple:
    """Per-kernel attribution of one trace's kernels frame (``TraceAnalysis.kernels``).

    Returns (kernels with rank, pass_id, phase, layer, op, evidence, reason added, in launch order;
    passes frame; Counter of notes). Raises TraceError when the frame has no recorded shapes at all.
    """
    if "op_dims" not in kernels.columns:
        raise TraceError("the kernels frame has no op_dims column; read the trace with roofline.measure.trace")
    launch = (
        kernels["launch_ts_s"].to_numpy(float) if "launch_ts_s" in kernels.columns else kernels["ts_s"].to_numpy(float)
    )
    when = np.where(np.isnan(launch), kernels["ts_s"].to_numpy(float), launch)
    order = np.lexsort((kernels["ts_s"].to_numpy(float), when))
    k = kernels.iloc[order].reset_index(drop=True)
    feats = _features(k)
    w = _Walker(model, len(k))
    w.run(feats, np.arange(len(k)))
    _graph_replays(k, w)
    # module ranges (roofline.capture) win where their leaf names a known op
    if "range" in k.columns:
        by_range = {r: module_op(r, model) for r in pd.unique(k["range"].astype(str))}
        mod = k["range"].astype(str).map(lambda r: by_range[r][0]).to_numpy()
        lay = k["range"].astype(str).map(lambda r: by_range[r][1]).to_numpy()
        inside = w.pass_id >= 0
        hit = np.array([isinstance(o, str) for o in mod]) & inside
        w.op[hit] = mod[hit]
        w.evidence[hit] = "module"
        w.reason[hit] = ""
        has_layer = hit & pd.notna(lay)
        w.layer[has_layer] = lay[has_layer].astype(np.int64)
        once = hit & np.isin(w.op, ONCE_PER_PASS)
        w.layer[once] = -1
    passes = pd.DataFrame(w.passes, columns=["pass_id", "phase", "batch_size", "tokens", "context_len", "layers"])
    phase_of = dict(zip(passes["pass_id"], passes["phase"]))
    k["rank"] = rank
    k["pass_id"] = w.pass_id
    k["phase"] = [phase_of.get(p, "(none)") for p in w.pass_id]
    k["layer"] = w.layer
    k["op"] = w.op
    k["evidence"] = w.evidence
    k["reason"] = w.reason
    per_pass = k[k["pass_id"] >= 0].groupby("pass_id")["dur_s"].agg(["sum", "size"])
    passes["rank"] = rank
    passes["gpu_time_s"] = per_pass["sum"].reindex(passes["pass_id"]).to_numpy()
    passes["n_kernels"] = per_pass["size"].reindex(passes["pass_id"]).fillna(0).astype(np.int64).to_numpy()
    # a decode step's context when the attention's shapes were not recorded: the prompt plus steps so far
    return k, passes, w.notes


def _graph_replays(k: pd.DataFrame, w: _Walker):
    """CUDA graph replays: one cudaGraphLaunch correlates with every kernel of the graph, and none has an
    op or shapes. A replay whose kernel names, in order, are those of an eager pass in the same trace
    (the graph was captured from that code) takes that pass's rows kernel by kernel, as a new pass."""
    from roofline.measure.trace import short_name

    bare = k["cpu_op"].astype(str).str.startswith("(") & (k["correlation"].to_numpy() >= 0)
    if not bare.any():
        return
    names = k["name"].map(short_name).to_numpy()
    groups = k[bare].groupby("correlation", sort=False).groups
    templates = {}  # kernel-name sequence -> kernel indices of the eager pass
    for pid in np.unique(w.pass_id[w.pass_id >= 0]):
        idx = np.flatnonzero((w.pass_id == pid) & ~np.isin(w.op, [OUTSIDE, UNATTRIBUTED]) & ~bare.to_numpy())
        templates.setdefault(tuple(names[idx]), idx)
    for corr, rows in sorted(groups.items(), key=lambda kv: kv[1].min()):
        rows = np.sort(np.asarray(rows))
        if len(rows) < 2:
            continue
        template = templates.get(tuple(names[rows]))
        if template is None:
            for j in rows:
                w.op[j] = UNATTRIBUTED
                w.reason[j] = (
                    "a CUDA graph replay whose kernels match no eager forward pass in the trace (no shapes "
                    "to map them by); record one eager pass beside the replays"
                )
            continue
        src = w.passes[int(w.pass_id[template[0]])]
        new = dict(src, pass_id=len(w.passes))
        w.passes.append(new)
        w.op[rows] = w.op[template]
        w.layer[rows] = w.layer[template]
        w.evidence[rows] = "graph"
        w.reason[rows] = ""
        w.pass_id[rows] = new["pass_id"]
        w.notes[f"CUDA graph replays mapped kernel by kernel onto the eager {src['phase']} pass they repeat"] += 1


def infer_workload(passes: pd.DataFrame) -> dict:
    """batch_size, prompt_len and the decode contexts (keys attended per decode pass) from the passes.

    Raises TraceError when the trace holds no forward pass.
    """
    if not len(passes):
        raise TraceError(
            "no forward pass found in the trace (no embedding gather with recorded shapes); record it with "
            "record_shapes=True around the model's forward, or use roofline.capture"
        )
    pre = passes[passes["phase"] == "prefill"]
    dec = passes[passes["phase"] == "decode"]
    batch = (pre if len(pre) else passes)["batch_size"].dropna()
    contexts = [float(c) for c in dec["context_len"].dropna()]
    prompt = float(pre["tokens"].iloc[0]) if len(pre) else (min(contexts) - 1 if contexts else float("nan"))
    return {
        "batch_size": float(batch.iloc[0]) if len(batch) else float("nan"),
        "prompt_len": prompt,
        "context_lens": contexts,
        "n_prefill": len(pre),
        "n_decode": len(dec),
    }


def measured_ops(kernels: pd.DataFrame, spec: "HardwareSpec | str | None" = None) -> pd.DataFrame:
    """One row per (rank, phase, op) of the attributed kernels: GPU time, kernels, calls, span, counts.

    ``spec`` (a HardwareSpec) adds the measured class of each row from the trace's own FLOP/byte counts.
    """
    from roofline.measure.trace import short_name

    on = kernels[~kernels["op"].isin([OUTSIDE, UNATTRIBUTED])].copy()
    keys = ["rank", "phase", "op"]
    on["call"] = on["pass_id"].astype(str) + "/" + on["layer"].astype(str)
    flops = on["flops"] if "flops" in on.columns else pd.Series(np.nan, index=on.index)
    nbytes = on["bytes"] if "bytes" in on.columns else pd.Series(np.nan, index=on.index)
    on["flops_"], on["bytes_"] = flops, nbytes
    on["costed_s"] = np.where(flops.notna() | nbytes.notna(), on["dur_s"], 0.0)
    g = on.groupby(keys, sort=False, observed=True)
    out = pd.DataFrame(
        {
            "gpu_time_s": g["dur_s"].sum(),
            "n_kernels": g["dur_s"].size(),
            "calls": g["call"].nunique(),
            "n_passes": g["pass_id"].nunique(),
            "flops": g["flops_"].sum(min_count=1),
            "bytes": g["bytes_"].sum(min_count=1),
            "costed_time_s": g["costed_s"].sum(),
        }
    )
    if "launch_ts_s" in on.columns:  # host span of each call: first launch to last launch end
        c = on.groupby(keys + ["call"], sort=False, observed=True).agg(
            start=("launch_ts_s", "min"), end=("launch_end_s", "max")
        )
        out["span_s"] = (c["end"] - c["start"]).groupby(level=keys, sort=False).sum(min_count=1)
    if "compute_dtype" in on.columns:
        dt = on[on["compute_dtype"].notna()].groupby(keys + ["compute_dtype"], observed=True)["dur_s"].sum()
        dt = dt.reset_index().sort_values("dur_s", ascending=False).drop_duplicates(keys).set_index(keys)
        out["compute_dtype"] = dt["compute_dtype"].reindex(out.index)
    ev = on.groupby(keys + ["evidence"], observed=True)["dur_s"].sum().reset_index()
    ev = ev.sort_values("dur_s", ascending=False).drop_duplicates(keys).set_index(keys)
    out["evidence_kind"] = ev["evidence"].reindex(out.index)
    on["short"] = on["name"].map(short_name)
    top = on.groupby(keys + ["short"], observed=True)["dur_s"].sum().reset_index()
    top = top.sort_values("dur_s", ascending=False).groupby(keys, sort=False).head(3)
    out["top_kernels"] = top.groupby(keys, sort=False)["short"].agg("; ".join).reindex(out.index)
    total = float(kernels["dur_s"].sum())
    out["share"] = out["gpu_time_s"] / total if total > 0 else np.nan
    out = out.reset_index()
    out["order"] = out["op"].map(lambda o: RANK.get(o, len(RANK)))
    out = out.sort_values(["rank", "phase", "order"], kind="stable").drop(columns="order").reset_index(drop=True)
    if spec is not None:
        from roofline.classify import classify_measured

        out = classify_measured(out, spec)
    return out


def unattributed_frame(kernels: pd.DataFrame) -> pd.DataFrame:
    """GPU time on no op row, per (rank, phase, reason, kernel short name), largest first."""
    from roofline.measure.trace import short_name

    off = kernels[kernels["op"].isin([OUTSIDE, UNATTRIBUTED])].copy()
    off["kernel"] = off["name"].map(short_name)
    out = off.groupby(["rank", "phase", "op", "reason", "kernel"], observed=True)["dur_s"].agg(["sum", "size"])
    out = out.rename(columns={"sum": "gpu_time_s", "size": "n_kernels"}).reset_index()
    return out.sort_values("gpu_time_s", ascending=False, kind="stable").reset_index(drop=True)


def attribute(
    traces: str | Path | list,
    model: ModelConfig | str | Path,
    spec: "HardwareSpec | str | None" = None,
    **overrides: object,
) -> Attribution:
    """Map every kernel of one or more traces (paths, folders of rank files, or TraceAnalysis objects;
    the i-th is rank i) to the analytic rows of ``model`` (a ModelConfig or a model file).

    ``spec``: a HardwareSpec, a name or a path; None takes the device from the trace's
    ``deviceProperties``. ``overrides`` (batch_size, prompt_len) win over the inferred workload.
    Returns an Attribution (measured frames only). Raises TraceError / ConfigError / SpecError.
    """
    from roofline.config import load_model
    from roofline.measure.trace import TraceAnalysis, analyze_trace

    m = model if isinstance(model, ModelConfig) else load_model(model)
    items = trace_list(traces)
    spec = resolve_spec(spec, items)
    frames, passes, notes = [], [], Counter()
    for rank, item in enumerate(items):
        t = item if isinstance(item, TraceAnalysis) else analyze_trace(item, spec)
        k, p, n = attribute_kernels(t.kernels, m, rank)
        if not len(p) and t.kernels["name"].astype(str).str.startswith("triton_").any():
            raise TraceError(
                f"{t.path}: no forward pass found: the kernels are torch.compile'd (Triton) and Inductor fuses the "
                f"embedding gather, which marks a pass, into them, and no '{COMPILED_RANGE}' range shows where a "
                f"compiled forward starts; profile with torch.profiler around the compiled model's calls, or eagerly"
            )
        frames.append(k)
        passes.append(p)
        notes.update(n)
    kernels = pd.concat(frames, ignore_index=True)
    passes = pd.concat(passes, ignore_index=True)
    workload = infer_workload(passes[passes["rank"] == 0])
    for key in ("batch_size", "prompt_len"):
        if overrides.get(key) is not None:
            workload[key] = float(overrides[key])
    ops = measured_ops(kernels, spec)
    gemm = ops[ops["op"].isin(["q_proj", "qkv_proj", "o_proj", "down_proj", "experts"])]
    dtypes = gemm["compute_dtype"].dropna() if "compute_dtype" in gemm else pd.Series(dtype=object)
    workload["dtype"] = dtypes.mode().iloc[0] if len(dtypes) else None  # of the recorded GEMM inputs
    notes = [f"{text} ({count}x)" if count > 1 else text for text, count in notes.items()]
    notes += departures(kernels, passes, m, workload, spec)
    total = float(kernels["dur_s"].sum())
    off = float(kernels.loc[kernels["op"].isin([OUTSIDE, UNATTRIBUTED]), "dur_s"].sum())
    summary = {
        "gpu": spec.name,
        "model": m.name,
        "n_ranks": len(items),
        "n_kernels": len(kernels),
        "gpu_time_s": total,
        "attributed_gpu_time_s": total - off,
        "unattributed_gpu_time_s": off,
        "attributed_share": (total - off) / total if total > 0 else float("nan"),
        "forward_passes": {ph: int((passes["phase"] == ph).sum()) for ph in ("prefill", "decode")},
        "workload": workload,
    }
    return Attribution(kernels, ops, unattributed_frame(kernels), passes, workload, notes, summary, spec)


def trace_list(traces: str | Path | list) -> list:
    """Trace paths (a folder: its .json and .json.gz files, sorted: rank 0, 1, ...) and TraceAnalysis objects."""
    from pathlib import Path

    if not isinstance(traces, (list, tuple)):
        traces = [traces]
    out = []
    for t in traces:
        if isinstance(t, (str, Path)) and Path(t).is_dir():
            files = sorted(p for p in Path(t).iterdir() if p.name.endswith((".json", ".json.gz")))
            if not files:
                raise TraceError(
                    f"{t}: a folder with no .json or .json.gz trace; pass a trace file or a folder of rank files"
                )
            out += [str(p) for p in files]
        else:
            out.append(t)
    return out


def trace_device_names(item: object) -> list:
    """GPU names from a trace's ``deviceProperties`` header (empty when it has none). Kineto writes the
    header before the events, so only the file's start is read."""
    from roofline.measure.trace import TraceAnalysis

    if isinstance(item, TraceAnalysis):
        return list(item.summary.get("devices") or [])
    head = trace_head(item)
    at = head.find('"deviceProperties"')
    if at < 0:
        return []
    end = head.find("]", at)
    return re.findall(r'"name"\s*:\s*"([^"]*)"', head[at : end if end > 0 else len(head)])


def trace_head(item: object, size: int = 1 << 18) -> str:
    """The first ``size`` characters of a trace file (gunzipped), '' where it cannot be read (analyze_trace names
    the problem)."""
    import gzip

    try:
        with open(item, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
        with (
            gzip.open(item, "rt", encoding="utf-8", errors="replace")
            if gz
            else open(item, encoding="utf-8", errors="replace")
        ) as fh:
            return fh.read(size)
    except (OSError, EOFError):
        return ""


def resolve_spec(spec: "HardwareSpec | str | None", items: list) -> "HardwareSpec":
    """The spec to use: ``spec`` when given (a warning-worthy mismatch with the trace's device is
    reported by ``device_mismatch``), else the one the trace's deviceProperties name."""
    from roofline.measure.nvml import spec_name_for_gpu
    from roofline.specs import HardwareSpec, load_spec

    if isinstance(spec, HardwareSpec):
        return spec
    if spec is not None:
        return load_spec(spec)
    from pathlib import Path

    from roofline.measure.trace import TraceAnalysis

    if items and not isinstance(items[0], TraceAnalysis) and not Path(items[0]).is_file():
        raise TraceError(f"{items[0]}: no such file; pass a trace written by prof.export_chrome_trace()")
    names = trace_device_names(items[0]) if items else []
    if not names and items and not isinstance(items[0], TraceAnalysis):
        start = trace_head(items[0], 4096).lstrip()[:1]
        if start not in ("{", "["):  # not a Chrome trace at all (an object, or a bare array of events): say so
            raise TraceError(
                f"{items[0]}: not a JSON trace (it starts with neither '{{' nor '['); pass a trace written by "
                f"prof.export_chrome_trace() (.json or .json.gz)"
            )
    if not names:
        raise TraceError(
            f"{items[0]}: the trace names no device (no deviceProperties); pass --gpu with the spec of the GPU it ran on"
        )
    return load_spec(spec_name_for_gpu(names[0]))


def device_mismatch(spec: "HardwareSpec", items: list) -> str | None:
    """A one-line warning when the trace's deviceProperties name a GPU other than ``spec``, else None."""
    from roofline.errors import UnknownHardware
    from roofline.measure.nvml import spec_name_for_gpu

    names = trace_device_names(items[0]) if items else []
    if not names:
        return None
    try:
        name = spec_name_for_gpu(names[0])
    except UnknownHardware:
        return None
    if name != spec.name:
        return f"the trace was recorded on '{names[0]}' ({name}) but --gpu is {spec.name}; predictions use {spec.name}"
    return None


# ----------------------------------------------------------------------------------------------
# departures from the analytic assumptions


def _gemm_of(op, dims, outer, outer_dims):
    return gemm_shape(op, dims) or gemm_shape(outer, outer_dims)


def departures(
    kernels: pd.DataFrame, passes: pd.DataFrame, m: ModelConfig, workload: dict, spec: "HardwareSpec | None" = None
) -> list:
    """Notes where the run does what the analytic model does not assume."""
    notes = []
    k = kernels[kernels["rank"] == 0]
    # logits over the whole prompt
    head = k[(k["op"] == "lm_head") & (k["phase"] == "prefill")]
    rows = [
        g[0]
        for g in (
            gemm_shape(o, d) or gemm_shape(oo, od)
            for o, d, oo, od in zip(head["cpu_op"], head["op_dims"], head["outer_op"], head["outer_dims"])
        )
        if g
    ]
    batch = workload.get("batch_size")
    if rows and not math.isnan(batch) and max(rows) > batch:
        share = max(rows) / batch
        notes.append(
            f"prefill computes the logits of {max(rows):.0f} positions ({share:.0f} per sequence); the analytic "
            f"model, like serving engines, computes the last position only: lm_head took "
            f"{head['dur_s'].sum() * 1e3:.3g} ms where the prediction counts {batch:.0f} rows"
        )
    # expert GEMMs: the time they took against the time to read the routed experts' weights
    if m.is_moe and spec is not None:
        exp = k[k["op"] == "experts"]
        is_gemm = [
            bool(_gemm_of(o, d, oo, od))
            for o, d, oo, od in zip(exp["cpu_op"], exp["op_dims"], exp["outer_op"], exp["outer_dims"])
        ]
        gemm = exp[np.array(is_gemm, dtype=bool)]  # a list: an empty one would select no columns
        E, top = m.num_local_experts, m.num_experts_per_tok
        # one routed expert's matrices in 16 bits (its own width: qwen2_moe's and deepseek's differ from the dense MLP's)
        expert_bytes = (3 if m.gated_mlp else 2) * m.hidden_size * m.expert_intermediate_size * 2
        bw = spec.ceiling_bytes_per_s()
        for phase in ("decode",):  # memory-bound there; a prefill's expert GEMMs are compute work
            g = gemm[gemm["phase"] == phase]
            if not len(g) or math.isnan(batch):
                continue
            tokens = batch * (workload["prompt_len"] if phase == "prefill" else 1)
            calls = g.groupby(["pass_id", "layer"]).ngroups
            per_call = g["dur_s"].sum() / calls
            routed = float(expected_routed_experts(tokens, E, top))
            streamable = per_call * bw / expert_bytes
            notes.append(
                f"{phase}: the expert GEMM kernels ({', '.join(sorted(set(g['outer_op'].dropna())))}) take "
                f"{per_call * 1e6:.3g} µs per layer, time to stream {streamable:.2g} experts' weights at "
                f"{bw / 1e12:.2g} TB/s; the analytic model reads the {routed:.3g} of {E} experts that "
                f"{tokens:.0f} tokens reach (top-{top}, uniform routing), {routed * expert_bytes / bw * 1e6:.3g} µs"
            )
    # DynamicCache: the cache grows by concatenation, each decode step copies it whole
    kv = k[(k["op"] == "kv_cache_write") & (k["phase"] == "decode") & (k["outer_op"] == "aten::cat")]
    if len(kv):
        notes.append(
            f"decode: kv_cache_write is aten::cat of the whole cache with the new token (a growing cache, "
            f"e.g. transformers' DynamicCache): each step copies every cached key and value, "
            f"{kv['dur_s'].sum() * 1e3:.3g} ms over the trace where the analytic model writes one token"
        )
    # the model file against what ran
    layers = passes.loc[passes["rank"] == 0, "layers"]
    if len(layers) and layers.max() != m.num_hidden_layers:
        notes.append(
            f"the trace's forward passes run {layers.max()} layers but the model file has "
            f"num_hidden_layers {m.num_hidden_layers}; predictions use the model file"
        )
    # long chains of small kernels for one op
    on = k[~k["op"].isin([OUTSIDE, UNATTRIBUTED])]
    per_call = (
        on.groupby(["phase", "op", "pass_id", "layer"], observed=True)
        .size()
        .groupby(level=["phase", "op"], observed=True)
        .median()
    )
    chains = {}
    for (phase, op), n in per_call.items():
        if op in ("attn_norm", "mlp_norm", "final_norm", "rope") and n >= 4:
            chains[op] = max(chains.get(op, 0), n)
    if chains:
        notes.append(
            "unfused chains: "
            + ", ".join(f"{op} runs as {n:.0f} kernels per call" for op, n in chains.items())
            + "; the analytic model counts one pass over the data of each"
        )
    # padding: attention over more keys than the tokens seen so far (static caches)
    dec = passes[(passes["rank"] == 0) & (passes["phase"] == "decode")]
    if len(dec) and workload.get("prompt_len") == workload.get("prompt_len"):
        expected = workload["prompt_len"] + np.arange(1, len(dec) + 1)
        ctx = dec["context_len"].to_numpy(float)
        if not np.isnan(ctx).any() and np.any(ctx > expected + 0.5):
            notes.append(
                f"decode attention reads {ctx.max():.0f} cached positions per step where "
                f"{expected.min():.0f}..{expected.max():.0f} are filled: a padded (static) cache; the "
                f"prediction counts the {ctx.max():.0f} the kernels read"
            )
    if (passes["phase"] == "prefill").sum() == 0:
        notes.append("the trace holds no prefill pass: prompt_len is taken as the first decode context minus one")
    return notes


# ----------------------------------------------------------------------------------------------
# measured beside predicted (to move into roofline/compare.py)


def join_predicted(ops: pd.DataFrame, analysis: "Analysis") -> pd.DataFrame:
    """``ops`` (rank 0 rows of measured_ops) with the analytic time of the same calls beside each row.

    ``analysis``: a roofline.analysis.Analysis of one prefill point and, for decode, one point per
    decode context (``prompt_len`` fixed, ``context_len`` a list): ``predict_for`` makes it.
    Columns added: predicted_time_s (the calibrated prediction per occurrence, predict.py, x the calls
    measured; decode summed over the decode passes' contexts), roofline_time_s (the pure roofline time
    of the same calls), predicted_bound, analytic_flops, analytic_bytes
    (of those calls), measured_over_predicted; the measured class is recomputed from the analytic
    FLOPs and bytes of the same calls over the measured time (achieved rates of the ideal work),
    as ``roofline profile`` does. Fused rows (qkv_proj, gate_up_proj) sum their analytic rows.
    """
    from roofline.classify import classify_measured

    a = analysis.ops
    out = ops.copy()
    pred, roof, bound, fl, by, dt = [], [], [], [], [], []
    for _, row in out.iterrows():
        names = FUSED.get(row["op"], (row["op"],))
        rows = a[(a["phase"] == row["phase"]) & (a["op"].astype(str).isin(names))]
        if not len(rows):
            pred.append(np.nan), bound.append(None), fl.append(np.nan), by.append(np.nan), dt.append(None)
            roof.append(np.nan)
            continue
        # one analytic point per pass context (decode) or one (prefill): the mean over points of the
        # time of one occurrence (fused rows summed), times the occurrences measured
        occurrences = row["n_passes"] if row["op"] in ONCE_PER_PASS else row["calls"]
        point = rows["point"]
        pred.append(float(rows["predicted_time_s"].groupby(point).sum().mean()) * occurrences)
        roof.append(float(rows["time_s"].groupby(point).sum().mean()) * occurrences)
        fl.append(float(rows["flops"].groupby(point).sum().mean()) * occurrences)
        by.append(float((rows["bytes_read"] + rows["bytes_written"]).groupby(point).sum().mean()) * occurrences)
        main = rows.sort_values("time_s", ascending=False).iloc[0]
        bound.append(main["bound"])
        dt.append(main["compute_dtype"])
    out["predicted_time_s"] = pred
    out["roofline_time_s"] = roof
    out["predicted_bound"] = bound
    out["analytic_flops"] = fl
    out["analytic_bytes"] = by
    out["measured_over_predicted"] = out["gpu_time_s"] / out["predicted_time_s"]
    cls = out.drop(
        columns=[
            c
            for c in (
                "flops",
                "bytes",
                "costed_time_s",
                "compute_dtype",
                "measured_bound",
                "evidence",
                "achieved_flops_per_s",
                "achieved_bytes_per_s",
                "frac_of_compute_ceiling",
                "frac_of_mem_ceiling",
            )
            if c in out.columns
        ]
    )
    cls["flops"], cls["bytes"], cls["compute_dtype"] = fl, by, dt
    cls["n_calls"] = out["calls"]
    return classify_measured(cls, analysis.spec)


def predict_for(model: ModelConfig, spec: "HardwareSpec | str", workload: dict, **settings: object) -> "Analysis":
    """The Analysis ``join_predicted`` needs: the inferred workload at one prefill point and one decode
    point per decode context. ``settings`` are further workload fields (act_dtype, attn_impl, ...)."""
    from roofline.analysis import analyze

    dtype = workload.get("dtype")
    if dtype in ("bf16", "fp16"):  # the run's 16-bit dtype, for weights, activations and the cache
        settings = {"weight_dtype": dtype, "act_dtype": dtype, "kv_dtype": dtype, **settings}
    contexts = sorted({round(c) for c in workload.get("context_lens", [])}) or None
    prompt = round(workload["prompt_len"])
    batch = round(workload["batch_size"])
    phase = "both" if workload.get("n_prefill") and contexts else ("decode" if contexts else "prefill")
    result = analyze(model, spec, batch_size=batch, prompt_len=prompt, context_len=contexts, phase=phase, **settings)
    if contexts and phase == "both":
        # analyze sweeps prefill over every context point too; keep one prefill point
        ops = result.ops
        keep = (ops["phase"] != "prefill") | (ops["point"] == ops["point"].min())
        result = type(result)(
            result.model, result.workload, result.spec, ops[keep].reset_index(drop=True), result.summary
        )
    return result


def compare_frame(
    attribution: Attribution, model: ModelConfig, spec: "HardwareSpec | str", **settings: object
) -> pd.DataFrame:
    """rank-0 measured rows beside the prediction for the inferred workload (measured + join_predicted)."""
    ops = attribution.ops[attribution.ops["rank"] == 0]
    w = attribution.workload
    if math.isnan(w["batch_size"]) or math.isnan(w["prompt_len"]):
        raise TraceError("could not infer the batch and prompt length from the trace; pass --batch and --prompt-len")
    return join_predicted(ops, predict_for(model, spec, w, **settings))
