"""formulas.ATEN_COSTS, the trace's cost of each aten op, against independent references:
FlopCounterMode on meta tensors for matmul-type ops and attention, a hand count beside the
assertion for element-wise ops, reductions and data movement. A registered op without a case fails."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count

from roofline import formulas as f
from roofline.formulas import ATEN_COSTS, AtenCall, AtenShapeError, aten_causal_known

BF, FP32, I64 = "c10::BFloat16", "float", "long int"


def T(*shape, t=BF):  # a tensor argument
    return list(shape), t, ""


def S(value, t="Scalar"):  # a scalar argument, as 'Concrete Inputs' records it
    return [], t, str(value)


NONE = ([], "", "")


def call(*args) -> AtenCall:
    dims, types, concrete = zip(*args)
    return AtenCall(list(dims), list(types), list(concrete))


def cost(name, *args) -> f.Cost:
    return ATEN_COSTS[name](call(*args))


def total_bytes(c):
    return c.bytes_read + c.bytes_written


def counted(fn, *shapes, dtype=torch.bfloat16):
    tensors = [torch.empty(*s, device="meta", dtype=dtype) for s in shapes]
    with FlopCounterMode(display=False) as counter:
        fn(*tensors)
    return counter.get_total_flops()


CASES = {}


def case(*names):
    def register(fn):
        for n in names:
            CASES[n] = fn
        return fn

    return register


# --- matmul-type


@case("aten::mm")
def case_mm():
    c = cost("aten::mm", T(64, 128), T(128, 256))
    assert c.flops == counted(torch.mm, (64, 128), (128, 256))  # 2 * 64 * 128 * 256
    assert total_bytes(c) == 2 * (64 * 128 + 128 * 256 + 64 * 256)


@case("aten::addmm")
def case_addmm():
    c = cost("aten::addmm", T(256), T(64, 128), T(128, 256), S(1), S(1))
    assert c.flops == counted(torch.addmm, (256,), (64, 128), (128, 256))
    assert total_bytes(c) == 2 * (256 + 64 * 128 + 128 * 256 + 64 * 256)


@case("aten::bmm")
def case_bmm():
    c = cost("aten::bmm", T(4, 8, 16), T(4, 16, 32))
    assert c.flops == counted(torch.bmm, (4, 8, 16), (4, 16, 32))  # 2 * 4 * 8 * 16 * 32 = 32768
    assert total_bytes(c) == 2 * (512 + 2048 + 1024)  # each batch has its own right operand


@case("aten::baddbmm")
def case_baddbmm():
    c = cost("aten::baddbmm", T(4, 8, 32), T(4, 8, 16), T(4, 16, 32), S(1), S(1))
    assert c.flops == counted(torch.baddbmm, (4, 8, 32), (4, 8, 16), (4, 16, 32))
    assert total_bytes(c) == 2 * (1024 + 512 + 2048 + 1024)


@case("aten::linear")
def case_linear():
    c = cost("aten::linear", T(2, 3, 32), T(48, 32), T(48))
    assert c.flops == counted(F.linear, (2, 3, 32), (48, 32), (48,))
    assert c.weight_bytes_read == 2 * (48 * 32 + 48)  # W and bias
    assert c.act_bytes_read == 2 * 6 * 32 and c.act_bytes_written == 2 * 6 * 48
    assert cost("aten::linear", T(6, 32), T(48, 32), NONE).flops == counted(F.linear, (6, 32), (48, 32))


@case("aten::matmul")
def case_matmul():
    c = cost("aten::matmul", T(2, 3, 32), T(32, 48))  # folds to a linear
    assert c.flops == counted(torch.matmul, (2, 3, 32), (32, 48))
    b = cost("aten::matmul", T(2, 1, 5, 8), T(3, 8, 7))  # batch dims broadcast to [2, 3]
    assert b.flops == counted(torch.matmul, (2, 1, 5, 8), (3, 8, 7))  # 2 * 6 * 5 * 8 * 7 = 3360
    assert b.act_bytes_written == 2 * 6 * 5 * 7
    v = cost("aten::matmul", T(5, 8), T(8))  # matrix @ vector
    assert v.flops == 2 * 5 * 8  # FlopCounterMode has no mv formula (counts 0): hand count, 80


@case("aten::_grouped_mm")
def case_grouped_mm():
    # 12 tokens split over 3 experts, k 16 -> n 8: the same FLOPs as one [12, 16] @ [16, 8]
    c = cost("aten::_grouped_mm", T(12, 16), T(3, 16, 8), T(3, t="int"))
    assert c.flops == counted(torch.mm, (12, 16), (16, 8))  # 2 * 12 * 16 * 8 = 3072
    assert c.weight_bytes_read == 2 * 3 * 16 * 8 and c.act_bytes_written == 2 * 12 * 8
    b = cost("aten::_grouped_mm", T(3, 4, 16), T(3, 16, 8))  # 3-d x 3-d: a bmm
    assert b.flops == counted(torch.bmm, (3, 4, 16), (3, 16, 8))


# --- attention

SDPA_FWD = [n for n in f.ATEN_CAUSAL_INDEX if not n.endswith("_backward")]
SDPA_BWD = [n for n in f.ATEN_CAUSAL_INDEX if n.endswith("_backward")]


def _sdpa_args(name, q, k, v, causal):
    """The op's arguments with is_causal at its schema position."""
    index = f.ATEN_CAUSAL_INDEX[name]
    first = [T(*q), T(*k), T(*v)] if name in SDPA_FWD else [T(*q), T(*q), T(*k), T(*v), T(*q), T(*q[:-1], t=FP32)]
    args = first + [NONE] * (index + 1 - len(first))
    if causal is not None:
        args[index] = S(causal)
    return args


