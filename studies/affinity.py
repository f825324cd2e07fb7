"""The Affinity and Diversity study (Gontijo-Lopes et al. 2020) and its cheap estimate.

Definitions (``fdsl.studies.statistics``):

- Affinity: the clean-trained model's accuracy on the augmented validation set minus its
  accuracy on the clean validation set.
- Diversity: the final-epoch training loss of the model trained with the augmentation over that
  of the model trained without it.
- fdsl score (fdsl's own heuristic, not Gontijo-Lopes'): augmented / clean validation accuracy
  of the clean model times diversity, one number to rank candidates by.

Each is measured twice: as defined, from the fully trained models, and as a short-run estimate
(a clean model and one run per candidate trained for ``short_epochs``), which is the point of
the exercise: picking augmentations at a fraction of the cost. The study reports how well each
metric, with the training steps it cost, predicts the final test top-1 (Spearman over the
candidates, ``none`` left out, with a percentile bootstrap interval), against the baseline the
metric must beat: the validation top-1 of the same short runs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.studies import report, runner, statistics

log = logging.getLogger(__name__)

RESAMPLES = 2000
# metric key -> (label in the tables, what its steps are made of)
METRICS = {
    "affinity_short": ("affinity (short clean run)", "the short clean run"),
    "diversity_short": ("diversity (short runs)", "the short clean run and every candidate's short run"),
    "score_short": ("fdsl score (short runs)", "the short clean run and every candidate's short run"),
    "val_top1_short": ("validation top-1 after the short run (baseline)", "every candidate's short run"),
    "affinity": ("affinity (fully trained clean model)", "the full clean run"),
    "diversity": ("diversity (full runs)", "every full run (as costly as the answer)"),
}
BASELINE = "val_top1_short"


def chance_bound(classes: int, images: int) -> float:
    """Chance accuracy (1 / classes) plus two binomial standard errors over ``images``."""
    chance = 1.0 / classes
    return chance + 2.0 * math.sqrt(chance * (1.0 - chance) / max(images, 1))


def above_chance(accuracy: float, classes: int, images: int) -> bool:
    """Whether ``accuracy`` on ``images`` held-out images of ``classes`` balanced classes lies
    above ``chance_bound``: a short run below it has not learned yet, and metrics measured on it
    carry no signal."""
    return accuracy > chance_bound(classes, images)


def chance_warning(accuracy: float, classes: int, images: int, short_epochs: int) -> str | None:
    """The table's warning when the clean short run is not above chance (``above_chance``)."""
    if above_chance(accuracy, classes, images):
        return None
    return (f"**Warning**: the clean short run is at chance on validation ({accuracy:.4f}; chance "
            f"{1.0 / classes:.4f}, two standard errors above it {chance_bound(classes, images):.4f} over "
            f"{images} images): after "
            f"{short_epochs} short epoch(s) the models have not learned yet, so the short-run metrics carry "
            f"no signal here. Lengthen the short runs (`--short-epochs`).")


def slug(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9.+_-]", "-", name)


def measure_affinity(run: str | Path, data: str | Path, val_idx: np.ndarray,
                     candidates: Mapping[str, Mapping[str, Any]], *, device: str = "cpu",
                     seed: int = 0, repeats: int = 2) -> tuple[float, dict[str, float]]:
    """The clean model of ``run`` on the validation rows ``val_idx``: (clean accuracy, {candidate:
    accuracy on the augmented rows}), each candidate's ``repeats`` random draws averaged.

    A mixed image counts by its soft label: a prediction of class c scores target[c].
    """
    import torch

    from fdsl.train.augment import DeviceAugment, base_side
    from fdsl.train.checkpoint import load_checkpoint
    from fdsl.train.data import open_data
    from fdsl.train.models import build_model
    from fdsl.train.recipes import SAVED_FIELDS, TrainConfig

    run = Path(run)
    config = TrainConfig(**json.loads((run / "config.json").read_text())[SAVED_FIELDS])
    source = open_data(data, config.image_size, config.resize_ratio)
    dev = torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
    model = build_model(config.model, len(source.classes), config.image_size)
    model.load_state_dict(load_checkpoint(run / "checkpoint.pt")["model"])
    model.to(dev).eval()
    base = base_side(config, source.native_side) if source.kind == "shards" else source.native_side
    loader = source.loader(val_idx, batch_size=config.batch_size, shuffle=False, workers=0, seed=seed)

    def accuracy(fields: Mapping[str, Any] | None, draws: int) -> float:
        aug = DeviceAugment(dataclasses.replace(config, **(fields or {})), len(source.classes), base, dev)
        torch.manual_seed(seed)
        score, count = 0.0, 0
        with torch.no_grad():
            for _ in range(draws):
                for images, labels in loader:
                    x, labels = aug.prepare(images.to(dev)), labels.to(dev)
                    inputs, target = aug.augment(x, labels) if fields is not None else (
                        aug.plain(x), torch.eye(len(source.classes), device=dev)[labels])
                    pred = model(inputs).argmax(1)
                    score += float(target.gather(1, pred[:, None]).sum())
                    count += len(labels)
        return score / max(count, 1)

    clean = accuracy(None, 1)
    return clean, {name: accuracy(fields, repeats) for name, fields in candidates.items()}


