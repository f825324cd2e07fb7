"""``inspect_shards``: look at a data set (any storage) the way ``inspect-shards`` does.

A summary (``summary.py``), optionally a verification of every file and checksum
(``fdsl.datasets.format.verify_dataset``), a contact sheet and a histogram (``pictures.py``) and
the class statistics (``stats.py``). Every output argument is checked before any work, so a bad
one is refused in one line before anything is printed or written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fdsl.datasets.format import Problem, verify_dataset
from fdsl.datasets.inspect import pictures, summary
from fdsl.datasets.inspect.stats import check_out_folder, dataset_stats


@dataclass
class InspectReport:
    """What ``inspect_shards`` found and wrote."""

    summary: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)
    verified: bool = False
    written: list[Path] = field(default_factory=list)


def inspect_shards(
    folder: str | Path,
    *,
    verify: bool = False,
    grid: str | Path | None = None,
    per_class: int = 10,
    max_classes: int = 20,
    sort_by: str | None = None,
    hist: tuple[str, str | Path] | None = None,
    stats: str | Path | None = None,
    progress: bool = True,
) -> InspectReport:
    """Summarise ``folder``; optionally verify every checksum, write a contact sheet (``grid``),
    a histogram (``hist`` = (metadata field, output image)) and the class statistics into the
    folder ``stats``. ``progress`` reports long reads (``fdsl.progress``).

    Raises FdslError (one line) for a bad output argument, before any work, and ShardError when
    the manifest is unreadable. A data set that fails verification is reported in ``problems``;
    nothing is then drawn from it.
    """
    if grid is not None:
        pictures.check_image_path(grid, "--grid")
    if hist is not None:
        pictures.check_image_path(hist[1], "--hist")
    if stats is not None:
        check_out_folder(stats)
    report = InspectReport(summary={})
    if verify:
        report.problems = verify_dataset(folder, progress=progress)
        report.verified = True
        if any(p.check == "manifest" for p in report.problems):
            return report
        report.summary = summary.summarize(folder, read_labels=not report.problems)
        if report.problems:
            return report
    else:
        report.summary = summary.summarize(folder)
    if grid is not None:
        report.written.append(pictures.contact_sheet(folder, grid, per_class=per_class,
                                                     max_classes=max_classes, sort_by=sort_by))
    if hist is not None:
        report.written.append(pictures.histogram(folder, hist[0], hist[1], max_classes=max_classes))
    if stats is not None:
        report.written += [Path(p) for p in dataset_stats(folder, stats, progress=progress)["written"]]
    return report
