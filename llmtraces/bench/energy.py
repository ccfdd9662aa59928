"""Energy of a point's measured window, from the telemetry process (NVML's energy counter):
joules, J per output token, tokens per J, J per request and J per request that met the SLO;
with an idle window before the replay, the idle power and the energy above it. Null figures
always carry the reason (no GPU, telemetry off, a counter that went back)."""

from __future__ import annotations

from typing import Any

from .pointstats import PointStats

FIELDS = ("energy_j", "j_per_token", "tokens_per_j", "j_per_request", "j_per_good_request")


def energy_fields(tel: Any, window: list[float] | None, st: PointStats,
                  mode: str, idle: list[float] | None = None) -> dict[str, Any]:
    """The energy figures of the window ``[t0, t1]`` (``time.monotonic()`` values); ``idle``
    is a window of the idle server, whose mean power is ``idle_power_w``."""
    out: dict[str, Any] = dict.fromkeys(FIELDS)
    if tel is None or window is None:
        out["reason"] = "telemetry off" if mode == "off" else "no measured window"
        return out
    got = tel.energy(window[0], window[1])
    joules = getattr(got, "joules", None)
    out["reason"] = getattr(got, "reason", None)
    for extra in ("avg_power_w", "gpus", "source"):
        if hasattr(got, extra):
            out[extra] = getattr(got, extra)
    if joules is None:
        out["reason"] = out["reason"] or "no energy reading"
        return out
    out["energy_j"] = joules
    tokens = st.tokens_in_window
    out["j_per_token"] = joules / tokens if tokens else None
    out["tokens_per_j"] = tokens / joules if joules > 0 else None
    n, good = st.attainment.n, st.attainment.good
    out["j_per_request"] = joules / n if n else None
    out["j_per_good_request"] = joules / good if good else None
    out["tokens_in_window"] = tokens
    idle_j = getattr(tel.energy(idle[0], idle[1]), "joules", None) if idle else None
    if idle and idle_j is not None and idle[1] > idle[0]:
        out["idle_power_w"] = idle_j / (idle[1] - idle[0])
        out["energy_above_idle_j"] = joules - out["idle_power_w"] * (window[1] - window[0])
    return out
