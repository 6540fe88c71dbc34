"""A checkpoint's ``quantization_config``: how its linear weights are stored, read from config.json.

``parse_quantization_config`` turns the block into a ``WeightQuant``: the storage dtype, its group,
block, channel and tensor scales and zero points (a ``dtypes.Format``), the modules left in 16-bit,
and whether the activations are quantised too (W8A8, W4A4). Supported ``quant_method``:

  awq                 int4 (or int8) values; per group of ``group_size``: an fp16 scale and, with
                      zero_point, a zero point of ``bits`` bits (AutoAWQ's qzeros)
  gptq                int4/int8 values; per group an fp16 scale and a packed ``bits``-bit zero point
                      (qzeros are stored even when sym); group_size -1 = one group per row. The
                      g_idx vector (4 bytes per input channel) is not counted.
  fp8                 e4m3 values; with ``weight_block_size`` [r, c] (DeepSeek-V3's [128, 128]) one
                      fp32 scale per r x c block, else one fp32 scale per tensor;
                      activation_scheme dynamic/static quantises activations to fp8 (W8A8)
  compressed-tensors  llm-compressor's config_groups: int or float weights of 4 or 8 bits, by
                      tensor, channel, group, block or tensor_group (NVFP4); scales in 16-bit (e4m3
                      for nvfp4, e8m0 for mxfp4), zero points when not symmetric; ``targets``
                      and ``ignore`` select the modules
  modelopt            NVIDIA ModelOpt: quant_algo FP8 (per-tensor, W8A8), NVFP4 (W4A4),
                      W4A16_NVFP4 (weight-only); ``ignore`` / ``exclude_modules``
  mxfp4               OpenAI gpt-oss: e2m1 values with an e8m0 scale per 32, weight-only

Module names are matched the way the loaders match them: ``re:``-prefixed patterns as regular
expressions, patterns with ``*`` as globs, plain names on whole dotted components (``lm_head``,
``self_attn``). Embeddings, norms, the router and lm_head stay 16-bit whatever the block says
(transformer.py convention 2; every real checkpoint seen leaves them unconverted).
"""

import re
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Optional

from roofline.dtypes import Format
from roofline.errors import ConfigError

if TYPE_CHECKING:
    from roofline.config import ModelConfig, Workload
    from roofline.specs import HardwareSpec

SUPPORTED_METHODS = ("awq", "gptq", "fp8", "compressed-tensors", "modelopt", "mxfp4")
CHECKPOINT_SOURCE = "checkpoint quantization_config"  # Workload.weight_dtype_source when the checkpoint chose
E4M3, E8M0, FP16, FP32 = 1.0, 1.0, 2.0, 4.0  # bytes of one scale

# HF module path of each quantisable op of transformer.py, per layer {i}, by model_type
_LLAMA_PATHS = {
    "q_proj": "model.layers.{i}.self_attn.q_proj",
    "k_proj": "model.layers.{i}.self_attn.k_proj",
    "v_proj": "model.layers.{i}.self_attn.v_proj",
    "o_proj": "model.layers.{i}.self_attn.o_proj",
    "gate_proj": "model.layers.{i}.mlp.gate_proj",
    "up_proj": "model.layers.{i}.mlp.up_proj",
    "down_proj": "model.layers.{i}.mlp.down_proj",
    "experts": "model.layers.{i}.mlp.experts.0.gate_proj",
}
MODULE_PATHS = {
    "mixtral": {**_LLAMA_PATHS, "experts": "model.layers.{i}.block_sparse_moe.experts.0.w1"},
    "gpt2": {
        "q_proj": "transformer.h.{i}.attn.c_attn",
        "k_proj": "transformer.h.{i}.attn.c_attn",
        "v_proj": "transformer.h.{i}.attn.c_attn",
        "o_proj": "transformer.h.{i}.attn.c_proj",
        "up_proj": "transformer.h.{i}.mlp.c_fc",
        "down_proj": "transformer.h.{i}.mlp.c_proj",
    },
}


