"""The ``roofline`` command: parse, call one library function, render. No arithmetic here.

Library errors (RooflineError) become one line on stderr and exit code 1; click's own usage errors
exit with 2. The analytic commands (analyze, specs) never import torch or matplotlib.
"""

import contextlib
import functools
import itertools
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import click

from roofline import __version__, io, render
from roofline.config import ATTN_IMPLS, MLA_FORMS, PHASES, parse_sweep
from roofline.dtypes import ACT_DTYPES, STORAGE_DTYPES
from roofline.errors import ConfigError, RooflineError
from roofline.validate import MAX_INT

if TYPE_CHECKING:
    import pandas as pd

    from roofline.analysis import Analysis
    from roofline.attribute import Attribution
    from roofline.config import ModelConfig, Workload
    from roofline.specs import HardwareSpec

# whole-number flags: at most MAX_INT (2**53), the largest count a float holds exactly
COUNT = click.IntRange(min=1, max=MAX_INT)


def library_errors(fn: Callable) -> Callable:
    """Turn RooflineError (and an OSError the library did not catch) into click's one-line
    'Error: ...' with exit code 1; control characters in the message are shown, not run."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RooflineError as exc:
            raise click.ClickException(render.term_safe(str(exc))) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(
                render.term_safe(f"{where}{exc.strerror or exc}; check the path and the disk")
            ) from None

    return wrapper


def refuse_input_as_output(output: str | None, inputs: dict) -> None:
    """Raise a usage error (exit 2) when ``output`` names one of the ``inputs`` ({flag: path}) or lies
    inside the folder of one of them: writing would destroy an input."""
    if not output:
        return
    from roofline import io

    for what, path in inputs.items():
        if path and io.same_file(output, path):
            raise click.UsageError(
                render.term_safe(f"the output {output} is the {what} file; write the result to another file")
            )


def check_outputs(output: str | None, plot_file: str | None, inputs: dict) -> None:
    """Before anything is written: neither ``output`` (-o) nor ``plot_file`` (--plot) is one of the ``inputs``
    nor the plot the output, and the plot can be written: it is written after -o, and a plot that cannot be
    written must not cost the old -o file."""
    refuse_input_as_output(output, inputs)
    refuse_input_as_output(plot_file, {**inputs, "--output": output})
    if plot_file and output:
        io.check_writable(plot_file)


FORMAT_BY_SUFFIX = {".json": "json", ".csv": "csv", ".md": "markdown", ".markdown": "markdown"}


def format_for(output: str | None) -> str:
    """The format an output file's extension asks for (.json, .csv, .md); table otherwise."""
    from pathlib import Path

    return FORMAT_BY_SUFFIX.get(Path(output).suffix.lower(), "table") if output else "table"


def output_options(fn: Callable) -> Callable:
    """The shared --format / --output pair; without --format, the output's extension picks the format."""

    @functools.wraps(fn)
    def wrapper(*args, fmt=None, output=None, **kwargs):
        return fn(*args, fmt=fmt or format_for(output), output=output, **kwargs)

    wrapper = click.option(
        "--output",
        "-o",
        type=OutputPath(dir_okay=False, writable=True),
        help="Write to this file instead of standard output.",
    )(wrapper)
    wrapper = click.option(
        "--format",
        "fmt",
        type=click.Choice(render.FORMATS),
        default=None,
        help="table for people; csv and json hold raw SI numbers. Default: from the "
        "--output extension (.json, .csv, .md), else table.",
    )(wrapper)
    return wrapper


def emit(text: str | Iterable[str], output: str | None) -> None:
    """Write ``text`` (a string, or an iterable of strings that is streamed) to file ``output``
    atomically (the old file survives any failure), or print it with control characters made visible.
    The output ends with one newline. Raises OutputError (exit 1, one line) when it cannot write."""
    chunks = _one_final_newline([text] if isinstance(text, str) else text)
    if output:
        from roofline import io

        io.write_chunks(output, chunks)
    else:
        for chunk in chunks:
            click.echo(render.term_safe(chunk, keep_newlines=True), nl=False)


def _one_final_newline(chunks):
    """The chunks, the last one with its trailing newlines replaced by exactly one."""
    previous = None
    for chunk in chunks:
        if previous:
            yield previous
        previous = chunk if chunk else previous
    yield (previous or "").rstrip("\n") + "\n"


def warn(message: str) -> None:
    click.echo(f"warning: {render.term_safe(message)}", err=True)


def warn_written(paths: Iterable) -> None:
    click.echo(render.term_safe("wrote " + ", ".join(str(p) for p in paths)), err=True)


# the collectives calibrate --collectives can measure: predict.COLLECTIVE_BUSBW_FACTOR's keys (a test checks),
# named here so that --help imports no numpy
COLLECTIVE_OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all")
RENDEZVOUS_FLAGS = ("nnodes", "node-rank", "master-addr", "master-port", "rdzv-backend", "rdzv-endpoint", "rdzv-id")


def rendezvous_options(fn: Callable) -> Callable:
    """torchrun's rendezvous flags, passed through for runs over several hosts (same command on each)."""

    def collect(ctx, param, value):
        ctx.meta.setdefault("rendezvous", ())
        if value is not None:
            ctx.meta["rendezvous"] += (f"--{param.name.replace('_', '-')}", str(value))
        return value

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for flag in RENDEZVOUS_FLAGS:
            kwargs.pop(flag.replace("-", "_"), None)
        kwargs["rendezvous"] = click.get_current_context().meta.get("rendezvous", ())
        return fn(*args, **kwargs)

    for flag in reversed(RENDEZVOUS_FLAGS):
        wrapper = click.option(
            f"--{flag}", callback=collect, expose_value=True, help=f"torchrun's --{flag}, for several hosts."
        )(wrapper)
    return wrapper


