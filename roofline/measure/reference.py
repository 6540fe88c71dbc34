"""A PyTorch reference decoder whose ops carry the analytic op names, so measured and analytic rows
line up one to one.

Built from a ``ModelConfig`` and a ``Workload``: random weights in the workload's 16-bit dtype, a
real preallocated KV cache, ``layers`` decoder layers (default 2) plus the embedding, the final
norm and the lm_head. Every op runs inside ``torch.profiler.record_function(NAME)`` with NAME the op
name of ``roofline.transformer.model_ops`` (embedding, attn_norm, q_proj, ..., lm_head).

Conventions, the same as the analytic model's (transformer.py):
1. Prefill processes ``prompt_len`` tokens per sequence into an empty cache; attention runs on the
   fresh q/k/v with a causal mask (flash: ``F.scaled_dot_product_attention(is_causal=True)``; the
   backend is PyTorch's choice: on an H100 with PyTorch 2.11 it picked cuDNN's flash kernels).
2. A decode step processes one token per sequence at ``context_len``: the new k/v go to cache slot
   ``context_len - 1`` and q attends to the cache slice ``[:context_len]`` (capped by a sliding window).
3. lm_head runs on the last position of each sequence only.
4. Naive attention is explicit: scores = q k^T (one batched matmul with the 1/sqrt(d) scale folded
   in), softmax (the causal mask applied in place first), then p v. GQA groups the query heads of one
   KV head into the matmul's rows, so K and V are never copied per query head.
5. Eager PyTorch, unfused: an op may launch several kernels (rope: mul, neg, cat, mul, add; the gated
   activation: silu then mul). Measured time is the sum of an op's kernels; the analytic count is the
   ideal fused kernel's. That gap is part of what the tool shows.

Llama-style models (llama, mistral, qwen2, qwen3): RMSNorm, RoPE, gated SiLU MLP, GQA; qwen2 adds q/k/v
biases. gpt2: LayerNorm, learned positions, GELU MLP, biases, tied lm_head. mixtral: a router and a
loop over the experts (host syncs: it cannot be captured in a CUDA graph).

Tensor parallelism (``tp`` > 1, one process per GPU in an initialised ``torch.distributed`` group,
as ``roofline.measure.distributed`` starts them), Megatron's split, the shards of transformer.py:
6. q/k/v, gate/up (and each expert's gate/up) are column-parallel: rank r holds heads
   [r H/tp, (r+1) H/tp), the KV heads they read (replicated when tp > KV heads) and 1/tp of the MLP
   width. o_proj and down_proj are row-parallel; their partial sums are added by
   ``all_reduce`` in ``attn_all_reduce`` / ``mlp_all_reduce``. Their biases are added on rank 0
   only, so the sum holds each once.
7. The embedding is vocab-parallel: rank r holds rows [r V/tp, (r+1) V/tp) (V/tp rounded up, the
   last shard padded), looks up the ids in its range, zeroes the rest, and ``embed_all_reduce``
   sums the shards. Learned positions (gpt2) are added after that sum, once.
8. lm_head is split by vocabulary the same way; ``logits_all_gather`` gathers the shards of the
   last position's logits (padding dropped).
9. Every rank draws the full tensors from the same seed and keeps its slice, so a tp run computes
   the same function as the tp = 1 reference with the same seed (up to the order of bf16 sums).

8-bit weights and KV cache (``reference_formats`` decides from the workload's dtypes; the decoder's
projections only, as transformer.py convention 2: embedding, norms, router and lm_head stay 16-bit):
10. fp8 weights (e4m3, one fp32 scale per tensor) run through ``torch._scaled_mm``, the activations
    quantised to e4m3 per call with a dynamic per-tensor scale (abs, amax, divide, cast), the output
    written in the 16-bit dtype: W8A8 fp8 as inference engines run it. Weight-only fp8
    (``act_dtype`` 16-bit) runs the same way; its ``differs`` line says so.
11. W8A8 int8 runs through ``torch._int_mm`` (int8 x int8 -> int32), activations quantised per call
    (per-tensor scale), the int32 result scaled back to 16-bit; fewer than 17 rows are zero-padded
    to 17 (``_int_mm``'s CUDA minimum). Weight-only int8 has no fused kernel in torch: it runs as
    gpt-fast's eager form, ``F.linear(x, w_int8.to(bf16)) * scale`` (one scale per output channel).
12. An fp8 KV cache is stored in float8_e4m3fn (scale 1: the cache holds N(0, 1) values) and
    converted to the 16-bit dtype inside the attention op's range before SDPA or the naive matmuls
    (torch's SDPA takes no fp8 input).
"""

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.profiler import record_function

from roofline.config import ModelConfig, Workload, check_fit
from roofline.errors import ConfigError
from roofline.transformer import model_ops, param16_dtype

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
NORM_EPS = 1e-5
ROPE_THETA = 10000.0


FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # the largest finite float8_e4m3fn value (torch.finfo(torch.float8_e4m3fn).max)
INT8_MAX = 127.0
# (weight dtype, activations quantised too) -> how the projections run (conventions 10, 11)
LINEAR_IMPLS = {
    ("fp8", False): "fp8_scaled_mm",
    ("fp8", True): "fp8_scaled_mm",
    ("int8", False): "int8_dequant",
    ("int8", True): "int8_int_mm",
}
# how the reference runs an 8-bit format, where that is not the fused kernel a datasheet prediction assumes;
# roofline calibrate measures these same paths (gemm.fp8, gemm.int8, gemm.DTYPE/weight_only,
# attention.decode/kv_fp8), so a calibrated prediction prices them as they run here (advise.py assumption 7)
DIFFERS = {
    ("fp8", False): "fp8 weights run through torch._scaled_mm with the activations quantised to fp8 per call "
    "(abs, amax, divide and cast kernels per projection) and fp8 math, where a fused weight-only kernel would "
    "read 1-byte weights with 16-bit activations and math",
    ("fp8", True): "W8A8 fp8 through torch._scaled_mm: the activations are quantised per call (abs, amax, divide "
    "and cast kernels per projection) and every other op reads and writes 16-bit activations, where the "
    "analysis counts 1-byte activations throughout and no quantisation kernels",
    ("int8", False): "weight-only int8 has no fused kernel in torch: each projection converts its int8 weights to "
    "16-bit (1 B read, 2 B written per weight), the 16-bit matmul reads them again (2 B) and the output is "
    "scaled; more bytes than 16-bit weights",
    ("int8", True): "W8A8 int8 through torch._int_mm: the activations are quantised per call, the int32 result "
    "is scaled back to 16-bit (extra kernels), fewer than 17 rows are padded to 17",
    "kv_fp8": "the fp8 KV cache is converted to 16-bit for attention (torch's SDPA takes no fp8 input): a decode "
    "step reads 1 B and writes 2 B per cached value, then attention reads 2 B",
}


@dataclass(frozen=True)
class ReferenceFormats:
    """How the reference stores and computes what a workload's dtypes ask for (conventions 10-12).

    dtype:    the 16-bit torch dtype of activations and of the weights that are never quantised
    linear:   how the decoder's projections run: 'dense', 'fp8_scaled_mm', 'int8_int_mm', 'int8_dequant'
    kv_dtype: the torch dtype the KV cache is stored in
    differs:  one line per way the run departs from the analytic model of the same workload
    """

    dtype: torch.dtype
    linear: str = "dense"
    kv_dtype: torch.dtype = None
    differs: tuple = ()


def reference_formats(w: Workload, distributed: bool = None) -> ReferenceFormats:
    """The ``ReferenceFormats`` of the reference model for ``w``. Raises ConfigError for what it cannot
    run: int4 / fp4 weights, an int8 or 4-bit KV cache, quantised activations without the same weights
    (W8A8), 16-bit dtypes mixed, or tp > 1 outside a distributed run. ``distributed`` None: tp > 1 is
    allowed in a process of an initialised torch.distributed world of tp ranks (a torchrun worker)."""
    wd, act, kv = w.weight_dtype, w.act_dtype, w.kv_dtype
    if wd not in TORCH_DTYPES and wd not in ("fp8", "int8"):
        raise ConfigError(
            f"weight_dtype {wd}: not supported by the reference model, which runs bf16/fp16, fp8 (torch._scaled_mm) "
            f"and int8 (torch._int_mm, or dequantised) weights; profile with one of those "
            f"(roofline analyze covers {wd})"
        )
    if act not in TORCH_DTYPES and act != wd:
        raise ConfigError(
            f"act_dtype {act} with weight_dtype {wd}: not supported by the reference model, which quantises "
            f"activations only for W8A8 (act_dtype = weight_dtype, fp8 or int8); use a 16-bit act_dtype "
            f"(roofline analyze covers {act})"
        )
    if kv not in TORCH_DTYPES and kv != "fp8":
        raise ConfigError(
            f"kv_dtype {kv}: not supported by the reference model, which stores the KV cache in bf16, fp16 or "
            f"fp8 (e4m3); profile with one of those (roofline analyze covers {kv})"
        )
    p16 = param16_dtype(w)
    sixteen = [v for v in (wd, act, kv) if v in TORCH_DTYPES]
    if any(v != p16 for v in sixteen):
        raise ConfigError(
            f"the reference model runs in one 16-bit dtype; weight_dtype {wd}, act_dtype {act} and kv_dtype {kv} "
            f"must be the same (bf16 or fp16) where they are 16-bit"
        )
    if distributed is None:
        distributed = in_tp_group(w.tp)
    if w.tp != 1 and not distributed:
        raise ConfigError(
            f"tp {w.tp}: the reference model runs on one GPU in profile_model; profile with tp 1, or run "
            f"tp {w.tp} with one process per GPU through roofline.measure.distributed.profile_distributed"
        )
    differs = []
    linear = "dense"
    if wd in ("fp8", "int8"):
        key = (wd, act == wd)
        linear = LINEAR_IMPLS[key]
        differs.append(DIFFERS[key])
    if kv == "fp8":
        differs.append(DIFFERS["kv_fp8"])
    dtype = TORCH_DTYPES[p16]
    return ReferenceFormats(dtype, linear, FP8 if kv == "fp8" else dtype, tuple(differs))


