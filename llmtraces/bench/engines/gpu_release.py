"""After a GPU engine stops, wait until the driver has given its memory back: a process group
that has exited can still hold GPU memory for seconds while the driver tears its contexts
down, and the next launch (a relaunch, the next serve variant) would then fail to allocate."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ..telemetry.nvml import memory_used

#: memory above the level before the launch still taken as released (other tenants, the
#: driver's own allocations move by this much)
SLACK_BYTES = 512 * 2**20


def wait_released(baseline: dict[int, int], gpus: Sequence[int] | None, *,
                  timeout_s: float = 60.0, poll_s: float = 0.5,
                  read: Callable[[Sequence[int] | None], dict[int, int] | None] = memory_used,
                  ) -> str | None:
    """Wait until every GPU of ``baseline`` (bytes used before the launch) is back within
    :data:`SLACK_BYTES` of it; None once it is (or NVML cannot tell), else what is still held
    after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = read(gpus)
        if now is None:
            return None
        held = {i: now[i] - b for i, b in baseline.items() if now.get(i, 0) - b > SLACK_BYTES}
        if not held:
            return None
        if time.monotonic() >= deadline:
            what = ", ".join(f"GPU {i} holds {b / 2**30:.1f} GiB more than before the launch"
                             for i, b in sorted(held.items()))
            return f"GPU memory not released {timeout_s:g} s after the engine stopped: {what}"
        time.sleep(poll_s)