class OutputPath(click.Path):
    """click.Path for a file or folder to write: an empty name is refused (it printed to the terminal, or wrote
    nothing, without a word)."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> object:
        if isinstance(value, str) and not value.strip():
            self.fail("an empty name; give a path, or leave the option out", param, ctx)
        return super().convert(value, param, ctx)


def plot_option(fn: Callable) -> Callable:
    return click.option(
        "--plot",
        "plot_file",
        type=OutputPath(dir_okay=False),
        help="Also draw the chart to this file: x.png (x.svg beside it), or one .pdf, .jpg, ...",
    )(fn)


def sweep_option(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple | None:
    if value is None:
        return None
    try:
        return parse_sweep(value, param.opts[0])
    except ConfigError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[-1]) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="roofline")
def main():
    """Why a transformer runs as fast as it does on a GPU, and what to try next."""
    import signal

    # SIGTERM (kill, a job scheduler) ends the command as Ctrl-C does: the pending atomic write removes its
    # temporary file and the old output stays (without this, a killed sweep left its .tmp beside the output)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


# ------------------------------------------------------------------------------------------------
WORKLOAD_OPTIONS = [
    click.option(
        "--batch", "batch_size", callback=sweep_option, help="Batch size: 8, a list 1,8,64 or a range 1:256:x2."
    ),
    click.option("--prompt-len", callback=sweep_option, help="Prompt (prefill) tokens per sequence; list or range."),
    click.option("--context-len", callback=sweep_option, help="KV length a decode step attends to; list or range."),
    click.option("--gen-tokens", type=COUNT, help="Generated tokens: decode at the mean context instead."),
    click.option("--phase", type=click.Choice(PHASES), help="Which phase to analyse."),
    click.option("--weight-dtype", type=click.Choice(STORAGE_DTYPES), help="Dtype of the linear-layer weights."),
    click.option("--act-dtype", type=click.Choice(ACT_DTYPES), help="Dtype of activations."),
    click.option("--kv-dtype", type=click.Choice(STORAGE_DTYPES), help="Dtype of the KV cache."),
    click.option("--attn", "attn_impl", type=click.Choice(ATTN_IMPLS), help="Attention implementation."),
    click.option(
        "--mla",
        "mla_form",
        type=click.Choice(MLA_FORMS),
        help="MLA models (DeepSeek): absorbed or decompressed attention; auto: decompressed prefill, absorbed decode.",
    ),
    click.option("--tp", type=COUNT, help="Tensor-parallel degree (counts are per GPU)."),
    click.option("--pp", type=COUNT, help="Pipeline-parallel stages (layers split evenly)."),
    click.option("--ep", type=COUNT, help="Expert-parallel GPUs (MoE): experts spread, all-to-all."),
    click.option("--microbatches", type=COUNT, help="Micro-batches in flight through the pipeline."),
    click.option(
        "--cuda-graph/--eager", "cuda_graph", default=None, help="Launch floor of a CUDA graph or of eager ops."
    ),
]


def workload_options(fn: Callable) -> Callable:
    """The workload flags shared by analyze, advise, report and profile; they override the model file."""
    for option in reversed(WORKLOAD_OPTIONS):
        fn = option(fn)
    return fn


@main.command()
@click.argument("model", type=click.Path())
@click.option("--gpu", required=True, help="A shipped spec name (roofline specs) or a path to a spec YAML.")
@workload_options
@click.option("--summary", "summary_only", is_flag=True, help="Print only the summary (one row per point).")
@plot_option
@output_options
@library_errors
def analyze(model, gpu, fmt, output, summary_only, plot_file, **workload):
    """FLOPs, bytes, intensity, predicted time and bound class of every op, prefill and decode.

    \b
    Example:
      roofline analyze examples/llama-2-7b.yaml --gpu a10 --batch 1,8,64
    """
    from roofline.config import load_model_and_workload, workload_sources
    from roofline.specs import load_spec
    from roofline.sweep import SWEEP_AXES, iter_analysis

    check_outputs(output, plot_file, {"model": model, "spec": gpu})
    m, w = load_model_and_workload(model, workload)
    warn_workload(m, w)
    spec = load_spec(gpu)
    warn_spec(spec)
    sources = workload_sources(model, workload)
    # a large sweep is analysed and written a chunk of points at a time (roofline.sweep): memory stays
    # bounded; the summaries are kept only for a sweep's table and chart (one row per point)
    chunks = iter_analysis(m, spec, workload=w)
    first = next(chunks)
    for key in first.model.ignored_keys:
        warn(f"{model}: ignoring key '{key}', which roofline does not model")
    whole = replace(first.workload, **{a: getattr(w, a) for a in SWEEP_AXES})  # the grid, not the chunk
    seen = []  # (summary, ops) of the chunks, ops only for one point
    keep = bool(plot_file) or fmt in ("table", "markdown")

    def checked(chunks):
        for a in chunks:
            check_finite(a)
            seen.append((a.summary[FIT_COLUMNS] if not keep else a.summary, a.ops if len(a.summary) == 1 else None))
            yield a

    settings = render.settings_line(whole, sources, spec, first.model.is_mla, first.model.is_moe)
    emit(render_sweep(checked(itertools.chain([first], chunks)), fmt, summary_only, whole, settings, sources), output)
    warn_unfit([s for s, _ in seen], spec)
    if plot_file:
        import pandas as pd

        from roofline import plot

        summary = pd.concat([s for s, _ in seen], ignore_index=True) if len(seen) > 1 else seen[0][0]
        ops = seen[0][1] if len(summary) == 1 else first.ops.iloc[:0]
        figure = plot.figure_result(ops, summary, spec, model=first.model, workload=whole)
        warn_written(plot.save(figure, plot_file))


FIT_COLUMNS = ["batch_size", "memory_bytes", "mem_capacity_bytes", "fits_in_memory"]


def warn_workload(m: "ModelConfig", w: "Workload") -> None:
    """Warn when the workload runs past the model's max_position_embeddings (config.beyond_positions), or names
    an MLA form for a model without MLA (it changes nothing there)."""
    from roofline.config import beyond_positions

    message = beyond_positions(m, w)
    if message:
        warn(message)
    if w.mla_form != "auto" and not m.is_mla:
        warn(f"mla {w.mla_form}: {m.name} has no multi-head latent attention (deepseek_v2/v3 do); ignored")


def warn_spec(spec: "HardwareSpec") -> None:
    """Warn when a spec's datasheet bf16 ridge lies outside every surveyed part's (a unit slip: a bandwidth in
    TB/s or MB/s, a sparse peak), the check `roofline specs check` makes, so the analysis does not say it silently."""
    from roofline.specs import RIDGE_BF16_RANGE, unlikely_ridge

    dtype = next((d for d in ("bf16", "fp16") if d in spec.peak_flops_per_s), None)
    shown = unlikely_ridge(spec.peak_flops_per_s[dtype], spec.mem_bytes_per_s) if dtype else None
    if shown:
        warn(
            f"{spec.name}: the {dtype} ridge is {shown} FLOP/byte, outside the {RIDGE_BF16_RANGE[0]:.0f}-"
            f"{RIDGE_BF16_RANGE[1]:.0f} of every part surveyed: check the spec's units (roofline specs check FILE)"
        )


def warn_unfit(summaries: list, spec: "HardwareSpec") -> None:
    """Warn, naming the first point, when weights + KV cache of some points of a sweep's summaries
    (one frame per chunk) do not fit in the GPU's memory."""
    n_points = sum(len(s) for s in summaries)
    unfit = [s.loc[~s["fits_in_memory"].astype(bool)] for s in summaries]
    n_unfit = sum(len(u) for u in unfit)
    if n_unfit:
        row = next(u for u in unfit if len(u)).iloc[0]
        warn(
            f"weights + KV cache ({render.si(row['memory_bytes'], 'B')}) do not fit in {spec.name}'s "
            f"{render.si(row['mem_capacity_bytes'], 'B')} at batch {row['batch_size']:.0f} ({n_unfit} of "
            f"{n_points} points); use --tp, a smaller batch or context, or quantised weights/KV"
        )


JSON_SCHEMA_VERSION = render.JSON_SCHEMA_VERSION  # the version json_header writes (render.py says when it rises)


