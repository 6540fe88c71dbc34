"""The 8-bit reference paths and one advice case on a real CUDA GPU (plumbing and numerics at small
sizes; the figures are reports/validate-h200/). Skipped without a CUDA GPU."""

from dataclasses import replace

import pytest
import torch

from roofline.config import parse_model, parse_workload
from roofline.measure.reference import QuantWeight, build_reference

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

TINY = dict(
    model_type="llama",
    hidden_size=256,
    intermediate_size=512,
    num_hidden_layers=2,
    num_attention_heads=8,
    num_key_value_heads=2,
    vocab_size=1000,
)


@pytest.mark.parametrize("impl, tolerance", [("fp8_scaled_mm", 0.1), ("int8_int_mm", 0.05), ("int8_dequant", 0.04)])
@pytest.mark.parametrize("rows", [1, 64])  # a decode GEMV (int_mm pads it to 17 rows) and a prefill GEMM
def test_8_bit_matmuls_on_the_gpu(impl, tolerance, rows):
    gen = torch.Generator(device="cuda").manual_seed(0)
    w = torch.randn(512, 256, device="cuda", generator=gen).bfloat16() * 256**-0.5
    bias = torch.randn(512, device="cuda", generator=gen).bfloat16() * 0.02
    x = torch.randn(rows, 256, device="cuda", generator=gen).bfloat16()
    y = QuantWeight(w, impl)(x, bias)
    exact = x.float() @ w.float().t() + bias.float()
    assert y.dtype == torch.bfloat16 and y.shape == (rows, 512)
    assert float((y.float() - exact).norm() / exact.norm()) < tolerance  # e4m3: ~5%, int8: ~1-2%


@pytest.mark.parametrize(
    "changes",
    [{"weight_dtype": "fp8", "act_dtype": "fp8"}, {"weight_dtype": "int8", "act_dtype": "int8"}, {"kv_dtype": "fp8"}],
)
def test_8_bit_reference_runs_and_graph_captures_on_the_gpu(changes):
    from roofline.measure.profile import graph_time

    m = parse_model(TINY)
    w = parse_workload(dict(batch_size=2, prompt_len=32, context_len=48, **changes))
    bf16 = build_reference(m, replace(w, weight_dtype="bf16", act_dtype="bf16", kv_dtype="bf16"), seed=3)
    quant = build_reference(m, w, seed=3)
    with torch.no_grad():
        for phase in ("prefill", "decode"):
            a = bf16.make_step(phase, 32, 48)().float()
            b = quant.make_step(phase, 32, 48)().float()
            assert float((a - b).norm() / a.norm()) < 0.1, phase
        quant.annotate = False
        assert graph_time(quant.make_step("decode", 32, 48), 3) > 0  # the 8-bit step is graph-capturable


def test_one_advice_case_on_the_gpu():
    from roofline.validation import ADVICE_COLUMNS, QUICK_MATRIX, score_advice

    cases = [("gqa-decode-b1-c128", {"cuda_graph": True}, False, ("weights fp8", "CUDA graphs"))]
    advice, notes = score_advice("h200", cases, matrix=QUICK_MATRIX, layers=1)
    assert notes == [] and list(advice.columns) == ADVICE_COLUMNS
    fp8 = advice[advice["change"] == "weights fp8"]
    assert len(fp8) == 1 and fp8["achieved_speedup"].iloc[0] > 0 and fp8["measured_new_s"].iloc[0] > 0
