"""Each formula against an independent reference: FlopCounterMode on meta tensors for matmul-type
ops, a hand count written beside the assertion for the rest."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from roofline import formulas as f
from roofline.formulas import FORMULAS


def counted_flops(fn, *shapes, dtype=torch.bfloat16):
    tensors = [torch.empty(*s, device="meta", dtype=dtype) for s in shapes]
    with FlopCounterMode(display=False) as counter:
        fn(*tensors)
    return counter.get_total_flops()


# --- one test per registered formula; a formula added without a case here fails test_every_formula_tested


def case_linear():
    # x [6, 32] @ W^T [32, 48] + b, as F.linear runs it
    c = f.linear(6, 32, 48, "bf16", "bf16", bias=True)
    assert c.flops == counted_flops(lambda x, w, b: F.linear(x, w, b), (6, 32), (48, 32), (48,))
    assert c.weight_bytes_read == 32 * 48 * 2 + 48 * 2  # weight + bias, bf16
    assert c.act_bytes_read == 6 * 32 * 2
    assert c.act_bytes_written == 6 * 48 * 2
    q = f.linear(6, 256, 48, "int4", "bf16")
    assert q.weight_bytes_read == 256 * 48 * 0.5 + 256 * 48 / 128 * 2  # nibbles + one fp16 scale per 128


def case_flash_attention():
    b, h, kv, d = 2, 8, 2, 16
    # decode: 1 query against 40 cached keys; FlopCounterMode counts query heads (k/v expanded)
    dec = f.flash_attention(b, 1, 40, 40, h, kv, d, "bf16", "fp8", from_cache=True)
    sdpa = lambda q, k, v: F.scaled_dot_product_attention(q, k, v)  # noqa: E731
    assert dec.flops == counted_flops(sdpa, (b, h, 1, d), (b, h, 40, d), (b, h, 40, d))
    assert dec.kv_bytes_read == 2 * b * 40 * kv * d * 1  # K and V at kv heads, fp8
    assert dec.act_bytes_read == b * h * d * 2 and dec.act_bytes_written == b * h * d * 2
    # prefill, causal: the useful half. FlopCounterMode ignores is_causal and counts s*s pairs.
    s = 32
    pre = f.flash_attention(b, s, s, f.causal_pairs(s), h, kv, d, "bf16", "bf16", from_cache=False)
    full = counted_flops(sdpa, (b, h, s, d), (b, h, s, d), (b, h, s, d))
    assert pre.flops == pytest.approx(full * (s + 1) / (2 * s))  # s(s+1)/2 of s*s pairs
    assert pre.kv_bytes_read == 0 and pre.act_bytes_read == (b * s * h * d + 2 * b * s * kv * d) * 2


def case_qk_matmul():
    b, h, kv, d, s = 2, 4, 4, 8, 12
    c = f.qk_matmul(b, s, s, h, kv, d, "bf16", "bf16", from_cache=False)
    assert c.flops == counted_flops(lambda q, k: q @ k.transpose(-1, -2), (b, h, s, d), (b, h, s, d))
    assert c.act_bytes_written == b * h * s * s * 2  # the full score matrix is materialised


def case_sv_matmul():
    b, h, kv, d, L = 2, 4, 2, 8, 20
    c = f.sv_matmul(b, 1, L, h, kv, d, "bf16", "int8", from_cache=True)
    assert c.flops == counted_flops(lambda p, v: p @ v, (b, h, 1, L), (b, h, L, d))
    assert c.kv_bytes_read == b * L * kv * d * 1  # V only, int8


def case_softmax():
    c = f.softmax(2, 3, 5, 4, "bf16")
    assert c.flops == 5 * 2 * 4 * 3 * 5  # 5 FLOP x 120 scores = 600
    assert c.act_bytes_read == c.act_bytes_written == 120 * 2


def case_experts():
    tokens, h, inter, E, k = 3, 16, 40, 8, 2
    c = f.experts(tokens, h, inter, E, k, "bf16", "bf16")
    rows = tokens * k
    matmuls = counted_flops(
        lambda x, w1, w3, w2: (F.linear(x, w1), F.linear(x, w3), F.linear(torch.empty(rows, inter, device="meta"), w2)),
        (rows, h),
        (inter, h),
        (inter, h),
        (h, inter),
    )
    # + silu*up (5 FLOP x 6*40 elements = 1200) + combine multiply-add (2 x 6 rows x 16 = 192)
    assert c.flops == matmuls + 5 * rows * inter + 2 * rows * h
    touched = E * (1 - (1 - k / E) ** tokens)  # expected distinct experts: 8 * (1 - 0.75^3) = 4.625
    assert c.weight_bytes_read == pytest.approx(touched * 3 * h * inter * 2)
    one = f.experts(1, h, inter, E, k, "bf16", "bf16")
    assert one.weight_bytes_read == pytest.approx(2 * 3 * h * inter * 2)  # one token touches exactly k experts
    many = f.experts(100_000, h, inter, E, k, "bf16", "bf16")
    assert many.weight_bytes_read == pytest.approx(E * 3 * h * inter * 2)  # every expert


def case_embedding():
    c = f.embedding(5, 100, 8, "bf16", "bf16")
    assert c.flops == 0
    assert c.weight_bytes_read == 5 * 8 * 2 and c.act_bytes_written == 5 * 8 * 2
    assert f.embedding(500, 100, 8, "bf16", "bf16").weight_bytes_read == 100 * 8 * 2  # never more than the table


def case_pos_embedding():
    c = f.pos_embedding(12, 6, 8, "bf16", "bf16")  # batch 2 x 6 positions
    assert c.flops == 12 * 8  # one add per element = 96
    assert c.weight_bytes_read == 6 * 8 * 2  # positions shared across the batch


def case_norm():
    rms = f.norm(4, 6, "rmsnorm", "bf16", "bf16")
    assert rms.flops == 4 * 6 * 4  # 4 FLOP x 24 elements = 96
    assert rms.weight_bytes_read == 6 * 2
    ln = f.norm(4, 6, "layernorm", "bf16", "bf16")
    assert ln.flops == 7 * 4 * 6  # 168
    assert ln.weight_bytes_read == 2 * 6 * 2  # gamma and beta


def case_elementwise():
    c = f.elementwise(10, 2, 5, "fp16")
    assert c.flops == 50 and c.act_bytes_read == 40 and c.act_bytes_written == 20


def case_rope():
    c = f.rope(4, 4, 8, 2, 16, "bf16")
    assert c.flops == 3 * 4 * (8 + 2) * 16  # 1920
    assert c.act_bytes_read == 4 * 10 * 16 * 2 + 2 * 4 * 16 * 2  # q,k + cos,sin tables


def case_kv_cache_write():
    c = f.kv_cache_write(3, 2, 8, "bf16", "int4")
    n = 2 * 3 * 2 * 8  # 96 values of k and v
    assert c.act_bytes_read == n * 2
    assert c.kv_bytes_written == n * 0.5 + n / 8 * 2  # int4 + one fp16 scale per head vector (group = head_dim)


# --- multi-head latent attention (DeepSeek): the absorbed matmuls written out on meta tensors


def case_per_head_linear():
    t, H, i, o = 5, 4, 8, 12  # q_nope [t, H, 8] @ W_UK [H, 8, 12] per head
    c = f.per_head_linear(t, H, i, o, "bf16", "bf16")
    assert c.flops == counted_flops(lambda x, w: torch.einsum("thi,hio->tho", x, w), (t, H, i), (H, i, o))
    assert c.weight_bytes_read == H * i * o * 2 and c.act_bytes_written == t * H * o * 2


def case_mla_attention():
    b, H, r, p, L = 2, 4, 16, 8, 30  # decode: one query against 30 cached latents of r + p values
    c = f.mla_attention(b, 1, L, L, H, r, p, "bf16", "fp8", from_cache=True)

    def absorbed(q, latent):
        scores = q @ latent.transpose(-1, -2)  # [b, H, 1, r+p] @ [b, 1, r+p, L]
        return scores @ latent[..., :r]  # [b, H, 1, L] @ [b, 1, L, r]

    assert c.flops == counted_flops(absorbed, (b, H, 1, r + p), (b, 1, L, r + p))
    assert c.kv_bytes_read == b * L * (r + p) * 1  # the latent once for all heads, fp8
    assert c.act_bytes_written == b * H * r * 2


def case_latent_cache_write():
    c = f.latent_cache_write(3, 576, "bf16", "bf16")
    assert c.kv_bytes_written == 3 * 576 * 2  # one 576-value latent per token (DeepSeek-V3: 512 + 64)


def case_flash_attention_with_a_value_head_size():
    # decompressed MLA: q/k of 24 values, v of 16; sdpa accepts a different value size
    b, H, s, dq, dv = 1, 2, 10, 24, 16
    c = f.flash_attention(b, s, s, s * s, H, H, dq, "bf16", "bf16", from_cache=False, v_head_dim=dv)
    sdpa = lambda q, k, v: F.scaled_dot_product_attention(q, k, v)  # noqa: E731
    assert c.flops == counted_flops(sdpa, (b, H, s, dq), (b, H, s, dq), (b, H, s, dv))
    assert (
        c.act_bytes_read == (b * s * H * dq + b * s * H * (dq + dv)) * 2 and c.act_bytes_written == b * s * H * dv * 2
    )


def case_experts_with_biases():
    c = f.experts(1, 16, 40, 8, 2, "bf16", "bf16", bias=True)
    assert c.weight_bytes_read == pytest.approx(
        2 * (3 * 16 * 40 + 2 * 40 + 16) * 2
    )  # 2 experts, biases of gate/up/down


def case_all_reduce():
    c = f.all_reduce(1000, 4, "bf16")
    assert c.comm_bytes == 2 * 3 / 4 * 2000  # ring: 2(N-1)/N of the 2000-byte message = 3000
    assert c.flops == 750


def case_all_gather():
    c = f.all_gather(1000, 4, "bf16")
    assert c.comm_bytes == 3 / 4 * 2000 and c.act_bytes_written == 2000


def case_p2p_send():
    c = f.p2p_send(1000, "bf16")
    assert c.comm_bytes == 2000  # the whole 2000-byte message crosses the link once
    assert c.act_bytes_read == c.act_bytes_written == 2000 and c.flops == 0


def case_all_to_all():
    c = f.all_to_all(1000, 4, "bf16")
    assert c.comm_bytes == 3 / 4 * 2000  # a quarter of the 2000-byte message stays on the GPU
    assert c.act_bytes_read == c.act_bytes_written == 2000


CASES = {name[len("case_") :]: fn for name, fn in dict(globals()).items() if name.startswith("case_")}
EXTRA_CASES = {"flash_attention_with_a_value_head_size", "experts_with_biases"}  # second cases of a formula


def test_every_formula_tested():
    assert set(FORMULAS) == set(CASES) - EXTRA_CASES


@pytest.mark.parametrize("kind", sorted(FORMULAS) + sorted(EXTRA_CASES))
def test_formula(kind):
    CASES[kind]()


def test_causal_pairs_with_window():
    assert f.causal_pairs(5) == 15  # 1+2+3+4+5
    assert f.causal_pairs(5, window=3) == 12  # 1+2+3+3+3
    assert f.causal_pairs(3, window=3) == 6


def test_registry_refuses_duplicates():
    with pytest.raises(ValueError, match="registered twice"):
        f.formula("linear")(lambda: None)


def test_cost_arithmetic():
    a = f.Cost(flops=1, weight_bytes_read=2, act_bytes_read=3, act_bytes_written=4, kv_bytes_read=5, kv_bytes_written=6)
    assert (a + a).flops == 2 and a.scaled(3).kv_bytes_written == 18
    assert a.bytes_read == 10 and a.bytes_written == 10
