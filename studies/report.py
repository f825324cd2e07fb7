"""What a study writes for people: markdown tables, CSV files and plots, and the words that go
with an estimate. Every file is written atomically (``fdsl.atomic``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.atomic import write_bytes_atomic
from fdsl.studies.statistics import mean_std


def fmt(value: float | None, digits: int = 4, sign: bool = False) -> str:
    """``0.6517`` (``+0.6517`` with ``sign``); ``-`` for None."""
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def fmt_p(p: float | None) -> str:
    """A p-value as people read it: ``0.003``, ``<0.001``, ``-``."""
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_mean_std(values: Sequence[float | None]) -> str:
    """``0.6517 ± 0.0109`` (``-`` when there is no value)."""
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    mean, std = mean_std(known)
    return f"{mean:.4f} ± {std:.4f}"


def format_estimate(est: Mapping[str, Any], digits: int = 4) -> str:
    """``+0.0210 [-0.0040, +0.0460]`` (an interval only where there is one)."""
    if est.get("mean") is None:
        return "-"
    if est.get("low") is None:
        return f"{fmt(est['mean'], digits, True)} (no interval)"
    return f"{fmt(est['mean'], digits, True)} [{fmt(est['low'], digits, True)}, {fmt(est['high'], digits, True)}]"


def holm_word(item: Mapping[str, Any], better: str, worse: str, alpha: float = 0.05) -> str:
    """The verdict on one Holm-adjusted comparison: ``better`` / ``worse`` when resolved."""
    if item.get("p_holm") is None:
        return "not testable (one replicate)"
    if item["p_holm"] >= alpha:
        return "no difference resolved"
    return better if item["mean"] > 0 else worse


def describe_difference(name: str, baseline: str, diff: Mapping[str, Any], unit: str = "pairs") -> str:
    """One line: the paired gap, its 95% interval and whether it is bigger than the noise."""
    if diff["mean"] is None:
        return f"{name} vs {baseline}: no pairs"
    if diff["low"] is None:
        return f"{name} vs {baseline}: {diff['mean']:+.4f} (one pair: no interval)"
    verdict = ("bigger than the noise" if diff["low"] > 0 or diff["high"] < 0
               else "within the noise (the interval holds 0)")
    return (f"{name} vs {baseline}: {diff['mean']:+.4f}, 95% CI [{diff['low']:+.4f}, "
            f"{diff['high']:+.4f}] over {diff['n']} {unit}: {verdict}")


def markdown_table(corner: str, rows: Sequence[str], columns: Sequence[str],
                   cell: Mapping[tuple[str, str], str]) -> str:
    """A markdown table: ``rows`` x ``columns``, ``cell[(row, column)]`` (``-`` where missing)."""
    lines = ["| " + " | ".join([corner, *columns]) + " |", "|" + "---|" * (len(columns) + 1)]
    lines += ["| " + " | ".join([r, *(cell.get((r, c), "-") for c in columns)]) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def markdown_rows(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """A markdown table from a header and rows of cells (``align``: one of l/r per column)."""
    marks = [":---" if a == "l" else "---:" for a in align] if align else ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (temporary name, fsync, rename)."""
    write_bytes_atomic(path, text.encode())


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(path, buffer.getvalue().encode())


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def plot_series(path: str | Path, series: Mapping[str, tuple[list[Any], list[float], list[float]]], *,
                xlabel: str, ylabel: str, title: str) -> None:
    """One line with error bars per series: name -> (x values, means, error bar half-lengths);
    the x values are shown evenly spaced, as categories."""
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    for k, (name, (xs, means, errors)) in enumerate(series.items()):
        # each series nudged sideways so the error bars stay apart
        ax.errorbar(np.arange(len(xs)) + 0.04 * (k - (len(series) - 1) / 2), means, yerr=errors, marker="o",
                    capsize=3, label=name)
        ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def plot_scatter(path: str | Path, points: Sequence[Mapping[str, Any]], *, x: str, y: str, colour: str,
                 label: str, xlabel: str, ylabel: str, colour_label: str, title: str) -> None:
    """Labelled points ``(p[x], p[y])`` coloured by ``p[colour]`` (hollow where it is None)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    full = [p for p in points if p.get(colour) is not None]
    empty = [p for p in points if p.get(colour) is None]
    if full:
        dots = ax.scatter([p[x] for p in full], [p[y] for p in full], c=[p[colour] for p in full],
                          cmap="viridis", s=60, edgecolors="k")
        fig.colorbar(dots, ax=ax, label=colour_label)
    if empty:
        ax.scatter([p[x] for p in empty], [p[y] for p in empty], s=60, facecolors="none",
                   edgecolors="grey", label=f"no {colour_label}")
        ax.legend()
    for p in points:
        ax.annotate(str(p[label]), (p[x], p[y]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
