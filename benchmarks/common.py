"""Helpers shared by the benchmark scripts: CPU timing and the machine line of each report."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


def median_cpu_seconds(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Median CPU seconds of this process for ``fn()`` over ``repeats`` runs (CPU time, not wall
    time, so that other jobs on a shared machine disturb the figures less)."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def machine() -> str:
    """``platform, processor, N cores, Python X.Y.Z`` for the report."""
    return (f"{platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}")
