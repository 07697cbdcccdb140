"""Absolute deadlines on the monotonic clock, counted from process start when asked."""
from __future__ import annotations

import os
import time


def process_age() -> float:
    """Seconds since this process started (from /proc), 0.0 where that cannot be read."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def deadline_from_start(timeout: float) -> float:
    """The monotonic time at which `timeout` seconds since process start have passed."""
    return time.monotonic() + timeout - process_age()


def remaining(deadline: float) -> float:
    return deadline - time.monotonic()


def expired(deadline: float) -> bool:
    return time.monotonic() >= deadline
