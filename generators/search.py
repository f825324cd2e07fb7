"""The category search loop shared by the IFS generators (FractalDB, ExFractalDB).

Candidates k = 0, 1, 2, ... are judged in spans of ``chunk`` by a picklable ``evaluate(span)``
that returns the accepted ones, each as a one-class ``ClassParams`` whose ``candidate[0]`` is k
(what the generator's ``sample_candidate(seed, k)`` returns). Spans run in rounds through
``run_tasks``; each round is sized from the acceptance seen so far, and the result is the first
``classes`` accepted candidates in k order, as one ``ClassParams``, so it is the same for any
number of workers, chunk size or round sizing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, NamedTuple

from fdsl.errors import FdslError

log = logging.getLogger(__name__)

CHUNK = 256  # candidates per task


class CandidateSpan(NamedTuple):
    """Candidates ``start .. stop - 1`` (a plain ``(start, stop)`` tuple works the same)."""

    start: int
    stop: int

    def __str__(self) -> str:
        return f"search candidates {self.start}..{self.stop - 1}"


class CandidateJudge:
    """The ``evaluate`` of a generator's search (a picklable frozen dataclass): ``judge(k, scratch)``
    returns candidate k as a one-class ClassParams when it is accepted, else None; ``scratch()``
    makes the buffers that the candidates of one span reuse."""

    def scratch(self) -> Any:
        return None

    def judge(self, k: int, scratch: Any) -> Any:
        raise NotImplementedError

    def __call__(self, span: CandidateSpan) -> list[Any]:
        scratch = self.scratch()
        return [hit for hit in (self.judge(k, scratch) for k in range(*span)) if hit is not None]


def search_candidates(evaluate: Callable[[CandidateSpan], list[Any]], classes: int, *, expected_rate: float,
                      max_candidates: int, too_few: Callable[[int, int], str], workers: int = 1,
                      backend: str = "local", chunk: int | None = None, desc: str = "search") -> Any:
    """The first ``classes`` candidates ``evaluate`` accepts, in candidate order, as one ClassParams
    (``concat`` of the one-class ones). ``expected_rate`` (accepted per candidate) sizes the first
    round; after ``max_candidates`` candidates the search stops with FdslError(``too_few(found,
    tried)``)."""
    from fdsl.datasets.builder.jobs import run_tasks  # not at import: generator modules stay light

    chunk = chunk or CHUNK
    accepted: list[Any] = []
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
        found: list[Any] = []

        def on_result(span: CandidateSpan, result: list[Any], found: list[Any] = found) -> int:
            found.extend(result)
            return span.stop - span.start

        # Spawning workers costs seconds: worth it only for a few spans per worker.
        round_workers = workers if count >= 2 * workers else 1
        run_tasks(evaluate, spans, on_result, backend=backend, workers=round_workers,
                  total_items=count * chunk, unit="cand", desc=desc)
        accepted.extend(sorted(found, key=_candidate))
        tried += count * chunk
    log.info("%s: %d classes from %d candidates (%.2f%% of %d tried accepted)", desc, classes,
             _candidate(accepted[classes - 1]) + 1, 100 * len(accepted) / tried, tried)
    return type(accepted[0]).concat(accepted[:classes])


def _candidate(hit: Any) -> int:
    return int(hit.candidate[0])
