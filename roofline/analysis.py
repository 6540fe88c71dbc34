"""``analyze``: the analytic pipeline behind ``roofline analyze``, returning pandas DataFrames.

model file + workload -> transformer.model_ops per phase -> ops frame -> classify -> summary.
A sweep (lists of batch sizes / lengths) is evaluated in one vectorised pass: every formula takes
numpy arrays, so 10,000 points cost about as much as a few.
"""

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from roofline.classify import BOUNDS, classify
from roofline.config import (
    ModelConfig,
    Workload,
    check_fit,
    load_model_and_workload,
    parse_workload,
    with_checkpoint_weights,
)
from roofline.errors import ConfigError
from roofline.predict import host_bound_classes, layer_block, model_kernels, prediction_columns, queue_step
from roofline.quant import on_gpu
from roofline.specs import HardwareSpec, load_spec
from roofline.transformer import kv_cache_layers, model_ops

# the cost columns of the ops frame: per occurrence, summable over ops (advise's fusion adds two ops' rows)
COST_COLUMNS = [
    "flops",
    "bytes_read",
    "bytes_written",
    "weight_bytes_read",
    "act_bytes_read",
    "act_bytes_written",
    "kv_bytes_read",
    "kv_bytes_written",
    "comm_bytes",
    "params",
    "param_bytes",
]
# columns of the ops frame, in order
OP_COLUMNS = [
    "point",
    "batch_size",
    "prompt_len",
    "context_len",
    "phase",
    "op",
    "category",
    "compute_dtype",
    "count",
] + COST_COLUMNS
MAX_ROWS = 20_000_000  # ~3 GB of frame; beyond this a sweep is refused
RIDGE_SEARCH_MAX_BATCH = 1 << 16


@dataclass(frozen=True)
class Analysis:
    """Result of ``analyze``: one row per op per phase per point, and one summary row per point."""

    model: ModelConfig
    workload: Workload
    spec: HardwareSpec
    ops: pd.DataFrame
    summary: pd.DataFrame


def analyze(
    model: ModelConfig | str | Path,
    gpu: HardwareSpec | str | Path,
    workload: Optional[Workload] = None,
    **overrides: object,
) -> Analysis:
    """Analyse ``model`` (a path or ModelConfig) on ``gpu`` (a shipped name, a path or a HardwareSpec).

    ``overrides`` are workload settings by field name (batch_size=[1, 8], prompt_len=2048, phase='decode',
    weight_dtype='int4', ...); they win over the model file's ``workload:`` section.
    Raises RooflineError subclasses for bad input.
    """
    spec = load_spec(gpu)
    if isinstance(model, ModelConfig):
        raw = dict(vars(workload)) if workload else {}
        raw = {k: v for k, v in raw.items() if v is not None}
        raw.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("weight_dtype", "kv_dtype"):
            if overrides.get(key) is not None:
                raw[f"{key}_source"] = f"{key} argument"
        w = with_checkpoint_weights(model, parse_workload(raw))
        check_fit(model, w, model.name)
        m = model
    else:
        m, w = load_model_and_workload(model, overrides)
    m, w = on_gpu(m, w, spec)  # a W8A8 / W4A4 checkpoint without those tensor cores runs weight-only
    points = sweep_points(w)
    n_rows = len(points["batch_size"]) * len(w.phases) * 30
    if n_rows > MAX_ROWS:
        raise ConfigError(
            f"the sweep has {len(points['batch_size']):,} points (~{n_rows:,} op rows), too large for memory; "
            f"narrow the ranges or use fewer values"
        )
    ops = classify(ops_frame(m, w, points), spec, cuda_graph=w.cuda_graph)
    variants, moe = model_kernels(m, w)
    for key, value in prediction_columns(ops, spec, w.cuda_graph, variants, moe).items():  # predict.py, in place
        ops[key] = value
    # the step of each (point, phase) by predict.py's launch queue, and each op's share of it: in proportion
    # to count * stream_s where the GPU is the bottleneck of the step, count * host_s where the host is
    key = ops["point"].to_numpy() * 2 + ops["phase"].cat.codes.to_numpy()  # (point, phase) group id
    count = ops["count"].to_numpy()
    stream, host = ops["stream_s"].to_numpy(), ops["host_s"].to_numpy()
    host_bound = (np.bincount(key, weights=count * host) > np.bincount(key, weights=count * stream))[key]
    weight = count * np.where(host_bound, host, stream)
    ops["share"] = weight / np.bincount(key, weights=weight)[key]
    ops["total_time_s"] = ops["share"].to_numpy() * phase_steps(ops, len(points["batch_size"]))
    ops["bound"] = host_bound_classes(ops["bound"], host_bound)
    summary = summarise(ops, m, w, spec, points)
    return Analysis(m, w, spec, ops, summary)


