"""Writes the two notebooks from their cell text (run from notebooks/, then execute them with nbclient
or Jupyter to fill the outputs). Kept so a change to a notebook is a reviewable diff here."""

import nbformat as nbf


def nb(cells):
    n = nbf.v4.new_notebook()
    n.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    n.cells = [nbf.v4.new_markdown_cell(c[1]) if c[0] == "md" else nbf.v4.new_code_cell(c[1]) for c in cells]
    return n


walk = nb(
    [
        (
            "md",
            "# Walkthrough: why Llama-2-7B runs as fast as it does on an A10 and an H100\n\n"
            "Everything here comes from `roofline.analyze` on the shipped model and hardware files; no GPU is needed.\n"
            "Conventions (2 FLOP per multiply-add, ideal-kernel bytes, dense datasheet peaks) are in the README.",
        ),
        (
            "code",
            "%matplotlib inline\nimport pandas as pd\nimport roofline\nfrom roofline import plot\nfrom roofline.advise import advise, render_advice\n"
            "from roofline.specs import data_dir\n\nMODEL = data_dir('examples') / 'llama-2-7b.yaml'\n"
            "pd.set_option('display.width', 160)",
        ),
        (
            "md",
            "## 1. Analyse on two GPUs\n\nOne point each: batch 1, 512-token prompt, decode at 512 tokens of context (the model file's workload).",
        ),
        (
            "code",
            "results = {gpu: roofline.analyze(MODEL, gpu) for gpu in ('a10', 'h100-sxm')}\n"
            "cols = ['prefill_time_s', 'prefill_share_compute', 'decode_time_s', 'decode_tokens_per_s', 'decode_share_memory',\n"
            "        'weight_bytes', 'decode_ridge_batch']\n"
            "pd.DataFrame({gpu: r.summary[cols].iloc[0] for gpu, r in results.items()})",
        ),
        (
            "md",
            "Decode at batch 1 streams every weight once per token, so its time is bytes over bandwidth on both GPUs; "
            "prefill of 512 tokens is compute-bound in the projections. The ratio of the two decode times is the ratio of the "
            "two memory bandwidths:",
        ),
        (
            "code",
            "a10, h100 = results['a10'], results['h100-sxm']\n"
            "print('decode time ratio  ', a10.summary.decode_time_s[0] / h100.summary.decode_time_s[0])\n"
            "print('bandwidth ratio    ', h100.spec.mem_bytes_per_s / a10.spec.mem_bytes_per_s)",
        ),
        (
            "md",
            "## 2. Read the roofline\n\nEach point is an op: x its arithmetic intensity, y the FLOP/s it attains at its predicted time; "
            "colour is its bound class, area its share of its phase's time. Left of the ridge, an op is memory-bound.",
        ),
        ("code", "plot.figure_roofline(a10.ops, a10.spec)"),
        (
            "code",
            "decode = a10.ops[a10.ops.phase == 'decode']\n"
            "decode[['op', 'count', 'flops', 'bytes_read', 'arithmetic_intensity', 'bound', 'time_s', 'share']]",
        ),
        (
            "md",
            "## 3. Sweep the batch\n\nA decode step reads the weights once for the whole batch, so tokens/s grow almost linearly with the batch "
            "until the weight matmuls reach the ridge (dashed line), or the KV cache runs out of memory (hollow points).",
        ),
        (
            "code",
            "sweep = roofline.analyze(MODEL, 'a10', batch_size=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512], phase='decode')\n"
            "plot.figure_sweep(sweep.summary, title='llama-2-7b on a10: decode batch sweep')",
        ),
        (
            "code",
            "sweep.summary[['batch_size', 'decode_time_s', 'decode_tokens_per_s', 'decode_share_memory', 'memory_bytes', 'fits_in_memory']]",
        ),
        (
            "md",
            "## 4. Follow the advice\n\nEach suggestion is the analysis re-run with one change; its flags reproduce it on the command line.",
        ),
        ("code", "advice = advise(a10)\nprint(render_advice(advice))"),
        (
            "code",
            "top = advice.iloc[0]\nafter = roofline.analyze(MODEL, 'a10', **top.overrides)\n"
            "phase = top.phase\n"
            "print(top.change, '|', top.flags)\n"
            "print('predicted by the advisor:', round(top.predicted_speedup, 3))\n"
            "print('tokens/s before and after:', a10.summary[f'{phase}_tokens_per_s'][0], after.summary[f'{phase}_tokens_per_s'][0])",
        ),
    ]
)

