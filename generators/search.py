"""The category search loop shared by the IFS generators (FractalDB, ExFractalDB).

Candidates k = 0, 1, 2, ... are judged in spans of ``chunk`` by a picklable ``evaluate(span)``
that returns the accepted ones. Spans run in rounds through ``run_tasks``; each round is sized from
the acceptance seen so far, and the result is the first ``classes`` accepted candidates in k order,
so it is the same for any number of workers, chunk size or round sizing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import NamedTuple, TypeVar

from fdsl.errors import FdslError

log = logging.getLogger(__name__)

T = TypeVar("T")
CHUNK = 256


class CandidateSpan(NamedTuple):
    """Candidates ``start .. stop - 1`` (a plain ``(start, stop)`` tuple works the same)."""

    start: int
    stop: int

    def __str__(self) -> str:
        return f"search candidates {self.start}..{self.stop - 1}"


def search_candidates(evaluate: Callable[[CandidateSpan], list[T]], classes: int, *,
                      candidate: Callable[[T], int], expected_rate: float, max_candidates: int,
                      too_few: Callable[[int, int], str], workers: int = 1, backend: str = "local",
                      chunk: int = CHUNK, desc: str = "search") -> list[T]:
    """The first ``classes`` results of ``evaluate`` in candidate order (``candidate(result)`` is
    its index k). ``expected_rate`` (accepted per candidate) sizes the first round; after
    ``max_candidates`` candidates the search stops with FdslError(``too_few(found, tried)``)."""
    from fdsl.datasets.builder.jobs import run_tasks  # not at import: generator modules stay light

    accepted: list[T] = []
    tried = 0
    while len(accepted) < classes:
        if tried >= max_candidates:
            raise FdslError(too_few(len(accepted), tried))
        rate = expected_rate if tried == 0 else max(len(accepted), 1) / tried
        count = max(1, math.ceil((classes - len(accepted)) / rate * 1.2 / chunk))
        if tried == 0:
            count = min(count, max(8, 4 * workers))  # a small probe round: thresholds vary a lot
        count = min(count, math.ceil((max_candidates - tried) / chunk))
        spans = [CandidateSpan(tried + i * chunk, tried + (i + 1) * chunk) for i in range(count)]
        found: list[T] = []

        def on_result(span: CandidateSpan, result: list[T], found: list[T] = found) -> int:
            found.extend(result)
            return span.stop - span.start

        # Spawning workers costs seconds: worth it only for a few spans per worker.
        round_workers = workers if count >= 2 * workers else 1
        run_tasks(evaluate, spans, on_result, backend=backend, workers=round_workers,
                  total_items=count * chunk, unit="cand", desc=desc)
        accepted.extend(sorted(found, key=candidate))
        tried += count * chunk
    log.info("%s: %d classes from %d candidates (%.2f%% of %d tried accepted)", desc, classes,
             candidate(accepted[classes - 1]) + 1, 100 * len(accepted) / tried, tried)
    return accepted[:classes]