def reference_dtype(w: Workload, distributed: bool = None) -> torch.dtype:
    """The 16-bit torch dtype of the reference model for ``w`` (activations, unquantised weights).
    Raises ConfigError for what it cannot run (``reference_formats``)."""
    return reference_formats(w, distributed).dtype


def in_tp_group(tp: int) -> bool:
    """True in a process of an initialised torch.distributed world of exactly ``tp`` ranks."""
    import torch.distributed as dist

    return tp > 1 and dist.is_available() and dist.is_initialized() and dist.get_world_size() == tp


def tp_shard_check(config: ModelConfig, tp: int) -> None:
    """Raise ConfigError when ``config`` cannot be split ``tp`` ways (heads, KV heads, MLP width)."""
    if tp < 1:
        raise ConfigError(f"tp must be at least 1, got {tp}")
    check_fit(config, Workload(tp=tp), f"model {config.name}")


def _activation(name: str):
    if name in ("silu", "swish"):
        return F.silu
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu  # exact erf form
    return lambda x: F.gelu(x, approximate="tanh")  # gelu_new, gelu_pytorch_tanh, gelu_fast


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class _Layer:
    """One decoder layer's weights (plain tensors: the reference never trains)."""


class QuantWeight:
    """A projection's weight [out, in] stored in 8 bits with its scale, and the matmul that uses it
    (conventions 10, 11). ``impl``: a value of ``LINEAR_IMPLS``; ``w``: the 16-bit weight to quantise."""

    def __init__(self, w: torch.Tensor, impl: str):
        self.impl, self.dtype = impl, w.dtype
        wf = w.float()
        if impl == "fp8_scaled_mm":
            self.scale = (wf.abs().amax() / FP8_MAX).clamp(min=1e-12)  # fp32, per tensor
            self.q = (wf / self.scale).to(FP8)
        elif impl == "int8_int_mm":
            self.scale = (wf.abs().amax() / INT8_MAX).clamp(min=1e-12)
            self.q = (wf / self.scale).round().clamp(-INT8_MAX - 1, INT8_MAX).to(torch.int8)
        elif impl == "int8_dequant":  # one scale per output channel, in the 16-bit dtype (gpt-fast's form)
            scale = (wf.abs().amax(dim=1) / INT8_MAX).clamp(min=1e-12)
            self.q = (wf / scale[:, None]).round().clamp(-INT8_MAX - 1, INT8_MAX).to(torch.int8)
            self.scale = scale.to(w.dtype)
        else:
            raise ConfigError(f"linear impl '{impl}' is not one of {', '.join(sorted(set(LINEAR_IMPLS.values())))}")
        if impl != "int8_dequant":
            out_f, in_f = w.shape
            if in_f % 16 or out_f % 16:
                raise ConfigError(
                    f"a {out_f} x {in_f} weight cannot run through torch._{impl.split('_', 1)[1]}: its in and out "
                    f"features must be multiples of 16; profile this model with 16-bit weights"
                )

    @property
    def tensors(self) -> tuple:
        return (self.q, self.scale)

    def dequantized(self) -> torch.Tensor:
        """The weight in the 16-bit dtype, as the matmul sees it (for tests)."""
        scale = self.scale[:, None] if self.scale.dim() else self.scale
        return (self.q.float() * scale.float()).to(self.dtype)

    def __call__(self, x: torch.Tensor, bias=None) -> torch.Tensor:
        """x [..., in] (16-bit) -> [..., out] in the 16-bit dtype."""
        shape = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        if self.impl == "fp8_scaled_mm":
            xs = (x2.abs().amax().float() / FP8_MAX).clamp(min=1e-12)
            xq = (x2 / xs).to(FP8)
            y = torch._scaled_mm(xq, self.q.t(), scale_a=xs, scale_b=self.scale, bias=bias, out_dtype=self.dtype)
        elif self.impl == "int8_int_mm":
            xs = (x2.abs().amax().float() / INT8_MAX).clamp(min=1e-12)
            xq = (x2 / xs).round().clamp(-INT8_MAX - 1, INT8_MAX).to(torch.int8)
            rows = xq.shape[0]
            if rows <= 16:  # torch._int_mm on CUDA needs more than 16 rows
                xq = F.pad(xq, (0, 0, 0, 17 - rows))
            y = (torch._int_mm(xq, self.q.t())[:rows] * (xs * self.scale)).to(self.dtype)
            if bias is not None:
                y = y + bias
        else:  # int8_dequant
            y = F.linear(x2, self.q.to(self.dtype)) * self.scale
            if bias is not None:
                y = y + bias
        return y.view(*shape, y.shape[-1])