measured = nb(
    [
        (
            "md",
            "# Measured on an H100 against the analytic prediction\n\n"
            "The data is the committed run in `reports/h100/` (its README gives the exact command, the device and the clocks): "
            "a 2-layer Llama-2-7B reference model profiled with the torch profiler, each op's kernels summed per step, "
            "median over 10 steps, beside the analytic roofline time against the calibrated H100 ceilings.",
        ),
        (
            "code",
            "%matplotlib inline\nfrom pathlib import Path\nimport pandas as pd\nimport roofline\nfrom roofline import plot\n"
            "from roofline.compare import measured_for_advice\nfrom roofline.specs import data_dir, load_spec\n\n"
            "REPORT = Path('..') / 'reports' / 'h100'\npd.set_option('display.width', 160)\n"
            "spec = load_spec(REPORT / 'calibration.yaml')\n"
            "print(spec.full_name, '| measured bandwidth', spec.measured_mem_bytes_per_s / 1e9, 'GB/s | measured bf16',\n"
            "      spec.measured_peak_flops_per_s['bf16'] / 1e12, 'TFLOP/s')",
        ),
        (
            "md",
            "## Whole steps\n\nKernel time of the 32-layer model (per-layer ops scaled by their count) against the prediction, and the "
            "host overhead: the eager step minus the CUDA-graph replay of the same 2-layer reference.",
        ),
        (
            "code",
            "steps = pd.read_csv(REPORT / 'steps.csv')\n"
            "steps[['case', 'kernel_time_full_s', 'predicted_time_full_s', 'measured_over_predicted_full', 'eager_step_ref_s',\n"
            "       'graph_step_ref_s', 'host_overhead_ref_s']]",
        ),
        ("md", "## Op by op, decode at batch 1 (context 1024)"),
        (
            "code",
            "ops = pd.read_csv(REPORT / 'decode_b1_ops.csv')\n"
            "ops[['op', 'n_kernels', 'measured_time_s', 'predicted_time_s', 'measured_over_predicted', 'predicted_bound',\n"
            "     'measured_bound', 'evidence']]",
        ),
        (
            "md",
            "The same op on the roofline: the analytic point (filled) joined to the measured one (hollow), against the "
            "calibrated (solid) and datasheet (dashed) roofs.",
        ),
        (
            "code",
            "analysis = roofline.analyze(data_dir('examples') / 'llama-2-7b.yaml', spec, batch_size=1, prompt_len=1024,\n"
            "                           context_len=1024, phase='decode')\n"
            "plot.figure_roofline(analysis.ops, analysis.spec, measured=measured_for_advice(ops))",
        ),
        (
            "md",
            "## Bytes: Nsight Compute DRAM counters against the analytic bytes\n\n"
            "`read_ratio` = DRAM bytes read (ncu `dram__bytes_read.sum`) / analytic bytes read, per op of the batch-1 decode step.",
        ),
        (
            "code",
            "ncu = pd.read_csv(REPORT / 'ncu_vs_analytic.csv')\nncu[['op', 'predicted_bound', 'bytes_read', 'dram_read', 'read_ratio', 'write_ratio']]",
        ),
        (
            "code",
            "weights = ncu[ncu.op.isin(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'lm_head'])]\n"
            "print('weight-streaming ops: DRAM read / analytic read from', weights.read_ratio.min().round(3), 'to', weights.read_ratio.max().round(3))",
        ),
        ("md", "## The other cases\n\nThe same comparison for the 2048-token prefill and for decode at batch 64."),
        (
            "code",
            "for case in ('prefill', 'decode_b64'):\n"
            "    frame = pd.read_csv(REPORT / f'{case}_ops.csv')\n"
            "    print(case)\n"
            "    print(frame[['op', 'measured_time_s', 'predicted_time_s', 'measured_over_predicted', 'measured_bound']].to_string(index=False))\n"
            "    print()",
        ),
    ]
)

nbf.write(walk, "01_walkthrough.ipynb")
nbf.write(measured, "02_measured_vs_analytic_h100.ipynb")
