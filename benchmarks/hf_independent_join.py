"""An independent join of a torch.profiler trace, to check ``roofline.attribute`` against.

It shares no code with roofline: its own JSON reading, its own kernel -> launch -> op join (a stack
sweep over each thread's cpu_ops), its own forward-pass boundaries (each outermost aten::embedding
op starts a pass; more than one token per sequence = prefill), and a grouping by the outermost aten
op alone, with no positions:

  linear N x K     aten::linear by its weight shape [N, K] -> every analytic op with that shape
                   (q_proj + o_proj share one when heads x head_dim = hidden, ...)
  attention        aten::scaled_dot_product_attention (every kernel under it)
  expert GEMMs     aten::_grouped_mm
  other            every other kernel inside a pass, up to the end of lm_head
  outside          kernels before the first pass or after lm_head

``compare(path, model_cfg, attribution_ops_by_kernel)`` puts the attribution's GPU time of the same
groups beside these. Run as a script on the recorded HF traces it prints the figures:

  python benchmarks/hf_independent_join.py /work/wt/_data/hf_traces/llama-2-7b.json.gz examples/llama-2-7b.yaml
"""

import bisect
import gzip
import json
import sys
from collections import defaultdict


def load(path):
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rt") if gz else open(path) as fh:
        return json.load(fh)["traceEvents"]


def weight_groups(cfg: dict) -> dict:
    """(N, K) of an nn.Linear weight -> the analytic ops of that shape, from config.json keys."""
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads") or heads
    d = cfg.get("head_dim") or h // heads
    inter, vocab = cfg["intermediate_size"], cfg["vocab_size"]
    shapes = [
        ((heads * d, h), "q_proj"),
        ((kv * d, h), "k_proj"),
        ((kv * d, h), "v_proj"),
        ((h, heads * d), "o_proj"),
        ((vocab, h), "lm_head"),
    ]
    if cfg.get("num_local_experts"):
        shapes.append(((cfg["num_local_experts"], h), "router"))
    else:
        shapes += [((inter, h), "gate_proj"), ((inter, h), "up_proj"), ((h, inter), "down_proj")]
    out = defaultdict(set)
    for nk, op in shapes:
        out[nk].add(op)
    return out


def independent_groups(path: str, cfg: dict) -> dict:
    """(phase, group) -> GPU seconds, where group is a frozenset of analytic op names, 'other' or 'outside'."""
    events = [e for e in load(path) if e.get("ph") == "X"]
    kernels = [e for e in events if e.get("cat") in ("kernel", "gpu_memset", "gpu_memcpy")]
    launches = {}
    for e in events:
        if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {}):
            c = e["args"]["correlation"]
            if c not in launches or e["ts"] < launches[c]["ts"]:
                launches[c] = e
    # outermost cpu_ops per thread: a sweep keeps those that no earlier op contains
    top = defaultdict(list)
    for e in sorted((e for e in events if e.get("cat") == "cpu_op"), key=lambda e: (e["tid"], e["ts"], -e["dur"])):
        ops = top[e["tid"]]
        if not ops or e["ts"] >= ops[-1]["ts"] + ops[-1]["dur"]:
            ops.append(e)
    starts = {tid: [o["ts"] for o in ops] for tid, ops in top.items()}

    def outer(launch):
        ops = top.get(launch["tid"], [])
        mid = launch["ts"] + launch["dur"] / 2
        i = bisect.bisect_right(starts.get(launch["tid"], []), mid) - 1
        if i >= 0 and ops[i]["ts"] <= mid <= ops[i]["ts"] + ops[i]["dur"]:
            return ops[i]
        return None

    passes = sorted((o["ts"], o) for ops in top.values() for o in ops if o["name"] == "aten::embedding")
    pass_ts = [t for t, _ in passes]
    shapes = weight_groups(cfg)
    vocab_shape = (cfg["vocab_size"], cfg["hidden_size"])
    head_end = {}  # pass index -> end of its lm_head op
    for ops in top.values():
        for o in ops:
            dims = o.get("args", {}).get("Input Dims")
            if o["name"] == "aten::linear" and dims and tuple(dims[1]) == vocab_shape:
                p = bisect.bisect_right(pass_ts, o["ts"]) - 1
                head_end[p] = o["ts"] + o["dur"]
    out = defaultdict(float)
    for k in kernels:
        launch = launches.get(k.get("args", {}).get("correlation"))
        if launch is None:
            out[("(none)", "outside")] += k["dur"] * 1e-6
            continue
        t = launch["ts"]
        p = bisect.bisect_right(pass_ts, t) - 1
        if p < 0:
            out[("(none)", "outside")] += k["dur"] * 1e-6
            continue
        ids = passes[p][1]["args"]["Input Dims"][1]
        phase = "prefill" if (ids[-1] if len(ids) > 1 else ids[0]) > 1 else "decode"
        if p in head_end and t > head_end[p]:
            out[(phase, "outside")] += k["dur"] * 1e-6
            continue
        o = outer(launch)
        name = o["name"] if o else None
        dims = o.get("args", {}).get("Input Dims") if o else None
        if name == "aten::linear" and dims and tuple(dims[1]) in shapes:
            group = frozenset(shapes[tuple(dims[1])])
        elif name == "aten::scaled_dot_product_attention":
            group = frozenset({"attention"})
        elif name == "aten::_grouped_mm":
            group = "expert GEMMs"
        else:
            group = "other"
        out[(phase, group)] += k["dur"] * 1e-6
    return dict(out)


