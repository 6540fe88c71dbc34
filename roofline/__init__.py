"""roofline: why a transformer runs as fast as it does on a GPU, and what to try next.

The analytic API, in one call::

    import roofline
    result = roofline.analyze("examples/llama-2-7b.yaml", "a10", batch_size=[1, 8, 64])
    result.ops       # pandas DataFrame: one row per op per phase per point
    result.summary   # one row per point

Importing roofline imports neither torch nor matplotlib.
"""

__version__ = "0.1.0"


def analyze(model, gpu, workload=None, **overrides):
    """See roofline.analysis.analyze."""
    from roofline.analysis import analyze as _analyze

    return _analyze(model, gpu, workload, **overrides)


def capture(model, config, gpu=None, **options):
    """Profile the code in a ``with`` block on a live ``torch.nn.Module``, one range per module:
    ``with roofline.capture(model, "config.yaml") as cap: model.generate(...)`` leaves ``cap.run``
    (kernels on the analytic model's (phase, op) rows) and ``cap.comparison`` (beside the prediction).
    See roofline.measure.capture.capture; imports torch."""
    from roofline.attribute import compare_frame
    from roofline.measure.capture import capture as _capture

    return _capture(model, config, gpu=gpu, compare=compare_frame, **options)


def load_spec(name_or_path):
    """See roofline.specs.load_spec."""
    from roofline.specs import load_spec as _load_spec

    return _load_spec(name_or_path)


def load_model(path):
    """See roofline.config.load_model."""
    from roofline.config import load_model as _load_model

    return _load_model(path)
