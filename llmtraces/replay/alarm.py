"""The dispatcher's wait until a request is due, precise to tens of microseconds and cheap.

The event loop's own timers wake up to a millisecond late (``epoll_wait`` takes whole ms and
asyncio rounds up); the former fix, a ``sleep(0)`` spin for the last 2 ms, kept a core busy at
1 ms gaps. On Linux a ``timerfd`` armed at the absolute due instant wakes the loop's ``epoll``
itself (one read per wait, no thread); elsewhere a thread sleeps to the due instant with
``time.sleep`` (microsecond resolution) and wakes the loop, at the cost of two thread switches.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["ThreadAlarm", "TimerfdAlarm", "open_alarm"]
_CLOCK_MONOTONIC, _TFD_TIMER_ABSTIME = 1, 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():  # a stop may have cancelled the wait meanwhile
        fut.set_result(None)


class TimerfdAlarm:
    """One wait at a time on a Linux timerfd (CLOCK_MONOTONIC, ``perf_counter``'s clock)
    registered with the loop: :meth:`at` returns a future done once the kernel's timer has
    reached the due instant (rounded up to the nanosecond, so never before it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._settime = libc.timerfd_settime
        self.fd = libc.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self.loop = loop
        self._fut: asyncio.Future[None] | None = None
        loop.add_reader(self.fd, self._ready)

    def at(self, due: float) -> asyncio.Future[None]:
        """A future (of the loop; call from its thread) done at ``due``; it replaces any
        earlier wait, which is cancelled."""
        fut: asyncio.Future[None] = self.loop.create_future()
        sec = math.floor(due)
        nsec = math.ceil((due - sec) * 1e9)
        sec, nsec = (sec + 1, nsec - 1_000_000_000) if nsec >= 1_000_000_000 else (sec, nsec)
        spec = _Itimerspec(_Timespec(0, 0), _Timespec(max(sec, 0), max(nsec, 1)))
        if self._settime(self.fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        if self._fut is not None:
            self._fut.cancel()
        self._fut = fut
        return fut

    def _ready(self) -> None:
        try:
            os.read(self.fd, 8)  # the count of expirations; reading clears the readiness
        except BlockingIOError:
            return
        fut, self._fut = self._fut, None
        if fut is not None:
            _wake(fut)

    def close(self) -> None:
        """Stop watching the timer and close it; a pending wait is cancelled."""
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
        if self._fut is not None:
            self._fut.cancel()


class ThreadAlarm(threading.Thread):
    """:meth:`at` returns a future of the loop done once ``clock()`` has reached the due
    instant (never before it); waits are served in the order they were armed."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(name="llmtraces-replay-alarm", daemon=True)
        self.loop, self.clock, self.sleep = loop, clock, sleep
        self._armed: queue.SimpleQueue[tuple[float, asyncio.Future[None]] | None] = \
            queue.SimpleQueue()
        self.start()

    def at(self, due: float) -> asyncio.Future[None]:
        """A future (of the loop; call from its thread) done at ``due``."""
        fut: asyncio.Future[None] = self.loop.create_future()
        self._armed.put((due, fut))
        return fut

    def close(self) -> None:
        """End the thread once the waits armed before are served."""
        self._armed.put(None)

    def run(self) -> None:
        """Sleep to each armed instant in turn and wake the loop; until closed."""
        while (armed := self._armed.get()) is not None:
            due, fut = armed
            # a sleep can end early (a signal in the main thread): sleep again until due
            while (left := due - self.clock()) > 0:
                self.sleep(left)
            try:
                self.loop.call_soon_threadsafe(_wake, fut)
            except RuntimeError:  # the loop has closed: the run is over
                return


def open_alarm(loop: asyncio.AbstractEventLoop) -> TimerfdAlarm | ThreadAlarm:
    """The timerfd alarm where the kernel has one and ``perf_counter`` is CLOCK_MONOTONIC
    (Linux), the thread alarm elsewhere."""
    if sys.platform.startswith("linux") and \
            time.get_clock_info("perf_counter").implementation == \
            "clock_gettime(CLOCK_MONOTONIC)":
        with contextlib.suppress(OSError, AttributeError):  # no timerfd in this libc/kernel
            return TimerfdAlarm(loop)
    return ThreadAlarm(loop)
