"""The calibrated per-op prediction: what one occurrence of an op takes on a real GPU, and what the
host pays to launch it. Torch-free and vectorised over the ops frame.

A pure roofline (classify.py's ``time_s``) has no per-kernel fixed cost and assumes every kernel
reaches a roof; small transfers and skinny GEMMs do not. Where the spec carries the tables that
``roofline calibrate`` measures (``measured:`` section, see specs.py), each op's time is read off
them; otherwise the datasheet roofline is used with a per-kernel minimum. Per occurrence:

  predicted_time_s = max(fixed_s, model_s)
    model_s  matmul     time_s / efficiency_gemm[dtype](tokens M, weight elements K*N); the routed experts
                        at one expert matrix's K*N and the tokens per active expert (M top_k / active)
             attention  flash prefill: time_s / efficiency_prefill(query length s, FLOPs per causal pair:
                                       FLOPs / (s (s + 1) / 2) = 4 b h d, the kernel's parallel width)
                        flash decode:  time_s / efficiency_decode(KV bytes read, FLOPs per KV byte)
             element-wise, memory: max(FLOPs / peak, traffic * bytes moved / bandwidth(bytes moved))
                        (traffic: ``measured.ops.NAME.traffic``, how many times the ideal bytes the
                        reference's kernels for the op really move, measured at a large size; else 1);
                        with the op's table (``measured.op_tables.NAME``): time_s / efficiency(tokens,
                        activation bytes per token: (bytes moved - weight bytes read) / tokens, the op's
                        width whatever the token count; with the weights in it, a 768-wide LayerNorm at one
                        token read as twice as wide)
             collective the measured time of its size and world (``collective_times``: the spec's
                        ``measured.collectives``), else time_s (alpha + bytes / link)
             otherwise  time_s
             (datasheet: model_s = time_s)
    fixed_s  the op's measured minimum device time (``measured.ops.NAME.fixed_us``: its kernels at
             the smallest size), else ``measured.kernel_min_us``, else the spec's CUDA-graph
             per-kernel figure (datasheet)
  launch_gap_s = kernels * gap: the idle time the GPU spends between the op's kernels and the one
             before (``measured.kernel_gap_us``, from a CUDA-graph replay against its kernel sum, else
             the spec's CUDA-graph per-kernel figure; kernels: ``measured.ops.NAME.kernels``, else 1; a
             16-bit projection (PROJECTION_OPS) whose gemm cell records its kernels (``gemm.DTYPE.kernels``, the nearest cell:
             cuBLAS runs a split-K GEMM as two) takes the cell's)
  stream_s = predicted_time_s + launch_gap_s: how long the op holds the GPU's stream
  host_s   = what one occurrence costs the host: eager, ``measured.ops.NAME.host_eager_us`` where
             calibrated (the reference model's Python, dispatch and launches), else one eager launch
             (the spec's figure); a 16-bit projection adds (its cell's kernels - the entry's) x
             ``measured.split_kernel_host_us`` where both are measured (the op costs come from a small model
             whose projections run one kernel each); each times the spec's ``host_scale`` (below); in a CUDA graph 0 (the
             replay is one launch for the whole step), except the step's first op, which carries
             ``measured.graph_replay_us``: the replay's launch and the host's wake-up, where calibrated

The host reference. Every eager host cost above was measured on one host at one time, and the hosts of
the GPU machines this was built on run the same Python 20-40% slower for minutes at a time
(reports/h200/README.md, session 5). A calibrated spec records its reference: the eager step of the
model its op costs are scaled to (``measured.conditions.ops_measured_on.eager_step_us``: two layers of
calibrate.SMALL_MODEL at decode batch 1, context 128, host-bound; ``host_reference_s`` here), and the
steps per timing window it was timed with (``ops_measured_on.reference_window``: steptime.STEP_WINDOW, the
cases' window; a calibration that records none timed it in LEGACY_REFERENCE_WINDOW-step windows). Where a
measurement times the same step, in the same window, on the host it runs on (validate, profile:
calibrate.recorded_reference_job),
``with_host_reference`` gives the spec whose ``host_scale`` is that step over the recorded one, and every
eager host cost (host_eager_us, host_per_active_expert_us, projection_host_us, the launch floor) is
multiplied by it. ``analyze`` on its own has no host to time: host_scale 1, the host as calibrated.

The step time of a phase is a launch queue: the host issues the ops in order, each after its host_s;
the GPU runs each op's stream_s once it is issued and the previous one is done. The step ends when
the last op ends:
  step = max over ops k of (host time up to and including k + GPU time from k to the end)
which is sum(stream_s) when the GPU is the bottleneck (always in a CUDA graph), sum(host_s) plus the
tail when the host is. The per-layer ops repeat num_hidden_layers times in order; the maximum over
the repeats is taken in closed form (the first or the last layer). An op that syncs with the host
(``sync_s`` > 0: the MoE experts, eager) starts once both the host and the GPU are free and holds both
for sync_s; such steps are run occurrence by occurrence (``queue_step``).

The MoE expert loop (``expert_loop``; eager, as reference.ReferenceDecoder._moe runs it, Hugging Face's
Mixtral): softmax and top-k routing, then for each of the E experts a ``torch.where`` (a host sync: its
count is copied to the host) and, for an expert with tokens, a gather, three GEMMs (gate, up, down),
silu, mul, a gather of the routing weights, mul and ``index_add_``. From ``measured.ops.experts`` (K0
kernels, host H0 at a0 active experts, host_per_active_expert hpa, kernels_per_active_expert kpa,
small_kernel s) at a = active_experts(tokens) experts with tokens (the workload's routed_experts where given):
  kernels(a)       = (K0 - kpa a0) E / E0 + (kpa + x) a, at least 3 a: the base part's kernels (routing and
                     the where's) per expert of the loop, E experts (per GPU) against the calibrated E0
                     (``syncs``); at E = E0 and x = 0, K0 + kpa (a - a0). x: the kernels an active expert's
                     GEMMs run beyond the calibration's one each (split-K, ``expert_split_kernels`` from the
                     gemm kernels grid: Mixtral's down matrix at 2-128 tokens runs two; 0 without a grid)
  predicted_time_s = max(kernels(a) s, G + (kernels(a) - 3 a) s), G the GEMM-table time of the op as
                     above (model_s): the GEMMs plus every other kernel at the small-kernel time
  fixed_s          = kernels(a) s;  launch_gap_s = kernels(a) gap (as for any op)
  host_s           = B + (hpa + x split) a, split = split_kernel_host_us (at E = E0 and x = 0, H0 + hpa (a - a0))
  sync_s           = B + a * segment: the op's occurrence in the launch queue, where
    B = (H0 - hpa a0) E / E0  the base part, host-serial: routing and the E ``where`` syncs, each draining
                     the queue; scaled whole with E (the routing's own launches, about 7 by the
                     reference's code, are scaled too: a small over-count)
    segment          one expert with tokens: the launch queue of its kpa kernels from an empty queue
                     (the next ``where`` drains it), max over its kernels i of (host up to and including
                     i + GPU from i to the end); each costs the host hpa / max(kpa, 8); on the GPU its
                     three GEMMs take G / (3 a) each and the rest s, each plus the gap (a split GEMM: its
                     x more launches cost the host split each and the GPU a gap each). Kernel order
                     (EXPERT_KERNELS): kpa - 8 leading small kernels (the gather, and the extra kernels
                     of a non-empty ``where``), gate GEMM, silu, up GEMM, mul, down GEMM, then 3 small
                     ones (gather of the weights, mul, index_add_)
  The segment is hpa where the host is the bottleneck (the step is host-bound, as in the calibration)
  and the expert's GPU time (plus one launch) where the GEMMs are. Defaults where the spec lacks a key:
  kpa = 9 (the loop body's kernels counted in the reference), s = fixed_us / kernels of the entry (the
  calibrated experts op's mean kernel time, its small GEMMs included), else kernel_min. Without
  host_per_active_expert (or outside ``analyze``, which knows E and top-k) a syncing op holds host and
  GPU for host_s + stream_s.

The summary's step time, tokens/s and class shares (and so advise, plot and report) are this one number; an op's share of it
(``total_time_s``) is count * stream_s (a GPU-bound step) or count * host_s (a host-bound step),
scaled to add up to the step. Tables are interpolated linearly in log-log space between measured points and held
constant beyond the ends (no extrapolation). ``prediction_source`` says 'calibrated' where a
measured table or fixed cost set the row's time, 'datasheet roofline' otherwise.

Classes (``bound``): the roofline classes of classify.py, then two refinements from the prediction:
  overhead  host_s > stream_s in a step whose host time exceeds its GPU time (the host cannot issue
            the op as fast as the GPU runs it, and nothing hides it); in a GPU-bound step such an op
            keeps its roofline class
  latency   (calibrated rows only) predicted_time_s >= LATENCY_RATIO * time_s: the op reaches less than
            half of its nearest roof, neither compute nor memory (fixed cost, small transfers, tails)
Communication rows keep their class.
"""

