"""NVML (nvidia-ml-py): which GPU this is, and what its clocks, power and temperature did during a run.

``spec_name_for_gpu`` maps the name the driver reports to a shipped hardware spec by exact name.
``NvmlSampler`` samples SM and memory clocks, power, temperature and clock-throttle reasons in a
background thread; without NVML (no package, no driver) it records a note and samples nothing, so a
run goes on.
"""

import threading
import time
import warnings

import pandas as pd

from roofline.errors import UnknownHardware
from roofline.specs import list_specs

# the name NVML / torch.cuda.get_device_name report -> shipped spec
GPU_SPECS = {
    "NVIDIA H100 80GB HBM3": "h100-sxm",
    "NVIDIA H100 SXM5 80GB": "h100-sxm",
    "NVIDIA H100 PCIe": "h100-pcie",
    "NVIDIA H100 NVL": "h100-nvl",
    "NVIDIA H200": "h200",
    "NVIDIA H200 141GB HBM3e": "h200",
    "NVIDIA A100-SXM4-80GB": "a100-80gb-sxm",
    "NVIDIA A100-SXM4-40GB": "a100-40gb-sxm",
    "NVIDIA A100 80GB PCIe": "a100-80gb-pcie",
    "NVIDIA A100-PCIE-80GB": "a100-80gb-pcie",
    "NVIDIA A10": "a10",
    "NVIDIA A10G": "a10g",
    "NVIDIA L4": "l4",
    "NVIDIA L40S": "l40s",
}

# nvmlClocksEventReason* bits (nvml.h); the first three are not slowdowns
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x100: "display_clock_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
}
BENIGN_REASONS = {"gpu_idle", "applications_clocks_setting", "display_clock_setting"}


def spec_name_for_gpu(gpu_name: str) -> str:
    """The shipped spec for the GPU the driver calls ``gpu_name``. Raises UnknownHardware."""
    name = gpu_name.strip()
    if name in GPU_SPECS:
        return GPU_SPECS[name]
    raise UnknownHardware(
        f"GPU '{name}' has no shipped spec; pass --gpu with one of {', '.join(list_specs())} or a spec YAML path"
    )


def decode_reasons(mask: int) -> list:
    """Names of the throttle-reason bits set in ``mask``."""
    return [name for bit, name in THROTTLE_REASONS.items() if mask & bit]


def _nvml():
    """The pynvml module, initialised. Raises ImportError / pynvml.NVMLError when unavailable."""
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def _handle(nv, device_index: int):
    """NVML handle of the CUDA device ``device_index`` (matched by PCI bus id when torch exposes it)."""
    try:
        import torch

        props = torch.cuda.get_device_properties(device_index)
        bus = getattr(props, "pci_bus_id", None)
        if bus is not None:
            domain = getattr(props, "pci_domain_id", 0)
            dev = getattr(props, "pci_device_id", 0)
            return nv.nvmlDeviceGetHandleByPciBusId(f"{domain:08x}:{bus:02x}:{dev:02x}.0")
    except Exception:  # noqa: BLE001 - fall back to the index
        pass
    return nv.nvmlDeviceGetHandleByIndex(device_index)


def _reasons_fn(nv):
    """nvmlDeviceGetCurrentClocksEventReasons (newer name) or ...ThrottleReasons (older)."""
    return getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_info(device_index: int = 0) -> dict:
    """Name, driver, max clocks and power limit from NVML, or {'nvml': 'unavailable: ...'}."""
    try:
        nv = _nvml()
        h = _handle(nv, device_index)
        info = {
            "nvml": "available",
            "name": _text(nv.nvmlDeviceGetName(h)),
            "driver": _text(nv.nvmlSystemGetDriverVersion()),
            "max_sm_clock_mhz": nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM),
            "max_mem_clock_mhz": nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_MEM),
        }
        try:
            info["power_limit_w"] = nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
        except Exception:  # noqa: BLE001 - optional
            pass
        return info
    except Exception as exc:  # noqa: BLE001 - ImportError, NVMLError_*: say so and go on
        return {"nvml": f"unavailable: {type(exc).__name__}: {exc}"}


class NvmlSampler:
    """Samples clocks, power, temperature and throttle reasons every ``interval_s`` while running.

    Use as a context manager (or ``start()`` / ``stop()``); ``samples`` is a DataFrame afterwards,
    ``summary()`` a dict, ``notes`` a list of one-line remarks (NVML missing, clocks throttled).
    """

    def __init__(self, device_index: int = 0, interval_s: float = 0.05):
        self.device_index, self.interval_s = device_index, interval_s
        self.available = False
        self.notes = []
        self._rows = []
        self._stop = threading.Event()
        self._thread = None
        self._nv = self._h = None

    def start(self) -> "NvmlSampler":
        try:
            self._nv = _nvml()
            self._h = _handle(self._nv, self.device_index)
            self.available = True
        except Exception as exc:  # noqa: BLE001
            self.notes.append(
                f"NVML not available ({type(exc).__name__}: {exc}); clocks, power, temperature and "
                f"throttling were not sampled"
            )
            return self
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="roofline-nvml", daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        nv, h = self._nv, self._h
        row = {"time_s": time.perf_counter() - self._t0}
        for key, fn in (
            ("sm_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
            ("mem_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)),
            ("power_w", lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0),
            ("temperature_c", lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
            ("gpu_util_pct", lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu),
            ("throttle_mask", lambda: _reasons_fn(nv)(h)),
        ):
            try:
                row[key] = fn()
            except Exception:  # noqa: BLE001 - a counter this GPU or driver lacks
                row[key] = None
        mask = row.get("throttle_mask")
        row["throttle_reasons"] = ",".join(decode_reasons(mask)) if mask is not None else None
        self._rows.append(row)

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def stop(self) -> pd.DataFrame:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._sample()  # one last reading at the end
            self._check_throttling()
        return self.samples

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def samples(self) -> pd.DataFrame:
        return pd.DataFrame(self._rows)

    def _check_throttling(self):
        frame = self.samples
        if frame.empty or "throttle_reasons" not in frame:
            return
        counts = {}
        for text in frame["throttle_reasons"].dropna():
            for reason in filter(None, text.split(",")):
                if reason not in BENIGN_REASONS:
                    counts[reason] = counts.get(reason, 0) + 1
        if counts:
            sm = frame["sm_clock_mhz"].dropna()
            what = ", ".join(f"{r} in {n} of {len(frame)} samples" for r, n in sorted(counts.items()))
            note = (
                f"clocks throttled during the run ({what}; SM clock {sm.min():.0f}-{sm.max():.0f} MHz): "
                f"measured times may be slower than the part's rated clocks"
            )
            self.notes.append(note)
            warnings.warn(note, stacklevel=2)

    def summary(self) -> dict:
        """Min / median / max of each sampled quantity, the throttle reasons seen, and the notes."""
        frame = self.samples
        out = {"nvml": "available" if self.available else "unavailable", "samples": len(frame)}
        for key in ("sm_clock_mhz", "mem_clock_mhz", "power_w", "temperature_c"):
            if key in frame and frame[key].notna().any():
                col = frame[key].dropna().astype(float)
                out[key] = {"min": float(col.min()), "median": float(col.median()), "max": float(col.max())}
        if "throttle_reasons" in frame:
            seen = sorted({r for t in frame["throttle_reasons"].dropna() for r in t.split(",") if r})
            out["throttle_reasons_seen"] = seen
        out["notes"] = list(self.notes)
        return out