def json_header(
    model: "ModelConfig | None" = None,
    spec: "HardwareSpec | None" = None,
    workload: "Workload | dict | None" = None,
    sources: dict | None = None,
) -> dict:
    """The keys every JSON output starts with, so that `roofline plot` and other tools can read it later:
    schema_version, roofline_version, the model's and the spec's names ("model", "gpu"), the resolved
    workload (a Workload, or the dict a trace's workload was inferred as), the model config and the spec
    (SI units) as read. What a command does not have (a trace without --model) is null. ``sources``
    (config.workload_sources: where each workload setting came from) adds "workload_sources"."""
    from dataclasses import asdict, is_dataclass

    header = {
        "schema_version": JSON_SCHEMA_VERSION,
        "roofline_version": __version__,
        "model": model.name if model is not None else None,
        "gpu": spec.name if spec is not None else None,
        "workload": dict(vars(workload)) if is_dataclass(workload) else workload,
        "model_config": asdict(model) if model is not None else None,
        "spec": asdict(spec) if spec is not None else None,
    }
    if sources is not None:
        header["workload_sources"] = sources
    return header


def check_finite(result: "Analysis") -> None:
    """Raise RooflineError when a derived figure of ``result`` came out infinite (never printed as 'inf').
    Input values are range-checked (validate.number), so this guards the arithmetic, not the user."""
    import numpy as np

    for frame in (result.summary, result.ops):
        numeric = frame.select_dtypes("number")
        bad = np.isinf(numeric.to_numpy(dtype=float)).any(axis=0)
        if bad.any():
            raise RooflineError(
                f"the analysis gives an infinite {numeric.columns[bad.argmax()]}: a value of the model, the spec or "
                f"the workload is too large or too small for it; check them"
            )


def render_analysis(result: "Analysis", fmt: str, summary_only: bool) -> str | Iterator[str]:
    """The text of one Analysis ``result`` in ``fmt``: a string, or for json and csv a stream of strings."""
    return render_sweep([result], fmt, summary_only)


def render_sweep(
    chunks: Iterable["Analysis"],
    fmt: str,
    summary_only: bool,
    workload: "Workload | None" = None,
    settings: str = "",
    sources: dict | None = None,
) -> str | Iterator[str]:
    """The text of an analysis given as chunks of its points (roofline.sweep.iter_analysis; one Analysis
    is one chunk) in ``fmt``. json and csv: a stream of strings, each chunk's rows rendered as it comes
    (the JSON's ops spooled to a temporary file behind the summary: render.json_sections); table and
    markdown: a string, the ops of one point or one summary row per point, under ``settings``.
    ``workload``: the whole grid's, for the JSON header (default: the first chunk's)."""
    chunks = iter(chunks)
    first = next(chunks)
    every = itertools.chain([first], chunks)
    if fmt == "json":
        header = json_header(first.model, first.spec, workload or first.workload, sources)
        if summary_only:
            return render.json_sections(header, ("summary",), ((a.summary,) for a in every))
        return render.json_sections(header, ("summary", "ops"), ((a.summary, a.ops) for a in every))
    if fmt == "csv":
        return render.csv_frames(a.summary if summary_only else a.ops for a in every)
    markdown = fmt == "markdown"
    parts = list(every)
    if len(parts) == 1 and len(first.summary) == 1 and not summary_only:
        return render_single_point(first, markdown, settings)
    import pandas as pd

    summary = pd.concat([a.summary for a in parts], ignore_index=True) if len(parts) > 1 else first.summary
    table = render.text_table(summary, _present(summary, render.SWEEP_TABLE), markdown)
    if not settings:
        return table
    return (render.md_escape(settings) if markdown else settings) + "\n\n" + table


def _present(frame, formats):
    return {k: v for k, v in formats.items() if k in frame.columns}


def render_single_point(result: "Analysis", markdown: bool, settings: str = "") -> str:
    w, spec, s = result.workload, result.spec, result.summary.iloc[0]
    name = render.md_escape if markdown else render.term_safe  # names come from files: shown, never run
    head = (
        f"{name(result.model.name)} on {name(spec.name)} ({name(spec.full_name)}): batch {s['batch_size']:.0f}, "
        f"prompt {s['prompt_len']:.0f}, context {s['context_len']:g}; weights {w.weight_dtype}"
        f"{'' if w.weight_dtype_source == 'default' else ' from ' + name(w.weight_dtype_source)}, activations "
        f"{w.act_dtype}, KV {w.kv_dtype}"
        f"{'' if w.kv_dtype_source == 'default' else ' from ' + name(w.kv_dtype_source)}; "
        f"{w.attn_impl} attention; tp {w.tp}; "
        f"{'CUDA graph' if w.cuda_graph else 'eager'} launch floor {render.si(spec.ceiling_launch_s(w.cuda_graph), 's')}"
    )
    if result.model.is_mla:
        from roofline.transformer import mla_form

        head += f"; MLA {mla_form(w, 'prefill')} in prefill, {mla_form(w, 'decode')} in decode (--mla), latent KV cache"
    from roofline.predict import describe_collectives, describe_source

    out = [head] + ([name(settings)] if settings else []) + [describe_source(spec)]
    if (result.ops["category"] == "collective").any():
        out.append(describe_collectives(spec))
    for phase in w.phases:
        rows = result.ops[result.ops["phase"] == phase]
        if phase == "prefill":
            title = (
                f"prefill: time to first token {render.si(s['prefill_time_s'], 's')} "
                f"({render.si(s['prefill_tokens_per_s'])} tokens/s)"
            )
        else:
            title = (
                f"decode: {render.si(s['decode_time_s'], 's')} per step, {render.si(s['decode_tokens_per_s'])} tokens/s"
            )
        out += ["", title, render.text_table(rows, render.OP_TABLE, markdown)]
        shares = ", ".join(
            f"{cls} {render.percent(s[f'{phase}_share_{cls}'])}"
            for cls in ("compute", "memory", "communication", "overhead", "latency")
        )
        out.append(f"time by bound: {shares}; pure roofline: {render.si(s[f'{phase}_roofline_time_s'], 's')}")
    out += [
        "",
        f"memory per GPU: weights {render.si(s['weight_bytes'], 'B')} + KV cache {render.si(s['kv_cache_bytes'], 'B')}"
        f" = {render.si(s['memory_bytes'], 'B')} of {render.si(s['mem_capacity_bytes'], 'B')}"
        f" ({'fits' if s['fits_in_memory'] else 'DOES NOT FIT'})",
        f"decode weight matmuls reach the ridge at batch {s['decode_ridge_batch']:.0f}"
        if s["decode_ridge_batch"] == s["decode_ridge_batch"]
        else "decode weight matmuls stay memory-bound up to batch 65536",
    ]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------
