"""The shipped hardware specs: they load, and their key figures match the reference.

Reference: ../shared/reference/gpu_specs.md (dense figures, section 1; sparse, section 2). Peak figures are
dense (no 2:4 sparsity); link figures in ``HardwareSpec`` are per direction (the YAML holds the vendor's
bidirectional total).
"""

import json

import pytest
import yaml
from click.testing import CliRunner

from roofline.cli import main
from roofline.specs import check_spec_file, data_dir, lint_spec, list_specs, load_spec
from roofline.validate import load_mapping

SHIPPED = [
    "a10",
    "a10g",
    "l4",
    "l40s",
    "a100-40gb-sxm",
    "a100-80gb-sxm",
    "a100-80gb-pcie",
    "h100-sxm",
    "h100-pcie",
    "h100-nvl",
    "h200",
    "b200",
    "mi300x",
    "gb200",
    "b300",
    "h20",
    "mi325x",
    "rtx-4090",
    "rtx-5090",
]
NO_GPU_LINK = ["a10", "a10g", "l4", "l40s", "rtx-4090", "rtx-5090"]

T, G = 1e12, 1e9

# name -> {dtype: dense TFLOP/s (TOPS for int)}, from gpu_specs.md section 1
DENSE_TFLOPS = {
    "a10": {"fp32": 31.2, "tf32": 62.5, "bf16": 125, "fp16": 125, "int8": 250, "int4": 500},
    "a10g": {"fp16": 70, "int8": 140},  # unverified (cli99/llm-analysis), but what the spec must carry
    "l4": {"fp32": 30.3, "tf32": 60, "bf16": 121, "fp8": 242, "int8": 242, "int4": 484},
    "l40s": {"fp32": 91.6, "tf32": 183, "bf16": 362.05, "fp8": 733, "int8": 733},
    "a100-40gb-sxm": {"fp64": 9.7, "fp32": 19.5, "tf32": 156, "bf16": 312, "int8": 624, "int4": 1248},
    "a100-80gb-sxm": {"fp64": 9.7, "fp32": 19.5, "tf32": 156, "bf16": 312, "int8": 624, "int4": 1248},
    "a100-80gb-pcie": {"fp64": 9.7, "fp32": 19.5, "tf32": 156, "bf16": 312, "int8": 624, "int4": 1248},
    "h100-sxm": {"fp64": 33.5, "fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9},
    "h100-pcie": {"fp64": 25.6, "fp32": 51.2, "tf32": 378, "bf16": 756, "fp16": 756, "fp8": 1513},
    "h100-nvl": {"fp64": 30, "fp32": 60, "tf32": 417.5, "bf16": 835.5, "fp8": 1670.5},
    "h200": {"fp64": 33.5, "fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp8": 1978.9},
    "b200": {"fp64": 37, "fp32": 75, "tf32": 1100, "bf16": 2250, "fp8": 4500, "int8": 4500},
    "mi300x": {"fp64": 81.7, "fp32": 163.4, "tf32": 653.7, "bf16": 1307.4, "fp16": 1307.4, "fp8": 2614.9},
    # GB200 NVL72 rack figures (with sparsity) / 72 / 2: FP4 1,440 PF, FP8 720, BF16 360, TF32 180
    "gb200": {"tf32": 1250, "bf16": 2500, "fp8": 5000, "int8": 5000, "fp4": 10000},
    # HGX B300: FP4 105 PF dense / 8 GPUs; the other tensor rows as B200's
    "b300": {"fp64": 1.25, "fp32": 75, "tf32": 1125, "bf16": 2250, "fp8": 4500, "fp4": 13125},
    "h20": {"fp32": 44, "tf32": 74, "bf16": 148, "fp8": 296, "int8": 296},  # unverified (no NVIDIA sheet)
    "mi325x": {"fp64": 81.7, "fp32": 163.4, "tf32": 653.7, "bf16": 1307.4, "fp8": 2614.9},  # MI300X's compute
    # Ada whitepaper Appendix A, FP32 accumulate (the FP16-accumulate rates are 2x)
    "rtx-4090": {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2, "fp8": 330.3, "int8": 660.6, "int4": 1321.2},
    "rtx-5090": {"fp32": 104.8, "bf16": 209.5, "fp8": 419, "fp4": 838},  # unverified, FP32 accumulate
}

# name -> (memory GB/s, capacity GB, GPU-link bidirectional GB/s or None, host-link bidirectional GB/s)
MEMORY_AND_LINKS = {
    "a10": (600, 24, None, 64),
    "a10g": (600, 24, None, 64),
    "l4": (300, 24, None, 64),
    "l40s": (864, 48, None, 64),
    "a100-40gb-sxm": (1555, 40, 600, 64),
    "a100-80gb-sxm": (2039, 80, 600, 64),
    "a100-80gb-pcie": (1935, 80, 600, 64),
    "h100-sxm": (3350, 80, 900, 128),
    "h100-pcie": (2000, 80, 600, 128),
    "h100-nvl": (3938, 94, 600, 128),
    "h200": (4800, 141, 900, 128),
    "b200": (7700, 180, 1800, 128),
    "mi300x": (5300, 192, 896, 128),
    "gb200": (8000, 186, 1800, 900),  # host link: NVLink-C2C to Grace
    "b300": (7700, 270, 1800, 256),
    "h20": (4000, 96, 900, 128),
    "mi325x": (6000, 256, 896, 128),
    "rtx-4090": (1008, 24, None, 64),
    "rtx-5090": (1792, 32, None, 128),
}

# dtypes the hardware does not have: they must be absent, not zero
UNSUPPORTED = {
    "a10": {"fp8"},
    "a10g": {"fp8"},
    "a100-40gb-sxm": {"fp8"},
    "a100-80gb-sxm": {"fp8"},
    "a100-80gb-pcie": {"fp8"},
    "h100-sxm": {"int4"},
    "h100-pcie": {"int4"},
    "h100-nvl": {"int4"},
    "h200": {"int4"},
    "b200": {"int4"},
    "mi300x": {"int4"},
    "gb200": {"int4"},
    "b300": {"int4", "int8"},
    "h20": {"int4", "fp4"},
    "mi325x": {"int4", "fp4"},
    "rtx-4090": {"fp4"},
    "rtx-5090": {"int4"},
}
# the fp4 tensor-core peak (nvfp4 / mxfp4 compute) exists on Blackwell only
FP4_PARTS = {"b200", "gb200", "b300", "rtx-5090"}


def raw(name):
    return load_mapping(data_dir("hardware_specs") / f"{name}.yaml", "hardware spec")


def test_list_specs_returns_all_shipped_names():
    assert sorted(list_specs()) == sorted(SHIPPED)
    assert len(list_specs()) == 19


@pytest.mark.parametrize("name", SHIPPED)
def test_spec_loads_and_validates(name):
    spec = load_spec(name)
    assert spec.name == name
    assert raw(name)["name"] == name  # file stem == name:
    assert spec.has_dtype("bf16") and spec.has_dtype("fp16")


@pytest.mark.parametrize("name", SHIPPED)
def test_dense_peaks_match_reference(name):
    spec = load_spec(name)
    for dtype, tflops in DENSE_TFLOPS[name].items():
        assert spec.peak_flops_per_s[dtype] == pytest.approx(tflops * T, rel=1e-9), (name, dtype)


@pytest.mark.parametrize("name", SHIPPED)
def test_memory_and_links_match_reference(name):
    spec = load_spec(name)
    bw, cap, gpu_link, host_link = MEMORY_AND_LINKS[name]
    assert spec.mem_bytes_per_s == pytest.approx(bw * G)
    assert spec.mem_capacity_bytes == pytest.approx(cap * G)
    assert spec.host_link_bytes_per_s == pytest.approx(host_link * G / 2)  # per direction
    if gpu_link is None:
        assert spec.gpu_link_bytes_per_s is None
    else:
        assert spec.gpu_link_bytes_per_s == pytest.approx(gpu_link * G / 2)  # per direction


@pytest.mark.parametrize("name,dtypes", sorted(UNSUPPORTED.items()))
def test_unsupported_dtypes_are_absent(name, dtypes):
    spec = load_spec(name)
    for dtype in dtypes:
        assert not spec.has_dtype(dtype), (name, dtype)


def test_key_values_and_ridge_points():
    h100 = load_spec("h100-sxm")
    assert h100.peak_flops_per_s["bf16"] == pytest.approx(989.4e12)
    assert h100.mem_bytes_per_s == pytest.approx(3.35e12)  # final, not the preliminary 3.0 TB/s
    assert h100.ridge("bf16") == pytest.approx(295.3, abs=0.1)
    assert load_spec("h100-pcie").ridge("bf16") == pytest.approx(378.0)
    assert load_spec("a10").ridge("bf16") == pytest.approx(208.33, abs=0.01)
    assert load_spec("h200").mem_bytes_per_s == pytest.approx(4.8e12)
    assert load_spec("a100-80gb-sxm").mem_bytes_per_s == pytest.approx(2039e9)
    assert load_spec("mi300x").peak_flops_per_s["bf16"] == pytest.approx(1307.4e12)
    # H200 has H100 SXM compute with more, faster memory
    assert load_spec("h200").peak_flops_per_s == h100.peak_flops_per_s


def test_measured_launch_overheads_on_hopper():
    for name in ("h100-sxm", "h200"):
        spec = load_spec(name)
        assert spec.launch_overhead_s == pytest.approx(9.2e-6)
        assert spec.graph_launch_overhead_s == pytest.approx(0.79e-6)
    assert "unverified on H200" in load_spec("h200").sources["launch_overhead_us"]


@pytest.mark.parametrize("name", SHIPPED)
def test_collective_latency_by_link(name):
    spec = load_spec(name)
    expected = 25e-6 if spec.gpu_link_bytes_per_s is None else 10e-6
    assert spec.collective_latency_s == pytest.approx(expected)


def test_parts_without_gpu_link():
    for name in NO_GPU_LINK:
        spec = load_spec(name)
        assert spec.gpu_link_bytes_per_s is None
        assert spec.gpu_link_name is None
        # GPU-to-GPU traffic falls back to the host link
        assert spec.ceiling_link_bytes_per_s() == spec.host_link_bytes_per_s
    for name in set(SHIPPED) - set(NO_GPU_LINK):
        assert load_spec(name).gpu_link_bytes_per_s is not None, name


def test_link_figures_are_per_direction():
    assert load_spec("h100-sxm").gpu_link_bytes_per_s == 450e9
    assert load_spec("h100-sxm").host_link_bytes_per_s == 64e9
    assert load_spec("b200").gpu_link_bytes_per_s == 900e9
    assert load_spec("mi300x").gpu_link_bytes_per_s == 448e9
    assert load_spec("a10").host_link_bytes_per_s == 32e9


@pytest.mark.parametrize("name", SHIPPED)
def test_peaks_are_dense_not_sparse(name):
    """No dense peak may equal the printed sparse figure; printed sparse is 2x dense (within vendor rounding)."""
    spec = load_spec(name)
    sparse = raw(name).get("sparse_tflops") or {}
    if name not in ("a10g", "h20"):  # NVIDIA/AWS print no A10G or H20 figures at all
        assert "bf16" in sparse, f"{name}: the vendor prints a sparse bf16 figure; ship it"
    for dtype, sparse_tflops in sparse.items():
        dense = spec.peak_flops_per_s[dtype] / T
        assert dense != sparse_tflops, (name, dtype)
        if (name, dtype) == ("b300", "fp4"):  # NVIDIA prints B300's FP4 sparse and dense: 144 | 105 PF per 8 GPUs
            assert sparse_tflops / dense == pytest.approx(144 / 105)
            continue
        # L4 rounds 484.6 -> 485; L40S prints 362.05 | 733 (2.025x), a known inconsistency on NVIDIA's page
        assert sparse_tflops / dense == pytest.approx(2.0, rel=0.025), (name, dtype)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_number_has_a_source(name):
    sources = raw(name)["sources"]
    for key in (
        "peak_tflops",
        "mem_bandwidth_gb_per_s",
        "mem_capacity_gb",
        "l2_cache_mb",
        "gpu_link",
        "host_link",
        "launch_overhead_us",
        "graph_launch_overhead_us",
        "collective_latency_us",
    ):
        assert sources.get(key), (name, key)
    if raw(name).get("sparse_tflops"):
        assert sources.get("sparse_tflops"), name


@pytest.mark.parametrize(
    "name", ["a10", "a10g", "l40s", "h100-nvl", "h200", "b200", "gb200", "b300", "h20", "mi325x", "rtx-5090"]
)
def test_unpublished_l2_sizes_are_marked_unverified(name):
    assert "unverified" in raw(name)["sources"]["l2_cache_mb"].lower()


def test_a10g_compute_is_marked_unverified():
    assert raw("a10g")["sources"]["peak_tflops"].startswith("Unverified")


@pytest.mark.parametrize("name", SHIPPED)
def test_fp4_peak_only_where_the_part_has_fp4_tensor_cores(name):
    spec = load_spec(name)
    assert spec.has_dtype("fp4") == (name in FP4_PARTS), name
    if spec.has_dtype("fp4"):  # fp4 is 2x the fp8 rate (B200, GB200, RTX 5090), 13,125 / 4,500 = 2.92x on B300
        ratio = spec.peak_flops_per_s["fp4"] / spec.peak_flops_per_s["fp8"]
        assert ratio == pytest.approx(13125 / 4500 if name == "b300" else 2.0)


def test_gb200_and_hgx_b200_per_gpu_peaks_differ():
    gb200, b200 = load_spec("gb200"), load_spec("b200")
    assert (gb200.peak_flops_per_s["bf16"], b200.peak_flops_per_s["bf16"]) == (2500 * T, 2250 * T)
    assert (gb200.mem_bytes_per_s, b200.mem_bytes_per_s) == (8000 * G, 7700 * G)
    assert "use the gb200 spec" in raw("b200")["notes"] and "Trap: GB200 and HGX B200" in raw("gb200")["notes"]


# ----------------------------------------------------------------------------------------------
# the lint: roofline specs check


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_spec_passes_the_lint(name):
    assert check_spec_file(name) == []


@pytest.mark.parametrize("name", SHIPPED)
def test_sources_are_readable_by_a_user(name):
    """Every [TAG] a source cites is a datasheet name and URL (or a measurement) inside the file."""
    spec = load_spec(name)
    assert spec.references, name
    for tag, text in spec.references.items():
        assert "https://" in text or text.startswith("Measured"), (name, tag)
    assert "gpu_specs.md" not in (data_dir("hardware_specs") / f"{name}.yaml").read_text()


def h100_pcie(**changes):
    spec = raw("h100-pcie")
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = spec
        for p in parents:
            node = node[p]
        node[leaf] = value
    return spec


@pytest.mark.parametrize(
    "changes, finding",
    [
        # the H100 PCIe trap: 1,513 is the FP16/BF16 figure with sparsity (and the dense FP8 one)
        (
            {"sparse_tflops": None, "peak_tflops.bf16": 1513},
            "peak_tflops.bf16 1513 is a figure vendors print with 2:4 sparsity; check the datasheet's footnote",
        ),
        ({"peak_tflops.tf32": 756}, "peak_tflops.tf32 756 equals sparse_tflops.tf32: a dense peak is half the printed"),
        ({"peak_tflops.fp8": 756}, "peak_tflops.fp8 / peak_tflops.bf16 = 1.00, expected about 2"),
        ({"mem_bandwidth_gb_per_s": 2}, "mem_bandwidth_gb_per_s 2 looks like TB/s; the key is in GB/s (2000)"),
        ({"mem_bandwidth_gb_per_s": 200}, "bf16 ridge 3780 FLOP/byte is outside 30-700"),
        ({"mem_bandwidth_gb_per_s": "2 TB/s"}, "mem_bandwidth_gb_per_s '2 TB/s' is text; write the number in GB/s"),
        ({"mem_bandwidth": 2000}, "unknown key 'mem_bandwidth' (did you mean 'mem_bandwidth_gb_per_s'?)"),
        ({"sources.l2_cache_mb": ""}, "sources.l2_cache_mb is missing; cite where the l2_cache_mb figure comes from"),
        (
            {"sources.host_link": "See gpu_specs.md section 1"},
            "sources.host_link points to a file outside the package (gpu_specs.md); cite the datasheet by name and URL",
        ),
        ({"sources.host_link": "PCIe Gen5 x16 [S99]"}, "sources.host_link cites [S99] but references has no S99"),
        # an unquoted '#' in YAML starts a comment and eats the URL: the reference is left without one
        (
            {"references.S5": "NVIDIA H100 datasheet, issue"},
            "references.S5 has no URL; give the datasheet's name and URL",
        ),
    ],
)
def test_lint_catches(changes, finding):
    findings = lint_spec(h100_pcie(**changes), "h100-pcie.yaml")
    assert any(f.startswith("h100-pcie.yaml: ") and finding in f for f in findings), findings


def test_lint_of_a_negative_bandwidth_adds_no_unit_findings():
    # the spec's own check names it ("must be greater than zero"); the lint added "looks like TB/s (-10000)" and
    # "ridge -0 FLOP/byte" after it. A ridge under 10 is shown with its digits: 0.21, not 0
    findings = lint_spec(h100_pcie(**{"mem_bandwidth_gb_per_s": -10}), "h100-pcie.yaml")
    assert not any("looks like TB/s" in f or "ridge" in f for f in findings), findings
    assert any("must be greater than zero" in f for f in findings), findings
    slip = lint_spec(h100_pcie(**{"mem_bandwidth_gb_per_s": 2_000_000}), "h100-pcie.yaml")
    assert any("bf16 ridge 0.38 FLOP/byte is outside 30-700" in f for f in slip), slip


def test_specs_check_cli(tmp_path):
    runner = CliRunner()
    out = runner.invoke(main, ["specs", "check", "h100-pcie", "rtx-4090"])
    assert (out.exit_code, out.output) == (0, "h100-pcie, rtx-4090: no findings\n")
    bad = tmp_path / "my-gpu.yaml"
    bad.write_text(
        yaml.safe_dump(h100_pcie(**{"sparse_tflops": None, "peak_tflops.bf16": 1513, "mem_bandwidth_gb_per_s": 2}))
    )
    out = runner.invoke(main, ["specs", "check", str(bad)])
    assert out.exit_code == 1
    assert out.output.splitlines() == [
        f"{bad}: peak_tflops.bf16 1513 is a figure vendors print with 2:4 sparsity; check the datasheet's footnote "
        f"and use the dense figure (half)",
        f"{bad}: peak_tflops.bf16 / peak_tflops.tf32 = 4.00, expected about 2 (one of them may be a sparse, a "
        f"half-rate-accumulate or a rounded-wrong figure)",
        f"{bad}: peak_tflops.fp8 / peak_tflops.bf16 = 1.00, expected about 2 (one of them may be a sparse, a "
        f"half-rate-accumulate or a rounded-wrong figure)",
        f"{bad}: mem_bandwidth_gb_per_s 2 looks like TB/s; the key is in GB/s (2000)",
        f"{bad}: bf16 ridge 756500 FLOP/byte is outside 30-700 (every part surveyed lies inside); check the units and "
        f"sparsity",
    ]
    out = runner.invoke(main, ["specs", "check", "h100"])
    assert out.exit_code == 1 and out.output.startswith("Error: unknown GPU 'h100'")


def test_specs_show_prints_sources_and_references():
    out = CliRunner().invoke(main, ["specs", "show", "gb200"])
    assert out.exit_code == 0, out.output
    assert "  peak_tflops: GB200 NVL72 product page [S15], rack column" in out.output
    assert (
        "  [S15] NVIDIA GB200 NVL72 product page (specifications table, GB200 NVL72 and per GB200 Grace Blackwell "
        "Superchip; footnote = with sparsity), https://www.nvidia.com/en-us/data-center/gb200-nvl72/"
    ) in out.output
    data = json.loads(CliRunner().invoke(main, ["specs", "show", "gb200", "--format", "json"]).output)
    assert data["references"]["S15"].endswith("https://www.nvidia.com/en-us/data-center/gb200-nvl72/")