@dataclass(frozen=True)
class WeightQuant:
    """How a checkpoint stores its decoder linear weights (from its ``quantization_config``)."""

    dtype: str  # storage dtype name, one of dtypes.STORAGE_DTYPES: int4, int8, fp8, nvfp4, mxfp4
    bits: int
    group_size: Optional[int]  # values per group scale; None = no group scales
    scale_bytes: float  # per group (or per block)
    zero_bytes: float  # per group
    block_shape: Optional[tuple]  # (rows, cols) of fp8 block scales
    channel_bytes: float  # per output row
    tensor_bytes: float  # per tensor
    act_dtype: Optional[str]  # the activations' quantised dtype (W8A8 / W4A4), None = weight-only
    not_converted: tuple  # module patterns left in 16-bit (modules_to_not_convert, ignore, ...)
    targets: tuple  # module patterns converted; ("Linear",) = every linear layer
    quant_method: str
    where: str
    kv_dtype: Optional[str] = None  # the KV cache dtype the checkpoint declares (kv_cache_scheme), None = not said

    @property
    def format(self) -> Format:
        """The storage layout (formulas.weight_storage_bytes) and compute dtype (dtypes.compute_dtype)."""
        return Format(
            name=self.dtype,
            value_bytes=self.bits / 8,
            group_size=self.group_size,
            scale_bytes=self.scale_bytes,
            zero_bytes=self.zero_bytes,
            block_shape=self.block_shape,
            channel_bytes=self.channel_bytes,
            tensor_bytes=self.tensor_bytes,
            compute=self.compute_dtype or "",
            act_quantised=self.act_dtype is not None,
        )

    @property
    def compute_dtype(self) -> Optional[str]:
        """The spec peak a W8A8 / W4A4 matmul uses: fp8, int8 or fp4; None when weight-only."""
        if self.act_dtype is None:
            return None
        return "fp4" if self.act_dtype in ("nvfp4", "mxfp4") else self.act_dtype

    def describe(self) -> str:
        """'awq, 4-bit int4, group 128, fp16 scale + 4-bit zero per group; weight-only'."""
        parts = [f"{self.quant_method}, {self.bits}-bit {self.dtype}"]
        if self.block_shape:
            parts.append(f"{self.block_shape[0]}x{self.block_shape[1]} blocks, {self.scale_bytes:g}-byte scale each")
        elif self.group_size:
            zero = f" + {self.zero_bytes * 8:g}-bit zero" if self.zero_bytes else ""
            parts.append(f"group {self.group_size}, {self.scale_bytes:g}-byte scale{zero} per group")
        elif self.channel_bytes:
            parts.append(f"per-channel {self.channel_bytes:g}-byte scale")
        else:
            parts.append("per-tensor scale")
        if self.tensor_bytes and (self.group_size or self.block_shape):
            parts.append(f"{self.tensor_bytes:g}-byte scale per tensor")
        parts.append(f"activations {self.act_dtype}" if self.act_dtype else "weight-only")
        if self.kv_dtype:
            parts.append(f"KV cache {self.kv_dtype}")
        if self.not_converted:
            parts.append("not converted: " + " ".join(self.not_converted))
        return ", ".join(parts)

    def converts(self, op_name: str, model_type: str, num_layers: int) -> bool:
        """Whether the checkpoint stores op ``op_name`` (a transformer.py name, 'q_proj') quantised.

        Raises ConfigError when it converts the op in some layers only: one op row carries one
        format, so a per-layer mix is not modelled.
        """
        template = MODULE_PATHS.get(model_type, _LLAMA_PATHS).get(op_name)
        if template is None:
            return True
        hits = sum(self._converts_path(template.format(i=i)) for i in range(num_layers))
        if 0 < hits < num_layers:
            raise ConfigError(
                f"{self.where}: quantization_config converts {op_name} in {hits} of {num_layers} layers only; "
                f"per-layer formats are not modelled (pass --weight-dtype to analyse one format throughout)"
            )
        return hits == num_layers

    def _converts_path(self, path: str) -> bool:
        targeted = any(t == "Linear" or module_matches(t, path) for t in self.targets)
        return targeted and not any(module_matches(p, path) for p in self.not_converted)


def module_matches(pattern: str, path: str) -> bool:
    """Whether module ``path`` ('model.layers.0.self_attn.q_proj') is named by ``pattern``."""
    if pattern.startswith("re:"):
        return re.match(pattern[3:], path) is not None
    if "*" in pattern or "?" in pattern:
        return fnmatchcase(path, pattern) or fnmatchcase(path, pattern + ".*")
    return f".{pattern}." in f".{path}."


def uses_checkpoint(m: "ModelConfig", w: "Workload") -> bool:
    """Whether workload ``w`` analyses model ``m``'s weights in the checkpoint's own format."""
    return (
        m.quant is not None and w.weight_dtype_source.startswith(CHECKPOINT_SOURCE) and w.weight_dtype == m.quant.dtype
    )


