"""``MeasuredRun``: what one measurement found, in one shape whatever made it.

Every way of measuring returns one: ``profile_model`` (source 'reference': the reference decoder on
one GPU), ``profile_distributed`` ('distributed': the same split over tp GPUs, one row per rank) and
``trace_run`` ('trace': any torch.profiler Chrome trace). A run holds measured figures only: no
analytic count, no prediction, no class. ``roofline.compare.compare(analysis, run)`` is where it
meets the analysis. Imports neither torch nor matplotlib.

Frames hold raw floats in SI units. Their columns (``check_frame`` enforces the required ones):
"""

from dataclasses import dataclass, field
from typing import Optional

import pandas as pd

from roofline.config import ModelConfig, Workload

SOURCES = ("reference", "distributed", "trace", "capture")

# ops: one row per (rank, phase, op); the figures are per call of the op (one occurrence: one layer's
# q_proj, say), over the profiled steps
OPS_COLUMNS = {
    "rank": "GPU rank of a distributed run (0 on one GPU)",
    "phase": "prefill or decode (a trace: the phase its caller names)",
    "op": "the op's name: its record_function range, named like the analytic row",
    "calls": "calls of the op per profiled step (the reference's layers for a per-layer op, else 1)",
    "gpu_time_s": "GPU time per call: the median over steps of the step's kernel time in the op, divided by "
    "its calls per step (on the CPU: the CPU time of the range)",
    "n_kernels": "kernels (and copies, sets) launched per call",
    "span_s": "host wall time of one call with the profiler on (NaN when unknown)",
}
OPS_OPTIONAL = {
    "gpu_time_spread": "(max - min) / median of the per-step times",
    "kernels": "names of the op's kernels, ' | '-joined",
    "time_source": "'cuda kernels' or 'cpu time'",
    "comm_time_s": "NCCL kernel time per call on this rank (distributed runs; 0 on other rows)",
    "exposed_comm_s": "the part of comm_time_s no other kernel on the GPU overlaps",
    "comm_time_min_rank_s": "per call, the shortest NCCL time over the ranks (closest to the transfer alone)",
    "comm_time_max_rank_s": "per call, the longest over the ranks",
    "flops": "FLOPs per call where the measurement knows them (a trace's recorded shapes)",
    "bytes": "bytes per call where the measurement knows them",
    "costed_time_s": "the part of gpu_time_s that flops and bytes describe",
}

# steps: one row per (rank, phase): the reference step as measured
STEPS_COLUMNS = {
    "rank": "as in ops",
    "phase": "as in ops",
    "batch_size": "sequences per step",
    "kernel_time_ref_s": "median over profiled steps of the kernel time of all the op ranges",
    "eager_step_ref_s": "wall time of one step without the profiler (CUDA events; median of repeats)",
    "graph_step_ref_s": "the same step replayed as a CUDA graph (None where not captured)",
}
STEPS_OPTIONAL = {
    "prompt_len": "",
    "context_len": "decode: the KV length the step attended to",
    "attn_impl": "",
    "dtype": "",
    "ref_layers": "decoder layers the reference ran",
    "model_layers": "decoder layers of the whole model",
    "host_overhead_ref_s": "eager - graph",
    "weight_bytes_ref": "bytes of the reference's weights",
    "routed_experts_ref": "MoE: the routed experts that got tokens per MoE layer (mean over layers and steps)",
    "join": "how kernels were joined to ops; profiled_steps, kernels_per_step, ...: the join's counts",
    "one_step_*": "counts from the exported one-step Chrome trace",
    "comm_time_ref_s": "distributed: NCCL time of the reference step; exposed_comm_ref_s, "
    "comm_time_min_rank_ref_s likewise; exposed_comm_share, skew_wait_ref_s, "
    "balanced_comm_share: their shares of the step",
}
# kernels: (rank,) phase, op, kernel, calls and time_s per call of the op
# sequence: (rank,) phase, op, kernel, time_s of one profiled step, in launch order
# clocks: NVML samples (t_s, sm_clock_mhz, power_w, ...; a rank column in a distributed run)

__doc__ += "".join(f"\n  ops.{k}: {v}" for k, v in OPS_COLUMNS.items())
__doc__ += "\n  optional:" + "".join(f"\n  ops.{k}: {v}" for k, v in OPS_OPTIONAL.items())
__doc__ += "".join(f"\n  steps.{k}: {v}" for k, v in STEPS_COLUMNS.items())
__doc__ += "\n  optional:" + "".join(f"\n  steps.{k}: {v}" for k, v in STEPS_OPTIONAL.items() if v)


def check_frame(frame: pd.DataFrame, columns, what: str) -> None:
    """Raise ValueError naming the columns of ``columns`` that ``frame`` lacks (a bug in the code
    that built the run, not bad input)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)}")


@dataclass(frozen=True)
class MeasuredRun:
    """One measurement (see the module docstring for the frames' columns).

    source:     one of SOURCES
    ops, steps: the per-op and per-step frames
    kernels, sequence, clocks: optional frames (empty when not measured)
    traces:     name -> path of a Chrome trace the run wrote (e.g. 'decode', 'decode_rank1')
    device:     GPU, driver, torch, spec name ('spec'), clocks summary, ranks ...
    notes:      what the run noticed (an op with no GPU work, a join that fell back, ...)
    model, workload: the model and the single point that ran (None for a trace); the workload's
                decode context is the one the reference attended to
    layers:     decoder layers the reference ran (None for a trace)
    cuda_graph: which reference step a full-model step estimate starts from: graph replay or eager
    """

    source: str
    ops: pd.DataFrame
    steps: pd.DataFrame = field(default_factory=pd.DataFrame)
    kernels: pd.DataFrame = field(default_factory=pd.DataFrame)
    sequence: pd.DataFrame = field(default_factory=pd.DataFrame)
    clocks: pd.DataFrame = field(default_factory=pd.DataFrame)
    traces: dict = field(default_factory=dict)
    device: dict = field(default_factory=dict)
    notes: tuple = ()
    model: Optional[ModelConfig] = None
    workload: Optional[Workload] = None
    layers: Optional[int] = None
    cuda_graph: bool = False

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"MeasuredRun source '{self.source}' is not one of {', '.join(SOURCES)}")
        check_frame(self.ops, OPS_COLUMNS, "MeasuredRun.ops")
        if len(self.steps):
            check_frame(self.steps, STEPS_COLUMNS, "MeasuredRun.steps")

    @property
    def ranks(self) -> list:
        """The ranks in ``ops``, sorted."""
        return sorted(int(r) for r in self.ops["rank"].unique())
