"""The split-K keys that calibrate measures on a real CUDA GPU: the kernels per call in a GEMM table, and the host
time of one more kernel (measure_split_kernel_host, in a fresh process). Skipped, with the reason shown, where
there is no CUDA GPU. Which shapes cuBLAS splits depends on the GPU and the library, so the counts are checked
for what they must be on any GPU, and the H200's own where it runs."""

import pytest
import torch

from roofline.measure.calibrate import GEMM_SHAPES, measure_gemm_table, measure_split_kernel_host
from roofline.specs import load_spec

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_the_gemm_table_counts_kernels_and_the_host_cost_of_a_split():
    spec = load_spec("h200" if "H200" in torch.cuda.get_device_name() else "h100-sxm")
    t = measure_gemm_table(spec, tokens=(1, 64), shapes=GEMM_SHAPES[2:4], repeats=3)
    kernels = t["kernels"]
    assert len(kernels) == 2 and all(1.0 <= k <= 3.0 for row in kernels for k in row)
    if "H200" in torch.cuda.get_device_name():
        # reports/h200/host-kernels/projection_host.csv: 4096 -> 1024 and 4096 -> 4096 run split-K at one token
        assert kernels[0] == [2.0, 2.0]
    host = measure_split_kernel_host(spec)
    # a second kernel costs the host some microseconds (an H200: about 4), or nothing split on this GPU
    assert host is None or 0.0 <= host < 20.0
