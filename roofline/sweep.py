"""Large sweeps in bounded memory: the grid of a workload analysed a slice of points at a time.

``analyze`` builds one frame for the whole grid (about 44 op rows of ~40 columns per point and phase:
a million points would need ~30 GB, and it refuses more than analysis.MAX_ROWS rows). ``iter_analysis``
cuts the grid into sub-grids of at most ``points_per_chunk`` points, in the grid's own order (batch
outermost, then prompt, then context), and analyses each through the same vectorised ``analyze``;
the point numbers continue from one chunk to the next, so the chunks put together are the frames of
the whole grid, row for row. Peak memory is that of one chunk, whatever the grid's size.
"""

import itertools
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from roofline.analysis import Analysis, analyze
from roofline.config import ModelConfig, Workload, load_model_and_workload
from roofline.specs import HardwareSpec, load_spec

# 10,000 points x 2 phases x ~44 ops = 880,000 op rows, ~300 MB of frame at most (bench_sweep.py: the
# peak of a 1M-point sweep); a sweep of this size or less is one chunk, identical to analyze()
POINTS_PER_CHUNK = 10_000
SWEEP_AXES = ("batch_size", "prompt_len", "context_len")


def grid_size(workload: Workload) -> int:
    """The number of points of ``workload``'s grid (batch x prompt x context)."""
    return len(workload.batch_size) * len(workload.prompt_len) * len(workload.context_len or (None,))


def chunk_workloads(workload: Workload, points_per_chunk: int = POINTS_PER_CHUNK) -> Iterator[Workload]:
    """Workloads whose grids, one after the other, are ``workload``'s grid in its order, each of at
    most ``points_per_chunk`` points: the outer axes one value at a time, a slice of the first axis
    whose inner grid fits, the inner axes whole. Raises ValueError for ``points_per_chunk`` < 1."""
    if points_per_chunk < 1:
        raise ValueError(f"points_per_chunk must be at least 1, got {points_per_chunk}")
    axes = [a for a in SWEEP_AXES if getattr(workload, a)]  # context_len None: decode at the mean context
    sizes = [len(getattr(workload, a)) for a in axes]
    split = next(k for k in range(len(axes)) if math.prod(sizes[k + 1 :]) <= points_per_chunk)
    step = max(1, points_per_chunk // math.prod(sizes[split + 1 :]))
    values = getattr(workload, axes[split])
    for outer in itertools.product(*(getattr(workload, a) for a in axes[:split])):
        fixed = {a: (v,) for a, v in zip(axes[:split], outer)}
        for start in range(0, len(values), step):
            yield replace(workload, **fixed, **{axes[split]: tuple(values[start : start + step])})


def iter_analysis(
    model: ModelConfig | str | Path,
    gpu: HardwareSpec | str | Path,
    workload: Workload | None = None,
    points_per_chunk: int = POINTS_PER_CHUNK,
    **overrides: object,
) -> Iterator[Analysis]:
    """``analyze`` a chunk of the grid at a time (``chunk_workloads``): yields one Analysis per chunk, its
    ``point`` columns numbered as in the whole grid; each chunk's ``workload`` is its sub-grid.

    ``model``: a path (with workload ``overrides`` as in ``analyze``) or a ModelConfig with its
    ``workload``. Raises what ``analyze`` raises (bad input before the first chunk); TypeError for
    overrides beside a ModelConfig."""
    spec = load_spec(gpu)
    if isinstance(model, ModelConfig):
        if any(v is not None for v in overrides.values()):
            raise TypeError("with a ModelConfig, pass the settings as a Workload (workload=...), not as overrides")
        m, w = model, workload or Workload()
    else:
        m, w = load_model_and_workload(model, overrides)
    first = 0
    for chunk in chunk_workloads(w, points_per_chunk):
        a = analyze(m, spec, workload=chunk)
        if first:
            a.ops["point"] += first
            a.summary["point"] += first
        first += len(a.summary)
        yield a
