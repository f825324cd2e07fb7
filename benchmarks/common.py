"""Helpers shared by the benchmark scripts: CPU timing and the machine line of each report."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
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


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` shows them (other jobs' share)."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def process_age() -> float:
    """Seconds since this process started (Linux /proc), so interpreter start-up can be counted."""
    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def publish(text: str, raw: Any, json_path: Path | None, report: Path | None) -> None:
    """Print a benchmark's report, and write its raw figures and its report file when asked."""
    print(text)
    if json_path is not None:
        json_path.write_text(json.dumps(raw, indent=1) + "\n")
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(text)


def bench_parser(doc: str | None, quick_help: str) -> argparse.ArgumentParser:
    """The argument parser every generator benchmark starts from: its description and ``--quick``."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    return parser


def results_file(name: str) -> Path:
    """``benchmarks/results/NAME.md``, the report a benchmark rewrites when it runs."""
    return Path(__file__).resolve().parent / "results" / f"{name}.md"


def finish_report(lines: list[str], machine_line: str, command: str, out: Path) -> int:
    """End a report with its machine and command lines, print it, write it to ``out``; exit 0."""
    publish("\n".join([*lines, "", f"Machine: {machine_line}", "", f"Command: `{command}`", ""]), None, None, out)
    return 0
