"""Reading YAML/JSON input files and checking their keys and values.

Shared by ``specs.py`` and ``config.py``: every failure raises a ``RooflineError`` subclass whose
message names the file, the key and the fix, in one line.
"""

import difflib
import json
import math
import re
from pathlib import Path

import yaml

from roofline.errors import InputFileError

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def load_mapping(path, what: str) -> dict:
    """Parse a YAML (or JSON) file that must hold a mapping. Raises InputFileError."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{what} file not found: {path}")
    if path.is_dir():
        raise InputFileError(f"{what} path is a directory, not a file: {path}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read {what} file {path}: {exc}") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputFileError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: expected a mapping of keys to values at the top level, got {type(data).__name__}")
    return data


def suggest(name: str, known) -> str:
    """' (did you mean 'x'?)' for the closest known name, or ''."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def check_keys(mapping: dict, allowed, where: str, error, ignored=()) -> None:
    """Raise ``error`` for the first key of ``mapping`` that is not in ``allowed`` (or ``ignored``)."""
    for key in mapping:
        if key not in allowed and key not in ignored:
            raise error(f"{where}: unknown key '{key}'{suggest(key, allowed)}; allowed: {', '.join(sorted(allowed))}")


def number(value, where: str, error, positive=True, integer=False):
    """Coerce ``value`` to a float (or int), accepting YAML's '125e12'-style strings.

    Raises ``error`` for booleans, non-numbers, NaN/inf, and (with ``positive``) zero or negatives.
    """
    if isinstance(value, bool) or value is None:
        raise error(f"{where}: expected a number, got {value!r}")
    if isinstance(value, str):
        if not _NUMBER.match(value.strip()):
            raise error(f"{where}: expected a number, got {value!r}")
        value = float(value)
    if not isinstance(value, (int, float)):
        raise error(f"{where}: expected a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise error(f"{where}: expected a finite number, got {value!r}")
    if integer:
        if float(value) != int(value):
            raise error(f"{where}: expected a whole number, got {value!r}")
        value = int(value)
    if positive and value <= 0:
        raise error(f"{where}: must be greater than zero, got {value!r}")
    return value