def attributed_groups(kernels, groups) -> dict:
    """The attribution's GPU seconds over the same groups. A kernel counts in a group of ops when the
    attribution put it on one of those ops and the aten op that launched it is the group's (a linear,
    the SDPA, a grouped GEMM); 'other' takes the rest of the op rows (norms, rope, the routing, ...),
    'outside' the kernels on no op row."""
    out = defaultdict(float)
    anchor = {"aten::linear", "aten::scaled_dot_product_attention", "aten::_grouped_mm"}
    for phase, op, outer, dur in zip(kernels["phase"], kernels["op"], kernels["outer_op"], kernels["dur_s"]):
        if op.startswith("("):
            out[(phase, "outside")] += dur
            continue
        match = [g for (ph, g) in groups if ph == phase and isinstance(g, frozenset) and op in g]
        if outer in anchor and match:
            out[(phase, match[0])] += dur
        elif outer == "aten::_grouped_mm" and op == "experts":
            out[(phase, "expert GEMMs")] += dur
        else:
            out[(phase, "other")] += dur
    return dict(out)


def compare(path: str, model_path: str, kernels=None):
    """Rows (phase, group, independent s, attributed s, relative difference). ``kernels``: the
    attribution's kernels frame of the same trace (computed when None)."""
    import yaml

    from roofline.attribute import attribute

    with open(model_path) as fh:
        cfg = yaml.safe_load(fh) if model_path.endswith((".yaml", ".yml")) else json.load(fh)
    ind = independent_groups(path, cfg)
    kernels = attribute(path, model_path).kernels if kernels is None else kernels
    att = attributed_groups(kernels, list(ind))
    rows = []
    for key in sorted(set(ind) | set(att), key=str):
        a, b = ind.get(key, 0.0), att.get(key, 0.0)
        rows.append(
            (
                key[0],
                key[1] if isinstance(key[1], str) else "+".join(sorted(key[1])),
                a,
                b,
                abs(a - b) / a if a else (0.0 if not b else float("inf")),
            )
        )
    return rows


def kernels_per_call(kernels):
    """Rows (phase, op, calls, fewest and most kernels in one call): the positions placed the same
    kernels in every layer of every pass when fewest == most."""
    on = kernels[~kernels["op"].str.startswith("(")]
    per = on.groupby(["phase", "op", "pass_id", "layer"]).size()
    out = per.groupby(level=["phase", "op"]).agg(["size", "min", "max"])
    return [(ph, op, int(r["size"]), int(r["min"]), int(r["max"])) for (ph, op), r in out.iterrows()]


if __name__ == "__main__":
    trace, model = sys.argv[1], sys.argv[2]
    print(f"{'phase':8} {'group':28} {'independent':>12} {'attributed':>12} {'diff':>7}")
    for phase, group, a, b, rel in compare(trace, model):
        print(f"{phase:8} {group:28} {a * 1e3:10.4f}ms {b * 1e3:10.4f}ms {rel:7.2%}")
