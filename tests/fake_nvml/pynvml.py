"""A fake ``pynvml`` (nvidia-ml-py) for tests: GPUs whose power follows a script and whose
energy counter integrates it exactly, with faults. Tests put this folder first on ``sys.path``
(a spawned telemetry process inherits it) and name a scenario JSON in ``$LLMTRACES_FAKE_NVML``:

    {"t0": <time.monotonic() origin of the script>, "init_error": null | "LibraryNotFound" |
     "DriverNotLoaded", "driver": "550.54.15", "cuda": 12040,
     "gpus": [{"name": "NVIDIA H200", "uuid": "GPU-...", "memory_total": 150000000000,
               "power": [[0.0, 70.0], [1.0, 400.0]],   # [seconds after t0, watts] steps
               "offset_mj": 1000000000,
               "instant": true,                 # NVML_FI_DEV_POWER_INSTANT supported
               "energy": true,                  # energy counter supported
               "energy_fail": [[0.5, 0.7]],     # reads in these spans raise NVMLError_Unknown
               "reset_at": null}]}              # the counter restarts from 0 at this time

The counter at time t is ``offset + integral of power from t0 to t`` in mJ (restarted at
``reset_at``); ``nvmlDeviceGetPowerUsage`` is the mean over the last second, as on Ampere and
newer; the instant field is the scripted power now.
"""

from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace
from typing import Any

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_UNKNOWN = 999
NVML_FI_DEV_POWER_INSTANT = 186
NVML_CLOCK_SM = 1
NVML_TEMPERATURE_GPU = 0
NVML_VALUE_TYPE_UNSIGNED_INT = 1


class NVMLError(Exception):
    """As in pynvml: ``value`` is the NVML return code."""

    _names = {1: "Uninitialized", 3: "Not Supported", 9: "Driver Not Loaded",
              12: "NVML Shared Library Not Found", 999: "Unknown Error"}

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return self._names.get(self.value, f"NVML error {self.value}")


class NVMLError_NotSupported(NVMLError):  # noqa: N801 (pynvml's names)
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_NOT_SUPPORTED)


class NVMLError_Unknown(NVMLError):  # noqa: N801
    def __init__(self) -> None:
        super().__init__(NVML_ERROR_UNKNOWN)


_state: dict[str, Any] = {}


def _scenario() -> dict[str, Any]:
    if not _state:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    return _state


def nvmlInit() -> None:  # noqa: N802 (pynvml's names)
    with open(os.environ["LLMTRACES_FAKE_NVML"], encoding="utf-8") as f:
        sc = json.load(f)
    err = sc.get("init_error")
    if err == "LibraryNotFound":
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
    if err == "DriverNotLoaded":
        raise NVMLError(NVML_ERROR_DRIVER_NOT_LOADED)
    _state.clear()
    _state.update(sc)


def nvmlShutdown() -> None:  # noqa: N802
    _state.clear()


def nvmlDeviceGetCount() -> int:  # noqa: N802
    return len(_scenario()["gpus"])


def nvmlDeviceGetHandleByIndex(i: int) -> int:  # noqa: N802
    _scenario()["gpus"][i]
    return i


def _gpu(h: int) -> dict[str, Any]:
    return _scenario()["gpus"][h]


def _now() -> float:
    return time.monotonic() - _scenario()["t0"]


def power_at(g: dict[str, Any], t: float) -> float:
    """The scripted power (W) at ``t`` seconds after t0 (the first step's before it)."""
    watts = g["power"][0][1]
    for start, w in g["power"]:
        if t >= start:
            watts = w
    return float(watts)


def integral(g: dict[str, Any], a: float, b: float) -> float:
    """Joules of the script between ``a`` and ``b`` seconds after t0 (``a <= b``)."""
    steps = g["power"]
    edges = sorted({a, b, *(s for s, _ in steps if a < s < b)})
    return sum((y - x) * power_at(g, x) for x, y in zip(edges, edges[1:], strict=False))


def counter_mj(g: dict[str, Any], t: float) -> int:
    reset = g.get("reset_at")
    if reset is not None and t >= reset:
        return int(integral(g, reset, t) * 1000)
    base = integral(g, 0.0, t) if t >= 0 else -integral(g, t, 0.0)
    return int(g.get("offset_mj", 0) + base * 1000)


def nvmlDeviceGetTotalEnergyConsumption(h: int) -> int:  # noqa: N802
    g, t = _gpu(h), _now()
    if not g.get("energy", True):
        raise NVMLError_NotSupported()
    if any(a <= t <= b for a, b in g.get("energy_fail", ())):
        raise NVMLError_Unknown()
    return counter_mj(g, t)


def nvmlDeviceGetPowerUsage(h: int) -> int:  # noqa: N802
    g, t = _gpu(h), _now()
    return int(integral(g, t - 1.0, t) * 1000)


def nvmlDeviceGetFieldValues(h: int, field_ids: list[int]) -> list[Any]:  # noqa: N802
    g, out = _gpu(h), []
    for fid in field_ids:
        ok = fid == NVML_FI_DEV_POWER_INSTANT and g.get("instant", True)
        value = SimpleNamespace(uiVal=int(power_at(g, _now()) * 1000) if ok else 0)
        out.append(SimpleNamespace(fieldId=fid, nvmlReturn=NVML_SUCCESS if ok else
                                   NVML_ERROR_NOT_SUPPORTED, valueType=NVML_VALUE_TYPE_UNSIGNED_INT,
                                   value=value))
    return out


def nvmlDeviceGetName(h: int) -> str:  # noqa: N802
    return str(_gpu(h).get("name", "NVIDIA Fake GPU"))


def nvmlDeviceGetUUID(h: int) -> str:  # noqa: N802
    return str(_gpu(h).get("uuid", f"GPU-fake-{h}"))


def nvmlDeviceGetMemoryInfo(h: int) -> Any:  # noqa: N802
    g = _gpu(h)
    total = int(g.get("memory_total", 80 * 2**30))
    used = total // 4
    for start, value in g.get("memory_used", []):   # a step script: [[t, bytes], ...]
        if _now() >= start:
            used = int(value)
    return SimpleNamespace(total=total, used=used, free=total - used)


def nvmlDeviceGetEnforcedPowerLimit(h: int) -> int:  # noqa: N802
    return 700_000


def nvmlDeviceGetUtilizationRates(h: int) -> Any:  # noqa: N802
    g = _gpu(h)
    return SimpleNamespace(gpu=100 if power_at(g, _now()) > 100 else 0, memory=0)


def nvmlDeviceGetClockInfo(h: int, kind: int) -> int:  # noqa: N802
    return 1980


def nvmlDeviceGetTemperature(h: int, kind: int) -> int:  # noqa: N802
    return 40


def nvmlDeviceGetCurrentClocksEventReasons(h: int) -> int:  # noqa: N802
    raise NVMLError_NotSupported()


def nvmlSystemGetDriverVersion() -> str:  # noqa: N802
    return str(_scenario().get("driver", "550.54.15"))


def nvmlSystemGetCudaDriverVersion() -> int:  # noqa: N802
    return int(_scenario().get("cuda", 12040))