@main.command()
@click.argument("model", type=click.Path())
@click.option("--gpu", required=True, help="A shipped spec name (roofline specs) or a path to a spec YAML.")
@workload_options
@click.option("--top", type=COUNT, default=10, show_default=True, help="How many suggestions.")
@output_options
@library_errors
def advise(model, gpu, top, fmt, output, **workload):
    """Ranked "try this next": each change re-analysed, with its predicted speedup and why.

    \b
    Example:
      roofline advise examples/llama-2-7b.yaml --gpu a10 --phase decode
    """
    from roofline.advise import advise as run_advise
    from roofline.advise import render_advice
    from roofline.analysis import analyze as run_analysis

    refuse_input_as_output(output, {"model": model, "spec": gpu})
    from roofline.config import workload_sources

    analysis = run_analysis(model, gpu, **workload)
    warn_workload(analysis.model, analysis.workload)
    warn_spec(analysis.spec)
    frame = run_advise(analysis, top=top)
    sources = workload_sources(model, workload)
    if fmt == "json":
        header = json_header(analysis.model, analysis.spec, analysis.workload, sources)
        emit(render.to_json({**header, "advice": render.to_records(frame)}), output)
    elif fmt == "csv":
        emit(render.to_csv(frame), output)
    else:
        m, w, spec = analysis.model, analysis.workload, analysis.spec
        settings = render.settings_line(w, sources, spec, m.is_mla, m.is_moe)
        name = render.md_escape if fmt == "markdown" else render.term_safe  # names come from files
        emit(f"{name(m.name)} on {name(spec.name)}\n{name(settings)}\n\n{render_advice(frame)}", output)


# ------------------------------------------------------------------------------------------------
@main.command()
@click.argument("model", type=click.Path())
@click.option(
    "--gpu", default="auto", show_default=True, help="Spec to compare with: auto (from NVML), a name or a path."
)
@click.option(
    "--layers",
    type=COUNT,
    help="Decoder layers to build: default 2 for the reference model, all for --impl transformers.",
)
@click.option(
    "--impl",
    type=click.Choice(["reference", "transformers"]),
    default="reference",
    show_default=True,
    help="reference: the project's decoder, one range per op; transformers: the Hugging Face implementation "
    "of the config (random weights), prefill + --gen-tokens decode steps (default 8) through its own "
    "forward and cache, kernels mapped to ops by roofline.capture. Needs pip install 'roofline[hf]'.",
)
@workload_options
@click.option(
    "--warmup", type=click.IntRange(min=0, max=MAX_INT), default=5, show_default=True, help="Warm-up iterations."
)
@click.option("--iters", type=COUNT, default=10, show_default=True, help="Profiled iterations (median).")
@click.option("--trace-dir", type=OutputPath(file_okay=False), help="Keep each phase's Chrome trace here.")
@click.option("--nproc", type=COUNT, help="With --tp: GPUs (processes) on this host; default tp / nnodes.")
@rendezvous_options
@plot_option
@output_options
@library_errors
def profile(model, gpu, layers, impl, warmup, iters, trace_dir, nproc, rendezvous, fmt, output, plot_file, **workload):
    """Measure every op on this machine's GPU with the torch profiler, beside the analytic prediction.

    \b
    With --tp N the reference model is split Megatron-style over N GPUs under torchrun (NCCL), every
    rank is profiled, and the all-reduce rows get communication time, exposed communication and bus
    bandwidth beside the prediction.

    \b
    Example (needs a CUDA GPU):
      roofline profile examples/llama-2-7b.yaml --phase decode --batch 1,64 --context-len 1024
    """
    import itertools
    from dataclasses import replace

    from roofline.analysis import analyze as run_analysis
    from roofline.compare import compare
    from roofline.config import load_model_and_workload

    check_outputs(output, plot_file, {"model": model, "spec": gpu})
    m, w = load_model_and_workload(model, workload)
    warn_workload(m, w)
    if impl == "transformers":
        return profile_transformers(m, w, gpu, layers, trace_dir, fmt, output, plot_file, workload)
    layers = layers or 2
    if w.tp > 1 or nproc or rendezvous:  # one process per GPU under torchrun
        from roofline.measure.distributed import profile_distributed

        run_profile = functools.partial(profile_distributed, nproc=nproc, rdzv_args=rendezvous)
    else:
        from roofline.measure.profile import profile_model as run_profile
    points = list(itertools.product(w.batch_size, w.prompt_len, w.context_len or (None,)))
    spec = None if gpu == "auto" else gpu
    comparisons = []
    with (
        click.progressbar(points, label="profiling", file=sys.stderr, show_pos=True)
        if len(points) > 1
        else contextlib.nullcontext(points) as bar
    ):
        for b, p, c in bar:
            point = replace(w, batch_size=(b,), prompt_len=(p,), context_len=(c,) if c else None)
            trace = f"{trace_dir}/b{b}_p{p}_c{c or p}" if trace_dir else None
            run = run_profile(m, point, spec=spec, layers=layers, warmup=warmup, iters=iters, trace_dir=trace)
            comparisons.append(compare(run_analysis(m, spec or run.device["spec"], workload=run.workload), run))
    for note in dict.fromkeys(n for c in comparisons for n in c.notes):
        click.echo(f"note: {note}", err=True)
    emit(render_profile(m, w, comparisons, fmt), output)
    if plot_file:
        from roofline import plot

        warn_written(plot.save(plot.figure_comparison(comparisons[0]), plot_file))


def render_profile(model: "ModelConfig", workload: "Workload", comparisons: list, fmt: str) -> str:
    """The text of ``roofline profile`` (reference model): the steps and op rows of every point's
    Comparison; JSON starts with ``json_header`` of the model, the spec and the workload profiled."""
    import pandas as pd

    ops = pd.concat([c.ops for c in comparisons], ignore_index=True)
    steps = pd.concat([c.steps for c in comparisons], ignore_index=True)
    if fmt == "json":
        return render.to_json(
            {
                **json_header(model, comparisons[0].spec, workload),
                "device": comparisons[0].run.device,
                "steps": render.to_records(steps),
                "ops": render.to_records(ops),
            }
        )
    if fmt == "csv":
        return render.to_csv(ops)
    markdown = fmt == "markdown"
    return (
        render.text_table(steps, _present(steps, render.STEP_TABLE), markdown)
        + "\n\n"
        + render.text_table(ops, _present(ops, render.PROFILE_TABLE), markdown)
    )


def render_hf_profile(
    ops: "pd.DataFrame",
    run: "Attribution",
    times: list,
    trace_path: str | None,
    fmt: str,
    model: "ModelConfig | None" = None,
) -> str:
    """The text of ``profile --impl transformers``: per phase the step wall time (profiler off) and the
    kernel time per pass, then the op rows beside the prediction (as trace --model prints them).
    ``model``: the ModelConfig profiled, named in the JSON header."""
    import pandas as pd

    steps = pd.DataFrame({"phase": ["prefill"] + ["decode"] * (len(times) - 1), "wall_time_s": times})
    steps = steps.groupby("phase", sort=False)["wall_time_s"].agg(["size", "median"]).reset_index()
    steps.columns = ["phase", "passes", "median_wall_time_s"]
    steps["median_gpu_time_s"] = steps["phase"].map(run.passes.groupby("phase", sort=False)["gpu_time_s"].median())
    if fmt == "json":
        return render.to_json(
            {
                **json_header(model, run.spec, run.workload),
                "device": run.spec.name,
                "summary": run.summary,
                "steps": render.to_records(steps),
                "ops": render.to_records(ops),
                "unattributed": render.to_records(run.unattributed),
                "notes": run.notes,
                "trace": trace_path,
            }
        )
    if fmt == "csv":
        return render.to_csv(ops)
    step_cols = {
        "phase": ("phase", str),
        "passes": ("passes", lambda v: f"{v:.0f}"),
        "median_wall_time_s": ("wall per pass", lambda v: render.si(v, "s")),
        "median_gpu_time_s": ("kernels per pass", lambda v: render.si(v, "s")),
    }
    markdown = fmt == "markdown"
    return (
        render.text_table(steps, step_cols, markdown)
        + "\n\n"
        + render.text_table(ops, _present(ops, ATTRIBUTE_TABLE), markdown)
    )