@case(*SDPA_FWD)
def case_sdpa():
    q, kv = (2, 8, 16, 32), (2, 2, 16, 32)  # GQA: 8 query heads, 2 KV heads
    full = counted(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, enable_gqa=True), q, kv, kv)
    for name in SDPA_FWD:
        c = ATEN_COSTS[name](call(*_sdpa_args(name, q, kv, kv, False)))
        assert c.flops == full, name
        assert total_bytes(c) == 2 * (2 * 8 * 16 * 32 * 2 + 2 * 2 * 2 * 16 * 32), name  # q, o; k, v at KV heads
        causal = ATEN_COSTS[name](call(*_sdpa_args(name, q, kv, kv, True)))
        # FlopCounterMode ignores is_causal: the mask keeps 1 + 2 + ... + 16 = 136 of 256 scores
        assert causal.flops == full * 136 / 256, name
        unknown = call(*_sdpa_args(name, q, kv, kv, None))
        assert ATEN_COSTS[name](unknown).flops == full and not aten_causal_known(name, unknown)
    # flash_attention (the analytic formula) agrees where d_v == d
    fa = f.flash_attention(2, 16, 16, f.causal_pairs(16), 8, 2, 32, "bf16", "bf16", from_cache=False)
    assert (
        fa.flops
        == ATEN_COSTS["aten::scaled_dot_product_attention"](
            call(*_sdpa_args("aten::scaled_dot_product_attention", q, kv, kv, True))
        ).flops
    )


@case(*SDPA_BWD)
def case_sdpa_backward():
    q, kv = (2, 4, 8, 16), (2, 4, 12, 16)
    ref = sdpa_backward_flop_count(q, q, kv, kv)  # torch's own backward count (grad_out, q, k, v)
    for name in SDPA_BWD:
        c = ATEN_COSTS[name](call(*_sdpa_args(name, q, kv, kv, False)))
        assert c.flops == ref, name
        # written: grad q, k, v = 2 B * (1024 + 1536 + 1536)
        assert c.act_bytes_written == 2 * (2 * 4 * 8 * 16 + 2 * 2 * 4 * 12 * 16), name


# --- element-wise: n inputs broadcast to the output; hand counts


@case(*[n for n, v in f.ATEN_ELEMENTWISE_FLOPS.items()])
def case_pointwise():
    for name, per in f.ATEN_ELEMENTWISE_FLOPS.items():
        c = cost(name, T(4, 6), T(6), S(1))  # [4, 6] and a broadcast [6]: 24 outputs
        assert c.flops == per * 24, name
        assert c.act_bytes_read == 2 * (24 + 6) and c.act_bytes_written == 2 * 24, name
    assert cost("aten::mul", T(1, 1, 32, 128), T(1, 1, 128)).flops == 4096  # 32 * 128 outputs, 1 FLOP each
    assert cost("aten::silu", T(3, 10)).flops == 4 * 30  # negate, exp, add, divide
    assert cost("aten::where", T(5, 1, t="bool"), T(5, 4), T(4)).act_bytes_read == 5 + 2 * 20 + 2 * 4
    with pytest.raises(AtenShapeError):
        cost("aten::add", T(3, 4), T(5, 4))  # do not broadcast


@case("aten::copy_")
def case_copy_():
    c = cost("aten::copy_", T(8, 16), T(8, 16, t=FP32), S(False))  # fp32 -> bf16 cast
    assert (c.flops, c.act_bytes_read, c.act_bytes_written) == (0, 4 * 128, 2 * 128)


@case("aten::clone", "aten::contiguous")
def case_clone():
    for name in ("aten::clone", "aten::contiguous"):
        c = cost(name, T(8, 16), NONE)
        assert (c.flops, c.act_bytes_read, c.act_bytes_written) == (0, 256, 256)


@case("aten::fill_", "aten::zero_")
def case_fill():
    assert total_bytes(cost("aten::fill_", T(5, 128, t=FP32), S(0))) == 4 * 640  # written once, nothing read
    assert total_bytes(cost("aten::zero_", T(5, 128, t=FP32))) == 4 * 640


