"""Exceptions the library raises. The CLI turns each into one line on stderr and exit code 1.

Every message names what is wrong and how to fix it, e.g.
``unknown GPU 'h100'; known: a10, ..., h100-sxm (or pass a YAML path)``.
"""


class RooflineError(Exception):
    """Base class: bad input data (a file, a key, a value) rather than a bug."""


class InputFileError(RooflineError):
    """A file is missing, unreadable or does not parse."""


class SpecError(RooflineError):
    """A hardware spec YAML is invalid."""


class UnknownHardware(SpecError):
    """A --gpu name that matches no shipped spec and no file."""


class ConfigError(RooflineError):
    """A model config or workload is invalid."""


class TraceError(RooflineError):
    """A profiler trace cannot be read or has nothing to analyse."""


class DeviceError(RooflineError):
    """No usable GPU, or the GPU run failed (out of memory, profiler failure)."""


class OutputError(RooflineError):
    """An output file or folder cannot be written, or writing it would lose a file roofline did not write."""