def profile_transformers(
    m: "ModelConfig",
    w: "Workload",
    gpu: str,
    layers: int | None,
    trace_dir: str | None,
    fmt: str,
    output: str | None,
    plot_file: str | None,
    flags: dict,
) -> None:
    """``roofline profile --impl transformers``: the HF model under roofline.capture, rendered like trace --model.
    It runs on one GPU: the model file's tp/pp/ep are ignored, the same flags refused."""
    from roofline.attribute import compare_frame
    from roofline.measure.hf import profile_hf, require_transformers

    if any((flags.get(k) or 1) > 1 for k in ("tp", "pp", "ep")):
        raise click.UsageError("--impl transformers runs on one GPU; drop --tp, --pp and --ep")
    require_transformers()
    trace_path = f"{trace_dir}/hf_trace.json.gz" if trace_dir else None
    cap, times, _ = profile_hf(
        m, w, spec=None if gpu == "auto" else gpu, layers=layers, trace_path=trace_path, compare=compare_frame
    )
    ops, run = cap.comparison, cap.run
    for note in run.notes:
        click.echo(f"note: {note}", err=True)
    emit(render_hf_profile(ops, run, times, cap.trace_path, fmt, model=cap.config), output)
    if plot_file:
        from roofline import plot
        from roofline.analysis import analyze as run_analysis

        wl = run.workload
        context = round(sum(wl["context_lens"]) / len(wl["context_lens"])) if wl["context_lens"] else None
        analytic = run_analysis(
            cap.config,
            run.spec,
            batch_size=round(wl["batch_size"]),
            prompt_len=round(wl["prompt_len"]),
            context_len=context,
        )
        warn_written(plot.save(plot.figure_analysis_measured(analytic, measured_points(ops)), plot_file))


@main.command()
@click.option(
    "--gpu",
    default="auto",
    show_default=True,
    help="Shipped spec to extend: auto (from the GPU's name), a name or a path.",
)
@click.option("--output", "-o", type=OutputPath(dir_okay=False), help="Write the calibrated spec YAML here.")
@click.option("--quick", is_flag=True, help="Small sizes and few repeats: a smoke test, not real numbers.")
@click.option(
    "--kernels/--no-kernels",
    default=True,
    show_default=True,
    help="Also measure the kernel model the prediction uses (bandwidth by size, GEMM and attention tables, per-op costs).",
)
@click.option(
    "--collectives",
    is_flag=True,
    help="Also measure all-reduce, all-gather, reduce-scatter and all-to-all, 1 KiB to 1 GiB, over the GPUs present: "
    "the per-size collective model of the prediction.",
)
@click.option(
    "--collective-ops",
    default=",".join(COLLECTIVE_OPS),
    show_default=True,
    help="With --collectives: which collectives, comma-separated.",
)
@click.option(
    "--nproc", type=click.IntRange(min=2), help="With --collectives: GPUs to use on this host (default: all)."
)
@rendezvous_options
@library_errors
def calibrate(gpu, output, quick, kernels, collectives, collective_ops, nproc, rendezvous):
    """Measure this GPU's ceilings (bandwidth, matmul FLOP/s per dtype, launch floor) into a spec YAML.

    \b
    Example (needs a CUDA GPU):
      roofline calibrate --output my-h100.yaml
    """
    from roofline.measure.calibrate import calibrate as run_calibrate
    from roofline.measure.calibrate import write_spec

    refuse_input_as_output(output, {"spec": gpu})
    ops = [op.strip() for op in collective_ops.split(",") if op.strip()]
    unknown = [op for op in ops if op not in COLLECTIVE_OPS] or ([] if ops else [""])
    if unknown:  # before the GPU work, not after it
        raise click.BadParameter(
            f"'{unknown[0]}' is not a collective; choose from {', '.join(COLLECTIVE_OPS)}",
            param_hint="--collective-ops",
        )
    raw = run_calibrate(output=None, spec=None if gpu == "auto" else gpu, quick=quick, kernels=kernels)
    if collectives:
        from roofline.measure.collectives import calibrate_collectives, merge_collectives

        table = calibrate_collectives(nproc=nproc, rdzv_args=rendezvous, ops=ops)
        raw = merge_collectives(raw, table)
        click.echo(table.to_string(index=False))
        for note in table.attrs.get("notes", []):
            click.echo(f"note: {note}", err=True)
    if output:
        write_spec(raw, output)
    lines = calibration_lines(raw.get("measured", {}))
    if output:
        lines.append(f"wrote {output}; use it with --gpu {output}")
    click.echo("\n".join(lines))


def calibration_lines(measured: dict) -> list:
    """The measured: section of a calibrated spec for people, one line per key (conditions left out):
    'peak_tflops: bf16 756.3, fp8 1,372', 'mem_bandwidth_gb_per_s: 3,012', a table by its keys."""

    def value(v):
        return render.number(v, digits=4) if isinstance(v, float) and not isinstance(v, bool) else str(v)

    lines = []
    for key, v in measured.items():
        if key == "conditions":
            continue
        if isinstance(v, dict) and all(isinstance(x, (int, float)) for x in v.values()):
            lines.append(f"{key}: " + ", ".join(f"{k} {value(x)}" for k, x in v.items()))
        elif isinstance(v, dict):
            lines.append(f"{key}: table ({', '.join(map(str, v))})")
        else:
            lines.append(f"{key}: {value(v)}")
    return lines


