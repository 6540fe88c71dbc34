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
"""

from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch.profiler import record_function

from roofline.config import ModelConfig, Workload
from roofline.errors import ConfigError

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
NORM_EPS = 1e-5
ROPE_THETA = 10000.0


def reference_dtype(w: Workload) -> torch.dtype:
    """The torch dtype of the reference model for ``w``. Raises ConfigError for what it cannot run."""
    for key in ("weight_dtype", "act_dtype", "kv_dtype"):
        value = getattr(w, key)
        if value not in TORCH_DTYPES:
            raise ConfigError(
                f"{key} {value}: int4/int8/fp8 weights, activations and KV caches are not supported by the "
                f"reference model yet; profile with bf16 or fp16 (roofline analyze covers {value})"
            )
    if len({w.weight_dtype, w.act_dtype, w.kv_dtype}) > 1:
        raise ConfigError(
            f"the reference model runs in one 16-bit dtype; weight_dtype {w.weight_dtype}, act_dtype "
            f"{w.act_dtype} and kv_dtype {w.kv_dtype} must be the same (bf16 or fp16)"
        )
    if w.tp != 1:
        raise ConfigError(f"tp {w.tp}: the reference model runs on one GPU; profile with tp 1")
    return TORCH_DTYPES[w.weight_dtype]


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


class ReferenceDecoder:
    """``layers`` decoder layers of ``config`` with a KV cache for ``batch`` sequences of up to
    ``max_context`` positions. Call ``forward(ids, start_pos)`` or build a fixed step with ``make_step``.

    ``annotate`` turns the ``record_function`` ranges on (profiling) or off (wall-clock timing);
    ``nvtx`` adds an NVTX range per op (for Nsight Compute's --nvtx filters).
    """

    def __init__(self, config: ModelConfig, *, layers: int = 2, batch: int = 1, max_context: int = 512,
                 dtype=torch.bfloat16, attn_impl: str = "flash", device="cuda", seed: int = 0):
        if layers < 1:
            raise ConfigError(f"layers must be at least 1, got {layers}")
        if attn_impl not in ("flash", "naive"):
            raise ConfigError(f"attn_impl '{attn_impl}' is not one of flash, naive")
        self.config, self.layers, self.batch, self.max_context = config, layers, batch, max_context
        self.dtype, self.attn_impl, self.device = dtype, attn_impl, torch.device(device)
        self.annotate, self.nvtx = True, False
        self._masks = {}
        m = config
        h, d = m.hidden_size, m.head_dim
        self.heads, self.kv_heads, self.head_dim = m.num_attention_heads, m.num_key_value_heads, d
        gen = torch.Generator(device=self.device).manual_seed(seed)

        def rand(*shape, scale=1.0):
            t = torch.randn(*shape, generator=gen, device=self.device, dtype=torch.float32)
            return (t * scale).to(dtype)

        def linear_weight(fan_in, fan_out):
            return rand(fan_out, fan_in, scale=fan_in ** -0.5)

        def bias(n, on):
            return rand(n, scale=0.02) if on else None

        def norm_params():
            gamma = 1.0 + rand(h, scale=0.02).float()
            beta = rand(h, scale=0.02) if m.norm == "layernorm" else None
            return gamma.to(dtype), beta

        self.wte = rand(m.vocab_size, h)
        if m.position == "learned":
            n_pos = max(m.max_position_embeddings or 1024, max_context)
            self.wpe = rand(n_pos, h, scale=0.1)
        else:
            inv_freq = 1.0 / (ROPE_THETA ** (torch.arange(0, d, 2, device=self.device, dtype=torch.float32) / d))
            angles = torch.outer(torch.arange(max_context, device=self.device, dtype=torch.float32), inv_freq)
            angles = torch.cat((angles, angles), dim=-1)  # [positions, d], HF rotate_half layout
            self.cos, self.sin = angles.cos().to(dtype), angles.sin().to(dtype)

        self.blocks = []
        for _ in range(layers):
            L = _Layer()
            L.attn_norm = norm_params()
            L.wq, L.bq = linear_weight(h, self.heads * d), bias(self.heads * d, m.qkv_bias)
            L.wk, L.bk = linear_weight(h, self.kv_heads * d), bias(self.kv_heads * d, m.qkv_bias)
            L.wv, L.bv = linear_weight(h, self.kv_heads * d), bias(self.kv_heads * d, m.qkv_bias)
            L.wo, L.bo = linear_weight(self.heads * d, h), bias(h, m.o_bias)
            L.mlp_norm = norm_params()
            inter = m.intermediate_size
            if m.is_moe:
                E = m.num_local_experts
                L.router = linear_weight(h, E)
                L.w_gate = rand(E, inter, h, scale=h ** -0.5)
                L.w_up = rand(E, inter, h, scale=h ** -0.5)
                L.w_down = rand(E, h, inter, scale=inter ** -0.5)
            else:
                L.wg = linear_weight(h, inter) if m.gated_mlp else None
                L.bg = bias(inter, m.mlp_bias and m.gated_mlp)
                L.wu, L.bu = linear_weight(h, inter), bias(inter, m.mlp_bias)
                L.wd, L.bd = linear_weight(inter, h), bias(h, m.mlp_bias)
            # KV cache [batch, kv_heads, positions, head_dim]: random, never zeros, so a decode step
            # reads real-looking data at every position it attends to
            L.k_cache = rand(batch, self.kv_heads, max_context, d)
            L.v_cache = rand(batch, self.kv_heads, max_context, d)
            self.blocks.append(L)
        self.final_norm = norm_params()
        self.lm_head = self.wte if m.tie_word_embeddings else linear_weight(h, m.vocab_size)
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

        with self.op("embedding"):
            x = F.embedding(ids, self.wte)
        if m.position == "learned":
            with self.op("pos_embedding"):
                x = x + self.wpe[start_pos:end]

        for L in self.blocks:
            with self.op("attn_norm"):
                hn = self._norm(x, L.attn_norm)
            with self.op("q_proj"):
                q = F.linear(hn, L.wq, L.bq).view(b, s, H, d)
            with self.op("k_proj"):
                k = F.linear(hn, L.wk, L.bk).view(b, s, Hkv, d)
            with self.op("v_proj"):
                v = F.linear(hn, L.wv, L.bv).view(b, s, Hkv, d)
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
                o = F.linear(attn, L.wo, L.bo)
            with self.op("attn_residual"):
                x = x + o
            with self.op("mlp_norm"):
                hn = self._norm(x, L.mlp_norm)
            if m.is_moe:
                y = self._moe(hn, L)
            else:
                if m.gated_mlp:
                    with self.op("gate_proj"):
                        gate = F.linear(hn, L.wg, L.bg)
                with self.op("up_proj"):
                    up = F.linear(hn, L.wu, L.bu)
                with self.op("act"):
                    a = self.act(gate) * up if m.gated_mlp else self.act(up)
                with self.op("down_proj"):
                    y = F.linear(a, L.wd, L.bd)
            with self.op("mlp_residual"):
                x = x + y

        with self.op("final_norm"):
            x = self._norm(x, self.final_norm)
        with self.op("lm_head"):
            return F.linear(x[:, -1, :], self.lm_head)  # last position only

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
                kt, vt = L.k_cache[:, :, lo:end], L.v_cache[:, :, lo:end]
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
                kT = L.k_cache[:, :, lo:end].transpose(2, 3).reshape(b * Hkv, d, end - lo)
            s_k = kT.shape[-1]
            scores = torch.baddbmm(q3.new_empty(b * Hkv, g * s, s_k), q3, kT, beta=0.0, alpha=d ** -0.5)
        with self.op("softmax"):
            if start_pos == 0:
                scores.view(b * Hkv, g, s, s_k).masked_fill_(self._mask(s, s_k, 0), float("-inf"))
            p = torch.softmax(scores, dim=-1)
        with self.op("sv_matmul"):
            if start_pos == 0:
                v3 = v.permute(0, 2, 1, 3).reshape(b * Hkv, s, d)
            else:
                v3 = L.v_cache[:, :, lo:end].reshape(b * Hkv, end - lo, d)
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
            for e in range(m.num_local_experts):
                token, slot = torch.where(chosen == e)  # host sync: MoE is not graph-capturable
                if token.numel() == 0:
                    continue
                xe = x[token]
                ye = F.linear(F.silu(F.linear(xe, L.w_gate[e])) * F.linear(xe, L.w_up[e]), L.w_down[e])
                out.index_add_(0, token, ye * weights[token, slot, None])
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
        tensors = [self.wte, self.lm_head if self.lm_head is not self.wte else None, self.final_norm[0],
                   self.final_norm[1], getattr(self, "wpe", None)]
        for L in self.blocks:
            tensors += [v for k, v in vars(L).items() if k not in ("k_cache", "v_cache")]
        flat = []
        for t in tensors:
            flat.extend(t if isinstance(t, tuple) else [t])
        return sum(t.numel() * t.element_size() for t in flat if isinstance(t, torch.Tensor))


def build_reference(config: ModelConfig, workload: Workload, *, layers: int = 2, device="cuda", seed: int = 0,
                    batch: int = None, max_context: int = None) -> ReferenceDecoder:
    """A ``ReferenceDecoder`` sized for one point of ``workload`` (its first batch size, prompt and
    context). Raises ConfigError for dtypes or tensor parallelism the reference cannot run."""
    dtype = reference_dtype(workload)
    batch = batch or workload.batch_size[0]
    if max_context is None:
        max_context = max(workload.prompt_len[0], decode_context(workload))
    return ReferenceDecoder(config, layers=layers, batch=batch, max_context=max_context, dtype=dtype,
                            attn_impl=workload.attn_impl, device=device, seed=seed)


def decode_context(w: Workload) -> int:
    """The context of the decode step profiled for ``w``: ``context_len``, else the mean context of
    ``gen_tokens`` generated after the prompt (Workload's convention, rounded), else ``prompt_len``."""
    if w.context_len:
        return int(w.context_len[0])
    if w.gen_tokens:
        return int(round(w.prompt_len[0] + (w.gen_tokens + 1) / 2))
    return int(w.prompt_len[0])