class ReferenceDecoder:
    """``layers`` decoder layers of ``config`` with a KV cache for ``batch`` sequences of up to
    ``max_context`` positions. Call ``forward(ids, start_pos)`` or build a fixed step with ``make_step``.

    ``annotate`` turns the ``record_function`` ranges on (profiling) or off (wall-clock timing);
    ``nvtx`` adds an NVTX range per op (for Nsight Compute's --nvtx filters).

    ``tp`` > 1: this object is rank ``rank`` of a tensor-parallel group (``group``, default the
    whole initialised ``torch.distributed`` world) and holds that rank's shards (conventions 6-9).
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        layers: int = 2,
        batch: int = 1,
        max_context: int = 512,
        dtype=torch.bfloat16,
        attn_impl: str = "flash",
        device="cuda",
        seed: int = 0,
        tp: int = 1,
        rank: int = 0,
        group=None,
        linear: str = "dense",
        kv_dtype=None,
    ):
        if layers < 1:
            raise ConfigError(f"layers must be at least 1, got {layers}")
        reference_supports(config)
        if attn_impl not in ("flash", "naive"):
            raise ConfigError(f"attn_impl '{attn_impl}' is not one of flash, naive")
        tp_shard_check(config, tp)
        if not 0 <= rank < tp:
            raise ConfigError(f"rank {rank} is outside a tp group of {tp}")
        if linear != "dense" and linear not in LINEAR_IMPLS.values():
            raise ConfigError(f"linear '{linear}' is not one of dense, {', '.join(sorted(set(LINEAR_IMPLS.values())))}")
        if linear != "dense" and config.is_moe:
            raise ConfigError(
                f"{config.name}: the MoE reference runs its experts in 16-bit; profile it with bf16 or fp16 weights"
            )
        kv_dtype = dtype if kv_dtype is None else kv_dtype
        if kv_dtype not in (dtype, FP8):
            raise ConfigError(f"kv_dtype {kv_dtype}: the reference stores the KV cache in {dtype} or {FP8}")
        self.config, self.layers, self.batch, self.max_context = config, layers, batch, max_context
        self.dtype, self.attn_impl, self.device = dtype, attn_impl, torch.device(device)
        self.tp, self.rank, self.group = tp, rank, group
        self.linear, self.kv_dtype = linear, kv_dtype
        self.annotate, self.nvtx = True, False
        # per call of an MoE layer, the routed experts that got tokens (the loop's where's already sync: free)
        self.routed = []
        self._masks = {}
        m = config
        h, d = m.hidden_size, m.head_dim
        H, Hkv = m.num_attention_heads, m.num_key_value_heads
        # this rank's heads [rank H/tp, (rank+1) H/tp) and the KV heads they read (GQA group of H/Hkv)
        self.heads, self.kv_heads, self.head_dim = H // tp, max(Hkv // tp, 1), d
        q0, kv0 = rank * (H // tp), rank * (H // tp) // (H // Hkv)
        inter = m.intermediate_size // tp
        i0 = rank * inter
        self.vocab = m.vocab_size
        self.vocab_local = -(-m.vocab_size // tp)  # ceil(V / tp), as transformer.Shard
        self.vocab_start = rank * self.vocab_local
        gen = torch.Generator(device=self.device).manual_seed(seed)

        def rand(*shape, scale=1.0):
            t = torch.randn(*shape, generator=gen, device=self.device, dtype=torch.float32)
            return (t * scale).to(dtype)

        def linear_weight(fan_in, fan_out):
            return rand(fan_out, fan_in, scale=fan_in**-0.5)

        def bias(n, on):
            return rand(n, scale=0.02) if on else None

        def norm_params():
            gamma = 1.0 + rand(h, scale=0.02).float()
            beta = rand(h, scale=0.02) if m.norm == "layernorm" else None
            return gamma.to(dtype), beta

        # tp > 1: every rank draws the full tensor (the same numbers as tp = 1) and keeps its slice
        def part(t, dim, start, n):
            if t is None or tp == 1:
                return t
            return t.narrow(dim, start, n).contiguous()

        def on_rank0(t):  # the bias of a row-parallel projection: added once, before the all-reduce
            return t if rank == 0 else None

        def vocab_part(t):  # rows [vocab_start, vocab_start + vocab_local), zero-padded past the vocabulary
            if tp == 1:
                return t
            out = t.new_zeros(self.vocab_local, h)
            rows = max(0, min(self.vocab_local, m.vocab_size - self.vocab_start))
            out[:rows] = t[self.vocab_start : self.vocab_start + rows]
            return out

        self.wte = vocab_part(rand(m.vocab_size, h))
        if m.position == "learned":
            n_pos = max(m.max_position_embeddings or 1024, max_context)
            self.wpe = rand(n_pos, h, scale=0.1)
        else:
            inv_freq = 1.0 / (ROPE_THETA ** (torch.arange(0, d, 2, device=self.device, dtype=torch.float32) / d))
            angles = torch.outer(torch.arange(max_context, device=self.device, dtype=torch.float32), inv_freq)
            angles = torch.cat((angles, angles), dim=-1)  # [positions, d], HF rotate_half layout
            self.cos, self.sin = angles.cos().to(dtype), angles.sin().to(dtype)

        self.blocks = []
        Hl, Hkvl, full_inter = self.heads, self.kv_heads, m.intermediate_size
        for _ in range(layers):
            L = _Layer()
            L.attn_norm = norm_params()
            L.wq = part(linear_weight(h, H * d), 0, q0 * d, Hl * d)
            L.bq = part(bias(H * d, m.qkv_bias), 0, q0 * d, Hl * d)
            L.wk = part(linear_weight(h, Hkv * d), 0, kv0 * d, Hkvl * d)
            L.bk = part(bias(Hkv * d, m.qkv_bias), 0, kv0 * d, Hkvl * d)
            L.wv = part(linear_weight(h, Hkv * d), 0, kv0 * d, Hkvl * d)
            L.bv = part(bias(Hkv * d, m.qkv_bias), 0, kv0 * d, Hkvl * d)
            L.wo, L.bo = part(linear_weight(H * d, h), 1, q0 * d, Hl * d), on_rank0(bias(h, m.o_bias))
            L.mlp_norm = norm_params()
            if m.is_moe:
                E = m.num_local_experts
                L.router = linear_weight(h, E)
                L.w_gate = part(rand(E, full_inter, h, scale=h**-0.5), 1, i0, inter)
                L.w_up = part(rand(E, full_inter, h, scale=h**-0.5), 1, i0, inter)
                L.w_down = part(rand(E, h, full_inter, scale=full_inter**-0.5), 2, i0, inter)
            else:
                L.wg = part(linear_weight(h, full_inter) if m.gated_mlp else None, 0, i0, inter)
                L.bg = part(bias(full_inter, m.mlp_bias and m.gated_mlp), 0, i0, inter)
                L.wu = part(linear_weight(h, full_inter), 0, i0, inter)
                L.bu = part(bias(full_inter, m.mlp_bias), 0, i0, inter)
                L.wd, L.bd = part(linear_weight(full_inter, h), 1, i0, inter), on_rank0(bias(h, m.mlp_bias))
            # KV cache [batch, kv_heads, positions, head_dim]: random, never zeros, so a decode step
            # reads real-looking data at every position it attends to
            L.k_cache = part(rand(batch, Hkv, max_context, d), 1, kv0, Hkvl).to(kv_dtype)
            L.v_cache = part(rand(batch, Hkv, max_context, d), 1, kv0, Hkvl).to(kv_dtype)
            if linear != "dense":  # the decoder's projections in 8 bits (conventions 10, 11)
                for key in ("wq", "wk", "wv", "wo", "wg", "wu", "wd"):
                    if getattr(L, key, None) is not None:
                        setattr(L, key, QuantWeight(getattr(L, key), linear))
            self.blocks.append(L)
        self.final_norm = norm_params()
        self.lm_head = self.wte if m.tie_word_embeddings else vocab_part(linear_weight(h, m.vocab_size))
        self._gen = gen
        self.act = _activation(m.hidden_act)

    # ------------------------------------------------------------------------------------------
    @contextmanager
    def _nvtx_range(self, name):
        torch.cuda.nvtx.range_push(name)
        try:
            with record_function(name):
                yield
        finally:
            torch.cuda.nvtx.range_pop()

    def op(self, name):
        """The range an op runs in: record_function(name) while annotating, else nothing."""
        if self.nvtx:
            return self._nvtx_range(name)
        return record_function(name) if self.annotate else nullcontext()

    def _norm(self, x, params):
        gamma, beta = params
        if self.config.norm == "layernorm":
            return F.layer_norm(x, (x.shape[-1],), gamma, beta, NORM_EPS)
        return F.rms_norm(x, (x.shape[-1],), gamma, NORM_EPS)

    @staticmethod
    def _linear(x, w, b):
        """A projection: F.linear on a 16-bit weight, else the QuantWeight's own matmul."""
        return w(x, b) if isinstance(w, QuantWeight) else F.linear(x, w, b)

    def _cached(self, cache, lo, end):
        """Positions [lo, end) of a KV cache, in the 16-bit dtype (an fp8 cache is converted: convention 12)."""
        part = cache[:, :, lo:end]
        return part if part.dtype == self.dtype else part.to(self.dtype)

    def _all_reduce(self, x):
        """Sum ``x`` over the tp group, in place (NCCL on GPUs, gloo on the CPU)."""
        import torch.distributed as dist

        dist.all_reduce(x, group=self.group)
        return x

    def _all_gather_logits(self, local):
        """[b, V/tp] shards of every rank -> [b, V] (padding past the vocabulary dropped)."""
        import torch.distributed as dist

        b = local.shape[0]
        out = local.new_empty(self.tp * b, self.vocab_local)
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        gather(out, local.contiguous(), group=self.group)  # rank-major: [tp, b, V/tp]
        return out.view(self.tp, b, self.vocab_local).permute(1, 0, 2).reshape(b, -1)[:, : self.vocab]

    def _mask(self, s_q, s_k, offset):
        """Boolean [s_q, s_k], True where query i (at position offset + i) must not see key j."""
        key = (s_q, s_k, offset)
        if key not in self._masks:
            qpos = torch.arange(s_q, device=self.device)[:, None] + offset
            kpos = torch.arange(s_k, device=self.device)[None, :]
            masked = kpos > qpos
            window = self.config.sliding_window
            if window:
                masked |= kpos <= qpos - window
            self._masks[key] = masked
        return self._masks[key]

    # ------------------------------------------------------------------------------------------
    def forward(self, ids, start_pos: int = 0):
        """Logits [batch, vocab] of the last position after processing ``ids`` [batch, s].

        ``start_pos`` 0 is a prefill into an empty cache; otherwise ``ids`` must be one token per
        sequence (a decode step) at position ``start_pos``.
        """
        b, s = ids.shape
        if b != self.batch:
            raise ValueError(f"ids have batch {b}; this reference was built for batch {self.batch}")
        if start_pos and s != 1:
            raise ValueError("a decode step takes one token per sequence (ids of shape [batch, 1])")
        if start_pos + s > self.max_context:
            raise ValueError(f"position {start_pos + s} is past the cache's {self.max_context} positions")
        m = self.config
        H, Hkv, d = self.heads, self.kv_heads, self.head_dim
        end = start_pos + s
        window = m.sliding_window
        lo = max(0, end - window) if (window and start_pos) else 0  # decode attends to [lo, end)

        tp = self.tp
        if tp == 1:
            with self.op("embedding"):
                x = F.embedding(ids, self.wte)
        else:
            with self.op("embedding"):  # vocab-parallel: ids outside this rank's rows give zeros
                local = ids - self.vocab_start
                outside = (local < 0) | (local >= self.vocab_local)
                x = F.embedding(local.masked_fill(outside, 0), self.wte).masked_fill_(outside[..., None], 0)
            with self.op("embed_all_reduce"):
                x = self._all_reduce(x)
        if m.position == "learned":
            with self.op("pos_embedding"):
                x = x + self.wpe[start_pos:end]

        for L in self.blocks:
            with self.op("attn_norm"):
                hn = self._norm(x, L.attn_norm)
            with self.op("q_proj"):
                q = self._linear(hn, L.wq, L.bq).view(b, s, H, d)
            with self.op("k_proj"):
                k = self._linear(hn, L.wk, L.bk).view(b, s, Hkv, d)
            with self.op("v_proj"):
                v = self._linear(hn, L.wv, L.bv).view(b, s, Hkv, d)
            if m.position == "rope":
                with self.op("rope"):
                    cos = self.cos[start_pos:end, None, :]  # [s, 1, d], broadcast over heads
                    sin = self.sin[start_pos:end, None, :]
                    q = q * cos + _rotate_half(q) * sin
                    k = k * cos + _rotate_half(k) * sin
            with self.op("kv_cache_write"):
                L.k_cache[:, :, start_pos:end].copy_(k.transpose(1, 2))
                L.v_cache[:, :, start_pos:end].copy_(v.transpose(1, 2))
            if self.attn_impl == "flash":
                attn = self._flash(q, k, v, L, start_pos, lo, end)
            else:
                attn = self._naive(q, k, v, L, start_pos, lo, end)
            with self.op("o_proj"):
                o = self._linear(attn, L.wo, L.bo)
            if tp > 1:
                with self.op("attn_all_reduce"):
                    o = self._all_reduce(o)
            with self.op("attn_residual"):
                x = x + o
            with self.op("mlp_norm"):
                hn = self._norm(x, L.mlp_norm)
            if m.is_moe:
                y = self._moe(hn, L)
            else:
                if m.gated_mlp:
                    with self.op("gate_proj"):
                        gate = self._linear(hn, L.wg, L.bg)
                with self.op("up_proj"):
                    up = self._linear(hn, L.wu, L.bu)
                with self.op("act"):
                    a = self.act(gate) * up if m.gated_mlp else self.act(up)
                with self.op("down_proj"):
                    y = self._linear(a, L.wd, L.bd)
            if tp > 1:
                with self.op("mlp_all_reduce"):
                    y = self._all_reduce(y)
            with self.op("mlp_residual"):
                x = x + y

        with self.op("final_norm"):
            x = self._norm(x, self.final_norm)
        with self.op("lm_head"):
            logits = F.linear(x[:, -1, :], self.lm_head)  # last position only
        if tp == 1:
            return logits
        with self.op("logits_all_gather"):
            return self._all_gather_logits(logits)

    def _flash(self, q, k, v, L, start_pos, lo, end):
        b, s, H, d = q.shape
        gqa = self.kv_heads != H
        with self.op("attention"):
            qt = q.transpose(1, 2)  # [b, H, s, d]
            if start_pos == 0:
                kt, vt = k.transpose(1, 2), v.transpose(1, 2)  # fresh k/v [b, Hkv, s, d]
                window = self.config.sliding_window
                if window and window < s:
                    mask = ~self._mask(s, s, 0)  # SDPA: True = may attend
                    o = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, enable_gqa=gqa)
                else:
                    o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=gqa)
            else:
                kt, vt = self._cached(L.k_cache, lo, end), self._cached(L.v_cache, lo, end)
                o = F.scaled_dot_product_attention(qt, kt, vt, enable_gqa=gqa)
            return o.transpose(1, 2).reshape(b, s, H * d)

    def _naive(self, q, k, v, L, start_pos, lo, end):
        b, s, H, d = q.shape
        Hkv = self.kv_heads
        g = H // Hkv
        with self.op("qk_matmul"):
            # the g query heads of one KV head become rows: q3 [b*Hkv, g*s, d]
            q3 = q.view(b, s, Hkv, g, d).permute(0, 2, 3, 1, 4).reshape(b * Hkv, g * s, d)
            if start_pos == 0:
                kT = k.permute(0, 2, 3, 1).reshape(b * Hkv, d, s)
            else:
                kT = self._cached(L.k_cache, lo, end).transpose(2, 3).reshape(b * Hkv, d, end - lo)
            s_k = kT.shape[-1]
            scores = torch.baddbmm(q3.new_empty(b * Hkv, g * s, s_k), q3, kT, beta=0.0, alpha=d**-0.5)
        with self.op("softmax"):
            if start_pos == 0:
                scores.view(b * Hkv, g, s, s_k).masked_fill_(self._mask(s, s_k, 0), float("-inf"))
            p = torch.softmax(scores, dim=-1)
        with self.op("sv_matmul"):
            if start_pos == 0:
                v3 = v.permute(0, 2, 1, 3).reshape(b * Hkv, s, d)
            else:
                v3 = self._cached(L.v_cache, lo, end).reshape(b * Hkv, end - lo, d)
            o = torch.bmm(p, v3)  # [b*Hkv, g*s, d]
            return o.view(b, Hkv, g, s, d).permute(0, 3, 1, 2, 4).reshape(b, s, H * d)

    def _moe(self, hn, L):
        m = self.config
        b, s, h = hn.shape
        with self.op("router"):
            logits = F.linear(hn, L.router)
        with self.op("experts"):
            x = hn.reshape(b * s, h)
            probs = torch.softmax(logits.reshape(b * s, -1).float(), dim=-1)
            weights, chosen = torch.topk(probs, m.num_experts_per_tok, dim=-1)
            weights = (weights / weights.sum(dim=-1, keepdim=True)).to(hn.dtype)
            out = torch.zeros_like(x)
            routed = 0
            for e in range(m.num_local_experts):
                token, slot = torch.where(chosen == e)  # host sync: MoE is not graph-capturable
                if token.numel() == 0:
                    continue
                routed += 1
                xe = x[token]
                ye = F.linear(F.silu(F.linear(xe, L.w_gate[e])) * F.linear(xe, L.w_up[e]), L.w_down[e])
                out.index_add_(0, token, ye * weights[token, slot, None])
            self.routed.append(routed)
            return out.view(b, s, h)

    # ------------------------------------------------------------------------------------------
    def make_step(self, phase: str, prompt_len: int, context_len: int = None):
        """A function running one forward pass of ``phase`` on fixed random token ids.

        'prefill': ``prompt_len`` tokens per sequence from position 0. 'decode': one token per
        sequence at position ``context_len - 1``, attending to ``context_len`` cached positions.
        Re-running the step rewrites the same cache slots, so it can be repeated and graph-captured.
        """
        if phase == "prefill":
            s, start = prompt_len, 0
        elif phase == "decode":
            if not context_len:
                raise ValueError("a decode step needs context_len")
            s, start = 1, context_len - 1
        else:
            raise ValueError(f"phase must be prefill or decode, not {phase!r}")
        if start + s > self.max_context:
            raise ValueError(f"{phase} needs {start + s} cache positions; the reference has {self.max_context}")
        ids = torch.randint(0, self.config.vocab_size, (self.batch, s), generator=self._gen, device=self.device)

        def step():
            return self.forward(ids, start)

        step.phase, step.tokens, step.start_pos = phase, s, start
        return step

    @property
    def graph_capturable(self) -> bool:
        """MoE routing syncs with the host (torch.where per expert), which a CUDA graph cannot hold."""
        return not self.config.is_moe

    def weight_bytes(self) -> int:
        """Bytes of all weight tensors (the KV cache excluded)."""
        tensors = [
            self.wte,
            self.lm_head if self.lm_head is not self.wte else None,
            self.final_norm[0],
            self.final_norm[1],
            getattr(self, "wpe", None),
        ]
        for L in self.blocks:
            tensors += [v for k, v in vars(L).items() if k not in ("k_cache", "v_cache")]
        flat = []
        for t in tensors:
            if isinstance(t, QuantWeight):
                t = t.tensors
            flat.extend(t if isinstance(t, tuple) else [t])
        return sum(t.numel() * t.element_size() for t in flat if isinstance(t, torch.Tensor))


