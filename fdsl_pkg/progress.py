"""Progress for long work, on a terminal and in batch logs alike.

On a terminal this is a tqdm bar. When stderr is not a terminal (Slurm, nohup, CI logs) tqdm
draws nothing useful, so ``Progress`` writes one plain line every ``interval`` seconds instead:
``DESC: 1,200/10,000 img (12.0%), 350 img/s, ETA 0:00:25``. The interval defaults to 30 s and the
environment variable ``FDSL_PROGRESS_INTERVAL=SECONDS`` sets it for every command (0 = a line at
every update, which tests use). ``disable=True`` (``--quiet`` / ``--no-progress``) silences both.

Lines go to the ``fdsl.progress`` logger at INFO, so they land where the command's log goes.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Any, TextIO

log = logging.getLogger("fdsl.progress")

ENV_INTERVAL = "FDSL_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0


def progress_interval() -> float:
    """Seconds between plain progress lines: ``FDSL_PROGRESS_INTERVAL`` or 30 (bad values: 30)."""
    text = os.environ.get(ENV_INTERVAL, "")
    try:
        value = float(text)
    except ValueError:
        return DEFAULT_INTERVAL
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` of a non-negative number of seconds (``?`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def progress_line(desc: str, done: float, total: float | None, elapsed: float, unit: str,
                  postfix: str = "") -> str:
    """One plain progress line: done/total, percent, rate and ETA (no total: done and rate)."""
    rate = done / elapsed if elapsed > 0 else 0.0
    head = f"{desc}: " if desc else ""
    if total:
        eta = (total - done) / rate if rate > 0 else float("inf")
        text = (f"{head}{done:,.0f}/{total:,.0f} {unit} ({100.0 * done / total:.1f}%), "
                f"{rate:,.1f} {unit}/s, ETA {format_duration(eta)}")
    else:
        text = f"{head}{done:,.0f} {unit}, {rate:,.1f} {unit}/s, elapsed {format_duration(elapsed)}"
    return f"{text}, {postfix}" if postfix else text


class Progress:
    """A progress reporter with tqdm's core API (``update``, ``set_postfix_str``, ``close``, a
    context manager, iteration over ``iterable``): a tqdm bar on a terminal, plain log lines at a
    fixed interval otherwise.

    ``clock`` replaces ``time.monotonic`` (tests pass a fake clock, so no test waits on time).
    """

    def __init__(self, iterable: Any = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", disable: bool = False, interval: float | None = None,
                 clock: Any = time.monotonic, terminal: bool | None = None, **tqdm_kwargs: Any) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)
            except TypeError:
                total = None
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.disable = disable
        self.n = 0.0
        self.postfix = ""
        self.interval = progress_interval() if interval is None else interval
        self._clock = clock
        self._start = clock()
        self._last_line = self._start
        self._bar = None
        self.lines = 0  # plain lines written (tests read it)
        self._terminal = is_terminal() if terminal is None else terminal
        if not disable and self._terminal:
            from tqdm import tqdm

            tqdm_kwargs.setdefault("dynamic_ncols", True)
            self._bar = tqdm(total=total, desc=desc, unit=unit, **tqdm_kwargs)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def __len__(self) -> int:
        return int(self.total or 0)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=refresh)

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.disable:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self._clock()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self._emit(now)

    def write_line(self) -> None:
        """Write a plain line now, whatever the interval (training's every ``--log-interval``
        steps); nothing on a terminal, where the bar shows it, or when disabled."""
        if self.disable or self._bar is not None:
            return
        now = self._clock()
        self._last_line = now
        self._emit(now)

    def _emit(self, now: float) -> None:
        self.lines += 1
        log.info("%s", progress_line(self.desc, self.n, self.total, now - self._start, self.unit,
                                     self.postfix))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