def linear_weight_dtype(m: "ModelConfig", w: "Workload", op_name: str, p16: str) -> str | Format:
    """The weight dtype of quantisable op ``op_name`` of model ``m``: the workload's weight dtype
    (a name), or where the checkpoint chose it, its Format, or ``p16`` for a module it does not
    convert. Raises ConfigError for a per-layer mix."""
    if not uses_checkpoint(m, w):
        return w.weight_dtype
    if not m.quant.converts(op_name, m.model_type, m.num_hidden_layers):
        return p16
    return m.quant.format


def on_gpu(m: "ModelConfig", w: "Workload", spec: "HardwareSpec") -> "tuple[ModelConfig, Workload]":
    """(model, workload) for ``spec``: a W8A8 / W4A4 checkpoint on a GPU without those tensor cores
    (no peak for its compute dtype) runs weight-only, its weights dequantised to the activations,
    as serving engines run it there; the weight-dtype note says so."""
    q = m.quant
    if not uses_checkpoint(m, w) or q.compute_dtype is None or spec.has_dtype(q.compute_dtype):
        return m, w
    note = (
        f"{w.weight_dtype_source}; {spec.name} has no {q.compute_dtype} tensor cores, so weight-only "
        f"(dequantised to {w.act_dtype})"
    )
    return replace(m, quant=replace(q, act_dtype=None)), replace(w, weight_dtype_source=note)


# ---------------------------------------------------------------------------------------------
# parsing


def parse_quantization_config(raw: object, where: str) -> WeightQuant:
    """A config.json ``quantization_config`` mapping -> WeightQuant. Raises ConfigError naming the
    key and the fix, e.g. for an unknown ``quant_method`` or a bit width that is not modelled."""
    where = f"{where}: quantization_config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with a quant_method, got {type(raw).__name__}")
    method = str(raw.get("quant_method") or "").lower().replace("_", "-")
    parsers = {
        "awq": _awq,
        "gptq": _gptq,
        "fp8": _fp8,
        "compressed-tensors": _compressed_tensors,
        "modelopt": _modelopt,
        "mxfp4": _mxfp4,
    }
    if method not in parsers:
        shown = raw.get("quant_method")
        raise ConfigError(
            f"{where}: quant_method {shown!r} is not supported; supported: {', '.join(SUPPORTED_METHODS)} "
            f"(or remove quantization_config and pass --weight-dtype)"
        )
    return replace(parsers[method](raw, where), kv_dtype=_kv_dtype(raw, where))


def _kv_dtype(raw, where) -> Optional[str]:
    """The KV cache dtype a checkpoint declares: ModelOpt's kv_cache_quant_algo, or a kv_cache_scheme
    {num_bits, type} (ModelOpt, compressed-tensors), which serving engines apply unless told otherwise."""
    algo = raw.get("kv_cache_quant_algo")
    if algo:
        kv = {"FP8": "fp8", "INT8": "int8", "NVFP4": "nvfp4"}.get(str(algo).upper())
        if kv is None:
            raise ConfigError(f"{where}: kv_cache_quant_algo {algo!r} is not modelled (FP8, INT8, NVFP4)")
        return kv
    scheme = raw.get("kv_cache_scheme")
    if not isinstance(scheme, dict):
        return None
    kind = (scheme.get("num_bits"), str(scheme.get("type") or "float").lower())
    kv = {(8, "float"): "fp8", (8, "int"): "int8", (4, "float"): "nvfp4"}.get(kind)
    if kv is None:
        raise ConfigError(f"{where}: kv_cache_scheme {scheme!r} is not modelled (8-bit float or int, 4-bit float)")
    return kv


def _names(value, where, key) -> tuple:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of module names, got {value!r}")
    return tuple(value)


def _int(raw, keys, where, default=None):
    for key in keys:
        if raw.get(key) is not None:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where}: {key} must be a whole number, got {value!r}")
            return value
    if default is None:
        raise ConfigError(f"{where}: missing {keys[0]}")
    return default


def _int_dtype(bits, where) -> str:
    if bits not in (4, 8):
        raise ConfigError(
            f"{where}: {bits}-bit weights are not modelled (4 or 8 bits); pass --weight-dtype to choose one"
        )
    return f"int{bits}"


def _group(group_size, where):
    if group_size in (-1, 0, None):
        return None
    if group_size < 0:
        raise ConfigError(f"{where}: group_size must be positive or -1 (per channel), got {group_size}")
    return group_size


