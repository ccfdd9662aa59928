"""GPU and server telemetry of a benchmark point, sampled by a separate process: NVML power,
energy counter, utilisation, memory and clocks (:mod:`.nvml`), the engine's CPU and memory
(:mod:`.host`), its Prometheus ``/metrics`` (:mod:`.prometheus`); the energy of a window from
the counter (:mod:`.energy`). :class:`Telemetry` (:mod:`.process`) is the handle a point uses.
Importing this package starts nothing and loads neither pyarrow nor NVML."""

from __future__ import annotations

from .energy import Energy
from .process import Telemetry, TelemetryError

__all__ = ["Energy", "Telemetry", "TelemetryError"]