REFERENCE_FAMILIES = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gpt2")


def reference_supports(config: ModelConfig) -> None:
    """Raises ConfigError for a model the reference decoder cannot build faithfully: a family other than
    REFERENCE_FAMILIES, or windowed and global layers mixed (the reference windows every layer or none)."""
    if config.model_type not in REFERENCE_FAMILIES:
        raise ConfigError(
            f"the GPU reference model builds {', '.join(REFERENCE_FAMILIES)}, not {config.model_type}; "
            f"'roofline analyze' models it, profiling it needs the reference extended"
        )
    if len(set(config.layer_windows)) > 1:
        raise ConfigError(
            f"{config.name}: windowed and global layers mixed (layer_types / max_window_layers); "
            f"the GPU reference model windows every layer or none"
        )


def build_reference(
    config: ModelConfig,
    workload: Workload,
    *,
    layers: int = 2,
    device="cuda",
    seed: int = 0,
    batch: int = None,
    max_context: int = None,
    rank: int = None,
    group=None,
) -> ReferenceDecoder:
    """A ``ReferenceDecoder`` sized for one point of ``workload`` (its first batch size, prompt and
    context). With ``workload.tp`` > 1 it is this process's shard: ``rank`` (default: the rank in
    ``group``, default the initialised torch.distributed world) of a group whose size must be tp.
    Its projections and KV cache take the workload's 8-bit dtypes where ``reference_formats`` runs them.
    Raises ConfigError for dtypes the reference cannot run, or tp > 1 without a matching process group."""
    tp = workload.tp
    layers = max(1, min(layers, config.num_hidden_layers))  # a model of fewer layers runs them all, as profile_model
    formats = reference_formats(workload, distributed=tp > 1)
    if tp > 1:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise ConfigError(
                f"tp {tp}: the reference needs one process per GPU in an initialised torch.distributed group; "
                f"launch it with roofline.measure.distributed.profile_distributed (roofline profile --tp {tp})"
            )
        world = dist.get_world_size(group)
        if world != tp:
            raise ConfigError(f"tp {tp} needs a process group of {tp} ranks; this one has {world}")
        rank = dist.get_rank(group) if rank is None else rank
    batch = batch or workload.batch_size[0]
    if max_context is None:
        max_context = max(workload.prompt_len[0], decode_context(workload))
    return ReferenceDecoder(
        config,
        layers=layers,
        batch=batch,
        max_context=max_context,
        dtype=formats.dtype,
        attn_impl=workload.attn_impl,
        device=device,
        seed=seed,
        tp=tp,
        rank=rank or 0,
        group=group,
        linear=formats.linear,
        kv_dtype=formats.kv_dtype,
    )


def decode_context(w: Workload) -> int:
    """The context of the decode step profiled for ``w``: ``context_len``, else the mean context of
    ``gen_tokens`` generated after the prompt (Workload's convention, rounded), else ``prompt_len``."""
    if w.context_len:
        return int(w.context_len[0])
    if w.gen_tokens:
        return int(round(w.prompt_len[0] + (w.gen_tokens + 1) / 2))
    return int(w.prompt_len[0])


def op_calls(config: ModelConfig, workload: Workload, phase: str, layers: int) -> dict:
    """The ranges the reference runs in one step of ``phase``, in model order, with how often:
    op name -> calls per step (``layers`` for an op of every decoder layer, else 1). The names and
    which ops are per layer come from ``roofline.transformer.model_ops`` (no cost is read)."""
    ops = model_ops(config, workload, phase, 1.0, 1.0, 1.0)
    return {op.name: layers if op.count == config.num_hidden_layers else 1 for op in ops}