def phase_steps(ops: pd.DataFrame, n_points: int) -> np.ndarray:
    """Per row, the step time of its (point, phase): predict.queue_step over the phase's ops in order,
    the per-layer ops as one block repeated num_hidden_layers times."""
    out = np.empty(len(ops))
    phase_codes = ops["phase"].cat.codes.to_numpy()
    for code in np.unique(phase_codes):
        sel = np.flatnonzero(phase_codes == code)  # point-major, ops in order within a point
        n_ops = len(sel) // n_points
        counts = ops["count"].to_numpy(float)[sel[:n_ops]]
        host = ops["host_s"].to_numpy(float)[sel].reshape(n_points, n_ops)
        stream = ops["stream_s"].to_numpy(float)[sel].reshape(n_points, n_ops)
        sync = ops["sync_s"].to_numpy(float)[sel].reshape(n_points, n_ops) if "sync_s" in ops else None
        out[sel] = np.repeat(queue_step(host, stream, counts, layer_block(counts), sync), n_ops)
    return out


def sweep_points(w: Workload) -> dict:
    """The cartesian product of the sweepable fields, as equal-length arrays."""
    if w.context_len:
        b, p, c = np.meshgrid(w.batch_size, w.prompt_len, w.context_len, indexing="ij")
        b, p, c = (x.ravel().astype(float) for x in (b, p, c))
    else:
        b, p = np.meshgrid(w.batch_size, w.prompt_len, indexing="ij")
        b, p = b.ravel().astype(float), p.ravel().astype(float)
        c = p + (w.gen_tokens + 1) / 2 if w.gen_tokens else p.copy()
    return {"batch_size": b, "prompt_len": p, "context_len": c}


def ops_frame(m: ModelConfig, w: Workload, points: dict) -> pd.DataFrame:
    """Unclassified ops frame: for each phase and op, one row per point."""
    n = len(points["batch_size"])
    numeric = {k: [] for k in OP_COLUMNS}
    labels = {"phase": [], "op": [], "category": [], "compute_dtype": []}  # one label per block of n rows
    order = []
    for phase_index, phase in enumerate(w.phases):
        ops = model_ops(m, w, phase, points["batch_size"], points["prompt_len"], points["context_len"])
        for op_index, op in enumerate(ops):
            c = op.cost
            fields = {
                "flops": c.flops,
                "bytes_read": c.bytes_read,
                "bytes_written": c.bytes_written,
                "weight_bytes_read": c.weight_bytes_read,
                "act_bytes_read": c.act_bytes_read,
                "act_bytes_written": c.act_bytes_written,
                "kv_bytes_read": c.kv_bytes_read,
                "kv_bytes_written": c.kv_bytes_written,
                "comm_bytes": c.comm_bytes,
                "params": op.params,
                "param_bytes": op.param_bytes,
                "count": op.count,
            }
            for key, value in fields.items():
                numeric[key].append(np.broadcast_to(np.asarray(value, dtype=float), (n,)))
            numeric["point"].append(np.arange(n))
            for key in ("batch_size", "prompt_len", "context_len"):
                numeric[key].append(points[key])
            for key, value in (
                ("phase", phase),
                ("op", op.name),
                ("category", op.category),
                ("compute_dtype", op.compute_dtype),
            ):
                labels[key].append(value)
            order.append(phase_index * 1000 + op_index)
    columns = {k: np.concatenate(v) for k, v in numeric.items() if k not in labels}
    columns["count"] = columns["count"].astype(np.int64)
    for key, values in labels.items():  # categorical straight from codes: no per-row strings
        categories = list(dict.fromkeys(values))
        codes = np.repeat([categories.index(v) for v in values], n)
        columns[key] = pd.Categorical.from_codes(codes, categories)
    frame = pd.DataFrame({k: columns[k] for k in OP_COLUMNS})
    if n > 1:  # group rows by point, keeping phase and op order within a point
        idx = np.lexsort((np.repeat(order, n), columns["point"]))
        frame = frame.iloc[idx].reset_index(drop=True)
    return frame