# ------------------------------------------------------------------------------------------------
@main.command("validate")
@click.option(
    "--gpu",
    default="auto",
    show_default=True,
    help="Spec to predict with: auto (the detected GPU's shipped spec), a name or a calibrated spec YAML.",
)
@click.option(
    "--out", "out_dir", type=OutputPath(file_okay=False), help="Report folder (default: reports/validate-SPEC)."
)
@click.option(
    "--layers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Decoder layers of the reference model per case.",
)
@click.option("--quick", is_flag=True, help="Two cases instead of the whole matrix: a smoke test.")
@click.option(
    "--rescore",
    "rescore_dir",
    type=click.Path(file_okay=False, exists=True),
    help="No GPU: score the measurements of a written validate folder with --gpu's prediction instead.",
)
@library_errors
def validate_command(gpu, out_dir, layers, quick, rescore_dir):
    """Run the reference model over a matrix (MHA, GQA, MoE, a small model; prefill and decode; batch 1-256;
    context 128-32k; eager and CUDA graph) and print the predicted against the measured time per op and
    per step, with the error; write tables, an error-distribution chart and the device to a folder.
    With --rescore DIR, no GPU: the measurements in DIR scored with the prediction of --gpu.

    \b
    Example (needs a CUDA GPU):
      roofline validate --gpu h200 --out validate-h200 --quick
    """
    from roofline.validation import (
        CHECK_TABLE,
        MATRIX,
        QUICK_MATRIX,
        error_summary,
        load_validation,
        rescore,
        step_table,
        validate,
        write_validation,
    )

    def log(line):
        click.echo(line, err=True)

    if rescore_dir:
        if gpu == "auto":
            raise click.UsageError("--rescore needs --gpu: the spec whose prediction to score (a name or a path)")
        result = rescore(load_validation(rescore_dir), gpu)
    else:
        result = validate(
            spec=None if gpu == "auto" else gpu, matrix=QUICK_MATRIX if quick else MATRIX, layers=layers, log=log
        )
    path = write_validation(
        result, out_dir or f"reports/validate-{result.device['spec']}", command=" ".join(["roofline", *sys.argv[1:]])
    )
    out = [f"wrote {path}"]
    if len(result.steps):  # an advice-only folder has no steps
        out[:0] = [
            render.text_table(result.steps, step_table(result.steps), False),
            "",
            render.text_table(error_summary(result.ops, result.steps), CHECK_TABLE, False),
            "",
        ]
    if len(result.advice):  # the advisor scored: predicted beside achieved speedups
        from roofline.validation import ADVICE_TABLE, advice_count

        out[-1:-1] = [render.text_table(result.advice, ADVICE_TABLE, False), advice_count(result.advice), ""]
    click.echo("\n".join(out))


TRACE_TABLE = {
    "op": ("op", str),
    "n_kernels": ("kernels", lambda v: f"{v:.0f}"),
    "gpu_time_s": ("GPU time", lambda v: render.si(v, "s")),
    "share": ("share", render.percent),
    "costed_share": ("costed", render.percent),
    "measured_bound": ("bound", str),
    "evidence": ("evidence", str),
}


TRACE_RANK_TABLE = {
    "rank": ("rank", str),
    "n_kernels": ("kernels", lambda v: f"{v:.0f}"),
    "gpu_time_s": ("GPU time", lambda v: render.si(v, "s")),
    "busy_s": ("busy", lambda v: render.si(v, "s")),
    "idle_s": ("idle", lambda v: render.si(v, "s")),
    "comm_time_s": ("NCCL", lambda v: render.si(v, "s")),
    "costed_share": ("costed", render.percent),
}


@main.command()
@click.argument("trace_file", metavar="TRACE.json[.gz]|FOLDER", type=click.Path())
@click.option(
    "--gpu",
    help="The spec of the GPU the trace was recorded on (name or path); default: the trace's own deviceProperties.",
)
@click.option(
    "--by",
    type=click.Choice(["op", "range", "rank"]),
    default="range",
    show_default=True,
    help="Group kernels by their CPU op, by the innermost record_function range, or by rank "
    "(a folder of one trace per rank).",
)
@click.option(
    "--model",
    "model_file",
    type=click.Path(dir_okay=False),
    help="The model's config (YAML or config.json): map every kernel to the analytic (phase, op) rows "
    "and compare with the prediction. TRACE may then be a folder of rank files.",
)
@click.option("--batch", "batch_size", type=COUNT, help="With --model: the batch, instead of inferring it.")
@click.option("--prompt-len", type=COUNT, help="With --model: the prompt length, instead of inferring it.")
@plot_option
@output_options
@library_errors
def trace(trace_file, gpu, by, model_file, batch_size, prompt_len, fmt, output, plot_file):
    """Join a torch.profiler Chrome trace's kernels to ops and ranges, and classify what happened.

    \b
    With --model, every kernel goes to a row (phase, op) of the analytic model (by module ranges,
    recorded shapes and position in the layer), the workload is inferred from the shapes, and each
    row's GPU time is put beside the analytic time of the same calls.

    \b
    Example:
      roofline trace tests/data/h100_decode_trace.json.gz --gpu h100-sxm
      roofline trace tests/data/h200_hf_tiny_llama_trace.json.gz --model tests/data/tiny_hf_llama.yaml
    """
    from roofline.attribute import resolve_spec, trace_list

    check_outputs(output, plot_file, {"trace": trace_file, "spec": gpu, "model": model_file})
    if model_file:
        return trace_model(trace_file, gpu, model_file, batch_size, prompt_len, fmt, output, plot_file)
    for flag, value in (("--batch", batch_size), ("--prompt-len", prompt_len)):
        if value is not None:
            raise click.UsageError(f"{flag} describes the model's workload; give --model too")
    from roofline.measure.trace import analyze_trace

    spec = resolve_spec(gpu, trace_list(trace_file))
    result = analyze_trace(trace_file, spec)
    frame = {"op": result.by_op, "range": result.by_range, "rank": result.by_rank}[by]
    if fmt == "json":
        emit(
            render.to_json(
                {
                    **json_header(spec=spec),
                    "summary": result.summary,
                    "by_range": render.to_records(result.by_range),
                    "by_op": render.to_records(result.by_op),
                    "by_rank": render.to_records(result.by_rank),
                }
            ),
            output,
        )
    elif fmt == "csv":
        emit(render.to_csv(frame), output)
    else:
        cols = dict(TRACE_TABLE)
        if by == "rank":
            cols = TRACE_RANK_TABLE
        elif by == "range":
            cols = {"range": ("range", str), **{k: v for k, v in cols.items() if k != "op"}}
        summary = ", ".join(
            f"{k} {render.figure(k, v)}" for k, v in result.summary.items() if not isinstance(v, (dict, list))
        )
        emit(render.text_table(frame, _present(frame, cols), fmt == "markdown") + "\n\n" + summary, output)
    if plot_file:
        from roofline import plot

        warn_written(plot.save(plot.figure_trace(result), plot_file))


ATTRIBUTE_TABLE = {
    "phase": ("phase", str),
    "op": ("op", str),
    "n_kernels": ("kernels", lambda v: f"{v:.0f}"),
    "calls": ("calls", lambda v: f"{v:.0f}"),
    "gpu_time_s": ("GPU time", lambda v: render.si(v, "s")),
    "predicted_time_s": ("predicted", lambda v: render.si(v, "s")),
    "measured_over_predicted": ("meas/pred", lambda v: "-" if math.isnan(v) else f"{v:.2f}"),
    "predicted_bound": ("predicted", str),
    "measured_bound": ("measured", str),
    "evidence_kind": ("by", str),
    "evidence": ("evidence", str),
}


