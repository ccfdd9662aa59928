"""GPU readings through NVML (``nvidia-ml-py``, imported as ``pynvml``; the ``gpu`` extra).

Per GPU and sample: the total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ since
the driver loaded, Volta and newer), power from the instant field
(``nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_INSTANT)``) or else ``nvmlDeviceGetPowerUsage``
(averaged over 1 s on Ampere, except GA100, and newer, so it lags a load step), GPU
utilisation, memory used, SM clock, temperature and the clock-event (throttle) reasons. A call
that fails gives None for its field and is counted; one that is not supported is not asked again.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

__all__ = ["PIP_GPU", "NvmlReader", "memory_used", "open_nvml"]

PIP_GPU = "pip install 'llmtraces[gpu]'"

#: the NVML value-type code of a field value -> the union member holding it.
_VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal",
                  6: "usVal"}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _maybe_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def visible_indices(count: int, visible: str | None,
                    uuids: Callable[[int], str]) -> list[int]:
    """The NVML indices ``CUDA_VISIBLE_DEVICES`` names (integers or ``GPU-`` UUIDs); all
    ``count`` GPUs when it is unset or cannot be read."""
    if not visible:
        return list(range(count))
    out = []
    for item in (v.strip() for v in visible.split(",")):
        if item.isdigit() and int(item) < count:
            out.append(int(item))
        elif item.startswith(("GPU-", "MIG-")):
            out += [i for i in range(count) if uuids(i).startswith(item)]
        else:
            return list(range(count))
    return out


def open_nvml(gpu_indices: Sequence[int] | None = None) -> tuple[NvmlReader | None, str | None]:
    """An :class:`NvmlReader` of the chosen GPUs (``CUDA_VISIBLE_DEVICES``'s when None), or
    None and why NVML cannot be used here."""
    try:
        # lazy: optional dependency (the gpu extra), absent on most CPU machines; imported by
        # name as it has no type stubs
        pynvml = importlib.import_module("pynvml")
    except ImportError:
        return None, f"nvidia-ml-py is not installed ({PIP_GPU})"
    try:
        pynvml.nvmlInit()
    except (pynvml.NVMLError, OSError) as exc:
        return None, f"NVML is not available ({_text(exc)}): no NVIDIA driver or GPU here"
    try:
        count = int(pynvml.nvmlDeviceGetCount())
        if gpu_indices is None:
            def uuid(i: int) -> str:
                return _text(pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i)))
            gpu_indices = visible_indices(count, os.environ.get("CUDA_VISIBLE_DEVICES"), uuid)
        bad = [i for i in gpu_indices if not 0 <= i < count]
        if bad:
            pynvml.nvmlShutdown()
            return None, f"GPU index {bad[0]} does not exist ({count} GPUs found)"
        if not gpu_indices:
            pynvml.nvmlShutdown()
            return None, "NVML found no GPU"
        return NvmlReader(pynvml, list(gpu_indices)), None
    except pynvml.NVMLError as exc:
        return None, f"NVML failed while listing GPUs ({_text(exc)})"


def memory_used(gpu_indices: Sequence[int] | None = None) -> dict[int, int] | None:
    """Bytes of memory in use per GPU (``gpu_indices``, else ``CUDA_VISIBLE_DEVICES``'), or
    None where NVML cannot tell."""
    reader, _ = open_nvml(gpu_indices)
    if reader is None:
        return None
    try:
        return {i: int(reader.nv.nvmlDeviceGetMemoryInfo(h).used) for i, h in reader.handles}
    except reader.nv.NVMLError:
        return None
    finally:
        reader.close()


class NvmlReader:
    """Reads the chosen GPUs; :meth:`close` shuts NVML down."""

    def __init__(self, nv: Any, indices: list[int]) -> None:
        self.nv = nv
        #: field -> [failed calls, last error]; a call not supported is not made again.
        self.errors: dict[str, list[Any]] = {}
        self._unsupported: set[tuple[int, str]] = set()
        self.handles = [(i, nv.nvmlDeviceGetHandleByIndex(i)) for i in indices]
        self.uuids = {i: _maybe_text(self._call("uuid", partial(nv.nvmlDeviceGetUUID, h)))
                      for i, h in self.handles}

    def _call(self, field: str, fn: Callable[[], Any], index: int | None = None) -> Any:
        """``fn()``, or None when NVML raises (counted under ``field``); a call that is not
        supported on GPU ``index`` is not made again."""
        try:
            return fn()
        except self.nv.NVMLError as exc:
            entry = self.errors.setdefault(field, [0, ""])
            entry[0] += 1
            entry[1] = _text(exc)
            if index is not None and getattr(exc, "value", None) == getattr(
                    self.nv, "NVML_ERROR_NOT_SUPPORTED", 3):
                self._unsupported.add((index, field))
            return None

    def _read(self, index: int, field: str, fn: Callable[[], Any]) -> Any:
        if (index, field) in self._unsupported:
            return None
        return self._call(field, fn, index)

    def info(self) -> list[dict[str, Any]]:
        """Static facts per GPU: index, name, UUID, memory, enforced power limit."""
        nv, out = self.nv, []
        for i, h in self.handles:
            mem = self._call("memory", partial(nv.nvmlDeviceGetMemoryInfo, h))
            limit = self._call("power_limit", partial(nv.nvmlDeviceGetEnforcedPowerLimit, h))
            out.append({"index": i,
                        "name": _maybe_text(self._call("name", partial(nv.nvmlDeviceGetName, h))),
                        "uuid": self.uuids[i],
                        "memory_total_bytes": int(mem.total) if mem is not None else None,
                        "power_limit_w": limit / 1000.0 if limit is not None else None})
        return out

    def system(self) -> dict[str, Any]:
        """Driver and CUDA (driver API) versions."""
        nv = self.nv
        driver = self._call("driver", lambda: _text(nv.nvmlSystemGetDriverVersion()))
        cuda = self._call("cuda", nv.nvmlSystemGetCudaDriverVersion)
        return {"driver": driver,
                "cuda": f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda is not None else None}

    def _power(self, i: int, h: Any) -> tuple[float | None, str | None]:
        nv = self.nv
        if (i, "power_instant") not in self._unsupported:
            fid = getattr(nv, "NVML_FI_DEV_POWER_INSTANT", None)
            got = None if fid is None else self._call(
                "power_instant", lambda: nv.nvmlDeviceGetFieldValues(h, [fid])[0], i)
            if got is not None and int(got.nvmlReturn) == 0:
                raw = getattr(got.value, _VALUE_MEMBERS.get(int(got.valueType), "uiVal"))
                return float(raw) / 1000.0, "instant"
            if fid is None or got is None or int(got.nvmlReturn) == getattr(
                    nv, "NVML_ERROR_NOT_SUPPORTED", 3):
                self._unsupported.add((i, "power_instant"))
        mw = self._read(i, "power_usage", lambda: nv.nvmlDeviceGetPowerUsage(h))
        return (float(mw) / 1000.0, "average") if mw is not None else (None, None)

    def sample(self) -> list[dict[str, Any]]:
        """One row per GPU, ``t_s`` read just before its energy counter."""
        nv, rows = self.nv, []
        for i, h in self.handles:
            t = time.monotonic()
            energy = self._read(i, "energy", partial(nv.nvmlDeviceGetTotalEnergyConsumption, h))
            power, source = self._power(i, h)
            util = self._read(i, "utilization", partial(nv.nvmlDeviceGetUtilizationRates, h))
            mem = self._read(i, "memory", partial(nv.nvmlDeviceGetMemoryInfo, h))
            clock = self._read(i, "sm_clock", partial(nv.nvmlDeviceGetClockInfo, h,
                                                      nv.NVML_CLOCK_SM))
            temp = self._read(i, "temperature", partial(nv.nvmlDeviceGetTemperature, h,
                                                        nv.NVML_TEMPERATURE_GPU))
            events = self._read(i, "clock_events", partial(self._events, h))
            rows.append({"t_s": t, "source": "gpu", "gpu": i, "uuid": self.uuids[i],
                         "energy_mj": int(energy) if energy is not None else None,
                         "power_w": power, "power_source": source,
                         "util_gpu_pct": float(util.gpu) if util is not None else None,
                         "mem_used_bytes": int(mem.used) if mem is not None else None,
                         "sm_clock_mhz": float(clock) if clock is not None else None,
                         "temp_c": float(temp) if temp is not None else None,
                         "clock_event_reasons": int(events) if events is not None else None})
        return rows

    def _events(self, h: Any) -> int:
        fn = getattr(self.nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            self.nv.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(fn(h))

    def close(self) -> None:
        """Shut NVML down (once)."""
        try:
            self.nv.nvmlShutdown()
        except self.nv.NVMLError:
            return
