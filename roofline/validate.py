"""Reading YAML/JSON input files and checking their keys and values.

Shared by ``specs.py`` and ``config.py``: every failure raises a ``RooflineError`` subclass whose
message names the file, the key and the fix, in one line.

YAML is read by the YAML 1.2 core schema, not PyYAML's default YAML 1.1: ``1:32`` is the string
"1:32" (a range), not the base-60 number 92; ``yes``/``no``/``on``/``off`` are strings, not booleans;
dates stay strings. An integer with a leading zero (``032``: 26 in YAML 1.1, 32 in YAML 1.2) is refused
as ambiguous. A key given twice, anchors and aliases (``&a`` / ``*a``) and tags (``!!python/object``)
are refused. Files are read through ``roofline.io`` (regular files only, at most ``MAX_MAPPING_BYTES``).
"""

import difflib
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path

import yaml

from roofline import io
from roofline.errors import InputFileError

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
# the largest whole number a float holds exactly: larger counts would be silently rounded
MAX_INT = 2**53
# every other number must lie in [MIN_MAGNITUDE, MAX_MAGNITUDE] (or be zero): after unit conversion
# (x 1e12 at most) and the products and quotients of the analysis, results stay finite and normal
MAX_MAGNITUDE = 1e30
MIN_MAGNITUDE = 1e-30

_BASE = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader
_YAML12 = [  # (tag, regex, first characters): the YAML 1.2 core schema
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+.0123456789"),
    ),
]


class _DuplicateKey(Exception):
    pass


class _Yaml12Loader(_BASE):
    """SafeLoader with YAML 1.2 core-schema scalars and duplicate keys refused."""

    yaml_implicit_resolvers: dict = {}  # noqa: RUF012 (PyYAML's per-class table, filled below)

    def construct_mapping(self, node, deep=False):
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep=deep)
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value, not a list or mapping", key_node.start_mark
                ) from None
            if duplicate:
                raise _DuplicateKey(f"key '{key}' is given twice (line {key_node.start_mark.line + 1}); keep one")
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        text = self.construct_scalar(node)
        digits = text.lstrip("+-")
        if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"'{text}' has a leading zero, which YAML 1.1 reads as {_yaml11(digits)} and "
                f"YAML 1.2 as {int(digits)}; write it without the zero",
                node.start_mark,
            )
        if digits[:2] in ("0o", "0x"):
            value = int(digits[2:], 8 if digits[1] == "o" else 16)
            return -value if text.startswith("-") else value
        return int(text)


def _yaml11(digits: str) -> str:
    return f"octal {int(digits, 8)}" if set(digits) <= set("01234567") else "a string"


for _tag, _regex, _first in _YAML12:
    _Yaml12Loader.add_implicit_resolver(_tag, re.compile(_regex), _first)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _Yaml12Loader.construct_yaml_int)


def _refuse_aliases(node, seen=None) -> None:
    """An alias makes one node appear twice: refuse it (it is how 'billion laughs' files grow)."""
    stack, seen = [node], set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            raise _DuplicateKey(
                f"anchors and aliases (&name / *name) are not supported (line "
                f"{n.start_mark.line + 1}); write the value out"
            )
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack += [k, v]
        elif isinstance(n, yaml.SequenceNode):
            stack += n.value


def parse_yaml(text: str) -> object:
    """Parse ``text`` by the YAML 1.2 core schema (see the module docstring). Raises yaml.YAMLError,
    or ValueError for a duplicate key or an alias."""
    loader = _Yaml12Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_aliases(node)
        return loader.construct_document(node)
    except _DuplicateKey as exc:
        raise ValueError(str(exc)) from None
    finally:
        loader.dispose()


