"""Data types: their sizes in bytes, their scale layouts, and which ones the workload may use.

A stored tensor of a quantised dtype holds its values plus scales (and zero points). ``Format``
describes that layout; ``FORMATS`` holds the named dtypes' defaults, and a checkpoint's
``quantization_config`` gives its own (roofline/quant.py). Bytes per value:

  dtype   value   scales (counted in ``scale_bytes``)
  int4    0.5     one fp16 scale per 128 values (GPTQ/AWQ style; zero points not counted)
  nvfp4   0.5     e2m1 values, one e4m3 (1-byte) scale per 16 values, one fp32 scale per tensor
  mxfp4   0.5     e2m1 values, one e8m0 (1-byte) scale per 32 values (OCP MX)
  fp8     1       per-tensor or per-channel scales, O(rows) bytes, not counted
  int8    1       as fp8

As activations, the fp4 formats count 0.5 byte per value: the scales an activation quantiser
writes (1/16 or 1/32 byte per value more) are not counted, as fp8's are not.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:
    import numpy as np

DTYPE_BYTES = {
    "fp64": 8.0,
    "fp32": 4.0,
    "tf32": 4.0,  # stored as fp32; only the tensor-core math is reduced
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    "nvfp4": 0.5,  # e2m1 value; scales in FORMATS
    "mxfp4": 0.5,
    "fp4": 0.5,  # the tensor-core peak key of a spec (e2m1 math); store as nvfp4 or mxfp4
}

# dtypes a workload may choose for weights and KV cache, and for activations
STORAGE_DTYPES = ("bf16", "fp16", "fp8", "int8", "int4", "nvfp4", "mxfp4")
ACT_DTYPES = ("bf16", "fp16", "fp8", "int8", "nvfp4", "mxfp4")

# Group size for int4 group-wise quantisation (GPTQ/AWQ style): one fp16 scale per 128 values.
INT4_GROUP_SIZE = 128
SCALE_BYTES = 2.0


@dataclass(frozen=True)
class Format:
    """How a tensor of one dtype is stored: values plus scales and zero points.

    ``group_size`` values along a row share one scale of ``scale_bytes`` and one zero point of
    ``zero_bytes``; with ``block_shape`` (rows, cols) a 2-D block shares one scale instead (fp8
    128x128 block scaling); ``channel_bytes`` per output row (per-channel scales); ``tensor_bytes``
    once per tensor. ``compute`` names the spec peak its tensor-core math uses when activations are
    quantised too; ``act_quantised`` says they are (W8A8, W4A4), else the weights are dequantised
    to the activation dtype (weight-only).
    """

    name: str
    value_bytes: float
    group_size: Optional[int] = None
    scale_bytes: float = 0.0
    zero_bytes: float = 0.0
    block_shape: Optional[tuple] = None
    channel_bytes: float = 0.0
    tensor_bytes: float = 0.0
    compute: str = ""
    act_quantised: bool = False

    @property
    def compute_dtype(self) -> str:
        return self.compute or self.name


FORMATS = {name: Format(name, size) for name, size in DTYPE_BYTES.items()}
FORMATS["int4"] = Format("int4", 0.5, group_size=INT4_GROUP_SIZE, scale_bytes=SCALE_BYTES)
FORMATS["nvfp4"] = Format("nvfp4", 0.5, group_size=16, scale_bytes=1.0, tensor_bytes=4.0, compute="fp4")
FORMATS["mxfp4"] = Format("mxfp4", 0.5, group_size=32, scale_bytes=1.0, compute="fp4")


def as_format(dtype: Union[str, Format]) -> Format:
    """A dtype name or a Format -> its Format."""
    return dtype if isinstance(dtype, Format) else FORMATS[dtype]


def scale_bytes(
    dtype: str | Format,
    n_values: "float | np.ndarray",
    group_size: Optional[int] = None,
    fan_in: "float | np.ndarray | None" = None,
) -> "float | np.ndarray":
    """Bytes of quantisation scales and zero points stored beside ``n_values`` values of ``dtype``.

    ``dtype`` is a name or a Format. Group scales: n / group * (scale + zero) bytes; ``group_size``
    replaces int4's default group (the KV cache groups by head_dim) but not nvfp4's 16 or mxfp4's
    32, which the formats fix. Block scales (rows x cols blocks) and per-channel scales need the
    rows, n / ``fan_in``; without ``fan_in`` a block count is n / (rows * cols), exact when the
    matrix divides into whole blocks. Per-tensor scales are in ``weight_storage_bytes``.
    """
    fmt = as_format(dtype)
    out = 0.0 * n_values
    if fmt.group_size:
        group = group_size if (group_size and fmt is FORMATS["int4"]) else fmt.group_size
        out = out + n_values / group * (fmt.scale_bytes + fmt.zero_bytes)
    if fmt.block_shape:
        br, bc = fmt.block_shape
        if fan_in:
            rows = n_values / fan_in
            import numpy as np  # here, not at import: `roofline --help` loads no numpy

            out = out + np.ceil(rows / br) * np.ceil(fan_in / bc) * fmt.scale_bytes
        else:
            out = out + n_values / (br * bc) * fmt.scale_bytes
    if fmt.channel_bytes and fan_in:
        out = out + n_values / fan_in * fmt.channel_bytes
    return out


def compute_dtype(weight_dtype: str | Format, act_dtype: str) -> str:
    """The dtype (spec peak key) a matmul's tensor-core math runs in.

    The activation dtype, unless the weights are wider (then the activations are up-cast).
    Weight-only quantisation (int4/int8/fp8/nvfp4/mxfp4 weights, bf16 activations) dequantises
    into bf16 and computes in bf16; W8A8 computes in the 8-bit type. nvfp4 and mxfp4 compute on
    the spec's ``fp4`` tensor-core peak when the activations are fp4 too (W4A4; Blackwell has
    it, earlier parts do not and their specs carry no fp4 peak); with 16-bit activations they are
    weight-only formats dequantised to bf16. A checkpoint format with ``act_quantised`` computes
    in its ``compute`` dtype (the analysis sets that only where the spec has the peak).
    """
    w, a = as_format(weight_dtype), as_format(act_dtype)
    if w.act_quantised:
        return w.compute_dtype
    if w.value_bytes > a.value_bytes:
        return w.compute_dtype
    return a.compute_dtype