def summarise(ops: pd.DataFrame, m: ModelConfig, w: Workload, spec: HardwareSpec, points: dict) -> pd.DataFrame:
    """One row per point: phase times, tokens/s, share of time per bound class, memory fit, ridge batch.

    ``{phase}_time_s`` (and tokens/s, shares) is the step of predict.py's launch queue (``phase_steps``);
    ``{phase}_roofline_time_s`` is the pure roofline sum, count * time_s, beside it.
    """
    n = len(points["batch_size"])
    b, p, c = points["batch_size"], points["prompt_len"], points["context_len"]
    out = {"point": np.arange(n), "batch_size": b, "prompt_len": p, "context_len": c}
    point = ops["point"].to_numpy()
    total = ops["total_time_s"].to_numpy()
    roofline = ops["count"].to_numpy() * ops["time_s"].to_numpy()
    bound = ops["bound"].to_numpy()
    phase_col = ops["phase"].to_numpy()
    for phase in ("prefill", "decode"):
        if phase not in w.phases:
            continue
        sel = phase_col == phase
        t = np.bincount(point[sel], weights=total[sel], minlength=n)
        out[f"{phase}_time_s"] = t
        out[f"{phase}_roofline_time_s"] = np.bincount(point[sel], weights=roofline[sel], minlength=n)
        for key in ("flops", "bytes_read", "bytes_written"):
            v = ops[key].to_numpy() * ops["count"].to_numpy()
            out[f"{phase}_{key}"] = np.bincount(point[sel], weights=v[sel], minlength=n)
        for cls in BOUNDS:
            s = sel & (bound == cls)
            out[f"{phase}_share_{cls}"] = np.bincount(point[s], weights=total[s], minlength=n) / t
        tokens = b * p if phase == "prefill" else b
        out[f"{phase}_tokens_per_s"] = tokens / t
        if w.pp > 1:
            stage = _pipeline_stage_time(ops, sel, total, point, n, m, w)
            out[f"{phase}_stage_time_s"] = stage
            # steady state: microbatches of this batch fill the pipeline, (m + P - 1) stage slots for m of them
            out[f"{phase}_pipelined_tokens_per_s"] = tokens * w.microbatches / ((w.microbatches + w.pp - 1) * stage)
    if w.pp > 1:
        out["pipeline_bubble"] = np.full(n, (w.pp - 1) / (w.microbatches + w.pp - 1))
    if w.gen_tokens and "decode" in w.phases:
        out["generate_time_s"] = w.gen_tokens * out["decode_time_s"]

    # memory per GPU: weights as stored, KV cache at the longest context any phase reaches;
    # with pipeline stages, the busiest stage: its share of the layers plus the embedding or the head
    first = ops[(ops["point"] == 0) & (ops["phase"] == w.phases[0])]
    stored = (first["count"] * first["param_bytes"]).to_numpy()
    if w.pp > 1:
        names = first["op"].astype(str).to_numpy()
        layer = ~np.isin(names, FIRST_STAGE_OPS + LAST_STAGE_OPS + ["pp_send"])
        head = stored[np.isin(names, LAST_STAGE_OPS)].sum()
        if m.tie_word_embeddings:  # the last stage keeps its own copy of the tied matrix
            head += stored[names == "embedding"].sum()
        weight_bytes = float(stored[layer].sum() / w.pp + max(stored[np.isin(names, FIRST_STAGE_OPS)].sum(), head))
    else:
        weight_bytes = float(stored.sum())
    # the largest context the workload reaches: the last generated token, not the mean context
    last = p + w.gen_tokens if (w.gen_tokens and not w.context_len) else c
    longest = np.maximum(p, last) if "decode" in w.phases else p
    kv = b / w.ep * _kv_cache_bytes_per_sequence(m, w, longest) / w.pp  # ep: 1/ep of the sequences per GPU
    out["weight_bytes"] = np.full(n, weight_bytes)
    out["kv_cache_bytes"] = kv
    out["memory_bytes"] = weight_bytes + kv
    out["mem_capacity_bytes"] = np.full(n, spec.mem_capacity_bytes)
    out["fits_in_memory"] = weight_bytes + kv <= spec.mem_capacity_bytes
    out["decode_ridge_batch"] = np.full(n, decode_ridge_batch(m, w, spec))
    return pd.DataFrame(out)


