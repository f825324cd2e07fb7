"""The pruning study's premise check: does a small area (or few visible parts) mean a hard image?

Every run writes ``predictions.csv`` (``index,label,prediction,prob_true`` and every metadata
field of its test set, one row per test image). Within each class the test images are cut into
deciles of the ranking field (rank-based, ties broken at random from the study seed, so each
decile of a class holds a tenth of it); test top-1 is reported per decile, over all runs, per
class and pooled. The test of the premise is the top-1 of the lowest decile minus that of the
highest, computed per run, averaged over the runs of one training subset (size, split) and
t-tested over the subsets.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.errors import FdslError
from fdsl.studies import report, statistics

PREDICTIONS = "predictions.csv"
DECILES = 10
_TAG_DECILE = 0xDEC1
_REQUIRED = ("index", "label", "prediction")


def read_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """The columns of a ``predictions.csv``: ``index``, ``label``, ``prediction`` as int64, every
    other column as float64 where all its values are numbers, else as strings."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        names = reader.fieldnames or []
    missing = [c for c in _REQUIRED if c not in names]
    if missing:
        raise FdslError(f"{path}: no {missing[0]!r} column (columns: {', '.join(names) or 'none'})")
    columns: dict[str, np.ndarray] = {}
    for name in names:
        values = [r[name] for r in rows]
        if name in _REQUIRED:
            columns[name] = np.array([int(v) for v in values], np.int64)
            continue
        try:
            columns[name] = np.array([float(v) for v in values], np.float64)
        except ValueError:
            columns[name] = np.array(values)
    return columns


def deciles(labels: np.ndarray, values: np.ndarray, index: np.ndarray, seed: int) -> np.ndarray:
    """The decile (0 = smallest values) of every image within its class: rank r of n in the class
    gives floor(10 r / n); equal values are ordered by a random key per image ``index`` from
    ``seed``, the same in every run."""
    key = np.random.default_rng([seed, _TAG_DECILE]).random(int(index.max()) + 1 if len(index) else 0)[index]
    out = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        order = members[np.lexsort((key[members], values[members]))]
        out[order] = np.arange(len(members)) * DECILES // len(members)
    return out


def decile_counts(predictions: Mapping[str, np.ndarray], field: str, seed: int,
                  num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(correct [C, 10], images [C, 10], sum of ``field`` [C, 10]) of one run's predictions."""
    labels, values = predictions["label"], np.asarray(predictions[field], float)
    dec = deciles(labels, values, predictions["index"], seed)
    correct, count, total = (np.zeros((num_classes, DECILES)) for _ in range(3))
    hit = (predictions["prediction"] == labels).astype(float)
    np.add.at(correct, (labels, dec), hit)
    np.add.at(count, (labels, dec), 1.0)
    np.add.at(total, (labels, dec), values)
    return correct, count, total


def _top1(correct: np.ndarray, count: np.ndarray) -> list[float | None]:
    return [float(c / n) if n else None for c, n in zip(correct, count, strict=True)]


def premise_check(rows: Sequence[Mapping[str, Any]], field: str, seed: int) -> dict[str, Any]:
    """Test top-1 by ``field`` decile within each class, from the ``predictions.csv`` of every run
    in ``rows`` (each with ``run``, ``size``, ``split``)."""
    found = [(r, Path(r["run"]) / PREDICTIONS) for r in rows]
    found = [(r, p) for r, p in found if p.is_file()]
    result: dict[str, Any] = {"runs": len(found), "missing": len(rows) - len(found), "field": field}
    if not found:
        return result
    tables = [read_predictions(p) for _, p in found]
    if field not in tables[0]:
        result.update(runs=0, problem=f"the predictions.csv files have no {field!r} column")
        return result
    num_classes = int(max(int(t["label"].max()) for t in tables)) + 1
    correct, count, total = (np.zeros((num_classes, DECILES)) for _ in range(3))
    per_unit: dict[tuple[Any, Any], list[float]] = {}
    for (row, _), table in zip(found, tables, strict=True):
        c, n, s = decile_counts(table, field, seed, num_classes)
        correct, count, total = correct + c, count + n, total + s
        pooled = _top1(c.sum(0), n.sum(0))
        if pooled[0] is not None and pooled[-1] is not None:
            per_unit.setdefault((row.get("size"), row.get("split")), []).append(pooled[0] - pooled[-1])
    diff = statistics.t_interval([float(np.mean(v)) for v in per_unit.values()])
    result.update(top1=_top1(correct.sum(0), count.sum(0)),
                  per_class=[_top1(correct[k], count[k]) for k in range(num_classes)],
                  images=count.sum(0).tolist(), mean_value=_top1(total.sum(0), count.sum(0)),
                  difference=diff, units=len(per_unit), cells=(correct, count))
    return result


def _verdict(field: str, diff: Mapping[str, Any]) -> str:
    if diff["low"] is None:
        return "not testable (fewer than two training subsets)"
    if diff["high"] < 0:
        return f"the premise holds: small-{field} images are harder"
    if diff["low"] > 0:
        return f"the premise fails: small-{field} images are easier"
    return f"no evidence that {field} predicts difficulty (the interval holds 0)"


def write_premise(out: Path, checked: Mapping[str, Any], field: str, classes: Sequence[str]) -> str:
    """premise.csv and premise.png; returns the markdown section for table.md."""
    head = f"## Premise check: does a small {field} mean a hard image?\n\n"
    if not checked.get("runs"):
        why = checked.get("problem") or "no run wrote predictions.csv (train-classifier writes it from the version that added it on)"
        return head + f"Not available: {why}.\n"
    cells = checked["cells"]
    csv_rows = [{"class": classes[k] if k < len(classes) else k, "decile": d + 1, "images": int(cells[1][k, d]),
                 "correct": int(cells[0][k, d]), "top1": checked["per_class"][k][d]}
                for k in range(len(checked["per_class"])) for d in range(DECILES)]
    report.write_csv(out / "premise.csv", csv_rows, ["class", "decile", "images", "correct", "top1"])
    few = len(classes) <= 10
    header = ["decile", f"mean {field}", "images", "top-1 (all classes)"] + (list(classes) if few else [])
    lines = [[d + 1, report.fmt(checked["mean_value"][d], 3), int(checked["images"][d]),
              report.fmt(checked["top1"][d])] + ([report.fmt(checked["per_class"][k][d], 3)
                                                  for k in range(len(classes))] if few else [])
             for d in range(DECILES)]
    diff = checked["difference"]
    series = {"all classes": (list(range(1, DECILES + 1)), checked["top1"], [0.0] * DECILES)}
    if few:
        series.update({name: (list(range(1, DECILES + 1)), checked["per_class"][k], [0.0] * DECILES)
                       for k, name in enumerate(classes)})
    report.plot_series(out / "premise.png", {k: (x, [np.nan if v is None else v for v in y], e)
                                             for k, (x, y, e) in series.items()},
                       xlabel=f"{field} decile within the class (1 = smallest)", ylabel="test top-1",
                       title=f"test top-1 by {field} decile")
    return (head + f"Test images cut into {field} deciles within each class (1 = smallest); top-1 pooled over "
            f"{checked['runs']} runs' predictions.csv" + (f" ({checked['missing']} runs had none)" if checked["missing"]
                                                          else "") + "; per class in premise.csv and premise.png.\n\n"
            + report.markdown_rows(header, lines, "r" * len(header))
            + f"\nLowest minus highest decile: {report.format_estimate(diff)} (95% t-interval over "
            f"{checked['units']} training subsets, each the mean of its runs; a separate question, not in the "
            f"Holm family above): {_verdict(field, diff)}.\n")