def trace_model(
    trace_file: str,
    gpu: str | None,
    model_file: str,
    batch_size: int | None,
    prompt_len: int | None,
    fmt: str,
    output: str | None,
    plot_file: str | None,
) -> None:
    """``roofline trace --model``: attribute, compare, render."""
    from roofline.attribute import attribute, compare_frame, device_mismatch, trace_list
    from roofline.config import load_model

    model = load_model(model_file)
    result = attribute(trace_file, model, spec=gpu, batch_size=batch_size, prompt_len=prompt_len)
    spec_name = result.summary["gpu"]
    if gpu:
        mismatch = device_mismatch(result.spec, trace_list(trace_file))
        if mismatch:
            warn(mismatch)
    ops = compare_frame(result, model, result.spec)
    s = result.summary
    if fmt == "json":
        emit(
            render.to_json(
                {
                    **json_header(model, result.spec, result.workload),
                    "summary": {k: v for k, v in s.items()},
                    "notes": result.notes,
                    "ops": render.to_records(ops),
                    "unattributed": render.to_records(result.unattributed),
                    "passes": render.to_records(result.passes),
                }
            ),
            output,
        )
    elif fmt == "csv":
        emit(render.to_csv(ops), output)
    else:
        w = s["workload"]
        ctx = w["context_lens"]
        lines = [
            f"{model.name} on {spec_name}: {s['forward_passes']['prefill']} prefill and {s['forward_passes']['decode']} "
            f"decode passes; batch {w['batch_size']:.0f}, prompt {w['prompt_len']:.0f}"
            + (f", decode context {min(ctx):.0f}..{max(ctx):.0f}" if ctx else ""),
            render.text_table(ops, _present(ops, ATTRIBUTE_TABLE), fmt == "markdown"),
            "",
            (
                f"GPU time {render.si(s['gpu_time_s'], 's')}: {render.percent(s['attributed_share'])} on op rows, "
                f"{render.si(s['unattributed_gpu_time_s'], 's')} on none"
            ),
        ]
        off = result.unattributed.groupby(["op", "reason"], sort=False)["gpu_time_s"].sum()
        lines += [f"  {render.si(t, 's')} {op}: {reason}" for (op, reason), t in off.items()]
        lines += [f"note: {n}" for n in result.notes]
        emit("\n".join(lines), output)
    if plot_file:
        from roofline import plot
        from roofline.analysis import analyze as run_analysis

        w = result.workload
        context = round(sum(w["context_lens"]) / len(w["context_lens"])) if w["context_lens"] else None
        analytic = run_analysis(
            model,
            result.spec,
            batch_size=round(w["batch_size"]),
            prompt_len=round(w["prompt_len"]),
            context_len=context,
        )
        figure = plot.figure_analysis_measured(analytic, measured_points(ops))
        warn_written(plot.save(figure, plot_file))


def measured_points(ops: "pd.DataFrame") -> "pd.DataFrame":
    """The compared rows as the measured points plot.figure_roofline draws."""
    import pandas as pd

    return pd.DataFrame(
        {"phase": ops["phase"], "op": ops["op"], "flops": ops["analytic_flops"], "measured_time_s": ops["gpu_time_s"]}
    )  # both over all the calls measured


# ------------------------------------------------------------------------------------------------
@main.command()
@click.argument("model", type=click.Path())
@click.option("--gpu", required=True, help="A shipped spec name or a path to a spec YAML (a calibrated one too).")
@click.option(
    "--out",
    "-o",
    "--output",
    "out_dir",
    required=True,
    type=OutputPath(file_okay=False),
    help="The report folder to write (built aside, swapped in whole).",
)
@click.option(
    "--profile", "with_profile", is_flag=True, help="Also measure on this machine's GPU and check the advice."
)
@click.option("--layers", type=COUNT, default=2, show_default=True, help="Reference layers for --profile.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on standard error.")
@workload_options
@library_errors
def report(model, gpu, out_dir, with_profile, layers, quiet, **workload):
    """Write a report folder: report.md, report.html, charts (PNG, SVG), tables (CSV) and the inputs.

    \b
    Example:
      roofline report examples/llama-2-7b.yaml --gpu a10 --out reports/llama-2-7b-a10
    """
    from roofline.config import load_model_and_workload, workload_sources
    from roofline.report import write_report
    from roofline.specs import load_spec

    command_line = _command_line(click.get_current_context())
    m, w = load_model_and_workload(model, workload)
    warn_workload(m, w)

    def progress(stage: str) -> None:
        if not quiet:
            click.echo(f"report: {stage}...", err=True)

    comparison = advice = checks = scores = None
    if with_profile:
        from roofline.advise import advise as run_advise
        from roofline.analysis import analyze as run_analysis
        from roofline.compare import check_advice, compare
        from roofline.measure.checks import measure_suggestions
        from roofline.measure.profile import profile_model

        progress("profiling")
        run = profile_model(m, w, spec=gpu, layers=layers)
        progress("analysing")
        comparison = compare(run_analysis(m, gpu, workload=w), run)
        progress("advising")
        advice = run_advise(comparison)
        progress("checking the advice on the GPU")
        checks = check_advice(comparison, advice, measure_suggestions(m, w, gpu, advice, run, layers=layers))
        if run.device.get("gpu") != "cpu":  # the advisor scored on the GPU: every change the reference can run
            from dataclasses import replace

            from roofline.validation import advice_scores, reference_measurer, run_times

            progress("scoring the advice on the GPU")
            scores = advice_scores(
                replace(m, num_hidden_layers=run.layers),
                run.workload,
                gpu,
                measure=reference_measurer(gpu),
                baseline=run_times(run),
                label=m.name,
            )
    settings = render.settings_line(w, workload_sources(model, workload), load_spec(gpu), m.is_mla, m.is_moe)
    path = write_report(
        model,
        gpu,
        out_dir,
        command_line=command_line,
        comparison=comparison,
        advice=advice,
        checks=checks,
        advice_scores=scores,
        progress=progress,
        settings=settings,
        **workload,
    )
    click.echo(f"wrote {path} and {path.with_suffix('.html')}")