from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from roofline.errors import SpecError
from roofline.formulas import expected_routed_experts
from roofline.validate import check_keys, number

if TYPE_CHECKING:  # annotations only: specs.py imports this module
    from roofline.config import ModelConfig, Workload
    from roofline.specs import HardwareSpec

MICRO, GIGA = 1e-6, 1e9
LATENCY_RATIO = 2.0
GEMM_AXES = ("tokens", "weight_elements")
# the decoder's projections, whose op costs come from the small model's one-kernel GEMMs: where a gemm cell records
# more kernels per call (split-K), each extra one costs split_kernel_host_us (lm_head's entry was measured at the
# small model's own head, no cell of the grid; the experts count their own in expert_loop)
PROJECTION_OPS = (
    "qkv_proj",
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_up_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
# the host reference's steps per timing window in calibrations that do not record theirs (before stop 14)
LEGACY_REFERENCE_WINDOW = 50
CALIBRATED, DATASHEET = "calibrated", "datasheet roofline"

# keys of the measured: section this module reads (specs.py accepts them; documented in the YAML)
KERNEL_KEYS = ("kernel_min_us", "bandwidth_curve", "gemm", "attention", "ops")
_OP_KEYS = {
    "fixed_us",
    "host_eager_us",
    "host_graph_us",
    "kernels",
    "traffic",
    "syncs",  # host syncs per occurrence (MoE routing: a where per expert, E0 of expert_loop)
    "host_per_active_expert_us",  # eager host cost of each routed expert that receives tokens
    "active_experts",  # routed experts with tokens at the calibrated point (host_eager_us's)
    "kernels_per_active_expert",  # kernels each routed expert with tokens adds (expert_loop)
    "small_kernel_us",  # GPU time of each of the experts' non-GEMM kernels (expert_loop)
}
KERNEL_KEYS = KERNEL_KEYS + (
    "kernel_gap_us",
    "op_tables",
    "graph_replay_us",
    "projection_host_us",
    "split_kernel_host_us",
)


# --------------------------------------------------------------------------------------------------
# the tables: parsing (called by specs.parse_spec) and interpolation


def parse_kernel_tables(measured: dict, where: str) -> dict:
    """Validate the kernel-model keys of a spec's ``measured:`` mapping; return them in SI units:
    kernel_min_s, bandwidth (bytes, bytes_per_s arrays), gemm {dtype: (tokens, weight_elements, eff)},
    attention {'prefill'|'decode': (x, y, eff)}, ops {name: {fixed_s, host_eager_s, host_graph_s, kernels}}.
    Raises SpecError naming the key."""
    out = {}
    w = f"{where}: measured"
    if measured.get("kernel_min_us") is not None:
        out["kernel_min_s"] = number(measured["kernel_min_us"], f"{w}.kernel_min_us", SpecError) * MICRO
    if measured.get("kernel_gap_us") is not None:
        out["kernel_gap_s"] = number(measured["kernel_gap_us"], f"{w}.kernel_gap_us", SpecError) * MICRO
    if measured.get("projection_host_us") is not None:
        ph = measured["projection_host_us"]
        allowed = {"fp8", "int8"} | {f"{d}/weight_only" for d in WEIGHT_ONLY_TABLES}
        _mapping(ph, f"{w}.projection_host_us", allowed)
        out["projection_host_s"] = {
            str(key): number(v, f"{w}.projection_host_us.{key}", SpecError, positive=False, minimum=0.0) * MICRO
            for key, v in ph.items()
        }
    conditions = measured.get("conditions")
    on = conditions.get("ops_measured_on") if isinstance(conditions, dict) else None
    if isinstance(on, dict) and on.get("eager_step_us") is not None:  # the host reference (module docstring)
        where_ref = f"{w}.conditions.ops_measured_on.eager_step_us"
        out["host_reference_s"] = number(on["eager_step_us"], where_ref, SpecError) * MICRO
        # the steps per timing window it was timed with (recorded since stop 14; before, 50)
        window = on.get("reference_window", LEGACY_REFERENCE_WINDOW)
        where_window = f"{w}.conditions.ops_measured_on.reference_window"
        out["host_reference_window"] = number(window, where_window, SpecError, integer=True, maximum=10_000)
    if measured.get("graph_replay_us") is not None:
        out["graph_replay_s"] = number(measured["graph_replay_us"], f"{w}.graph_replay_us", SpecError) * MICRO
    if measured.get("bandwidth_curve") is not None:
        c = _mapping(measured["bandwidth_curve"], f"{w}.bandwidth_curve", {"bytes", "gb_per_s"})
        x = _axis(c.get("bytes"), f"{w}.bandwidth_curve.bytes")
        y = _values(c.get("gb_per_s"), len(x), f"{w}.bandwidth_curve.gb_per_s")
        out["bandwidth"] = (x, y * GIGA)
    if measured.get("gemm") is not None:
        g = measured["gemm"]
        if not isinstance(g, dict) or not g:
            raise SpecError(f"{w}.gemm must be a mapping of dtype -> table (tokens, weight_elements, efficiency)")
        out["gemm"], kernels = {}, {}
        for d, t in g.items():
            where = f"{w}.gemm.{d}"
            grid = t.get("kernels") if isinstance(t, dict) else None
            plain = {key: v for key, v in t.items() if key != "kernels"} if isinstance(t, dict) else t
            out["gemm"][str(d)] = _table(plain, where, GEMM_AXES)
            if grid is not None:  # the kernels one call launches, on the same grid (split-K: two)
                kernels[str(d)] = _table(dict(plain, efficiency=grid), where, GEMM_AXES, values="kernels")
        if kernels:
            out["gemm_kernels"] = kernels
    if measured.get("split_kernel_host_us") is not None:
        where_split = f"{w}.split_kernel_host_us"
        out["split_kernel_host_s"] = (
            number(measured["split_kernel_host_us"], where_split, SpecError, positive=False, minimum=0.0) * MICRO
        )
    if measured.get("attention") is not None:
        a = measured["attention"]
        if not isinstance(a, dict):
            raise SpecError(f"{w}.attention must be a mapping with keys prefill, decode (and prefill/dNN, decode/dNN)")
        out["attention"] = {}
        axes = {"prefill": ("query_len", "flops_per_pair"), "decode": ("kv_bytes", "flops_per_kv_byte")}
        for key, table in a.items():
            phase, _, head = str(key).partition("/")
            kv_variant = phase == "decode" and head in tuple(f"kv_{d}" for d in KV_TABLES)
            if phase not in axes or (head and not kv_variant and not (head[:1] == "d" and head[1:].isdigit())):
                raise SpecError(
                    f"{w}.attention: unknown key '{key}'; allowed: prefill, decode, PHASE/dNN (a head_dim) or "
                    f"decode/kv_fp8 (an fp8 KV cache)"
                )
            if table is None:
                continue
            if phase == "prefill":  # efficiency over the compute roofline since stop 10; older files are over
                # max(compute, memory) and would be read wrongly
                roof = table.get("roofline") if isinstance(table, dict) else None
                if roof != "compute":
                    raise SpecError(
                        f"{w}.attention.{key} needs 'roofline: compute' (its efficiency over FLOPs / peak); "
                        f"this table was written by an older roofline calibrate: run roofline calibrate again"
                    )
                table = {k: v for k, v in table.items() if k != "roofline"}
            out["attention"][str(key)] = _table(table, f"{w}.attention.{key}", axes[phase])
    if measured.get("op_tables") is not None:
        t = measured["op_tables"]
        if not isinstance(t, dict):
            raise SpecError(
                f"{w}.op_tables must be a mapping of op name -> table (tokens, act_bytes_per_token, efficiency)"
            )
        for name, v in t.items():
            if isinstance(v, dict) and "bytes_per_token" in v:
                raise SpecError(
                    f"{w}.op_tables.{name} has bytes_per_token, an axis of calibrations before 2026-12-01 that "
                    "looked 1-token ops up at the wrong width; run roofline calibrate again (its tables are keyed "
                    "by act_bytes_per_token)"
                )
        out["op_tables"] = {
            str(name): _table(v, f"{w}.op_tables.{name}", ("tokens", "act_bytes_per_token")) for name, v in t.items()
        }
    if measured.get("ops") is not None:
        ops = measured["ops"]
        if not isinstance(ops, dict):
            raise SpecError(f"{w}.ops must be a mapping of op name -> {{fixed_us, host_eager_us, host_graph_us}}")
        out["ops"] = {}
        for name, entry in ops.items():
            e = _mapping(entry, f"{w}.ops.{name}", _OP_KEYS)
            out["ops"][str(name)] = {
                k.replace("_us", "_s"): number(v, f"{w}.ops.{name}.{k}", SpecError)
                * (MICRO if k.endswith("_us") else 1)
                for k, v in e.items()
                if v is not None
            }
    return out


def _mapping(value, where, allowed) -> dict:
    if not isinstance(value, dict):
        raise SpecError(f"{where} must be a mapping with keys {', '.join(sorted(allowed))}")
    check_keys(value, allowed, where, SpecError)
    return value


def _axis(values, where) -> np.ndarray:
    if not isinstance(values, list) or not values:
        raise SpecError(f"{where} must be a non-empty list of increasing positive numbers")
    x = np.array([number(v, f"{where}[{i}]", SpecError) for i, v in enumerate(values)], dtype=float)
    if np.any(np.diff(x) <= 0):
        raise SpecError(f"{where} must be strictly increasing; sort the values (and their table rows)")
    return x


def _values(values, n, where) -> np.ndarray:
    if not isinstance(values, list) or len(values) != n:
        got = len(values) if isinstance(values, list) else type(values).__name__
        raise SpecError(f"{where} must be a list of {n} positive numbers (one per axis value), got {got}")
    return np.array([number(v, f"{where}[{i}]", SpecError) for i, v in enumerate(values)], dtype=float)


def _table(value, where, axes, values: str = "efficiency") -> tuple:
    """(x, y, eff[len(x), len(y)]) of a 2-D efficiency table (``values``: the name its grid is read under in
    errors, e.g. a gemm table's kernels)."""
    t = _mapping(value, where, set(axes) | {"efficiency"})
    x = _axis(t.get(axes[0]), f"{where}.{axes[0]}")
    y = _axis(t.get(axes[1]), f"{where}.{axes[1]}")
    rows = t.get("efficiency")
    if not isinstance(rows, list) or len(rows) != len(x):
        raise SpecError(f"{where}.{values} must be a list of {len(x)} rows (one per {axes[0]}), each of {len(y)}")
    eff = np.stack([_values(r, len(y), f"{where}.{values}[{i}]") for i, r in enumerate(rows)])
    return x, y, eff


def interp_loglog(x: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Piecewise-linear in (log x, log y) through (xs, ys); constant beyond the ends."""
    return np.exp(np.interp(np.log(np.maximum(x, 1e-300)), np.log(xs), np.log(ys)))


def nearest_cell(x: np.ndarray, y: np.ndarray, table: tuple) -> np.ndarray:
    """The value of ``table`` = (xs, ys, grid) at the cell nearest each (x, y) in (log x, log y): a count such as
    a GEMM's kernels is not interpolated."""
    xs, ys, grid = table
    i = np.abs(np.log(np.maximum(np.asarray(x, float), 1e-300))[:, None] - np.log(xs)[None, :]).argmin(axis=1)
    j = np.abs(np.log(np.maximum(np.asarray(y, float), 1e-300))[:, None] - np.log(ys)[None, :]).argmin(axis=1)
    return grid[i, j]


def interp_table(x: np.ndarray, y: np.ndarray, table: tuple) -> np.ndarray:
    """Bilinear interpolation of log(eff) over (log x, log y) of ``table`` = (xs, ys, eff); clamped."""
    xs, ys, eff = table
    lx, ly = np.log(xs), np.log(ys)
    px = np.clip(np.log(np.maximum(x, 1e-300)), lx[0], lx[-1])
    py = np.clip(np.log(np.maximum(y, 1e-300)), ly[0], ly[-1])
    i = np.clip(np.searchsorted(lx, px, side="right") - 1, 0, max(len(lx) - 2, 0))
    j = np.clip(np.searchsorted(ly, py, side="right") - 1, 0, max(len(ly) - 2, 0))
    le = np.log(eff)
    if len(lx) == 1 and len(ly) == 1:
        return np.full(np.shape(px), eff[0, 0])
    if len(lx) == 1:
        return np.exp(np.interp(py, ly, le[0]))
    if len(ly) == 1:
        return np.exp(np.interp(px, lx, le[:, 0]))
    fx = (px - lx[i]) / (lx[i + 1] - lx[i])
    fy = (py - ly[j]) / (ly[j + 1] - ly[j])
    v = (
        le[i, j] * (1 - fx) * (1 - fy)
        + le[i + 1, j] * fx * (1 - fy)
        + le[i, j + 1] * (1 - fx) * fy
        + le[i + 1, j + 1] * fx * fy
    )
    return np.exp(v)


# --------------------------------------------------------------------------------------------------
# the prediction


def predict(
    ops: pd.DataFrame,
    spec: "HardwareSpec",
    cuda_graph: bool = False,
    variants: dict | None = None,
    moe: tuple | None = None,
) -> pd.DataFrame:
    """Add ``predicted_time_s``, ``prediction_source``, ``host_s``, ``fixed_s`` (per occurrence) to a
    classified ops frame (classify.classify's columns plus op, category, phase, params,
    weight_bytes_read, kv_bytes_read, prompt_len) and refine ``bound`` with 'overhead' / 'latency'
    (module docstring). ``variants``, ``moe``: ``model_kernels`` of the model. Returns a new frame;
    ``prediction_columns`` gives the columns alone."""
    out = ops.copy()
    for key, value in prediction_columns(ops, spec, cuda_graph, variants, moe).items():
        out[key] = value
    return out


def _codes(column: pd.Series) -> tuple:
    """(codes, categories as str) of a column, through a categorical: no per-row strings."""
    cat = column.array if isinstance(column.dtype, pd.CategoricalDtype) else pd.Categorical(column)
    return np.asarray(cat.codes), [str(c) for c in cat.categories]


def _mask(codes, categories, wanted) -> np.ndarray:
    hit = [i for i, c in enumerate(categories) if c in wanted]
    return np.isin(codes, hit) if hit else np.zeros(len(codes), dtype=bool)


GEMM_VARIANTS = ("unaligned", "tall_k")
WEIGHT_ONLY_TABLES = ("fp8", "int8")  # gemm.DTYPE/weight_only (calibrate.WEIGHT_ONLY_IMPLS)
KV_TABLES = ("fp8",)  # attention.decode/kv_DTYPE
NORM_OPS = ("attn_norm", "mlp_norm", "final_norm", "post_attn_norm", "post_mlp_norm", "q_norm", "k_norm")


def op_variants(config: "ModelConfig", tp: int = 1, weight_dtype: str = "", kv_dtype: str = "") -> dict:
    """{op name: kernel variant} for the ops whose kernels differ between families, so a calibrated entry
    measured on one kind is not applied to another: the norms ('rmsnorm' | 'layernorm'), the MLP
    activation ('gated': act(gate) * up, two kernels in eager PyTorch; 'plain': one), and lm_head
    ('unaligned' when its vocabulary shard is not a multiple of 8 elements: cuBLAS then runs a slower
    kernel; 50257-wide gpt2 logits took 6.6x the time of 50304-wide ones at 64 tokens on an H200,
    reports/h200/kernels_probe.csv), down_proj ('tall_k': more inputs than outputs, which cuBLAS
    splits along K at few tokens, a second kernel; its shapes have their own GEMM table), attention
    ('dNN' for a head_dim other than 128: the flash kernels tile by head_dim). ``measured.ops`` /
    ``op_tables`` entries named ``NAME/VARIANT``, ``gemm.DTYPE/VARIANT`` and ``attention.PHASE/VARIANT``
    are used for these ops where the spec has them, else the plain entry.

    Storage formats whose kernels differ from the 16-bit ones (``weight_dtype``, ``kv_dtype``: the
    workload's): 8-bit weights with 16-bit activations ('weights': 'fp8' | 'int8'; the projections whose
    weights are stored in 8 bits read ``gemm.DTYPE/weight_only``: how the calibrated stack runs a weight-only
    8-bit projection, which torch does unfused) and an fp8 KV cache ('kv_cache': 'fp8'; decode attention
    reads ``attention.decode/kv_fp8``). Without those tables the rows keep the 16-bit kernels' efficiency:
    a fused kernel that reaches what the 16-bit one does on fewer bytes.

    ``'biased'``: the projections that add a bias (gpt2's every linear, qwen2's q/k/v, gpt-oss's experts):
    cuBLAS fuses the add into the GEMM's epilogue, 2-15% slower than the plain kernel at the same shape
    (reports/h200/bias_probe.csv); ``gemm.DTYPE/bias`` prices it where measured (``bias_factor``)."""
    out = {name: config.norm for name in NORM_OPS}
    out["biased"] = biased_ops(config)
    if weight_dtype in WEIGHT_ONLY_TABLES:
        out["weights"] = weight_dtype
    if kv_dtype in KV_TABLES:
        out["kv_cache"] = kv_dtype
    out["act"] = "gated" if config.gated_mlp else "plain"
    out["down_proj"] = "tall_k"
    vocab_shard = -(-config.vocab_size // max(tp, 1))
    if vocab_shard % 8:
        out["lm_head"] = "unaligned"
    if config.head_dim != 128:
        out["attention"] = f"d{config.head_dim}"
    return out


def biased_ops(config: "ModelConfig") -> tuple:
    """Names of the matmul ops that carry a bias, as transformer.py adds them (its ``proj`` calls)."""
    out = []
    if config.qkv_bias and not config.is_mla:
        out += ["qkv_proj", "q_proj", "k_proj", "v_proj"]
    if config.o_bias:
        out.append("o_proj")
    if config.mlp_bias:
        out += ["gate_up_proj", "gate_proj", "up_proj", "down_proj"]
    if config.lm_head_bias:
        out.append("lm_head")
    if config.expert_bias:
        out += ["router", "experts"]
    return tuple(out)


def bias_factor(tokens: np.ndarray, kn: np.ndarray, plain: tuple, biased: tuple) -> np.ndarray:
    """How much longer a GEMM with a fused bias runs than without, per row: the plain table's efficiency over
    the bias table's at the row's (tokens, weight elements), at least 1 (an added bias never makes the GEMM
    faster; a ratio under 1 is the two tables' noise). Applied on top of the row's own table (tall_k,
    unaligned), whose shapes were timed without a bias; the bias's own bytes are in the roofline already. Both
    tables are read at weight elements within the bias table's range (it covers fewer shapes)."""
    ys = biased[1]
    kn = np.clip(kn, ys[0], ys[-1])
    return np.maximum(interp_table(tokens, kn, plain) / interp_table(tokens, kn, biased), 1.0)


def model_kernels(config: "ModelConfig", workload: "Workload") -> tuple:
    """(``op_variants``, ``moe``) of a model and workload, the two arguments ``prediction_columns`` takes
    from them: the kernel variants its ops run, and of an MoE model (else None) ``moe`` = (routed experts per
    GPU, experts per token, hidden size, one routed expert's width, the workload's routed_experts or None, the
    expert-parallel GPUs ep): its gate, up and down matrices are hidden x width each."""
    w = workload
    variants = op_variants(config, w.tp, str(w.weight_dtype), str(w.kv_dtype))
    moe = None
    if config.is_moe:
        moe = (
            config.num_local_experts // max(w.ep, 1),
            config.num_experts_per_tok,
            config.hidden_size,
            config.expert_intermediate_size,
            w.routed_experts,
            max(w.ep, 1),
        )
    return variants, moe


def _entry_key(name: str, variants: dict, table: dict):
    """The key of ``table`` for op ``name``: NAME/VARIANT where the spec has it, else NAME, else None."""
    v = variants.get(name)
    if v and f"{name}/{v}" in table:
        return f"{name}/{v}"
    return name if name in table else None


def projection_formats(ops: pd.DataFrame, variants: dict) -> np.ndarray:
    """Per row, the 8-bit format of a quantised projection as the calibrated tables name it, else '':
    'fp8' / 'int8' for W8A8 (8-bit compute), 'DTYPE/weight_only' for 8-bit weights with 16-bit compute
    (``variants['weights']``, op_variants). A quantised projection is a matmul row whose weights are stored
    in under 1.5 bytes per parameter (lm_head and the router stay 16-bit)."""
    out = np.full(len(ops), "", dtype=object)
    if not len(ops):
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        per_param = ops["param_bytes"].to_numpy(float) / ops["params"].to_numpy(float)
    matmul = (ops["category"].to_numpy() == "matmul") & (per_param < 1.5)
    dtype = ops["compute_dtype"].astype(str).to_numpy()
    w8a8 = matmul & np.isin(dtype, ("fp8", "int8"))
    out[w8a8] = dtype[w8a8]
    weights = variants.get("weights")
    if weights:
        out[matmul & np.isin(dtype, ("bf16", "fp16"))] = f"{weights}/weight_only"
    return out


def active_experts(
    tokens: np.ndarray, experts: int, top_k: int, routed: float | None = None, ep: int = 1
) -> np.ndarray:
    """Routed experts of one GPU that receive at least one token, ``tokens`` being that GPU's share: ``routed``
    where a step's routing was measured (config.Workload.routed_experts), else the expectation with each token
    of the ``ep`` GPUs picking ``top_k`` of the experts x ep uniformly, ``experts`` the GPU's own
    (formulas.expected_routed_experts: formulas.experts' weight bytes read the same count)."""
    t = np.asarray(tokens, float)
    if routed is not None:
        return np.full_like(t, float(routed))
    return expected_routed_experts(t, experts * ep, top_k, ep)


def expert_tokens(tokens: np.ndarray, experts: int, top_k: int, routed: float | None = None, ep: int = 1) -> tuple:
    """(active experts, tokens each active expert gets) of one GPU whose share is ``tokens`` tokens, each routed
    to ``top_k`` experts, ``experts`` on this GPU of ``ep``: ``active_experts`` and tokens x top_k / active (the
    rows a GPU runs are as many as its own tokens produce, under balanced routing: formulas.experts)."""
    active = active_experts(tokens, experts, top_k, routed, ep)
    return active, np.asarray(tokens, float) * top_k / np.maximum(active, 1e-12)


# the kernels of one routed expert with tokens in the reference's loop (reference.ReferenceDecoder._moe),
# in launch order after the leading small kernels: gate GEMM, silu, up GEMM, mul, down GEMM, then the gather
# of the routing weights, mul, index_add_ ("gemm" or "small"); the leading ones are the gather x[token] and
# whatever else an expert with tokens launches (kernels_per_active_expert - 8: a non-empty where's extra)
EXPERT_KERNELS = ("gemm", "small", "gemm", "small", "gemm", "small", "small", "small")
GEMMS_PER_EXPERT = EXPERT_KERNELS.count("gemm")
EXPERT_BODY_KERNELS = 1 + len(EXPERT_KERNELS)  # the loop body counted in the reference: 9 kernels
# what the loop body's non-GEMM kernels move per token of the expert, in activation elements of (hidden, width):
# the leading gather x[token] (read and write a row), then in EXPERT_KERNELS' order silu(gate) (read, write a
# width row), silu * up (two in, one out), the gather of the routing weights (one element: the floor), the
# weights' mul (a hidden row in and out) and index_add_ (the row added into the output: read it, read and write
# the output's). A 128-token Mixtral expert's silu * up moves 11 MB, 3.4 us on an H200, not the small kernel's
# 1.2 us (reports/h200/moe_kernels.csv)
EXPERT_LEAD_ELEMENTS = (2, 0)
EXPERT_SMALL_ELEMENTS = ((0, 2), (0, 3), (0, 0), (2, 0), (3, 0))


def expert_loop(
    entry: dict,
    active: np.ndarray,
    gemm_s: np.ndarray,
    small_default_s: float,
    gap_s: float,
    experts: float | None = None,
    body_time: "Callable[[tuple, float], np.ndarray] | None" = None,
    split: tuple | None = None,
) -> dict:
    """The experts op of the MoE expert loop (module docstring) per occurrence, at ``active`` routed experts
    with tokens of ``experts`` (the loop's length; None: the calibrated one) and ``gemm_s`` (the GEMM-table
    time of the op), from its ``measured.ops`` entry in SI units (host_eager_s, host_per_active_expert_s,
    active_experts; kernels, kernels_per_active_expert, small_kernel_s, syncs where measured).
    ``small_default_s``: the small-kernel time where neither small_kernel_s nor fixed_s / kernels is known;
    ``gap_s``: the launch gap per kernel. ``body_time(elements_per_token, small_s)``: the GPU time of one of an
    active expert's non-GEMM kernels moving those (hidden, width) elements per token, at least ``small_s``
    (``expert_body_time``); None: every such kernel takes the small-kernel time. ``split``: (extra [occurrences, 3],
    host_s): the kernels each of an active expert's GEMMs (gate, up, down) runs beyond the calibration's one
    (``expert_split_kernels``: cuBLAS's split-K), each costing the host host_s (split_kernel_host_us) and the
    GPU a launch gap (the GEMM table's time already holds both kernels); None: none. Returns arrays: kernels,
    fixed_s, predicted_s, gap_s, host_s, sync_s (the time the occurrence holds the host and the GPU)."""
    a = np.asarray(active, float)
    a0, hpa = entry["active_experts"], entry["host_per_active_expert_s"]
    kpa = entry.get("kernels_per_active_expert", float(EXPERT_BODY_KERNELS))
    k0 = entry.get("kernels", 1.0)
    # the base part (routing and the where's) scales with the loop's length: E / the calibrated E
    scale = experts / entry["syncs"] if experts and entry.get("syncs", 0) > 0 else 1.0
    if "small_kernel_s" in entry:
        small = entry["small_kernel_s"]
    elif "fixed_s" in entry and k0 > 0:
        small = entry["fixed_s"] / k0
    else:
        small = small_default_s
    extra = np.zeros((np.size(a), GEMMS_PER_EXPERT)) if split is None else np.asarray(split[0], float)
    extra = extra.reshape(np.shape(a) + (GEMMS_PER_EXPERT,))
    split_host = 0.0 if split is None else split[1]
    n_extra = extra.sum(axis=-1)
    kpa_run = kpa + n_extra  # the kernels an active expert of this model runs
    kernels = np.maximum(max(k0 - kpa * a0, 0.0) * scale + kpa_run * a, GEMMS_PER_EXPERT * a)
    fixed = kernels * small
    # an active expert's non-GEMM kernels: the leading ones (the gather, then the small kernel) and the body's
    n_lead = max(kpa - len(EXPERT_KERNELS), 0.0)
    sized = body_time or (lambda elements, floor: np.full_like(a, floor))
    lead = min(n_lead, 1.0) * sized(EXPERT_LEAD_ELEMENTS, small) + max(n_lead - 1.0, 0.0) * small
    body = [sized(e, small) for e in EXPERT_SMALL_ELEMENTS]
    other = (kernels - kpa_run * a) * small + a * (lead + sum(body))  # every non-GEMM kernel of the occurrence
    predicted = np.maximum(fixed, gemm_s + other)
    per_gemm = (predicted - other) / np.maximum(GEMMS_PER_EXPERT * a, 1e-300)
    h = hpa / max(kpa, len(EXPERT_KERNELS))  # the host cost of one kernel: the segment's host adds up to hpa
    small_slots = iter(body)
    extras = iter(np.moveaxis(extra, -1, 0))
    blocks = [(n_lead, h, lead / max(n_lead, 1e-300) + gap_s)]
    for x in EXPERT_KERNELS:  # a split GEMM: one more launch on the host and one more gap on the GPU
        if x == "gemm":
            e = next(extras)
            blocks.append((1.0, h + e * split_host, per_gemm + (1.0 + e) * gap_s))
        else:
            blocks.append((1.0, h, next(small_slots) + gap_s))
    base = max(entry["host_eager_s"] - hpa * a0, 0.0) * scale
    return {
        "kernels": kernels,
        "fixed_s": fixed,
        "predicted_s": predicted,
        "gap_s": kernels * gap_s,
        "host_s": base + (hpa + n_extra * split_host) * a,
        "sync_s": base + a * queue_blocks(blocks),
    }


def counts_split_kernels(key: str) -> bool:
    """Whether a gemm table's kernel grid counts split-K kernels (16-bit tables): an 8-bit table's kernels are
    those of its activation quantisation, priced by projection_host_us instead."""
    return not any(q in key for q in ("fp8", "int8", "weight_only"))


def expert_split_kernels(
    ex: np.ndarray,
    keys: np.ndarray,
    tokens: np.ndarray,
    kn: np.ndarray,
    grids: dict,
    per_op: dict,
    gated: bool = True,
) -> np.ndarray:
    """The extra kernels each GEMM of an active routed expert runs, [rows, 3] (gate, up, down; 0 elsewhere),
    for the matmul rows a gemm block selected: ``ex`` the experts rows, ``keys`` each row's table, ``tokens``
    and ``kn`` the tokens an active expert gets and one matrix's elements. Where a 16-bit table's kernel grid
    (``gemm_kernels``) is measured: the nearest cell's kernels per call (the down matrix in the table's tall_k
    grid, as its time), less the kernels the calibration's own expert GEMM ran (the small model's gate_proj,
    up_proj and down_proj entries in ``per_op``: one each on an H200); none for a matrix more than 2x off the
    grid's sizes. Mixtral's down matrix at 2 or 128 tokens runs split-K, two kernels
    (reports/h200/moe_kernels.csv), one more than the small model's: 125 kernels a layer at 7 active experts,
    measured, against 114.5 without it (stop 15). A plain MLP has no gate."""
    out = np.zeros((len(kn), GEMMS_PER_EXPERT))
    mats = (("gate_proj", ""), ("up_proj", ""), ("down_proj", "/tall_k"))
    for key in set(keys[ex]) & set(grids):
        if not counts_split_kernels(key):
            continue
        s = ex & (keys == key)
        for j, (name, variant) in enumerate(mats):
            if j == 0 and not gated:
                continue
            grid = grids.get(f"{key}{variant}", grids[key])
            ran = per_op.get(name, {}).get("kernels", 1.0)
            # a count is not carried past the grid: a matrix more than 2x off its nearest measured size keeps the
            # calibration's kernels (the small model's 1408 -> 512 down is 3.3x under tall_k's smallest, 3072 -> 768,
            # which runs split-K; its own runs one)
            near = (kn[s] >= grid[1][0] / 2.0) & (kn[s] <= grid[1][-1] * 2.0)
            out[s, j] = np.where(near, np.maximum(nearest_cell(tokens[s], kn[s], grid) - ran, 0.0), 0.0)
    return out


def expert_body_time(
    tokens: np.ndarray, hidden: int, width: int, bandwidth: tuple | None, act_bytes: float = 2.0
) -> "Callable[[tuple, float], np.ndarray]":
    """``expert_loop``'s ``body_time`` for an expert with ``tokens`` tokens of a model of ``hidden`` and expert
    ``width``: the kernel's bytes (elements per token x tokens x ``act_bytes``, 16-bit activations as the
    reference's loop runs them) over the calibrated bandwidth at that size, at least the small-kernel time;
    without a bandwidth curve, the small-kernel time (the model before the curve was used here)."""
    t = np.asarray(tokens, float)

    def body_time(elements, small_s):
        n = t * (elements[0] * hidden + elements[1] * width) * act_bytes
        if bandwidth is None or not n.any():
            return np.full_like(t, small_s)
        return np.maximum(small_s, n / interp_loglog(np.maximum(n, 1.0), *bandwidth))

    return body_time


def queue_blocks(blocks: list) -> np.ndarray:
    """Launch-queue time of kernels issued in order into an empty queue: ``blocks`` [(n, host_s, gpu_s)],
    n like kernels each costing the host host_s and the GPU gpu_s (arrays broadcast). Returns max over
    kernels i of (host time up to and including i + GPU time from i to the end); in a block of like
    kernels that is at its first or its last kernel (a fractional n < 1 counts as one partial kernel)."""
    host_before = 0.0
    gpu_rest = sum(n * np.asarray(g, float) for n, _, g in blocks)
    best = np.zeros(np.shape(gpu_rest))
    for n, h, g in blocks:
        one = min(n, 1.0)
        first = host_before + one * h + gpu_rest
        last = host_before + n * h + gpu_rest - (n - one) * np.asarray(g, float)
        best = np.maximum(best, np.maximum(first, last))
        host_before = host_before + n * h
        gpu_rest = gpu_rest - n * np.asarray(g, float)
    return best


def prediction_columns(
    ops: pd.DataFrame,
    spec: "HardwareSpec",
    cuda_graph: bool = False,
    variants: dict | None = None,
    moe: tuple | None = None,
) -> dict:
    """The columns ``predict`` adds, as arrays (``bound`` refined). Vectorised: per-op-name work is
    one mask per distinct name, never a loop over rows. ``variants``: ``op_variants`` of the model;
    ``moe``: ``model_kernels``' (routed experts per GPU, experts per token, hidden, expert width) of an MoE model."""
    variants = variants or {}
    k = getattr(spec, "measured_kernels", None) or {}
    n = len(ops)
    t_roof = ops["time_s"].to_numpy(float)
    t_compute = ops["time_compute_s"].to_numpy(float)
    t_memory = ops["time_memory_s"].to_numpy(float)
    flops = ops["flops"].to_numpy(float)
    moved = ops["bytes_read"].to_numpy(float) + ops["bytes_written"].to_numpy(float)
    act_moved = moved - ops["weight_bytes_read"].to_numpy(float)
    name_codes, names = _codes(ops["op"])
    cat_codes, cats = _codes(ops["category"])
    calibrated = np.zeros(n, dtype=bool)
    gemm_cells = np.full(n, np.nan)  # a 16-bit projection's kernels per call, where its gemm cell records them
    expert_split = np.zeros((n, GEMMS_PER_EXPERT))  # a routed expert's extra kernels per GEMM (gate, up, down)
    comm = _mask(cat_codes, cats, {"collective"})

    formats = projection_formats(ops, variants)
    prefill = ops["phase"].to_numpy() == "prefill"
    tokens_all = ops["batch_size"].to_numpy(float) * np.where(prefill, ops["prompt_len"].to_numpy(float), 1.0)

    # 1. kernel model
    model = t_roof.copy()
    t_mem = t_memory.copy()  # memory time at the calibrated bandwidth for the op's size
    if "bandwidth" in k:
        sel = _mask(cat_codes, cats, {"elementwise", "memory"})
        t_mem[sel] = moved[sel] / interp_loglog(moved[sel], *k["bandwidth"])
        model[sel] = np.maximum(t_compute[sel], t_mem[sel])
        calibrated |= sel
    if "gemm" in k:
        sel = _mask(cat_codes, cats, {"matmul"})
        if sel.any():
            kn = ops["params"].to_numpy(float)[sel]
            kn = np.where(kn > 0, kn, ops["weight_bytes_read"].to_numpy(float)[sel] / 2.0)  # tied lm_head: 16-bit
            with np.errstate(divide="ignore", invalid="ignore"):
                tokens = np.where(kn > 0, flops[sel] / (2.0 * kn), 1.0)
            if moe and "experts" in names:
                # the routed experts run one GEMM per matrix of each expert with tokens (reference._moe): the
                # table is read at one matrix's K x N and the tokens an active expert gets (tokens x top_k /
                # active experts), not at the op's sum over experts (Mixtral at decode batch 8: 2.2 tokens
                # against 58.7M elements, where the sum read 2 tokens against 1.4G)
                ex = name_codes[sel] == names.index("experts")
                kn[ex] = float(moe[2] * moe[3])
                tokens[ex] = expert_tokens(tokens_all[sel][ex] / moe[5], moe[0], moe[1], moe[4], moe[5])[1]
            d_codes, dtypes = _codes(ops["compute_dtype"])
            tables = k["gemm"]

            def table_for(dtype: str, name: str) -> str:
                """The op's kernel variant of its dtype (DTYPE/tall_k, DTYPE/unaligned) where measured, else
                its dtype's table, else bf16's, else the first."""
                v = variants.get(name)
                for key in (f"{dtype}/{v}" if v in GEMM_VARIANTS else None, dtype, "bf16"):
                    if key in tables:
                        return key
                return next(iter(tables))

            # the table each row reads, by name, decided once per (dtype, op name) pair
            pair = d_codes[sel] * len(names) + name_codes[sel]
            pairs, row_pair = np.unique(pair, return_inverse=True)
            keys = np.array([table_for(dtypes[p // len(names)], names[p % len(names)]) for p in pairs], dtype=object)
            keys = keys[row_pair.reshape(-1)]
            # weight-only 8-bit rows (a 16-bit compute dtype on weights stored in one byte or less) take the
            # weight format's own table where measured: it prices the kernels that really run (op_variants)
            weight_only = f"{variants.get('weights')}/weight_only"
            if weight_only in tables:
                keys[formats[sel] == weight_only] = weight_only
            m_sel = model[sel]
            for key in set(keys):
                s_key = keys == key
                m_sel[s_key] = t_roof[sel][s_key] / interp_table(tokens[s_key], kn[s_key], tables[key])
            if moe and "experts" in names:
                # an expert's down matrix (width -> hidden) is down_proj's shape: it reads the dtype's tall_k table,
                # the gate and up matrices their own; the matrices have equal FLOPs and weights, so each takes
                # its share of the op's roofline (1/3 gated, 1/2 plain)
                n_mat = 3 if variants.get("act", "gated") == "gated" else 2
                for key in set(keys[ex]):
                    tall = f"{key}/tall_k"
                    if tall not in tables:
                        continue
                    s_ex = ex & (keys == key)
                    t, e = tokens[s_ex], kn[s_ex]
                    share = (n_mat - 1) / n_mat / interp_table(t, e, tables[key]) + 1 / n_mat / interp_table(
                        t, e, tables[tall]
                    )
                    m_sel[s_ex] = t_roof[sel][s_ex] * share
            # biased projections of a 16-bit table: the fused add's cost, where the dtype's bias table is measured
            # (weight-only 8-bit rows keep their own table: the bias is not a GEMM epilogue there)
            biased = _mask(name_codes[sel], names, set(variants.get("biased", ()))) & (keys != weight_only)
            for d_code, dtype in enumerate(dtypes):
                if f"{dtype}/bias" not in tables or dtype not in tables:
                    continue
                s_bias = biased & (d_codes[sel] == d_code)
                if s_bias.any():
                    m_sel[s_bias] *= bias_factor(tokens[s_bias], kn[s_bias], tables[dtype], tables[f"{dtype}/bias"])
            model[sel] = m_sel
            calibrated |= sel
            grids = k.get("gemm_kernels", {})
            cells = np.full(len(kn), np.nan)
            # 16-bit projections only: an 8-bit one's extra host cost is projection_host_us, its table's kernels
            # those of its activation quantisation
            projection = _mask(name_codes[sel], names, set(PROJECTION_OPS)) & (formats[sel] == "")
            for key in set(keys) & set(grids):
                if counts_split_kernels(key):
                    s_key = projection & (keys == key)
                    cells[s_key] = nearest_cell(tokens[s_key], kn[s_key], grids[key])
            gemm_cells[sel] = cells
            if moe and "experts" in names:
                expert_split[sel] = expert_split_kernels(
                    ex, keys, tokens, kn, grids, per_op=k.get("ops", {}), gated=n_mat == 3
                )
    attn = dict(k.get("attention", {}))
    v = variants.get("attention")
    for phase in ("prefill", "decode"):  # the head_dim's own tables where measured
        if v and f"{phase}/{v}" in attn:
            attn[phase] = attn[f"{phase}/{v}"]
    kv = variants.get("kv_cache")
    if kv and f"decode/kv_{kv}" in attn:  # an 8-bit cache as the calibrated stack reads it (op_variants)
        attn["decode"] = attn[f"decode/kv_{kv}"]
    if attn:
        p_codes, phases = _codes(ops["phase"])
        flash = _mask(name_codes, names, {"attention"})
        if "prefill" in attn:
            s = flash & _mask(p_codes, phases, {"prefill"})
            q_len = ops["prompt_len"].to_numpy(float)[s]
            width = flops[s] / (q_len * (q_len + 1) / 2)
            model[s] = t_compute[s] / interp_table(q_len, width, attn["prefill"])  # roofline: compute
            calibrated |= s
        if "decode" in attn:
            s = flash & _mask(p_codes, phases, {"decode"})
            kv = ops["kv_bytes_read"].to_numpy(float)[s]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(kv > 0, flops[s] / kv, 1.0)
            model[s] = t_roof[s] / interp_table(kv, ratio, attn["decode"])
            calibrated |= s

    # 1b. collectives: the spec's measured table at the row's size and world (collective_times, end of file)
    t_coll, coll_source, coll_labels = collective_times(ops, spec, comm)
    table = ~np.isnan(t_coll)
    model[table] = np.maximum(np.maximum(t_compute[table], t_memory[table]), t_coll[table])

    # 2. fixed per-occurrence cost and host cost (and the traffic factor of element-wise ops)
    per_op = k.get("ops", {})
    elementwise = _mask(cat_codes, cats, {"elementwise", "memory"}) if "bandwidth" in k else np.zeros(n, dtype=bool)
    fixed = np.full(n, k.get("kernel_min_s", spec.graph_launch_overhead_s))
    if "kernel_min_s" in k:
        calibrated |= ~comm
    host = np.full(n, 0.0 if cuda_graph else spec.ceiling_launch_s(False))
    kernels = np.ones(n)
    tables = k.get("op_tables", {})
    syncs = np.zeros(n, dtype=bool)
    loop = {}  # experts rows -> their entry, for the expert loop (2b)
    for i, name in enumerate(names):
        key = _entry_key(name, variants, tables) if tables else None
        s = name_codes == i
        table_rows = np.zeros(n, dtype=bool)
        if key is not None:  # the op's own table: measured on the reference at several sizes
            table_rows = s & _mask(cat_codes, cats, {"elementwise", "memory"})
            if table_rows.any():
                tok = tokens_all[table_rows]
                width = act_moved[table_rows] / tok  # the op's width: its activation bytes per token
                model[table_rows] = t_roof[table_rows] / interp_table(tok, width, tables[key])
                calibrated |= table_rows
        entry = per_op.get(_entry_key(name, variants, per_op) or name)
        if not entry:
            continue
        if "fixed_s" in entry:
            fixed[s] = entry["fixed_s"]
            calibrated |= s
        if "host_eager_s" in entry and not cuda_graph:
            host[s] = entry["host_eager_s"]
        if moe and {"host_eager_s", "host_per_active_expert_s", "active_experts"} <= set(entry):
            loop[i] = entry
        if entry.get("syncs", 0) > 0 and not cuda_graph:
            syncs |= s
        if "kernels" in entry:
            kernels[s] = max(entry["kernels"], 1.0)
        if "traffic" in entry:
            t = s & elementwise & ~table_rows
            model[t] = np.maximum(t_compute[t], t_mem[t] * entry["traffic"])
    cell = ~np.isnan(gemm_cells)
    if cell.any():  # the kernels the projection's GEMM really runs, and the host's launch of any extra one
        extra = gemm_cells[cell] - kernels[cell]  # kernels: the op entry's, measured on the small model
        kernels[cell] = gemm_cells[cell]
        if "split_kernel_host_s" in k and not cuda_graph:
            host[cell] = np.maximum(host[cell] + extra * k["split_kernel_host_s"], 0.0)
    if "projection_host_s" in k and not cuda_graph:  # 8-bit projections' extra eager host cost per call
        for key, extra in k["projection_host_s"].items():
            host[formats == key] += extra
    host_scale = 1.0 if cuda_graph else float(getattr(spec, "host_scale", 1.0))
    host *= host_scale  # the host now against the host at calibration (module docstring: the host reference)
    if cuda_graph and "graph_replay_s" in k and n:
        # the step is one graph launch: the host pays it before the first op's kernels start
        pt, ph = ops["point"].to_numpy(), np.asarray(ops["phase"].to_numpy())
        first = np.r_[True, (pt[1:] != pt[:-1]) | (ph[1:] != ph[:-1])]
        host[first] = k["graph_replay_s"]
    fixed[comm] = 0.0  # collectives: the alpha of the link model is their fixed cost
    predicted = np.maximum(fixed, model)
    gap_s = k.get("kernel_gap_s", spec.ceiling_launch_s(True))
    gap = kernels * gap_s
    sync = np.where(syncs, host + predicted + gap, 0.0)  # a syncing op without the loop model: nothing overlaps

    # 2b. the MoE expert loop (module docstring, expert_loop): kernels, GPU time, host cost and queue time
    small_default = k.get("kernel_min_s", spec.graph_launch_overhead_s)
    for i, entry in loop.items():
        s = name_codes == i
        # tokens_all is the step's (every GPU's); one GPU of ep takes 1/ep of the sequences (transformer.model_ops)
        active, per_expert = expert_tokens(tokens_all[s] / moe[5], moe[0], moe[1], moe[4], moe[5])
        body = expert_body_time(per_expert, moe[2], moe[3], k.get("bandwidth"))
        if host_scale != 1.0:
            entry = {
                **entry,
                "host_eager_s": entry["host_eager_s"] * host_scale,
                "host_per_active_expert_s": entry["host_per_active_expert_s"] * host_scale,
            }
        split_host = 0.0 if cuda_graph else k.get("split_kernel_host_s", 0.0) * host_scale
        e = expert_loop(entry, active, model[s], small_default, gap_s, moe[0], body, (expert_split[s], split_host))
        kernels[s], fixed[s], predicted[s], gap[s] = e["kernels"], e["fixed_s"], e["predicted_s"], e["gap_s"]
        calibrated |= s
        if not cuda_graph:
            host[s] = e["host_s"]
            sync[s] = np.where(syncs[s], e["sync_s"], 0.0)

    # 3. classes: overhead where the host is slower than the kernel, latency where no roof is reached
    b_codes, b_cats = _codes(ops["bound"])
    classes = list(b_cats) + [
        c for c in ("compute", "memory", "communication", "overhead", "latency") if c not in b_cats
    ]
    code = {c: i for i, c in enumerate(classes)}
    keep = _mask(b_codes, b_cats, {"communication"})
    bound = np.where(t_compute >= t_memory, code["compute"], code["memory"])
    bound[keep] = code["communication"]
    bound[calibrated & ~keep & (predicted >= LATENCY_RATIO * t_roof)] = code["latency"]
    bound[~keep & (host > predicted + gap)] = code["overhead"]  # kept only in host-bound steps (analysis)
    return {
        "predicted_time_s": predicted,
        "prediction_source": pd.Categorical.from_codes(
            np.where(comm, 2 + coll_source, np.where(calibrated, 0, 1)), [CALIBRATED, DATASHEET, *coll_labels]
        ),
        "fixed_s": fixed,
        "launch_gap_s": gap,
        "stream_s": predicted + gap,
        "host_s": host,
        "sync_s": sync,
        "bound": pd.Categorical.from_codes(bound, classes),
    }


def host_bound_classes(bound: pd.Series, host_bound: np.ndarray) -> pd.Categorical:
    """``bound`` with 'overhead' kept only in steps whose host time exceeds their GPU time; elsewhere the
    host cost is hidden behind the GPU's queue and the op keeps its roofline class (memory: an op shorter
    than a launch moves little and computes less)."""
    cat = pd.Categorical(bound)
    codes = np.asarray(cat.codes).copy()
    cats = list(cat.categories)
    if "overhead" in cats:
        hidden = (codes == cats.index("overhead")) & ~host_bound
        if hidden.any():
            if "memory" not in cats:
                cats.append("memory")
            codes[hidden] = cats.index("memory")
    return pd.Categorical.from_codes(codes, cats)


def occurrence_time(ops: pd.DataFrame) -> np.ndarray:
    """An occurrence's weight in the step's attribution: max(stream_s, host_s), or sync_s for an op that
    syncs with the host, seconds."""
    t = np.maximum(ops["stream_s"].to_numpy(float), ops["host_s"].to_numpy(float))
    return np.maximum(t, ops["sync_s"].to_numpy(float)) if "sync_s" in ops else t


def queue_step(
    host: np.ndarray,
    stream: np.ndarray,
    counts: np.ndarray,
    block: tuple[int, int] | None = None,
    sync: np.ndarray | None = None,
) -> np.ndarray:
    """Step time of the launch queue (module docstring) for ``host`` and ``stream`` [points, ops] (seconds
    per occurrence, ops in execution order), ``counts`` [ops]. ``block`` = (start, stop): the ops
    [start, stop) run as one block repeated counts[start] times (the layers); every other op runs its
    occurrences back to back. ``sync`` [points, ops] (or [ops]): for an op that syncs with the host, the
    seconds an occurrence holds both host and GPU once both are free (``sync_s``); 0 for the others.
    Returns [points]."""
    host = np.atleast_2d(host)
    stream = np.atleast_2d(stream)
    if sync is not None and np.any(np.asarray(sync) > 0):
        return _simulate_queue(host, stream, counts, block, np.broadcast_to(np.asarray(sync, float), host.shape))
    n_ops = host.shape[1]
    segments = []  # (start, stop, repeats)
    i = 0
    while i < n_ops:
        if block and i == block[0]:
            segments.append((block[0], block[1], float(counts[block[0]])))
            i = block[1]
        else:
            segments.append((i, i + 1, float(counts[i])))
            i += 1
    h_seg = np.stack([host[:, a:b].sum(axis=1) * r for a, b, r in segments], axis=1)  # host of all repeats
    g_seg = np.stack([stream[:, a:b].sum(axis=1) * r for a, b, r in segments], axis=1)
    h_before = np.cumsum(h_seg, axis=1) - h_seg
    g_after = g_seg[:, ::-1].cumsum(axis=1)[:, ::-1] - g_seg
    best = np.zeros(host.shape[0])
    for j, (a, b, r) in enumerate(segments):
        hb, gb = host[:, a:b], stream[:, a:b]
        # inside one repeat: host up to and including op i + GPU from op i to the end of the repeat
        inner = (np.cumsum(hb, axis=1) + gb[:, ::-1].cumsum(axis=1)[:, ::-1]).max(axis=1)
        repeats = (r - 1) * np.maximum(hb.sum(axis=1), gb.sum(axis=1))  # the first or the last repeat
        best = np.maximum(best, h_before[:, j] + inner + repeats + g_after[:, j])
    return best


def _simulate_queue(host, stream, counts, block, sync) -> np.ndarray:
    """The launch queue occurrence by occurrence (vectorised over points), for steps with host syncs:
    a plain op ends on the GPU at max(GPU free, host issued it) + stream; a syncing op (sync > 0) starts
    when both the host and the GPU are free and holds both for sync."""
    t_host = np.zeros(host.shape[0])
    t_gpu = np.zeros(host.shape[0])

    def run(i):
        nonlocal t_host, t_gpu
        held = sync[:, i]
        issued = t_host + host[:, i]
        done = np.maximum(t_gpu, issued) + stream[:, i]
        both = np.maximum(t_host, t_gpu) + held
        t_host = np.where(held > 0, both, issued)
        t_gpu = np.where(held > 0, both, done)

    i, n_ops = 0, host.shape[1]
    while i < n_ops:
        if block and i == block[0]:
            for _ in range(int(counts[i])):
                for j in range(block[0], block[1]):
                    run(j)
            i = block[1]
        else:
            for _ in range(int(counts[i])):
                run(i)
            i += 1
    return np.maximum(t_host, t_gpu)


def layer_block(counts: np.ndarray) -> tuple[int, int] | None:
    """(start, stop) of the contiguous run of ops with the largest count (> 1), or None."""
    top = counts.max() if len(counts) else 0
    if top <= 1:
        return None
    idx = np.flatnonzero(counts == top)
    if idx[-1] - idx[0] + 1 != len(idx):
        return None
    return int(idx[0]), int(idx[-1]) + 1


def step_time(ops: pd.DataFrame) -> float:
    """Step time of these rows (one point, one phase, in execution order) by the launch queue, seconds."""
    counts = ops["count"].to_numpy(float)
    if not len(counts):
        return 0.0
    return float(
        queue_step(
            ops["host_s"].to_numpy(float)[None, :],
            ops["stream_s"].to_numpy(float)[None, :],
            counts,
            layer_block(counts),
            ops["sync_s"].to_numpy(float)[None, :] if "sync_s" in ops else None,
        )[0]
    )


def with_host_reference(spec: "HardwareSpec", reference_s: float | None) -> tuple:
    """(``spec`` with host_scale = ``reference_s`` / its recorded host reference, the scale): the eager host
    costs as the host that timed ``reference_s`` (calibrate.host_reference_job's step, seconds) pays them
    (module docstring: the host reference). (``spec``, None) where either is missing: a datasheet spec, a
    calibration older than the reference, or no reference timed."""
    from dataclasses import replace

    recorded = (getattr(spec, "measured_kernels", None) or {}).get("host_reference_s")
    if not recorded or reference_s is None or not np.isfinite(reference_s) or reference_s <= 0:
        return spec, None
    scale = float(reference_s) / recorded
    return replace(spec, host_scale=scale), scale


def host_reference_record(measured: dict, spec: "HardwareSpec") -> dict:
    """What a run records of its host reference: ``measured`` (steptime.time_with_reference's: eager_step_us,
    samples_us) with ``spec``'s recorded reference (calibrated_us) and the scale (``with_host_reference``; None
    where the spec records no reference). ``measured['eager_step_us']`` must be a positive number."""
    _, scale = with_host_reference(spec, measured["eager_step_us"] * 1e-6)
    recorded = (getattr(spec, "measured_kernels", None) or {}).get("host_reference_s")
    out = {k: v for k, v in measured.items() if k not in ("calibrated_us", "scale")}
    out["calibrated_us"] = round(recorded * 1e6, 2) if recorded else None
    out["scale"] = round(scale, 4) if scale is not None else None
    return out


def describe_host_reference(record: dict) -> str:
    """One line: the host reference now against at calibration (``host_reference_record``): the scale a
    host-normalised prediction takes."""
    now, then, scale = record.get("eager_step_us"), record.get("calibrated_us"), record.get("scale")
    if scale is None:
        return (
            f"host reference: {now:.1f} µs; the spec records none to compare it with (a datasheet spec, or "
            f"calibrated before the host reference): no host-normalised prediction"
        )
    return (
        f"host reference: {now:.1f} µs now against {then:.1f} µs at calibration: this host takes {scale:.2f}x "
        f"the calibration's eager host time (a host-normalised prediction: every eager host cost x {scale:.3f})"
    )


def describe_source(spec: "HardwareSpec") -> str:
    """One line naming what the prediction uses for ``spec``."""
    k = getattr(spec, "measured_kernels", None) or {}
    if not k:
        return (
            f"prediction: datasheet roofline of {spec.name} with a per-kernel minimum of "
            f"{spec.graph_launch_overhead_s * 1e6:.2f} µs (no measured kernel tables; run roofline calibrate)"
        )
    have = [key for key in ("bandwidth", "gemm", "attention", "ops") if key in k]
    return f"prediction: calibrated kernel model of {spec.name} ({', '.join(have)})"


# --------------------------------------------------------------------------------------------------
# collectives: the measured per-size model (``measured.collectives``, written by calibrate --collectives)
#
# A collective row's message is the nccl-tests size S of its call (bytes_written of the row: all-reduce
# writes its buffer, all-gather its gathered output, all-to-all one rank's buffer; formulas.py), and its
# comm_bytes is S x the op's bus factor at the row's world size (COLLECTIVE_BUSBW_FACTOR; nccl-tests'
# doc/PERFORMANCE.md). Per call, where the spec has a table for the row's collective at the same world:
#   S within the table      the time interpolated linearly in (log S, log t) between measured sizes
#   S above the largest     the largest size's time x S / largest size (its bandwidth, no latency)
#   S below the smallest    the smallest size's time (the latency floor)
# then never below the row's compute or memory roofline term. Elsewhere the roofline's
# alpha + comm_bytes / link (classify.py) stays: no table for the collective (pp_send is point to point,
# reduce-scatter has no op yet), or a table measured at another world size (ring and tree latencies and
# NVSwitch paths change with N, so a table does not carry over; the spec's link_busbw_gb_per_s and
# collective_latency_us, from the all-reduce of the same calibration, do: busbw is nccl-tests' figure
# meant to be independent of N). ``prediction_source`` says which, with the table's world size.

COLLECTIVE_BUSBW_FACTOR = {
    "all_reduce": lambda n: 2.0 * (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "all_to_all": lambda n: (n - 1) / n,
}
# the collective each collective op of transformer.py runs (pp_send: point to point, no table)
COLLECTIVE_OF_OP = {
    "embed_all_reduce": "all_reduce",
    "attn_all_reduce": "all_reduce",
    "mlp_all_reduce": "all_reduce",
    "logits_all_gather": "all_gather",
    "moe_dispatch": "all_to_all",
    "moe_combine": "all_to_all",
}
COLLECTIVE_TABLE, COLLECTIVE_LINK = "collective table", "alpha-beta"


def collective_table_time(message_bytes: np.ndarray, table: tuple) -> np.ndarray:
    """Seconds per call for messages of ``message_bytes`` from one op's ``table`` (world, sizes, times_s):
    log-log interpolation inside, the largest size's bandwidth above, the smallest size's time below."""
    _, xs, ts = table
    s = np.asarray(message_bytes, dtype=float)
    t = interp_loglog(s, xs, ts)
    above = s > xs[-1]
    t[above] = ts[-1] * s[above] / xs[-1]
    return t


def collective_times(ops: pd.DataFrame, spec: "HardwareSpec", comm: np.ndarray) -> tuple:
    """(time_s, source codes, source labels) for the rows ``comm`` of a classified ops frame: time_s from
    the spec's collective table where it applies (block comment above), NaN elsewhere; per row a code
    into the labels: COLLECTIVE_TABLE, COLLECTIVE_LINK, or COLLECTIVE_LINK with the world size of a
    table that does not match the row's."""
    tables = getattr(spec, "measured_collectives", None) or {}
    n = len(ops)
    time = np.full(n, np.nan)
    source = np.ones(n, dtype=int)
    labels = [COLLECTIVE_TABLE, COLLECTIVE_LINK]
    if not tables or not comm.any():
        return time, source, labels
    message = ops["bytes_written"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = ops["comm_bytes"].to_numpy(float) / message
    name_codes, names = _codes(ops["op"])
    for i, name in enumerate(names):
        kind = COLLECTIVE_OF_OP.get(name)
        if kind not in tables:
            continue
        rows = comm & (name_codes == i) & (message > 0)
        world = tables[kind][0]
        same = rows & np.isclose(factor, COLLECTIVE_BUSBW_FACTOR[kind](world), rtol=1e-9, atol=0.0)
        time[same] = collective_table_time(message[same], tables[kind])
        source[same] = 0
        other = rows & ~same
        if other.any():
            label = f"{COLLECTIVE_LINK} (table is for {world} GPUs)"
            if label not in labels:
                labels.append(label)
            source[other] = labels.index(label)
    return time, source, labels


def describe_collectives(spec: "HardwareSpec") -> str:
    """One line naming the collective model of ``spec``: its measured tables, or alpha + bytes / link."""
    tables = getattr(spec, "measured_collectives", None) or {}
    alpha_us, link_gb_per_s = spec.ceiling_collective_latency_s() * 1e6, spec.ceiling_link_bytes_per_s() / 1e9
    link = f"alpha {alpha_us:.4g} µs + bytes / {link_gb_per_s:.4g} GB/s"
    if not tables:
        return f"collectives: {link} (no measured table; run roofline calibrate --collectives)"
    have = ", ".join(f"{op} at {t[0]} GPUs ({t[1][0]:.0f}-{t[1][-1]:.0f} B)" for op, t in tables.items())
    return f"collectives: measured tables, {have}; other world sizes and ops: {link}"