def _steps(summary_row: Mapping[str, Any], batch_size: int) -> int:
    return runner.training_steps(summary_row["train_images"], batch_size, summary_row["epochs"])


def _diversity(aug_run: str | Path, clean_run: str | Path) -> float | None:
    return statistics.diversity(runner.read_metrics(aug_run), runner.read_metrics(clean_run))


def affinity_study(out: Path, cell: Callable[..., runner.Cell], run: Callable[[list[runner.Cell]], list[dict]],
                   built: Sequence[Any], seeds: Sequence[int], top: int | None, spec: Mapping[str, Any],
                   sets: Mapping[str, np.ndarray], data: str, device: str, batch_size: int) -> dict[str, Any]:
    """Short runs, affinity, the ``top`` candidates' full runs (every seed), then the metrics'
    rank correlations with final test top-1; returns rows, table and correlations."""
    names = ["none", *(c.name for c in built)]
    fields = {"none": {}, **{c.name: c.fields for c in built}}
    short = {"epochs": spec["short_epochs"], "seed": seeds[0], "analysis": False}
    runs = runs_dir = out / runner.RUNS
    def row(name: str, phase: str, seed: int) -> dict[str, Any]:
        return {"candidate": name, "phase": phase, "seed": seed, "evaluated_on": "val" if phase == "short" else "test"}

    # measure_affinity reloads the two clean models below: they keep their weights
    first = [cell(f"full/none/seed{seeds[0]}", {"seed": seeds[0]}, "test", row("none", "full", seeds[0]), keep=True)]
    first += [cell(f"short/{slug(n)}", {**fields[n], **short}, "val", row(n, "short", seeds[0]), keep=n == "none")
              for n in names]
    done = dict(zip([c.out for c in first], run(first), strict=True))
    short_rows = {n: done[str(runs / "short" / slug(n))] for n in names}
    measure = dict(device="cpu" if device == "cpu" else "auto", seed=seeds[0])
    clean_full, aug_full = measure_affinity(runs / "full" / "none" / f"seed{seeds[0]}", data, sets["val"],
                                            {c.name: c.fields for c in built}, **measure)
    clean_short, aug_short = measure_affinity(runs / "short" / "none", data, sets["val"],
                                              {c.name: c.fields for c in built}, **measure)
    rows = []
    for n in names:
        aug_s, aug_f = aug_short.get(n, clean_short), aug_full.get(n, clean_full)
        div_s = _diversity(runs / "short" / slug(n), runs / "short" / "none")
        rows.append({"candidate": n, "affinity": statistics.affinity(clean_full, aug_f),
                     "affinity_short": statistics.affinity(clean_short, aug_s), "diversity_short": div_s,
                     "score_short": aug_s / clean_short * div_s if clean_short > 0 and div_s is not None else None,
                     "val_top1_short": short_rows[n]["top1"], "short_steps": _steps(short_rows[n], batch_size),
                     "clean_val_accuracy": clean_full, "augmented_val_accuracy": aug_f})
    ranked = sorted(rows[1:], key=lambda r: -(r["score_short"] if r["score_short"] is not None else -np.inf))
    chosen = {r["candidate"] for r in (ranked if top is None else ranked[:top])} | {"none"}
    full = [cell(f"full/{slug(n)}/seed{s}", {**fields[n], "seed": s}, "test", row(n, "full", s))
            for n in names if n in chosen for s in seeds]
    summaries = dict(zip([c.out for c in full], run(full), strict=True))
    for row in rows:
        n = row["candidate"]
        folders = [runs / "full" / slug(n) / f"seed{s}" for s in seeds] if n in chosen else []
        tops = [summaries[str(f)]["top1"] for f in folders]
        row["test_top1"], row["test_top1_std"] = (statistics.mean_std(tops) if tops else (None, None))
        divs = [_diversity(f, runs / "full" / "none" / f"seed{s}") for f, s in zip(folders, seeds, strict=False)]
        row["diversity"] = float(np.mean(divs)) if divs and None not in divs else None
        row["full_steps"] = sum(_steps(summaries[str(f)], batch_size) for f in folders)
        row["trained_seeds"] = len(folders)
    correlations = predictors(rows, seeds[0])
    report.plot_scatter(out / "scatter.png", [r for r in rows if r["diversity_short"] is not None],
                        x="affinity_short", y="diversity_short", colour="test_top1", label="candidate",
                        xlabel="affinity, short run (augmented - clean validation accuracy)",
                        ylabel="diversity, short runs (final-epoch loss ratio)", colour_label="final test top-1",
                        title="Affinity and Diversity")
    costs = _costs(rows)
    runs = [{**r, "steps": _steps(r, batch_size)} for r in [*short_rows.values(), *summaries.values()]]
    classes = (runner.read_summary(runs_dir / "short" / "none") or {}).get("num_classes")
    warning = chance_warning(clean_short, classes, len(sets["val"]), spec["short_epochs"]) if classes else None
    if warning:
        log.warning("augment study: the clean short run is at chance (%.4f); lengthen --short-epochs", clean_short)
    return {"rows": rows, "runs": runs, "correlations": correlations, "spearman": correlations["score_short"]["rho"],
            "short_run_at_chance": warning is not None,
            "table": _table(rows, ranked, correlations, costs, spec, len(seeds), clean_full, clean_short, warning)}


