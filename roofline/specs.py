"""HardwareSpec: load and validate hardware_specs/*.yaml, or a user's own YAML.

Units. The YAML files use the units datasheets print (TFLOP/s, GB/s, GB, MB, µs) with the unit in
the key name; ``HardwareSpec`` holds SI base units (FLOP/s, bytes/s, bytes, s). All prefixes are
decimal: 1 TFLOP/s = 1e12 FLOP/s, 1 GB/s = 1e9 bytes/s, 1 MB = 1e6 bytes. Peak FLOP/s are dense
(no 2:4 sparsity); int8/int4 figures are operations per second. Link bandwidths are given in the
YAML as the bidirectional total the vendor prints; ``HardwareSpec`` keeps the per-direction figure,
which is what a ring collective's bus bandwidth is compared with.

Ceilings. Where a spec carries a ``measured:`` section (written by ``roofline calibrate``), the
``ceiling_*`` methods return the measured figure and classification uses it; the datasheet figure
stays available as ``peak_flops_per_s`` / ``mem_bytes_per_s``.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from roofline.dtypes import DTYPE_BYTES
from roofline.errors import SpecError, UnknownHardware
from roofline.predict import COLLECTIVE_BUSBW_FACTOR, parse_kernel_tables
from roofline.validate import check_keys, load_mapping, number, suggest

TERA, GIGA, MEGA, MICRO = 1e12, 1e9, 1e6, 1e-6

_REQUIRED = {
    "name",
    "full_name",
    "peak_tflops",
    "mem_bandwidth_gb_per_s",
    "mem_capacity_gb",
    "l2_cache_mb",
    "gpu_link",
    "host_link",
    "launch_overhead_us",
    "graph_launch_overhead_us",
    "collective_latency_us",
    "sources",
}
_OPTIONAL = {"sparse_tflops", "notes", "measured", "vendor", "references"}
# every number needs a source; these are the keys of `sources`
_SOURCED = _REQUIRED - {"name", "full_name", "sources"}
_LINK_KEYS = {"name", "bidirectional_gb_per_s"}
_MEASURED_KEYS = {
    "peak_tflops",
    "mem_bandwidth_gb_per_s",
    "launch_overhead_us",
    "graph_launch_overhead_us",
    "collective_latency_us",
    "link_busbw_gb_per_s",
    "conditions",
    # the kernel model of roofline/predict.py (documented there and in reports/h200/calibration.yaml):
    # kernel_min_us, kernel_gap_us, bandwidth_curve {bytes, gb_per_s}, gemm {dtype: {tokens, weight_elements, efficiency,
    # kernels}},
    # attention {prefill: {roofline: compute, query_len, flops_per_pair, efficiency}, decode: {kv_bytes, flops_per_kv_byte, efficiency}},
    # ops {name: {fixed_us, host_eager_us, host_graph_us, kernels}},
    # op_tables {name: {tokens, act_bytes_per_token, efficiency}}
    "kernel_min_us",
    "kernel_gap_us",
    "bandwidth_curve",
    "gemm",
    "attention",
    "ops",
    "op_tables",
    "graph_replay_us",
    "projection_host_us",  # {fp8|int8|DTYPE/weight_only: extra eager host us per 8-bit projection call}
    "split_kernel_host_us",  # eager host us of one more kernel in a 16-bit projection call (gemm.DTYPE.kernels)
    # the collective model of roofline/predict.py (``collective_times``), written by calibrate --collectives:
    # collectives {all_reduce|all_gather|reduce_scatter|all_to_all: {world, bytes, time_us}}
    "collectives",
}
# measured.collectives: per op, the nccl-tests message size S (bytes) and the measured time per call.
# S is the whole buffer: all-reduce its buffer, all-gather its output, reduce-scatter its input, all-to-all one
# rank's send buffer (nccl-tests' doc/PERFORMANCE.md); busbw = S / time x COLLECTIVE_BUSBW_FACTOR[op](world).
MAX_WORLD = 1 << 20


@dataclass(frozen=True)
class HardwareSpec:
    """One accelerator's ceilings in SI units. Build with ``load_spec``."""

    name: str
    full_name: str
    peak_flops_per_s: dict  # dtype -> dense FLOP/s (OP/s for int types)
    mem_bytes_per_s: float
    mem_capacity_bytes: float
    l2_bytes: float
    gpu_link_name: Optional[str]
    gpu_link_bytes_per_s: Optional[float]  # per direction; None when the part has no GPU-GPU link
    host_link_name: str
    host_link_bytes_per_s: float  # per direction
    launch_overhead_s: float  # per kernel, eager launch from a framework
    graph_launch_overhead_s: float  # per kernel inside a replayed CUDA graph
    collective_latency_s: float  # alpha of the alpha-beta collective model
    sources: dict = field(default_factory=dict)
    references: dict = field(default_factory=dict)  # tag ('S5') -> datasheet name and URL, cited as [S5]
    notes: str = ""
    measured_peak_flops_per_s: dict = field(default_factory=dict)
    measured_mem_bytes_per_s: Optional[float] = None
    measured_launch_overhead_s: Optional[float] = None
    measured_graph_launch_overhead_s: Optional[float] = None
    measured_link_bytes_per_s: Optional[float] = None
    measured_collective_latency_s: Optional[float] = None
    measured_kernels: dict = field(default_factory=dict)  # predict.parse_kernel_tables: the kernel model
    # op -> (world, message bytes [n], time_s [n]): parse_collective_tables, the measured collective model
    measured_collectives: dict = field(default_factory=dict)
    # every eager host cost of the kernel model times this: the host now over the host at calibration
    # (predict.with_host_reference, from a timed host reference); 1 as calibrated
    host_scale: float = 1.0
    path: Optional[str] = None

    # -- ceilings used for classification: measured where calibrated, else datasheet --
    def has_dtype(self, dtype: str) -> bool:
        return dtype in self.peak_flops_per_s

    def ceiling_flops(self, dtype: str) -> float:
        """FLOP/s ceiling for ``dtype``. Raises SpecError when the part has no such unit."""
        if dtype in self.measured_peak_flops_per_s:
            return self.measured_peak_flops_per_s[dtype]
        if dtype not in self.peak_flops_per_s:
            have = ", ".join(self.peak_flops_per_s)
            raise SpecError(
                f"{self.name} has no {dtype} peak in its spec (it has: {have}); "
                f"choose a dtype it supports or add peak_tflops.{dtype} to the spec"
            )
        return self.peak_flops_per_s[dtype]

    def ceiling_bytes_per_s(self) -> float:
        return self.measured_mem_bytes_per_s or self.mem_bytes_per_s

    def ceiling_launch_s(self, cuda_graph: bool = False) -> float:
        if cuda_graph:
            return self.measured_graph_launch_overhead_s or self.graph_launch_overhead_s
        return self.measured_launch_overhead_s or self.launch_overhead_s

    def ceiling_link_bytes_per_s(self) -> float:
        """Per-direction GPU-to-GPU bandwidth; over the host link (PCIe) when there is no GPU link."""
        if self.measured_link_bytes_per_s:
            return self.measured_link_bytes_per_s
        return self.gpu_link_bytes_per_s or self.host_link_bytes_per_s

    def ceiling_collective_latency_s(self) -> float:
        return self.measured_collective_latency_s or self.collective_latency_s

    def ridge(self, dtype: str, measured: bool = True) -> float:
        """Ridge point in FLOP/byte: peak FLOP/s over memory bandwidth."""
        if measured:
            return self.ceiling_flops(dtype) / self.ceiling_bytes_per_s()
        return self.peak_flops_per_s[dtype] / self.mem_bytes_per_s

    @property
    def is_calibrated(self) -> bool:
        return bool(self.measured_peak_flops_per_s or self.measured_mem_bytes_per_s)