def _awq(raw, where) -> WeightQuant:
    bits = _int(raw, ("bits", "w_bit"), where, 4)
    group = _group(_int(raw, ("group_size", "q_group_size"), where, 128), where)
    zero = raw.get("zero_point", True) is not False
    not_converted = _names(raw.get("modules_to_not_convert"), where, "modules_to_not_convert")
    return WeightQuant(
        dtype=_int_dtype(bits, where),
        bits=bits,
        group_size=group,
        scale_bytes=FP16 if group else 0.0,
        zero_bytes=bits / 8 if (zero and group) else 0.0,
        block_shape=None,
        channel_bytes=0.0 if group else FP16 + (bits / 8 if zero else 0.0),
        tensor_bytes=0.0,
        act_dtype=None,
        not_converted=not_converted,
        targets=("Linear",),
        quant_method="awq",
        where=where,
    )


def _gptq(raw, where) -> WeightQuant:
    bits = _int(raw, ("bits",), where, 4)
    group = _group(_int(raw, ("group_size",), where, 128), where)
    not_converted = _names(raw.get("modules_to_not_convert"), where, "modules_to_not_convert")
    per_group = FP16 + bits / 8  # fp16 scale + packed zero point (stored even when sym)
    return WeightQuant(
        dtype=_int_dtype(bits, where),
        bits=bits,
        group_size=group,
        scale_bytes=FP16 if group else 0.0,
        zero_bytes=bits / 8 if group else 0.0,
        block_shape=None,
        channel_bytes=0.0 if group else per_group,
        tensor_bytes=0.0,
        act_dtype=None,
        not_converted=not_converted,
        targets=("Linear",),
        quant_method="gptq",
        where=where,
    )


def _block(value, where, key):
    if value is None:
        return None
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ConfigError(f"{where}: {key} must be two positive whole numbers [rows, cols], got {value!r}")
    return tuple(value)


def _fp8(raw, where) -> WeightQuant:
    fmt = str(raw.get("fmt") or "e4m3").lower()
    if fmt not in ("e4m3", "float8_e4m3fn"):
        raise ConfigError(f"{where}: fmt {fmt!r} is not modelled (e4m3)")
    block = _block(raw.get("weight_block_size"), where, "weight_block_size")
    scheme = raw.get("activation_scheme", "dynamic")
    not_converted = _names(raw.get("modules_to_not_convert"), where, "modules_to_not_convert") + _names(
        raw.get("ignored_layers"), where, "ignored_layers"
    )
    return WeightQuant(
        dtype="fp8",
        bits=8,
        group_size=None,
        scale_bytes=FP32 if block else 0.0,
        zero_bytes=0.0,
        block_shape=block,
        channel_bytes=0.0,
        tensor_bytes=0.0 if block else FP32,
        act_dtype="fp8" if scheme in ("dynamic", "static") else None,
        not_converted=not_converted,
        targets=("Linear",),
        quant_method="fp8",
        where=where,
    )


def _mxfp4(raw, where) -> WeightQuant:
    return WeightQuant(
        dtype="mxfp4",
        bits=4,
        group_size=32,
        scale_bytes=E8M0,
        zero_bytes=0.0,
        block_shape=None,
        channel_bytes=0.0,
        tensor_bytes=0.0,
        act_dtype=None,
        not_converted=_names(raw.get("modules_to_not_convert"), where, "modules_to_not_convert"),
        targets=("Linear",),
        quant_method="mxfp4",
        where=where,
    )


def _modelopt(raw, where) -> WeightQuant:
    algo = str(raw.get("quant_algo") or "").upper()
    not_converted = _names(raw.get("ignore"), where, "ignore") + _names(
        raw.get("exclude_modules"), where, "exclude_modules"
    )
    common = {
        "zero_bytes": 0.0,
        "block_shape": None,
        "channel_bytes": 0.0,
        "not_converted": not_converted,
        "targets": ("Linear",),
        "quant_method": f"modelopt {algo}",
        "where": where,
    }
    if algo == "FP8":
        return WeightQuant(
            dtype="fp8", bits=8, group_size=None, scale_bytes=0.0, tensor_bytes=FP32, act_dtype="fp8", **common
        )
    if algo in ("NVFP4", "W4A16_NVFP4"):
        group = raw.get("group_size") or _nested_group(raw) or 16
        if group != 16:
            raise ConfigError(f"{where}: NVFP4 with group_size {group} is not modelled (NVFP4 groups 16 values)")
        return WeightQuant(
            dtype="nvfp4",
            bits=4,
            group_size=16,
            scale_bytes=E4M3,
            tensor_bytes=FP32,
            act_dtype="nvfp4" if algo == "NVFP4" else None,
            **common,
        )
    raise ConfigError(
        f"{where}: modelopt quant_algo {raw.get('quant_algo')!r} is not modelled (FP8, NVFP4, W4A16_NVFP4); "
        f"pass --weight-dtype to choose one format"
    )