def predictors(rows: Sequence[Mapping[str, Any]], seed: int) -> dict[str, dict[str, Any]]:
    """Per metric: Spearman with final test top-1 over the trained candidates (``none`` left
    out), its bootstrap interval, and the paired bootstrap interval of its rho minus the
    baseline's, at a Bonferroni level over the metrics compared with the baseline."""
    trained = [r for r in rows if r["candidate"] != "none" and r["test_top1"] is not None]
    top1 = np.array([r["test_top1"] for r in trained], float)
    compared = [m for m in METRICS if m != BASELINE]
    level = 1 - 0.05 / len(compared)
    out = {}
    for metric in METRICS:
        usable = [k for k, r in enumerate(trained) if r[metric] is not None and r[BASELINE] is not None]
        x = np.array([trained[k][metric] for k in usable], float)
        base = np.array([trained[k][BASELINE] for k in usable], float)
        y = top1[usable]
        out[metric] = statistics.spearman_bootstrap(x, y, resamples=RESAMPLES, seed=seed)
        if metric != BASELINE and len(usable) >= 3:
            def gain(idx: np.ndarray, x: np.ndarray = x, y: np.ndarray = y, base: np.ndarray = base) -> float | None:
                a, b = statistics.spearman(list(x[idx]), list(y[idx])), statistics.spearman(list(base[idx]), list(y[idx]))
                return None if a is None or b is None else a - b
            out[metric]["versus_baseline"] = statistics.bootstrap_interval(len(usable), gain, resamples=RESAMPLES,
                                                                           seed=seed, level=level)
            out[metric]["versus_level"] = level
    return out