# ----------------------------------------------------------------------------------------------
# where the shipped files live: inside the installed package, or beside it in a source checkout


def data_dir(name: str) -> Path:
    """The folder of shipped data ``name`` ('hardware_specs' or 'examples')."""
    here = Path(__file__).resolve().parent
    for candidate in (here / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise SpecError(f"shipped folder '{name}' not found beside the roofline package; reinstall roofline")


def list_specs() -> list:
    """Names of the shipped hardware specs, sorted."""
    return sorted(p.stem for p in data_dir("hardware_specs").glob("*.yaml"))


def resolve_spec_path(name_or_path: str | Path) -> Path:
    """A shipped name ('a10') or a path to a YAML file -> the file's path. Raises UnknownHardware."""
    text = str(name_or_path)
    path = Path(text)
    looks_like_path = path.suffix in (".yaml", ".yml", ".json") or "/" in text or "\\" in text
    if looks_like_path:
        if not path.exists():
            raise UnknownHardware(f"hardware spec file not found: {text}")
        return path
    shipped = data_dir("hardware_specs") / f"{text.lower()}.yaml"
    if shipped.exists():
        return shipped
    known = list_specs()
    raise UnknownHardware(
        f"unknown GPU '{text}'{suggest(text.lower(), known)}; known: {', '.join(known)} (or pass a YAML path)"
    )


def load_spec(name_or_path: "str | Path | HardwareSpec") -> HardwareSpec:
    """Load and validate a hardware spec by shipped name or path. Raises SpecError / UnknownHardware."""
    if isinstance(name_or_path, HardwareSpec):
        return name_or_path
    path = resolve_spec_path(name_or_path)
    return parse_spec(load_mapping(path, "hardware spec"), str(path))


def parse_spec(raw: dict, where: str = "<spec>") -> HardwareSpec:
    """Validate a spec mapping (the YAML's content) and convert it to SI units."""
    check_keys(raw, _REQUIRED | _OPTIONAL, where, SpecError)
    missing = sorted(_REQUIRED - set(raw))
    if missing:
        raise SpecError(f"{where}: missing key '{missing[0]}' (required: {', '.join(sorted(_REQUIRED))})")

    def num(value, key, **kw):
        return number(value, f"{where}: {key}", SpecError, **kw)

    peaks = _dtype_table(raw["peak_tflops"], where, "peak_tflops")
    if raw.get("sparse_tflops") is not None:
        _dtype_table(raw["sparse_tflops"], where, "sparse_tflops")

    sources = raw["sources"]
    if not isinstance(sources, dict):
        raise SpecError(f"{where}: sources must be a mapping of key -> citation")
    check_keys(sources, _SOURCED | {"sparse_tflops", "measured"}, f"{where}: sources", SpecError)
    for key in sorted(_SOURCED):
        if not sources.get(key):
            raise SpecError(f"{where}: sources.{key} is missing; cite where the {key} figure comes from")
    if raw.get("references") is not None and not isinstance(raw["references"], dict):
        raise SpecError(f"{where}: references must be a mapping of tag -> 'datasheet name, URL'")
    if isinstance(sources["peak_tflops"], dict):
        for dtype in peaks:
            if not sources["peak_tflops"].get(dtype):
                raise SpecError(f"{where}: sources.peak_tflops.{dtype} is missing; cite the datasheet row")

    gpu_link = raw["gpu_link"]
    if gpu_link is not None:
        gpu_link = _link(gpu_link, where, "gpu_link")
    host_link = _link(raw["host_link"], where, "host_link")
    measured = _measured(raw.get("measured") or {}, where)

    return HardwareSpec(
        name=str(raw["name"]),
        full_name=str(raw["full_name"]),
        peak_flops_per_s={k: v * TERA for k, v in peaks.items()},
        mem_bytes_per_s=num(raw["mem_bandwidth_gb_per_s"], "mem_bandwidth_gb_per_s") * GIGA,
        mem_capacity_bytes=num(raw["mem_capacity_gb"], "mem_capacity_gb") * GIGA,
        l2_bytes=num(raw["l2_cache_mb"], "l2_cache_mb") * MEGA,
        gpu_link_name=gpu_link[0] if gpu_link else None,
        gpu_link_bytes_per_s=gpu_link[1] if gpu_link else None,
        host_link_name=host_link[0],
        host_link_bytes_per_s=host_link[1],
        launch_overhead_s=num(raw["launch_overhead_us"], "launch_overhead_us") * MICRO,
        graph_launch_overhead_s=num(raw["graph_launch_overhead_us"], "graph_launch_overhead_us") * MICRO,
        collective_latency_s=num(raw["collective_latency_us"], "collective_latency_us") * MICRO,
        sources=dict(sources),
        references={str(k): str(v) for k, v in (raw.get("references") or {}).items()},
        notes=str(raw.get("notes") or ""),
        path=where,
        **measured,
    )


def _dtype_table(table, where, key) -> dict:
    if not isinstance(table, dict) or not table:
        raise SpecError(f"{where}: {key} must be a mapping of dtype -> TFLOP/s, e.g. {{bf16: 989.4}}")
    out = {}
    for dtype, value in table.items():
        if dtype not in DTYPE_BYTES:
            raise SpecError(
                f"{where}: {key}: unknown dtype '{dtype}'{suggest(dtype, DTYPE_BYTES)}; known: {', '.join(DTYPE_BYTES)}"
            )
        out[dtype] = number(value, f"{where}: {key}.{dtype}", SpecError)
    return out


def _link(link, where, key):
    if not isinstance(link, dict):
        raise SpecError(f"{where}: {key} must be a mapping with name and bidirectional_gb_per_s (or null for none)")
    check_keys(link, _LINK_KEYS, f"{where}: {key}", SpecError)
    if "bidirectional_gb_per_s" not in link:
        raise SpecError(f"{where}: {key}.bidirectional_gb_per_s is missing (the vendor's bidirectional total)")
    bidir = number(link["bidirectional_gb_per_s"], f"{where}: {key}.bidirectional_gb_per_s", SpecError)
    return str(link.get("name", key)), bidir * GIGA / 2  # per direction


def _measured(measured, where) -> dict:
    if not isinstance(measured, dict):
        raise SpecError(f"{where}: measured must be a mapping (as written by roofline calibrate)")
    check_keys(measured, _MEASURED_KEYS, f"{where}: measured", SpecError)
    out = {}
    if measured.get("peak_tflops"):
        out["measured_peak_flops_per_s"] = {
            k: v * TERA for k, v in _dtype_table(measured["peak_tflops"], where, "measured.peak_tflops").items()
        }
    scalar = {
        "mem_bandwidth_gb_per_s": ("measured_mem_bytes_per_s", GIGA),
        "launch_overhead_us": ("measured_launch_overhead_s", MICRO),
        "graph_launch_overhead_us": ("measured_graph_launch_overhead_s", MICRO),
        "link_busbw_gb_per_s": ("measured_link_bytes_per_s", GIGA),
        "collective_latency_us": ("measured_collective_latency_s", MICRO),
    }
    for key, (attr, unit) in scalar.items():
        if measured.get(key) is not None:
            out[attr] = number(measured[key], f"{where}: measured.{key}", SpecError) * unit
    kernels = parse_kernel_tables(measured, where)
    if kernels:
        out["measured_kernels"] = kernels
    if measured.get("collectives") is not None:
        out["measured_collectives"] = parse_collective_tables(measured["collectives"], f"{where}: measured.collectives")
    return out


def parse_collective_tables(table: object, where: str) -> dict:
    """Validate ``measured.collectives`` (op -> {world, bytes, time_us}); return op -> (world, bytes array,
    time_s array). Sizes must be whole, positive and strictly increasing, times positive and finite, one per
    size; world a whole number of at least 2. Raises SpecError naming the key and the fix."""
    if not isinstance(table, dict) or not table:
        raise SpecError(
            f"{where} must be a mapping of op ({', '.join(COLLECTIVE_BUSBW_FACTOR)}) -> {{world, bytes, time_us}}"
        )
    out = {}
    for op, entry in table.items():
        w = f"{where}.{op}"
        if op not in COLLECTIVE_BUSBW_FACTOR:
            raise SpecError(
                f"{where}: unknown collective '{op}'{suggest(str(op), COLLECTIVE_BUSBW_FACTOR)}; "
                f"known: {', '.join(COLLECTIVE_BUSBW_FACTOR)}"
            )
        if not isinstance(entry, dict):
            raise SpecError(f"{w} must be a mapping with keys world, bytes, time_us")
        check_keys(entry, {"world", "bytes", "time_us"}, w, SpecError)
        for key in ("world", "bytes", "time_us"):
            if entry.get(key) is None:
                raise SpecError(f"{w}.{key} is missing (world: GPUs measured; bytes and time_us: one per size)")
        world = number(entry["world"], f"{w}.world", SpecError, integer=True, minimum=2, maximum=MAX_WORLD)
        sizes, times = entry["bytes"], entry["time_us"]
        if not isinstance(sizes, list) or not sizes:
            raise SpecError(f"{w}.bytes must be a non-empty list of message sizes in bytes, increasing")
        if not isinstance(times, list) or len(times) != len(sizes):
            got = len(times) if isinstance(times, list) else type(times).__name__
            raise SpecError(f"{w}.time_us must be a list of {len(sizes)} times in µs (one per size), got {got}")
        x = np.array([number(v, f"{w}.bytes[{i}]", SpecError, integer=True) for i, v in enumerate(sizes)], float)
        if np.any(np.diff(x) <= 0):
            raise SpecError(f"{w}.bytes must be strictly increasing; sort the sizes together with their times")
        t = np.array([number(v, f"{w}.time_us[{i}]", SpecError) for i, v in enumerate(times)], float) * MICRO
        out[str(op)] = (int(world), x, t)
    return out


# ----------------------------------------------------------------------------------------------
# lint: `roofline specs check FILE`

# The 2:4-sparsity figures vendors print (gpu_specs survey, section 2, and the shipped specs' sparse_tflops):
# a dense peak equal to one of these for the same dtype is almost always the sparse figure used as dense.
KNOWN_SPARSE_TFLOPS = {
    "tf32": (125, 312, 989, 756, 835, 120, 366, 165.2, 2200, 1307.4, 2500, 209.5),
    "bf16": (250, 624, 1979, 1513, 1671, 242, 733, 330.4, 4500, 2614.9, 5000, 419),
    "fp16": (250, 624, 1979, 1513, 1671, 242, 733, 330.4, 4500, 2614.9, 5000, 419),
    "fp8": (3958, 3026, 3341, 485, 1466, 660.6, 9000, 5229.8, 10000, 838),
    "int8": (500, 1248, 3958, 3026, 3341, 485, 1466, 1321.2, 9000, 5229.8, 10000, 1676),
    "fp4": (18000, 20000, 1676, 3352),
}
# adjacent tensor-core dtypes: the dense rate doubles from one to the next on every part in the survey
TENSOR_LADDER = (("tf32", "bf16"), ("bf16", "fp8"), ("fp8", "fp4"))
RIDGE_BF16_RANGE = (30.0, 700.0)  # FLOP/byte: H20 37 (export-capped) ... L40S 419; outside is a unit slip
_TAG = re.compile(r"\[([A-Za-z]+[0-9]*)\]")
_OUTSIDE = re.compile(r"gpu_specs\.md|\.\./|/work/|shared/reference")


def unlikely_ridge(peak_flops_per_s: float, bytes_per_s: float) -> str | None:
    """The 16-bit ridge point, as text (0.21, not 0), when it lies outside RIDGE_BF16_RANGE (a unit slip or a
    sparse peak); None inside it, or when a figure is 0 or less (the spec's own check names that)."""
    if peak_flops_per_s <= 0 or bytes_per_s <= 0:
        return None
    ridge = peak_flops_per_s / bytes_per_s
    if RIDGE_BF16_RANGE[0] <= ridge <= RIDGE_BF16_RANGE[1]:
        return None
    return f"{ridge:.0f}" if ridge >= 10 else f"{ridge:.2g}"


def lint_spec(raw: dict, where: str = "<spec>") -> list:
    """Findings on a spec mapping, one line each (empty when clean).

    Catches what loads but misleads: a dense peak equal to a known printed sparse figure or equal to the
    file's own sparse figure, a tensor-core dtype whose rate is not about 2x the one below it (the sparse
    figure of one row among dense ones), a bf16 ridge point outside 50-700 FLOP/byte, a unit slip (a
    string with a unit, a bandwidth in TB/s), a source that is missing, points outside the package, or
    cites a [TAG] with no datasheet name and URL under ``references``.
    """
    out = []
    try:
        parse_spec(raw, where)
    except SpecError as exc:
        out.append(str(exc))
    peaks = raw.get("peak_tflops") if isinstance(raw.get("peak_tflops"), dict) else {}
    sparse = raw.get("sparse_tflops") if isinstance(raw.get("sparse_tflops"), dict) else {}

    def value(table, key):
        v = table.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    for dtype in peaks:
        dense = value(peaks, dtype)
        if dense is None:
            if isinstance(peaks[dtype], str):
                out.append(f"{where}: peak_tflops.{dtype} {peaks[dtype]!r} is text; write the number in TFLOP/s")
            continue
        own = value(sparse, dtype)
        if own is not None and abs(own - dense) <= 0.005 * own:
            out.append(
                f"{where}: peak_tflops.{dtype} {dense:g} equals sparse_tflops.{dtype}: a dense peak is half the "
                f"printed with-sparsity figure"
            )
        elif any(abs(dense - k) <= 0.002 * k for k in KNOWN_SPARSE_TFLOPS.get(dtype, ())):
            out.append(
                f"{where}: peak_tflops.{dtype} {dense:g} is a figure vendors print with 2:4 sparsity; "
                f"check the datasheet's footnote and use the dense figure (half)"
            )
    for lo, hi in TENSOR_LADDER:
        a, b = value(peaks, lo), value(peaks, hi)
        if a and b and not 1.4 <= b / a <= 3.1:
            out.append(
                f"{where}: peak_tflops.{hi} / peak_tflops.{lo} = {b / a:.2f}, expected about 2 (one of them "
                f"may be a sparse, a half-rate-accumulate or a rounded-wrong figure)"
            )
    bw = value(raw, "mem_bandwidth_gb_per_s")
    if isinstance(raw.get("mem_bandwidth_gb_per_s"), str):
        out.append(
            f"{where}: mem_bandwidth_gb_per_s {raw['mem_bandwidth_gb_per_s']!r} is text; write the number in GB/s"
        )
    elif bw is not None and 0 < bw < 50:
        out.append(f"{where}: mem_bandwidth_gb_per_s {bw:g} looks like TB/s; the key is in GB/s ({bw * 1000:g})")
    bf16 = value(peaks, "bf16") or value(peaks, "fp16")
    shown = unlikely_ridge(bf16 * TERA, bw * GIGA) if bw and bf16 else None
    if shown:
        out.append(
            f"{where}: bf16 ridge {shown} FLOP/byte is outside {RIDGE_BF16_RANGE[0]:.0f}-"
            f"{RIDGE_BF16_RANGE[1]:.0f} (every part surveyed lies inside); check the units and sparsity"
        )
    for key in (
        "mem_capacity_gb",
        "l2_cache_mb",
        "launch_overhead_us",
        "graph_launch_overhead_us",
        "collective_latency_us",
    ):
        if isinstance(raw.get(key), str):
            out.append(f"{where}: {key} {raw[key]!r} is text; write the number in the key's unit")
    out += _lint_sources(raw, where)
    return out


def _lint_sources(raw, where) -> list:
    out = []
    sources = raw.get("sources") if isinstance(raw.get("sources"), dict) else {}
    references = raw.get("references") if isinstance(raw.get("references"), dict) else {}
    texts = {f"sources.{k}": v for k, v in sources.items()}
    texts.update(
        {f"sources.peak_tflops.{k}": v for k, v in (sources.get("peak_tflops") or {}).items()}
        if isinstance(sources.get("peak_tflops"), dict)
        else {}
    )
    texts["notes"] = raw.get("notes") or ""
    peaks = raw.get("peak_tflops") if isinstance(raw.get("peak_tflops"), dict) else {}
    if isinstance(sources.get("peak_tflops"), dict):
        for dtype in peaks:
            if not sources["peak_tflops"].get(dtype):
                out.append(f"{where}: sources.peak_tflops.{dtype} is missing; cite the datasheet row")
    for key in sorted(_SOURCED):
        if key in raw and not sources.get(key):
            out.append(f"{where}: sources.{key} is missing; cite where the {key} figure comes from")
    if raw.get("sparse_tflops") and not sources.get("sparse_tflops"):
        out.append(f"{where}: sources.sparse_tflops is missing; cite the datasheet rows printed with sparsity")
    for name, text in texts.items():
        if not isinstance(text, str):
            continue
        if _OUTSIDE.search(text):
            out.append(
                f"{where}: {name} points to a file outside the package ({_OUTSIDE.search(text).group(0)}); "
                f"cite the datasheet by name and URL under references"
            )
        for tag in dict.fromkeys(_TAG.findall(text)):
            if tag not in references:
                out.append(
                    f"{where}: {name} cites [{tag}] but references has no {tag}; add '{tag}: datasheet name, URL'"
                )
    for tag, text in references.items():
        if "http" not in str(text) and not str(text).lower().startswith("measured"):
            out.append(f"{where}: references.{tag} has no URL; give the datasheet's name and URL")
    return out


def check_spec_file(path: str | Path) -> list:
    """``lint_spec`` on a spec file (a shipped name or a path). Raises SpecError / InputFileError when it
    cannot be read at all."""
    path = resolve_spec_path(path)
    return lint_spec(load_mapping(path, "hardware spec"), str(path))