FIRST_STAGE_OPS = ["embedding", "pos_embedding", "embed_all_reduce"]
LAST_STAGE_OPS = ["final_norm", "lm_head", "logits_all_gather"]


def _pipeline_stage_time(ops, sel, total, point, n, m, w) -> np.ndarray:
    """Time of the busiest pipeline stage per point: 1/pp of the per-layer ops, the embedding (first
    stage) or the head (last stage), whichever is larger, and one send to the next stage."""
    names = ops["op"].astype(str).to_numpy()

    def part(mask):
        return np.bincount(point[sel & mask], weights=total[sel & mask], minlength=n)

    layers = part(~np.isin(names, FIRST_STAGE_OPS + LAST_STAGE_OPS + ["pp_send"])) / w.pp
    ends = np.maximum(part(np.isin(names, FIRST_STAGE_OPS)), part(np.isin(names, LAST_STAGE_OPS)))
    send = part(names == "pp_send") / (w.pp - 1)
    return layers + ends + send


def _kv_cache_bytes_per_sequence(m: ModelConfig, w: Workload, tokens):
    """KV-cache bytes of one sequence of ``tokens`` cached positions on one GPU (all layers): each
    layer's bytes per token (kv_cache_write: MLA's latent, the kv dtype's scales) times the positions
    it keeps, its sliding window at most."""
    layers = kv_cache_layers(m, replace(w, phase="decode"))
    return sum(per_token * (tokens if window is None else np.minimum(tokens, window)) for window, per_token in layers)


def decode_ridge_batch(m: ModelConfig, w: Workload, spec: HardwareSpec) -> float:
    """Smallest batch at which a decode step's weight matmuls (projections, router, experts, lm_head)
    are compute-bound taken together: sum(F)/peak >= sum(B)/bandwidth. NaN if none up to 65,536.

    These ops do not depend on the context length, so one search serves every point.
    """
    batch = np.arange(1, RIDGE_SEARCH_MAX_BATCH + 1, dtype=float)
    w = replace(w, routed_experts=None)  # a search over batches routes each as uniform routing expects
    ops = [op for op in model_ops(m, w, "decode", batch, 1.0, 1.0) if op.category == "matmul"]
    t_compute = sum(op.count * op.cost.flops / spec.ceiling_flops(op.compute_dtype) for op in ops)
    t_memory = sum(op.count * (op.cost.bytes_read + op.cost.bytes_written) for op in ops) / spec.ceiling_bytes_per_s()
    hit = np.nonzero(t_compute >= t_memory)[0]
    return float(batch[hit[0]]) if len(hit) else float("nan")