def _costs(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    clean_short = rows[0]["short_steps"]
    candidates_short = sum(r["short_steps"] for r in rows[1:])
    return {"affinity_short": clean_short, "diversity_short": clean_short + candidates_short,
            "score_short": clean_short + candidates_short, "val_top1_short": candidates_short,
            "affinity": rows[0]["full_steps"] // max(rows[0]["trained_seeds"], 1),
            "diversity": sum(r["full_steps"] for r in rows)}


def _beats(c: Mapping[str, Any]) -> str:
    vs = c.get("versus_baseline")
    if not vs or vs["low"] is None:
        return "not testable"
    if vs["low"] > 0:
        return "yes"
    return "no, worse" if vs["high"] < 0 else "not resolved"


def _table(rows: Sequence[Mapping[str, Any]], ranked: Sequence[Mapping[str, Any]],
           corr: Mapping[str, Mapping[str, Any]], costs: Mapping[str, int], spec: Mapping[str, Any],
           seeds: int, clean_full: float, clean_short: float, warning: str | None = None) -> str:
    f = report.fmt
    cand = [[r["candidate"], f(r["affinity"], 3), f(r["diversity"], 3), f(r["affinity_short"], 3),
             f(r["diversity_short"], 3), f(r["score_short"], 3), f(r["val_top1_short"]), r["short_steps"],
             "not trained" if r["test_top1"] is None else
             f(r["test_top1"]) + (f" ± {r['test_top1_std']:.4f}" if seeds > 1 else "")]
            for r in [rows[0], *ranked]]
    n = corr[BASELINE]["n"]
    pred = [[label, costs[m], f"{f(corr[m]['rho'], 3)} [{f(corr[m]['low'], 3)}, {f(corr[m]['high'], 3)}]",
             "-" if m == BASELINE else report.format_estimate(
                 {"mean": None if corr[m]["rho"] is None or corr[BASELINE]["rho"] is None else
                  corr[m]["rho"] - corr[BASELINE]["rho"], **{k: corr[m].get("versus_baseline", {}).get(k)
                                                              for k in ("low", "high")}}, 3),
             "-" if m == BASELINE else _beats(corr[m])]
            for m, (label, _) in METRICS.items()]
    best = [METRICS[m][0] for m in METRICS if m != BASELINE and _beats(corr[m]) == "yes"]
    level = corr["affinity"].get("versus_level", 1 - 0.05 / (len(METRICS) - 1))
    return (
        "**Claim** (Gontijo-Lopes et al. 2020): affinity and diversity together predict which augmentations "
        "raise test accuracy; fdsl's use: short-run estimates of them pick augmentations at a fraction of "
        "the cost of training each one.\n\n"
        f"**Test**: Spearman's rank correlation of each metric with the final test top-1 over the {n} fully "
        f"trained candidates (`none` left out), 95% percentile bootstrap interval over candidates "
        f"({RESAMPLES} resamples); each metric against the baseline, validation top-1 after the same short "
        f"run: the paired bootstrap interval of the difference in rho at the Bonferroni level "
        f"{level:.4f} over the {len(METRICS) - 1} metrics compared.\n\n"
        f"## Verdict\n\n"
        + (f"Better predictors than the short-run validation top-1: {', '.join(best)}.\n\n" if best else
           "No metric predicts the final test top-1 better than the short-run validation top-1 does "
           "(no interval of the difference lies above 0).\n\n")
        + (f"{warning}\n\n" if warning else "")
        + "## Candidates\n\n"
        + report.markdown_rows(["candidate", "affinity", "diversity", "affinity (short)", "diversity (short)",
                                "fdsl score (short)", "val top-1 (short)", "short-run steps", "test top-1"],
                               cand, "lrrrrrrrr")
        + f"\nAffinity = augmented - clean validation accuracy of the clean model (clean: {clean_full:.4f} fully "
        f"trained, {clean_short:.4f} after the short run); diversity = final-epoch training loss with the "
        f"augmentation / without; fdsl score = augmented / clean validation accuracy x diversity (fdsl's own, "
        f"not Gontijo-Lopes'). Short runs: {spec['short_epochs']} epochs. Candidates in order of the fdsl "
        "score, which `--top` uses.\n\n"
        "## Which metric predicts final test top-1?\n\n"
        + report.markdown_rows(["metric", "training steps", "Spearman rho [95% CI]",
                                "rho - baseline [Bonferroni CI]", "beats the baseline?"], pred, "lrrrl")
        + "\nTraining steps: optimiser steps the metric cost ("
        + "; ".join(f"{METRICS[m][0]}: {why}" for m, (_, why) in METRICS.items()) + ").\n")