def _json_pairs(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key '{key}' is given twice; keep one")
        out[key] = value
    return out


def _json_constant(name):
    raise ValueError(f"{name} is not a number JSON allows; write a number")


def parse_json(text: str) -> object:
    """json.loads with duplicate keys and NaN/Infinity refused (ValueError / json.JSONDecodeError)."""
    return json.loads(text, object_pairs_hook=_json_pairs, parse_constant=_json_constant)


def load_mapping(path: str | Path, what: str) -> dict:
    """Parse a YAML (or JSON) file that must hold a mapping. Raises InputFileError."""
    path = Path(path)
    text = io.read_text(path, what, io.MAX_MAPPING_BYTES)
    try:
        if path.suffix == ".json":
            data = parse_json(text)
        else:
            data = parse_yaml(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputFileError(f"{path}: not valid YAML{where}: {problem}") from None
    except ValueError as exc:
        raise InputFileError(f"{path}: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise InputFileError(f"{path}: nested too deeply to be a {what} file") from None
    if not isinstance(data, dict):
        raise InputFileError(
            f"{path}: expected a mapping of keys to values at the top level, got {type(data).__name__}"
        )
    return data


def suggest(name: str, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest known name, or ''."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_keys(
    mapping: dict, allowed: Iterable[str], where: str, error: type[Exception], ignored: Iterable[str] = ()
) -> None:
    """Raise ``error`` for the first key of ``mapping`` that is not in ``allowed`` (or ``ignored``)."""
    for key in mapping:
        if key not in allowed and key not in ignored:
            raise error(f"{where}: unknown key '{key}'{suggest(key, allowed)}; allowed: {', '.join(sorted(allowed))}")


def short_repr(value: object, limit: int = 40) -> str:
    """repr(value), cut to about ``limit`` characters (a 400-digit number stays one short line)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]}...{text[-8:]} ({len(text)} characters)"


def number(
    value: object,
    where: str,
    error: type[Exception],
    positive: bool = True,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float | int:
    """Coerce ``value`` to a float (or int), accepting YAML's '125e12'-style strings.

    Raises ``error`` for booleans, non-numbers, NaN/inf, (with ``positive``) zero or negatives, values
    below ``minimum`` or above ``maximum``. By default whole numbers (``integer``) go up to MAX_INT and
    other numbers have a magnitude of MIN_MAGNITUDE..MAX_MAGNITUDE (or are zero), so that no figure
    derived from them overflows to inf or underflows to a denormal.
    """
    if isinstance(value, bool) or value is None:
        raise error(f"{where}: expected a number, got {short_repr(value)}")
    if isinstance(value, str):
        text = value.strip()
        if not _NUMBER.match(text):
            raise error(f"{where}: expected a number, got {short_repr(value)}")
        value = int(text) if integer and re.fullmatch(r"[+-]?\d{1,400}", text) else float(text)
        if isinstance(value, float) and math.isinf(value):
            raise error(f"{where}: {short_repr(text)} is too large to be a number here")
    if not isinstance(value, (int, float)):
        raise error(f"{where}: expected a number, got {type(value).__name__} {short_repr(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise error(f"{where}: expected a finite number, got {short_repr(value)}")
    if integer and isinstance(value, float) and not value.is_integer():
        raise error(f"{where}: expected a whole number, got {short_repr(value)}")
    if positive and value <= 0:
        raise error(f"{where}: must be greater than zero, got {short_repr(value)}")
    top = maximum if maximum is not None else (MAX_INT if integer else MAX_MAGNITUDE)
    if abs(value) > top and (maximum is None or value > top):
        raise error(
            f"{where}: {short_repr(value)} is too large; at most {top:,}"
            if integer
            else f"{where}: {short_repr(value)} is too large; at most {top:g}"
        )
    if minimum is not None and value < minimum:
        raise error(f"{where}: {short_repr(value)} is too small; at least {minimum:g}")
    if minimum is None and not integer and value != 0 and abs(value) < MIN_MAGNITUDE:
        raise error(f"{where}: {short_repr(value)} is too small to compute with; at least {MIN_MAGNITUDE:g}")
    return int(value) if integer else value