@case("aten::cat", "aten::stack")
def case_cat():
    with pytest.raises(AtenShapeError, match="element type is not recorded"):
        cost("aten::cat", ([[1, 32, 64], [1, 32, 64]], "TensorList", ""), S(-1))
    out = ([2, 2, 32, 64], BF, "")  # cat.out names the type
    c = cost("aten::cat", ([[1, 32, 64], [1, 32, 64]], "TensorList", ""), S(0), out)
    assert (c.act_bytes_read, c.act_bytes_written) == (2 * 4096, 2 * 4096)


# --- reductions, softmax, norms


@case("aten::sum", "aten::amax", "aten::amin")
def case_sum():
    c = cost("aten::sum", T(5, 128, t=FP32), S("[0]", "ScalarList"), S(True), NONE)
    assert c.flops == 640 and c.act_bytes_read == 4 * 640 and c.act_bytes_written == 4 * 128  # over dim 0
    for name in ("aten::amax", "aten::amin"):
        assert cost(name, T(4, 6), S("[-1]", "ScalarList"), S(False)).act_bytes_written == 2 * 4


@case("aten::mean")
def case_mean():
    c = cost("aten::mean", T(2, 3, 8), S("[-1]", "ScalarList"), S(True), NONE)
    assert c.flops == 48 + 6  # 48 adds, 6 divides
    assert c.act_bytes_written == 2 * 6
    assert cost("aten::mean", T(5, 128, t=FP32), S("[]", "ScalarList"), S(False)).act_bytes_written == 4  # all dims


@case("aten::argmax", "aten::argmin")
def case_argmax():
    c = cost("aten::argmax", T(4, 1000), S(-1), S(False))
    assert c.flops == 4000 and c.act_bytes_read == 8000 and c.act_bytes_written == 4 * 8  # int64 indices
    assert cost("aten::argmin", T(4, 1000), NONE, S(False)).act_bytes_written == 8  # dim None: one index


@case("aten::topk")
def case_topk():
    c = cost("aten::topk", T(4, 64), S(8), S(-1), S(True), S(True))
    assert c.flops == 256 and c.act_bytes_read == 512
    assert c.act_bytes_written == 4 * 8 * (2 + 8)  # values bf16 + int64 indices


@case("aten::softmax", "aten::_softmax", "aten::log_softmax", "aten::_log_softmax")
def case_softmax():
    for name in ("aten::softmax", "aten::_softmax", "aten::log_softmax", "aten::_log_softmax"):
        c = cost(name, T(2, 4, 8), S(-1), NONE)
        assert c.flops == 5 * 64 and c.act_bytes_read == c.act_bytes_written == 128, name  # as formulas.softmax


@case("aten::rms_norm", "aten::_fused_rms_norm", "aten::layer_norm", "aten::native_layer_norm")
def case_norms():
    for name in ("aten::rms_norm", "aten::_fused_rms_norm"):
        c = cost(name, T(1, 3, 16), S("[16]", "ScalarList"), T(16), S(1e-5))
        assert c.flops == 4 * 48 and c.weight_bytes_read == 32 and c.act_bytes_read == c.act_bytes_written == 96
        assert c == f.norm(3, 16, "rmsnorm", "bf16", "bf16"), name
    for name in ("aten::layer_norm", "aten::native_layer_norm"):
        c = cost(name, T(3, 16), S("[16]", "ScalarList"), T(16), T(16), S(1e-5))
        assert c.flops == 7 * 48 and c.weight_bytes_read == 2 * 32, name  # gamma and beta


# --- gathers


@case("aten::embedding")
def case_embedding():
    c = cost("aten::embedding", T(32000, 64), T(1, 5, t=I64), S(-1), S(False), S(False))
    assert c.weight_bytes_read == 5 * 64 * 2 and c.act_bytes_written == 5 * 64 * 2
    assert c.act_bytes_read == 5 * 8 and c.flops == 0  # the int64 ids


@case("aten::index_select")
def case_index_select():
    c = cost("aten::index_select", T(100, 64), S(0), T(5, t=I64))
    assert (c.act_bytes_read, c.act_bytes_written) == (5 * 64 * 2 + 5 * 8, 5 * 64 * 2)


@case("aten::gather")
def case_gather():
    c = cost("aten::gather", T(8, 100), S(1), T(8, 3, t=I64), S(False))
    assert (c.act_bytes_read, c.act_bytes_written) == (24 * 2 + 24 * 8, 24 * 2)


def test_every_aten_cost_tested():
    assert set(ATEN_COSTS) == set(CASES)


@pytest.mark.parametrize("name", sorted(ATEN_COSTS))
def test_aten_cost(name):
    CASES[name]()


def test_shapes_that_do_not_fit_raise():
    with pytest.raises(AtenShapeError):
        cost("aten::mm", T(4, 5), T(6, 7))  # inner sizes differ
    with pytest.raises(AtenShapeError):
        cost("aten::mm", ([4, True], BF, ""), T(1, 7))  # a boolean is not a size
    with pytest.raises(AtenShapeError):
        cost("aten::mm", S(3), T(1, 7))  # not a tensor
    with pytest.raises(ValueError, match="registered twice"):
        f.aten_cost("aten::mm")(lambda c: None)
