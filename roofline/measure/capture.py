"""Measure a user's live model: run any forward / generate code under torch.profiler with one
``record_function`` range per ``nn.Module``, named by its module path.

    with capture(model, config, gpu="h200") as cap:
        model(input_ids)                 # or model.generate(...), a prefill and decode loop, ...
    cap.run          # roofline.attribute.Attribution: kernels on (phase, op) rows, passes, workload
    cap.comparison   # measured beside predicted, when a ``compare`` function was given (roofline.capture does)
    cap.module_ranges  # one row per module path: calls, host time, the analytic op it maps to

How: a forward pre-hook opens ``record_function(path)`` and a forward hook (``always_call``: it
runs when forward raises too) closes it; all hooks are removed on exit, whatever happened. Range
names are module paths ('model.layers.3.self_attn.q_proj'); roofline.attribute maps their last
name to an analytic op (q_proj, ..., experts, lm_head) and falls back to recorded shapes and
positions for the kernels a module launches itself (rope, attention, residual adds). On a CPU-only
run there are no kernels: ``run`` and ``comparison`` stay None and ``module_ranges`` still holds the
ranges (from the CPU side of the trace).

This module only measures; it does not import roofline.analysis (``compare`` is passed in).
"""

import gzip
import json
import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import pandas as pd
import torch
from torch.profiler import ProfilerActivity, profile, record_function

from roofline.config import ModelConfig, load_model
from roofline.errors import DeviceError, RooflineError, TraceError


class ModuleRanges:
    """Forward hooks that put every submodule's forward in a ``record_function`` named by its path."""

    def __init__(self, model: torch.nn.Module, prefix: str = ""):
        self.model = model
        self.prefix = prefix
        self.handles = []
        self.open = defaultdict(list)  # module path -> stack of open ranges (a module may re-enter)

    def __enter__(self):
        try:
            for path, module in self.model.named_modules():
                if not path:
                    continue  # the root: the whole forward
                name = self.prefix + path
                self.handles.append(module.register_forward_pre_hook(self._pre(name)))
                self.handles.append(module.register_forward_hook(self._post(name), always_call=True))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc):
        self.remove()
        return False

    def _pre(self, name):
        def hook(module, args):
            rf = record_function(name)
            rf.__enter__()
            self.open[name].append(rf)

        return hook

    def _post(self, name):
        def hook(module, args, output):
            if self.open[name]:
                self.open[name].pop().__exit__(None, None, None)

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []
        for stack in self.open.values():  # ranges a failed forward left open
            while stack:
                stack.pop().__exit__(None, None, None)


class Capture:
    """The context manager ``capture`` returns; see the module docstring for what it leaves."""

    def __init__(self, model, config, gpu=None, trace_path=None, compare=None, activities=None, **workload):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"capture needs a torch.nn.Module, not {type(model).__name__}")
        self.model = model
        self.config = config if isinstance(config, ModelConfig) else load_model(config)
        self.gpu = gpu
        self.trace_path = str(trace_path) if trace_path else None
        self.compare = compare
        self.workload = workload
        if activities is None:
            activities = [ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(ProfilerActivity.CUDA)
        self.activities = activities
        self.run = None
        self.comparison = None
        self.module_ranges = None
        self._ranges = None
        self._prof = None

    def __enter__(self):
        self._ranges = ModuleRanges(self.model).__enter__()
        try:
            self._prof = profile(activities=self.activities, record_shapes=True)
            self._prof.__enter__()
        except (RuntimeError, OSError) as exc:
            self._ranges.remove()
            raise DeviceError(f"the PyTorch profiler failed to start: {exc}") from None
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self._prof.__exit__(exc_type, exc, tb)
        finally:
            self._ranges.remove()
        if exc_type is not None:
            return False  # the user's code failed: let its error through
        self._finish()
        return False

    def _finish(self):
        from roofline.attribute import attribute, module_op

        path = self._export()
        self.module_ranges = module_range_frame(path, self.config, module_op)
        if ProfilerActivity.CUDA not in self.activities:
            return  # a CPU run: module ranges only
        try:
            self.run = attribute(path, self.config, spec=self.gpu, **self.workload)
        except TraceError as exc:
            if "no GPU kernels" in str(exc):
                return  # a CPU run: module ranges only
            raise
        if self.compare is not None:
            self.comparison = self.compare(self.run, self.config, self.run.spec)

    def _export(self) -> str:
        """Write the Chrome trace (gzipped) and return its path."""
        if self.trace_path:
            out = Path(self.trace_path)
            out.parent.mkdir(parents=True, exist_ok=True)
        else:
            out = Path(tempfile.mkdtemp(prefix="roofline-capture-")) / "trace.json.gz"
        raw = out.with_name(out.name.removesuffix(".gz") + ".tmp")
        self._prof.export_chrome_trace(str(raw))
        if out.name.endswith(".gz"):
            with open(raw, "rb") as src, gzip.open(f"{out}.tmp", "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst)
            os.replace(f"{out}.tmp", out)
            raw.unlink()
        else:
            os.replace(raw, out)
        self.trace_path = str(out)
        return str(out)


def capture(model, config, gpu=None, trace_path=None, compare=None, activities=None, **workload) -> Capture:
    """Run the code in the ``with`` block under the profiler with module ranges; see the module docstring.

    ``config``: the model's ModelConfig or model file (YAML / config.json), for the analytic rows.
    ``gpu``: a spec name, path or HardwareSpec; None takes it from the trace's deviceProperties.
    ``trace_path``: where to keep the Chrome trace (.json or .json.gz); default a temporary folder.
    ``compare``: ``f(attribution, config, spec) -> DataFrame`` (roofline.capture passes
    roofline.attribute.compare_frame). ``workload``: batch_size / prompt_len overriding the inferred ones.
    Raises TypeError (not a module), DeviceError (profiler), RooflineError subclasses (bad config, trace).
    """
    return Capture(model, config, gpu=gpu, trace_path=trace_path, compare=compare, activities=activities, **workload)


def module_range_frame(path: str, config: ModelConfig, module_op) -> pd.DataFrame:
    """One row per module range of a trace: module, op (the analytic op its name maps to, or None),
    layer, calls, cpu_time_s (host time inside the range, summed)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt") as fh:
            events = json.load(fh).get("traceEvents", [])
    except (OSError, ValueError) as exc:
        raise RooflineError(f"{path}: cannot read the captured trace ({exc})") from None
    calls, time_s = defaultdict(int), defaultdict(float)
    for e in events:
        if e.get("cat") == "user_annotation" and e.get("ph") == "X":
            calls[e["name"]] += 1
            time_s[e["name"]] += float(e.get("dur", 0)) * 1e-6
    rows = []
    for name in calls:
        op, layer = module_op(name, config)
        rows.append({"module": name, "op": op, "layer": layer, "calls": calls[name], "cpu_time_s": time_s[name]})
    return pd.DataFrame(rows, columns=["module", "op", "layer", "calls", "cpu_time_s"])
