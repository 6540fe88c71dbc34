"""The ``roofline`` command: parse, call one library function, render. No arithmetic here.

Library errors (RooflineError) become one line on stderr and exit code 1; click's own usage errors
exit with 2. The analytic commands (analyze, specs) never import torch or matplotlib.
"""

import contextlib
import functools
import sys

import click

from roofline import render
from roofline.config import ATTN_IMPLS, MLA_FORMS, PHASES, parse_sweep
from roofline.dtypes import ACT_DTYPES, STORAGE_DTYPES
from roofline.errors import ConfigError, RooflineError


def library_errors(fn):
    """Turn RooflineError into click's one-line 'Error: ...' with exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RooflineError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def output_options(fn):
    """The shared --format / --output pair."""
    fn = click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
                      help="Write to this file instead of standard output.")(fn)
    fn = click.option("--format", "fmt", type=click.Choice(render.FORMATS), default="table", show_default=True,
                      help="table for people; csv and json hold raw SI numbers.")(fn)
    return fn


def emit(text: str, output) -> None:
    if output:
        try:
            with open(output, "w") as fh:
                fh.write(text if text.endswith("\n") else text + "\n")
        except OSError as exc:
            raise click.ClickException(f"cannot write {output}: {exc.strerror}") from None
    else:
        click.echo(text.rstrip("\n"))


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def warn_written(paths) -> None:
    click.echo("wrote " + ", ".join(str(p) for p in paths), err=True)


RENDEZVOUS_FLAGS = ("nnodes", "node-rank", "master-addr", "master-port", "rdzv-backend", "rdzv-endpoint", "rdzv-id")


def rendezvous_options(fn):
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
        wrapper = click.option(f"--{flag}", callback=collect, expose_value=True,
                               help=f"torchrun's --{flag}, for several hosts.")(wrapper)
    return wrapper


def plot_option(fn):
    return click.option("--plot", "plot_file", type=click.Path(dir_okay=False),
                        help="Also draw the chart to this file (PNG, and SVG beside it).")(fn)


def sweep_option(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_sweep(value, param.opts[0])
    except ConfigError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[-1]) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="roofline")
def main():
    """Why a transformer runs as fast as it does on a GPU, and what to try next."""


# ------------------------------------------------------------------------------------------------
WORKLOAD_OPTIONS = [
    click.option("--batch", "batch_size", callback=sweep_option, help="Batch size: 8, a list 1,8,64 or a range 1:256:x2."),
    click.option("--prompt-len", callback=sweep_option, help="Prompt (prefill) tokens per sequence; list or range."),
    click.option("--context-len", callback=sweep_option, help="KV length a decode step attends to; list or range."),
    click.option("--gen-tokens", type=click.IntRange(min=1), help="Generated tokens: decode at the mean context instead."),
    click.option("--phase", type=click.Choice(PHASES), help="Which phase to analyse."),
    click.option("--weight-dtype", type=click.Choice(STORAGE_DTYPES), help="Dtype of the linear-layer weights."),
    click.option("--act-dtype", type=click.Choice(ACT_DTYPES), help="Dtype of activations."),
    click.option("--kv-dtype", type=click.Choice(STORAGE_DTYPES), help="Dtype of the KV cache."),
    click.option("--attn", "attn_impl", type=click.Choice(ATTN_IMPLS), help="Attention implementation."),
    click.option("--mla", "mla_form", type=click.Choice(MLA_FORMS),
                 help="MLA models (DeepSeek): absorbed or decompressed attention; auto: decompressed prefill, "
                      "absorbed decode."),
    click.option("--tp", type=click.IntRange(min=1), help="Tensor-parallel degree (counts are per GPU)."),
    click.option("--pp", type=click.IntRange(min=1), help="Pipeline-parallel stages (layers split evenly)."),
    click.option("--ep", type=click.IntRange(min=1), help="Expert-parallel GPUs (MoE): experts spread, all-to-all."),
    click.option("--microbatches", type=click.IntRange(min=1), help="Micro-batches in flight through the pipeline."),
    click.option("--cuda-graph/--eager", "cuda_graph", default=None, help="Launch floor of a CUDA graph or of eager ops."),
]


def workload_options(fn):
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
    from roofline.analysis import analyze as run_analysis

    result = run_analysis(model, gpu, **workload)
    for key in result.model.ignored_keys:
        warn(f"{model}: ignoring key '{key}', which roofline does not model")
    worst = result.summary.loc[~result.summary["fits_in_memory"]]
    if len(worst):
        row = worst.iloc[0]
        warn(
            f"weights + KV cache ({render.si(row['memory_bytes'], 'B')}) do not fit in {result.spec.name}'s "
            f"{render.si(row['mem_capacity_bytes'], 'B')} at batch {row['batch_size']:.0f} ({len(worst)} of "
            f"{len(result.summary)} points); use --tp, a smaller batch or context, or quantised weights/KV"
        )
    emit(render_analysis(result, fmt, summary_only), output)
    if plot_file:
        from roofline import plot

        figure = plot.figure_result(result.ops, result.summary, result.spec)
        warn_written(plot.save(figure, plot_file))


def render_analysis(result, fmt: str, summary_only: bool) -> str:
    ops, summary = result.ops, result.summary
    if fmt == "json":
        payload = {
            "model": result.model.name,
            "gpu": result.spec.name,
            "workload": {k: v for k, v in vars(result.workload).items()},
            "summary": render.to_records(summary),
        }
        if not summary_only:
            payload["ops"] = render.to_records(ops)
        return render.to_json(payload)
    if fmt == "csv":
        return (summary if summary_only else ops).to_csv(index=False)
    markdown = fmt == "markdown"
    if summary_only or len(summary) > 1:
        return render.text_table(summary, _present(summary, render.SWEEP_TABLE), markdown)
    return render_single_point(result, markdown)


def _present(frame, formats):
    return {k: v for k, v in formats.items() if k in frame.columns}


def render_single_point(result, markdown: bool) -> str:
    w, spec, s = result.workload, result.spec, result.summary.iloc[0]
    head = (
        f"{result.model.name} on {spec.name} ({spec.full_name}): batch {s['batch_size']:.0f}, "
        f"prompt {s['prompt_len']:.0f}, context {s['context_len']:g}; weights {w.weight_dtype}"
        f"{'' if w.weight_dtype_source == 'default' else ' from ' + w.weight_dtype_source}, activations "
        f"{w.act_dtype}, KV {w.kv_dtype}{'' if w.kv_dtype_source == 'default' else ' from ' + w.kv_dtype_source}; "
        f"{w.attn_impl} attention; tp {w.tp}; "
        f"{'CUDA graph' if w.cuda_graph else 'eager'} launch floor {render.si(spec.ceiling_launch_s(w.cuda_graph), 's')}"
    )
    if result.model.is_mla:
        from roofline.transformer import mla_form

        head += (f"; MLA {mla_form(w, 'prefill')} in prefill, {mla_form(w, 'decode')} in decode "
                 f"(--mla), latent KV cache")
    out = [head]
    for phase in w.phases:
        rows = result.ops[result.ops["phase"] == phase]
        if phase == "prefill":
            title = (f"prefill: time to first token {render.si(s['prefill_time_s'], 's')} "
                     f"({render.si(s['prefill_tokens_per_s'])} tokens/s)")
        else:
            title = (f"decode: {render.si(s['decode_time_s'], 's')} per step, "
                     f"{render.si(s['decode_tokens_per_s'])} tokens/s")
        out += ["", title, render.text_table(rows, render.OP_TABLE, markdown)]
        shares = ", ".join(f"{cls} {render.percent(s[f'{phase}_share_{cls}'])}"
                           for cls in ("compute", "memory", "communication", "overhead"))
        out.append(f"time by bound: {shares}; with launch floor: {render.si(s[f'{phase}_time_with_launch_s'], 's')}")
    out += [
        "",
        f"memory per GPU: weights {render.si(s['weight_bytes'], 'B')} + KV cache {render.si(s['kv_cache_bytes'], 'B')}"
        f" = {render.si(s['memory_bytes'], 'B')} of {render.si(s['mem_capacity_bytes'], 'B')}"
        f" ({'fits' if s['fits_in_memory'] else 'DOES NOT FIT'})",
        f"decode weight matmuls reach the ridge at batch {s['decode_ridge_batch']:.0f}"
        if s["decode_ridge_batch"] == s["decode_ridge_batch"] else "decode weight matmuls stay memory-bound up to batch 65536",
    ]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------
@main.command()
@click.argument("model", type=click.Path())
@click.option("--gpu", required=True, help="A shipped spec name (roofline specs) or a path to a spec YAML.")
@workload_options
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="How many suggestions.")
@output_options
@library_errors
def advise(model, gpu, top, fmt, output, **workload):
    """Ranked "try this next": each change re-analysed, with its predicted speedup and why.

    \b
    Example:
      roofline advise examples/llama-2-7b.yaml --gpu a10 --phase decode
    """
    from roofline.advise import advise as run_advise, render_advice
    from roofline.analysis import analyze as run_analysis

    frame = run_advise(run_analysis(model, gpu, **workload), top=top)
    if fmt == "json":
        emit(render.to_json(render.to_records(frame)), output)
    elif fmt == "csv":
        emit(frame.to_csv(index=False), output)
    else:
        emit(render_advice(frame), output)


# ------------------------------------------------------------------------------------------------
@main.command()
@click.argument("model", type=click.Path())
@click.option("--gpu", default="auto", show_default=True, help="Spec to compare with: auto (from NVML), a name or a path.")
@click.option("--layers", type=click.IntRange(min=1), default=2, show_default=True, help="Decoder layers in the reference model.")
@workload_options
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True, help="Warm-up iterations.")
@click.option("--iters", type=click.IntRange(min=1), default=10, show_default=True, help="Profiled iterations (median).")
@click.option("--trace-dir", type=click.Path(file_okay=False), help="Keep each phase's Chrome trace here.")
@click.option("--nproc", type=click.IntRange(min=1), help="With --tp: GPUs (processes) on this host; default tp / nnodes.")
@rendezvous_options
@plot_option
@output_options
@library_errors
def profile(model, gpu, layers, warmup, iters, trace_dir, nproc, rendezvous, fmt, output, plot_file, **workload):
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

    m, w = load_model_and_workload(model, workload)
    if w.tp > 1 or nproc or rendezvous:  # one process per GPU under torchrun
        from roofline.measure.distributed import profile_distributed

        run_profile = functools.partial(profile_distributed, nproc=nproc, rdzv_args=rendezvous)
    else:
        from roofline.measure.profile import profile_model as run_profile
    points = list(itertools.product(w.batch_size, w.prompt_len, w.context_len or (None,)))
    spec = None if gpu == "auto" else gpu
    comparisons = []
    with click.progressbar(points, label="profiling", file=sys.stderr,
                           show_pos=True) if len(points) > 1 else contextlib.nullcontext(points) as bar:
        for b, p, c in bar:
            point = replace(w, batch_size=(b,), prompt_len=(p,), context_len=(c,) if c else None)
            trace = f"{trace_dir}/b{b}_p{p}_c{c or p}" if trace_dir else None
            run = run_profile(m, point, spec=spec, layers=layers, warmup=warmup, iters=iters, trace_dir=trace)
            comparisons.append(compare(run_analysis(m, spec or run.device["spec"], workload=run.workload), run))
    import pandas as pd

    ops = pd.concat([c.ops for c in comparisons], ignore_index=True)
    steps = pd.concat([c.steps for c in comparisons], ignore_index=True)
    for note in dict.fromkeys(n for c in comparisons for n in c.notes):
        click.echo(f"note: {note}", err=True)
    if fmt == "json":
        emit(render.to_json({"device": comparisons[0].run.device, "steps": render.to_records(steps),
                             "ops": render.to_records(ops)}), output)
    elif fmt == "csv":
        emit(ops.to_csv(index=False), output)
    else:
        markdown = fmt == "markdown"
        emit(render.text_table(steps, _present(steps, render.STEP_TABLE), markdown) + "\n\n"
             + render.text_table(ops, _present(ops, render.PROFILE_TABLE), markdown), output)
    if plot_file:
        from roofline import plot

        warn_written(plot.save(plot.figure_comparison(comparisons[0]), plot_file))


@main.command()
@click.option("--gpu", default="auto", show_default=True, help="Shipped spec to extend: auto (from the GPU's name), a name or a path.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the calibrated spec YAML here.")
@click.option("--quick", is_flag=True, help="Small sizes and few repeats: a smoke test, not real numbers.")
@click.option("--collectives", is_flag=True, help="Also measure all-reduce bus bandwidth and latency over the GPUs present.")
@click.option("--nproc", type=click.IntRange(min=2), help="With --collectives: GPUs to use on this host (default: all).")
@rendezvous_options
@library_errors
def calibrate(gpu, output, quick, collectives, nproc, rendezvous):
    """Measure this GPU's ceilings (bandwidth, matmul FLOP/s per dtype, launch floor) into a spec YAML.

    \b
    Example (needs a CUDA GPU):
      roofline calibrate --output my-h100.yaml
    """
    from roofline.measure.calibrate import calibrate as run_calibrate, write_spec

    raw = run_calibrate(output=None, spec=None if gpu == "auto" else gpu, quick=quick)
    if collectives:
        from roofline.measure.collectives import calibrate_collectives, merge_collectives

        table = calibrate_collectives(nproc=nproc, rdzv_args=rendezvous)
        raw = merge_collectives(raw, table)
        click.echo(table.to_string(index=False))
    if output:
        write_spec(raw, output)
    measured = raw.get("measured", {})
    lines = [f"{k}: {v}" for k, v in measured.items() if k != "conditions"]
    if output:
        lines.append(f"wrote {output}; use it with --gpu {output}")
    click.echo("\n".join(lines))


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
@click.option("--gpu", required=True, help="The spec of the GPU the trace was recorded on (name or path).")
@click.option("--by", type=click.Choice(["op", "range", "rank"]), default="range", show_default=True,
              help="Group kernels by their CPU op, by the innermost record_function range, or by rank "
                   "(a folder of one trace per rank).")
@click.option("--model", "model_file", type=click.Path(dir_okay=False),
              help="Compare with this model's analysis (ranges named like its ops; workload flags, one --phase).")
@workload_options
@plot_option
@output_options
@library_errors
def trace(trace_file, gpu, by, model_file, fmt, output, plot_file, **workload):
    """Join a torch.profiler Chrome trace's kernels to ops and ranges, and classify what happened.

    \b
    With --model, each range (or op) named like an analytic op is set beside its prediction, as the
    profile command does; the trace is one phase, given with --phase.

    \b
    Example:
      roofline trace tests/data/h100_decode_trace.json.gz --gpu h100-sxm
    """
    from roofline.specs import load_spec

    if model_file:
        return trace_against_model(trace_file, load_spec(gpu), by, model_file, fmt, output, plot_file, workload)
    given = [p.opts[0] for p in click.get_current_context().command.params if workload.get(p.name) is not None]
    if given:
        raise click.UsageError(f"{given[0]} describes the model's workload; give --model too")
    from roofline.measure.trace import analyze_trace

    result = analyze_trace(trace_file, load_spec(gpu))
    frame = {"op": result.by_op, "range": result.by_range, "rank": result.by_rank}[by]
    if fmt == "json":
        emit(render.to_json({"summary": result.summary, "by_range": render.to_records(result.by_range),
                             "by_op": render.to_records(result.by_op),
                             "by_rank": render.to_records(result.by_rank)}), output)
    elif fmt == "csv":
        emit(frame.to_csv(index=False), output)
    else:
        cols = dict(TRACE_TABLE)
        if by == "rank":
            cols = TRACE_RANK_TABLE
        elif by == "range":
            cols = {"range": ("range", str), **{k: v for k, v in cols.items() if k != "op"}}
        summary = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.summary.items()
                            if not isinstance(v, (dict, list)))
        emit(render.text_table(frame, _present(frame, cols), fmt == "markdown") + "\n\n" + summary, output)
    if plot_file:
        from roofline import plot

        warn_written(plot.save(plot.figure_trace(result), plot_file))


def trace_against_model(trace_file, spec, by, model_file, fmt, output, plot_file, workload) -> None:
    """``roofline trace --model``: the trace as a MeasuredRun, compared with the model's analysis."""
    from roofline.analysis import analyze as run_analysis
    from roofline.compare import compare
    from roofline.config import load_model_and_workload
    from roofline.measure.trace import trace_run

    m, w = load_model_and_workload(model_file, workload)
    if len(w.phases) != 1:
        raise ConfigError("a trace holds one phase; give --phase prefill or --phase decode")
    comparison = compare(run_analysis(m, spec, workload=w), trace_run(trace_file, spec, phase=w.phases[0], by=by))
    for note in comparison.notes:
        click.echo(f"note: {note}", err=True)
    ops = comparison.ops
    if fmt == "json":
        emit(render.to_json({"trace": comparison.run.device.get("trace", {}), "summary":
                             render.to_records(comparison.summary), "ops": render.to_records(ops)}), output)
    elif fmt == "csv":
        emit(ops.to_csv(index=False), output)
    else:
        emit(render.text_table(ops, _present(ops, render.PROFILE_TABLE), fmt == "markdown"), output)
    if plot_file:
        from roofline import plot

        warn_written(plot.save(plot.figure_comparison(comparison), plot_file))