def _nested_group(raw):
    for group in (raw.get("config_groups") or {}).values():
        if isinstance(group, dict) and isinstance(group.get("weights"), dict):
            return group["weights"].get("group_size")
    return None


def _compressed_tensors(raw, where) -> WeightQuant:
    groups = raw.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise ConfigError(f"{where}: compressed-tensors needs config_groups (a mapping of schemes)")
    schemes, targets = [], []
    for name, group in groups.items():
        if not isinstance(group, dict) or not isinstance(group.get("weights"), dict):
            raise ConfigError(f"{where}: config_groups.{name}.weights must be a mapping (num_bits, type, strategy)")
        schemes.append(_ct_scheme(group, f"{where}: config_groups.{name}"))
        targets += _names(group.get("targets") or ["Linear"], where, f"config_groups.{name}.targets")
    if len(set(schemes)) > 1:
        raise ConfigError(
            f"{where}: config_groups mix {len(set(schemes))} weight schemes; one format per model is modelled "
            f"(pass --weight-dtype to choose one)"
        )
    scheme = dict(schemes[0])
    return WeightQuant(
        **scheme,
        targets=tuple(targets),
        quant_method="compressed-tensors",
        where=where,
        not_converted=_names(raw.get("ignore"), where, "ignore"),
    )


def _ct_scheme(group, where) -> tuple:
    """One config group's weight scheme, as a hashable tuple of WeightQuant fields."""
    weights = group["weights"]
    bits = weights.get("num_bits")
    kind = str(weights.get("type") or "int").lower()
    strategy = str(weights.get("strategy") or "tensor").lower()
    group_size = weights.get("group_size")
    symmetric = weights.get("symmetric", True) is not False
    acts = group.get("input_activations")
    act_dtype = None
    if isinstance(acts, dict) and acts.get("num_bits") is not None:
        a_bits, a_kind = acts.get("num_bits"), str(acts.get("type") or "int").lower()
        act_dtype = {(8, "float"): "fp8", (8, "int"): "int8", (4, "float"): "nvfp4"}.get((a_bits, a_kind))
        if act_dtype == "nvfp4" and acts.get("group_size") == 32:
            act_dtype = "mxfp4"
    zero = 0.0 if symmetric else bits / 8 if isinstance(bits, int) else 0.0
    out = {
        "group_size": None,
        "scale_bytes": 0.0,
        "zero_bytes": 0.0,
        "block_shape": None,
        "channel_bytes": 0.0,
        "tensor_bytes": 0.0,
        "act_dtype": act_dtype,
    }
    if kind == "float" and bits == 4:
        if strategy == "tensor_group" and group_size in (16, None):  # NVFP4
            out.update(dtype="nvfp4", bits=4, group_size=16, scale_bytes=E4M3, tensor_bytes=FP32)
        elif strategy == "group" and group_size == 32:  # MXFP4
            out.update(dtype="mxfp4", bits=4, group_size=32, scale_bytes=E8M0)
        else:
            raise ConfigError(
                f"{where}: 4-bit float weights by {strategy} of {group_size} are not modelled "
                f"(nvfp4: tensor_group 16; mxfp4: group 32)"
            )
        return tuple(sorted(out.items()))
    if kind == "float" and bits == 8:
        dtype = "fp8"
    elif kind == "int" and bits in (4, 8):
        dtype = f"int{bits}"
    else:
        raise ConfigError(f"{where}: {bits}-bit {kind} weights are not modelled (int4, int8, fp8, nvfp4, mxfp4)")
    out.update(dtype=dtype, bits=bits)
    if strategy == "tensor":
        out.update(tensor_bytes=FP16)
    elif strategy == "channel":
        out.update(channel_bytes=FP16 + zero)
    elif strategy == "group":
        if not isinstance(group_size, int) or group_size <= 0:
            raise ConfigError(f"{where}: strategy group needs a positive group_size, got {group_size!r}")
        out.update(group_size=group_size, scale_bytes=FP16, zero_bytes=zero)
    elif strategy == "block":
        out.update(
            block_shape=_block(weights.get("block_structure"), where, "weights.block_structure"), scale_bytes=FP16
        )
    else:
        raise ConfigError(
            f"{where}: weight strategy {strategy!r} is not modelled (tensor, channel, group, block, tensor_group)"
        )
    return tuple(sorted(out.items()))
