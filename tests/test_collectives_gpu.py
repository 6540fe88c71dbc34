"""The four collectives on the GPUs of this host through NCCL: checked, captured in CUDA graphs, bus
factors of the host's world size, NVLink multicast off. Skipped, with the reason shown, without 2 CUDA GPUs."""

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs"),
]


def test_four_collectives_on_every_gpu_of_the_host():
    from roofline.measure.collectives import OPS, calibrate_collectives
    from roofline.predict import COLLECTIVE_BUSBW_FACTOR

    n = torch.cuda.device_count()
    f = calibrate_collectives(sizes=[4096, 16 * 2**20], warmup=2, iters=5, repeats=3)
    assert list(dict.fromkeys(f["op"])) == list(OPS) and (f["world"] == n).all()
    assert f.attrs["notes"] == []  # every collective captured in a CUDA graph (else its eager time, noted)
    for op, g in f.groupby("op"):
        assert (g["busbw_bytes_per_s"] / g["algbw_bytes_per_s"]).tolist() == pytest.approx(
            [COLLECTIVE_BUSBW_FACTOR[op](n)] * 2
        )
        assert g["busbw_bytes_per_s"].iloc[1] > g["busbw_bytes_per_s"].iloc[0]  # latency dominates 4 KiB
    device = f.attrs["device"]
    assert device["backend"] == "nccl" and device["nccl"]
    assert device["env"]["NCCL_NVLS_ENABLE"] == "0" and device["env"]["NVSHMEM_DISABLE_NVLS"] == "1"