# ------------------------------------------------------------------------------------------------
@main.command()
@click.argument("model", type=click.Path())
@click.option("--gpu", required=True, help="A shipped spec name or a path to a spec YAML (a calibrated one too).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="The report folder to write.")
@click.option("--profile", "with_profile", is_flag=True, help="Also measure on this machine's GPU and check the advice.")
@click.option("--layers", type=click.IntRange(min=1), default=2, show_default=True, help="Reference layers for --profile.")
@workload_options
@library_errors
def report(model, gpu, out_dir, with_profile, layers, **workload):
    """Write a report folder: report.md, report.html, charts (PNG, SVG), tables (CSV) and the inputs.

    \b
    Example:
      roofline report examples/llama-2-7b.yaml --gpu a10 --out reports/llama-2-7b-a10
    """
    from roofline.report import write_report

    command_line = _command_line(click.get_current_context())
    comparison = advice = checks = None
    if with_profile:
        from roofline.advise import advise as run_advise
        from roofline.analysis import analyze as run_analysis
        from roofline.compare import check_advice, compare
        from roofline.config import load_model_and_workload
        from roofline.measure.checks import measure_suggestions
        from roofline.measure.profile import profile_model

        m, w = load_model_and_workload(model, workload)
        run = profile_model(m, w, spec=gpu, layers=layers)
        comparison = compare(run_analysis(m, gpu, workload=w), run)
        advice = run_advise(comparison)
        checks = check_advice(comparison, advice, measure_suggestions(m, w, gpu, advice, run, layers=layers))
    path = write_report(model, gpu, out_dir, command_line=command_line, comparison=comparison, advice=advice,
                        checks=checks, **workload)
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
            words.append(param.opts[0] if value is True else f"{param.opts[0]} "
                         + (",".join(map(str, value)) if isinstance(value, tuple) else str(value)))
    return " ".join(shlex.quote(w) if " " not in w else w for w in words)


@main.command("plot")
@click.argument("result", type=click.Path(dir_okay=False))
@click.option("--gpu", help="The spec, when the result was made with a spec YAML that is not shipped.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="PNG to write (SVG beside it).")
@library_errors
def plot_result(result, gpu, output):
    """Draw the charts of a saved `roofline analyze --format json` result.

    \b
    Example:
      roofline analyze examples/llama-2-7b.yaml --gpu a10 --format json --output result.json
      roofline plot result.json --output result.png
    """
    from roofline import plot

    ops, summary, spec_name = plot.load_result_json(result)
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
        rows.append({
            "name": name, "full_name": spec.full_name, "bf16_flops_per_s": peak16,
            "mem_bytes_per_s": spec.mem_bytes_per_s, "mem_capacity_bytes": spec.mem_capacity_bytes,
            "ridge_bf16": spec.ridge("bf16") if spec.has_dtype("bf16") else float("nan"),
        })
    import pandas as pd

    frame = pd.DataFrame(rows)
    if fmt == "json":
        emit(render.to_json(render.to_records(frame)), output)
    elif fmt == "csv":
        emit(frame.to_csv(index=False), output)
    else:
        formats = {
            "name": ("name", str), "full_name": ("device", str),
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
    from roofline.specs import load_spec

    spec = load_spec(name)
    rows = [{
        "dtype": dtype,
        "peak_flops_per_s": peak,
        "measured_flops_per_s": spec.measured_peak_flops_per_s.get(dtype),
        "ridge_flop_per_byte": peak / spec.mem_bytes_per_s,
        "source": _source(spec, dtype),
    } for dtype, peak in spec.peak_flops_per_s.items()]
    info = {
        "name": spec.name, "full_name": spec.full_name, "mem_bytes_per_s": spec.mem_bytes_per_s,
        "mem_capacity_bytes": spec.mem_capacity_bytes, "l2_bytes": spec.l2_bytes,
        "gpu_link": spec.gpu_link_name, "gpu_link_bytes_per_s_per_direction": spec.gpu_link_bytes_per_s,
        "host_link": spec.host_link_name, "host_link_bytes_per_s_per_direction": spec.host_link_bytes_per_s,
        "launch_overhead_s": spec.launch_overhead_s, "graph_launch_overhead_s": spec.graph_launch_overhead_s,
        "collective_latency_s": spec.collective_latency_s,
        "measured_mem_bytes_per_s": spec.measured_mem_bytes_per_s,
        "file": spec.path,
    }
    import pandas as pd

    frame = pd.DataFrame(rows)
    if fmt == "json":
        emit(render.to_json({**info, "dtypes": render.to_records(frame), "sources": spec.sources,
                             "references": spec.references}), output)
        return
    if fmt == "csv":
        emit(frame.to_csv(index=False), output)
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