def _command_line(ctx) -> str:
    """The command as typed, rebuilt from the parsed parameters (options left at their default omitted)."""
    import shlex

    words = ["roofline", ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if isinstance(param, click.Argument):
            words.append(str(value))
        elif value is not None and value is not False and value != param.default:
            words.append(
                param.opts[0]
                if value is True
                else f"{param.opts[0]} " + (",".join(map(str, value)) if isinstance(value, tuple) else str(value))
            )
    return " ".join(shlex.quote(w) if " " not in w else w for w in words)


@main.command("plot")
@click.argument("result", type=click.Path(dir_okay=False))
@click.option("--gpu", help="The spec, when the result was made with a spec YAML that is not shipped.")
@click.option(
    "--output",
    "-o",
    required=True,
    type=OutputPath(dir_okay=False),
    help="Chart to write: x.png (x.svg beside it), or one file .pdf, .jpg, .eps, .tiff, .webp.",
)
@library_errors
def plot_result(result, gpu, output):
    """Draw the charts of a saved `roofline analyze --format json` result.

    \b
    Example:
      roofline analyze examples/llama-2-7b.yaml --gpu a10 --format json --output result.json
      roofline plot result.json --output result.png
    """
    from roofline import plot

    refuse_input_as_output(output, {"result": result, "spec": gpu})
    ops, summary, spec_name = plot.load_result_json(result)
    if gpu is None and (
        "/" in spec_name or "\\" in spec_name or spec_name.lower().endswith((".yaml", ".yml", ".json"))
    ):
        raise click.ClickException(
            render.term_safe(
                f"{result}: its gpu field '{spec_name}' is a path; roofline does not open a path read from a data "
                f"file: pass --gpu with the spec's name or the path you trust"
            )
        )
    if gpu is not None:
        from pathlib import Path

        from roofline.specs import load_spec

        given = load_spec(gpu).name
        if given != Path(spec_name).stem and given != spec_name:
            warn(
                f"{result} was analysed with the spec '{spec_name}'; drawn against {given}'s roofs, its points keep "
                f"{spec_name}'s times and classes: analyze again with --gpu {gpu} for {given}'s own"
            )
    warn_written(plot.save(plot.figure_result(ops, summary, gpu or spec_name), output))


# ------------------------------------------------------------------------------------------------
@main.group(invoke_without_command=True)
@click.pass_context
@output_options
@library_errors
def specs(ctx, fmt, output):
    """List the shipped hardware specs; `roofline specs show NAME` prints one.

    \b
    Example:
      roofline specs
    """
    if ctx.invoked_subcommand is not None:
        return
    from roofline.specs import list_specs, load_spec

    rows = []
    for name in list_specs():
        spec = load_spec(name)
        peak16 = spec.peak_flops_per_s.get("bf16") or spec.peak_flops_per_s.get("fp16")
        rows.append(
            {
                "name": name,
                "full_name": spec.full_name,
                "bf16_flops_per_s": peak16,
                "mem_bytes_per_s": spec.mem_bytes_per_s,
                "mem_capacity_bytes": spec.mem_capacity_bytes,
                "ridge_bf16": spec.ridge("bf16") if spec.has_dtype("bf16") else float("nan"),
            }
        )
    import pandas as pd

    frame = pd.DataFrame(rows)
    if fmt == "json":
        emit(render.to_json({**json_header(), "specs": render.to_records(frame)}), output)
    elif fmt == "csv":
        emit(render.to_csv(frame), output)
    else:
        formats = {
            "name": ("name", str),
            "full_name": ("device", str),
            "bf16_flops_per_s": ("bf16 dense", lambda v: render.si(v, "FLOP/s")),
            "mem_bytes_per_s": ("memory BW", lambda v: render.si(v, "B/s")),
            "mem_capacity_bytes": ("memory", lambda v: render.si(v, "B")),
            "ridge_bf16": ("bf16 ridge FLOP/B", lambda v: f"{v:.0f}"),
        }
        emit(render.text_table(frame, formats, markdown=fmt == "markdown"), output)


@specs.command("show")
@click.argument("name")
@output_options
@library_errors
def specs_show(name, fmt, output):
    """Print one spec with its ridge point (FLOP/byte) per dtype.

    \b
    Example:
      roofline specs show a10
    """
    from roofline.predict import describe_collectives, describe_source
    from roofline.specs import load_spec

    refuse_input_as_output(output, {"spec": name})
    spec = load_spec(name)
    rows = [
        {
            "dtype": dtype,
            "peak_flops_per_s": peak,
            "measured_flops_per_s": spec.measured_peak_flops_per_s.get(dtype),
            "ridge_flop_per_byte": peak / spec.mem_bytes_per_s,
            "source": _source(spec, dtype),
        }
        for dtype, peak in spec.peak_flops_per_s.items()
    ]
    info = {
        "name": spec.name,
        "full_name": spec.full_name,
        "mem_bytes_per_s": spec.mem_bytes_per_s,
        "mem_capacity_bytes": spec.mem_capacity_bytes,
        "l2_bytes": spec.l2_bytes,
        "gpu_link": spec.gpu_link_name,
        "gpu_link_bytes_per_s_per_direction": spec.gpu_link_bytes_per_s,
        "host_link": spec.host_link_name,
        "host_link_bytes_per_s_per_direction": spec.host_link_bytes_per_s,
        "launch_overhead_s": spec.launch_overhead_s,
        "graph_launch_overhead_s": spec.graph_launch_overhead_s,
        "collective_latency_s": spec.collective_latency_s,
        "measured_mem_bytes_per_s": spec.measured_mem_bytes_per_s,
        "file": spec.path,
    }
    import pandas as pd

    frame = pd.DataFrame(rows)
    if fmt == "json":
        emit(
            render.to_json(
                {
                    **json_header(spec=spec),
                    **info,
                    "dtypes": render.to_records(frame),
                    "sources": spec.sources,
                    "references": spec.references,
                }
            ),
            output,
        )
        return
    if fmt == "csv":
        emit(render.to_csv(frame), output)
        return
    lines = [
        f"{spec.name}: {spec.full_name}",
        f"memory: {render.si(spec.mem_capacity_bytes, 'B')} at {render.si(spec.mem_bytes_per_s, 'B/s')}"
        + (f" (measured {render.si(spec.measured_mem_bytes_per_s, 'B/s')})" if spec.measured_mem_bytes_per_s else ""),
        f"L2: {render.si(spec.l2_bytes, 'B')}",
        f"GPU link: {spec.gpu_link_name or 'none (over the host link)'}"
        + (f", {render.si(spec.gpu_link_bytes_per_s, 'B/s')} per direction" if spec.gpu_link_bytes_per_s else ""),
        f"host link: {spec.host_link_name}, {render.si(spec.host_link_bytes_per_s, 'B/s')} per direction",
        f"launch overhead: {render.si(spec.launch_overhead_s, 's')} eager, "
        f"{render.si(spec.graph_launch_overhead_s, 's')} in a CUDA graph; "
        f"collective latency {render.si(spec.collective_latency_s, 's')}",
        describe_source(spec),
        describe_collectives(spec),
        "",
    ]
    formats = {
        "dtype": ("dtype", str),
        "peak_flops_per_s": ("dense peak", lambda v: render.si(v, "FLOP/s")),
        "measured_flops_per_s": ("measured", lambda v: render.si(v, "FLOP/s")),
        "ridge_flop_per_byte": ("ridge FLOP/B", lambda v: f"{v:.1f}"),
    }
    lines.append(render.text_table(frame, formats, markdown=fmt == "markdown"))
    lines += ["", "sources:"] + [f"  {key}: {_flat(text)}" for key, text in spec.sources.items()]
    if spec.references:
        lines += ["", "references:"] + [f"  [{tag}] {text}" for tag, text in spec.references.items()]
    if spec.notes:
        lines += ["", f"notes: {spec.notes}"]
    emit("\n".join(lines), output)


def _flat(text) -> str:
    if isinstance(text, dict):
        return "; ".join(f"{k}: {v}" for k, v in text.items())
    return " ".join(str(text).split())


@specs.command("check")
@click.argument("files", nargs=-1, required=True)
@library_errors
def specs_check(files):
    """Lint spec files: sparse figures used as dense, ridge points out of family, unit slips, missing
    sources or references. One line per finding and exit 1; exit 0 when clean.

    \b
    Example:
      roofline specs check h100-sxm rtx-4090
    """
    from roofline.specs import check_spec_file

    findings = []
    for name in files:
        findings += check_spec_file(name)
    for line in findings:
        click.echo(line)
    if findings:
        raise SystemExit(1)
    click.echo(f"{', '.join(files)}: no findings")


def _source(spec, dtype):
    src = spec.sources.get("peak_tflops")
    return src.get(dtype) if isinstance(src, dict) else src


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
