"""The pruning study's tables and tests: top-1 per strategy and size, the paired difference
max - min per size with its trend over size, each strategy against random, Holm-adjusted, the
design's precision and a verdict in words; then the premise check (``fdsl.studies.premise``).

The split is the unit of replication: a split's runs (one per seed) are averaged first, so every
interval has (splits - 1) degrees of freedom, and the trend regresses one point per (size, split)
on log2(size) (n - 2 degrees of freedom; different sizes use disjoint draws, so the points are
independent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.studies import premise, report, statistics

ALPHA = 0.05
VERDICTS = ("flip supported", "no evidence of a flip", "direction consistent at all sizes")


def split_means(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, Any, int], float]:
    """(strategy, size, split) -> top-1 averaged over that split's seeds."""
    grouped: dict[tuple[str, Any, int], list[float]] = {}
    for r in rows:
        if r["top1"] is not None:
            grouped.setdefault((r["strategy"], r["size"], r["split"]), []).append(r["top1"])
    return {key: float(np.mean(v)) for key, v in grouped.items()}


def compare(means: Mapping[tuple[str, Any, int], float], names: Sequence[str],
            sizes: Sequence[Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Per size: max - min, min - random, max - random, paired over splits; and the trend of
    max - min against log2(size) over every (numeric size, split). Holm over all of them."""
    random_arm, low_arm, high_arm = names
    comparisons, points = [], []
    for size in sizes:
        splits = sorted(k for (n, s, k) in means if n == random_arm and s == size)
        for a, b in ((high_arm, low_arm), (low_arm, random_arm), (high_arm, random_arm)):
            pairs = [k for k in splits if (a, size, k) in means and (b, size, k) in means]
            diff = statistics.paired_difference([means[a, size, k] for k in pairs], [means[b, size, k] for k in pairs])
            comparisons.append({"comparison": f"{a} - {b}", "size": size, **diff})
            if (a, b) == (high_arm, low_arm) and size != "all":
                points += [(size, means[a, size, k] - means[b, size, k]) for k in pairs]
    trend = None
    slope = statistics.trend([s for s, _ in points], [d for _, d in points])
    if slope["mean"] is not None:  # two numeric sizes and three points at least
        trend = {"comparison": f"trend of {high_arm} - {low_arm} per doubling of size",
                 "size": f"{min(s for s, _ in points)}..{max(s for s, _ in points)}", **slope}
    family = comparisons + ([trend] if trend else [])
    for item, adjusted in zip(family, statistics.holm([c["p"] for c in family]), strict=True):
        item["p_holm"] = adjusted
    return comparisons, trend


def _significant(item: Mapping[str, Any]) -> int:
    """+1 / -1 for a Holm-significant positive / negative estimate, else 0."""
    if item.get("p_holm") is None or item["p_holm"] >= ALPHA:
        return 0
    return 1 if item["mean"] > 0 else -1


def verdict(comparisons: Sequence[Mapping[str, Any]], trend: Mapping[str, Any] | None,
            high_low: str) -> tuple[str, str]:
    """The verdict in words and the reason, from the Holm-adjusted tests of max - min.

    ``flip supported``: max - min is significantly positive at one size and negative at another,
    or its trend is significant and the fitted line changes sign between the smallest and the
    largest size. ``direction consistent at all sizes``: significant with one sign at every size.
    ``no evidence of a flip`` otherwise.
    """
    gaps = [c for c in comparisons if c["comparison"] == high_low]
    signs = {c["size"]: _significant(c) for c in gaps}
    if 1 in signs.values() and -1 in signs.values():
        up = [s for s, v in signs.items() if v > 0]
        down = [s for s, v in signs.items() if v < 0]
        return VERDICTS[0], (f"{high_low} is significantly positive at size {', '.join(map(str, up))} and "
                             f"negative at size {', '.join(map(str, down))} (Holm-adjusted p < {ALPHA})")
    if trend is not None and _significant(trend):
        sizes = [c["size"] for c in gaps if c["size"] != "all"]
        at = {s: trend["intercept"] + trend["mean"] * (np.log2(s) - np.log2(trend["intercept_at"]))
              for s in (min(sizes), max(sizes))}
        if np.sign(at[min(sizes)]) != np.sign(at[max(sizes)]):
            return VERDICTS[0], (f"the gap changes by {trend['mean']:+.4f} per doubling (Holm-adjusted "
                                 f"p {report.fmt_p(trend['p_holm'])}) and the fitted gap goes from "
                                 f"{at[min(sizes)]:+.4f} at size {min(sizes)} to {at[max(sizes)]:+.4f} at "
                                 f"size {max(sizes)}")
    if gaps and all(v != 0 for v in signs.values()) and len(set(signs.values())) == 1:
        better = high_low.split(" - ")[0 if next(iter(signs.values())) > 0 else 1]
        return VERDICTS[2], f"{better} is significantly better at every size (Holm-adjusted p < {ALPHA})"
    reason = "no size shows significant gaps of opposite signs"
    if trend is None:
        reason += "; no trend test (it needs two numeric sizes and three splits in all)"
    elif _significant(trend):
        reason += f"; the gap changes with size ({trend['mean']:+.4f} per doubling) but keeps its sign"
    else:
        reason += f"; the trend ({trend['mean']:+.4f} per doubling) is within the noise"
    return VERDICTS[1], reason


def _word(item: Mapping[str, Any]) -> str:
    if item.get("p_holm") is None:
        return "not testable (one split)"
    return "resolved" if item["p_holm"] < ALPHA else "not resolved"


def write_outputs(out: Path, rows: list[dict[str, Any]], names: list[str], settings: Mapping[str, Any],
                  test: str, classes: Sequence[str], left_out: Sequence[str], *, seeds: Sequence[int],
                  fraction: float, study_seed: int) -> dict[str, Any]:
    """table.md, results.csv, results.png and difference.png from the runs' rows (and the premise
    check from their predictions.csv files); returns the study's results."""
    report.write_csv(out / "results.csv", rows, ["size", "split", "strategy", "seed", "top1", "train_images",
                                                 "val_images", "epochs", "final_train_loss", "seconds", "run"])
    labels = ["all" if s is None else s for s in settings["sizes"]]
    sizes = [s for s in labels if any(r["size"] == s for r in rows)]
    means = split_means(rows)
    per_size = {(n, s): [v for (a, b, _), v in means.items() if a == n and b == s] for n in names for s in sizes}
    splits = {s: len(per_size[names[0], s]) for s in sizes}
    comparisons, trend = compare(means, names, sizes)
    high_low = f"{names[2]} - {names[1]}"
    word, reason = verdict(comparisons, trend, high_low)
    table_rows = [[c["comparison"], c["size"], report.format_estimate(c), report.fmt_p(c["p"]),
                   report.fmt_p(c["p_holm"]), _word(c)] for c in comparisons]
    if trend:
        table_rows.append([trend["comparison"], trend["size"], report.format_estimate(trend),
                           report.fmt_p(trend["p"]), report.fmt_p(trend["p_holm"]), _word(trend)])
    gaps = [c for c in comparisons if c["comparison"] == high_low]
    precision = "; ".join(f"size {c['size']}: ±{c['half']:.4f}" for c in gaps if c["half"] is not None)
    field = settings["field"]
    checked = premise.premise_check(rows, field, study_seed)
    text = (
        f"# Pruning study: does the better of min-{field} and max-{field} pruning flip with data size?\n\n"
        f"**Claim** (viewpoint study): whether removing the smallest-{field} views (min-{field}) or the "
        f"largest (max-{field}) trains the better model depends on the training-set size: the better of "
        f"the two flips between small and large data.\n\n"
        f"**Test**: per size, the paired difference {high_low} in test top-1 over splits (the split is "
        f"the unit: its {len(seeds)} seed(s) are averaged first; t-interval on splits - 1 degrees of "
        f"freedom); the trend of that difference, the least-squares slope against log2(size) (change per "
        f"doubling; one point per size and split, t-interval on points - 2 degrees of freedom); and each "
        f"strategy against random, which draws afresh for every split and seed.\n\n"
        f"**Design**: {len(classes)} classes; {field} ranks the images (ties broken at random, study seed "
        f"{study_seed}); every strategy removes {fraction:g} of each class; test set: {test}, never pruned; "
        f"splits per size: {', '.join(f'{s}: {n}' for s, n in splits.items())}; seeds {list(seeds)}.\n\n"
        f"## Verdict: {word}\n\n{reason[0].upper() + reason[1:]}.\n\n"
        f"## Top-1 on the test set (mean ± std over splits)\n\n"
        + report.markdown_table("strategy \\ size", names, [str(s) for s in sizes],
                                {(n, str(s)): report.format_mean_std(per_size[n, s]) for n in names for s in sizes})
        + "\n## Comparisons (difference in top-1, 95% interval)\n\n"
        + report.markdown_rows(["comparison", "size", "difference [95% CI]", "p", "p (Holm)", "verdict"],
                               table_rows, "llrrrl")
        + f"\np (Holm): Holm-adjusted over all {len(table_rows)} comparisons in this table (family-wise "
        f"error {ALPHA:g}); the intervals are unadjusted 95% t-intervals. \"resolved\": Holm-adjusted p < "
        f"{ALPHA:g}.\n\n"
        f"**Precision**: the smallest difference {high_low} this design resolves (95% half-width): "
        f"{precision or 'none (one split per size gives no interval)'}"
        + (f"; trend: ±{trend['half']:.4f} per doubling" if trend and trend["half"] is not None else "")
        + ".\n"
        + ("\n**Left out**:\n\n" + "\n".join(f"- {line}" for line in left_out) + "\n" if left_out else "")
        + "\n" + premise.write_premise(out, checked, field, classes))
    report.save_text(out / "table.md", text)
    _plots(out, names, sizes, per_size, gaps, field)
    return {"rows": rows, "table": text, "comparisons": comparisons, "trend": trend, "verdict": word,
            "reason": reason, "left_out": list(left_out), "premise": {k: v for k, v in checked.items()
                                                                      if k != "cells"}, "out": str(out)}


def _plots(out: Path, names: Sequence[str], sizes: Sequence[Any], per_size: Mapping[tuple[str, Any], list[float]],
           gaps: Sequence[Mapping[str, Any]], field: str) -> None:
    series = {}
    for n in names:
        stats = [statistics.mean_std(per_size[n, s]) for s in sizes]
        series[n] = (list(sizes), [m for m, _ in stats], [d for _, d in stats])
    report.plot_series(out / "results.png", series, xlabel="training images per class",
                       ylabel="top-1 on the test set (± std over splits)", title=f"pruning by {field}")
    report.plot_series(out / "difference.png", {
        gaps[0]["comparison"] if gaps else "difference": (
            [c["size"] for c in gaps], [c["mean"] for c in gaps], [c["half"] or 0.0 for c in gaps])},
        xlabel="training images per class", ylabel="difference in top-1 (95% CI)",
        title=f"max-{field} - min-{field}")
