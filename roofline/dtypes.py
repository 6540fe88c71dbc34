"""Data types: their sizes in bytes and which ones the workload may use.

int4 is half a byte per element. Quantisation scales are counted separately (see ``scale_bytes``).
"""

DTYPE_BYTES = {
    "fp64": 8.0,
    "fp32": 4.0,
    "tf32": 4.0,  # stored as fp32; only the tensor-core math is reduced
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}

# dtypes a workload may choose for weights and KV cache; activations exclude int4
STORAGE_DTYPES = ("bf16", "fp16", "fp8", "int8", "int4")
ACT_DTYPES = ("bf16", "fp16", "fp8", "int8")

# Group size for int4 group-wise quantisation (GPTQ/AWQ style): one fp16 scale per 128 values.
INT4_GROUP_SIZE = 128
SCALE_BYTES = 2.0


def scale_bytes(dtype: str, n_values, group_size: int = INT4_GROUP_SIZE):
    """Bytes of quantisation scales stored beside ``n_values`` values of ``dtype``.

    Convention: int4 carries one fp16 scale per ``group_size`` values (zero points not counted);
    fp8 and int8 use per-tensor or per-channel scales, O(rows) bytes, counted as zero; 16-bit types
    have no scales.
    """
    if dtype == "int4":
        return n_values / group_size * SCALE_BYTES
    return 0.0 * n_values


def compute_dtype(weight_dtype: str, act_dtype: str) -> str:
    """The dtype a matmul's tensor-core math runs in.

    The activation dtype, unless the weights are wider (then the activations are up-cast).
    Weight-only quantisation (int4/int8/fp8 weights, bf16 activations) dequantises into bf16
    and computes in bf16; W8A8 computes in the 8-bit type.
    """
    if DTYPE_BYTES[weight_dtype] > DTYPE_BYTES[act_dtype]:
        return weight_dtype
    return act_dtype
