"""``run-study augment``: which augmentation helps, predicted without training a model per candidate.

The Affinity and Diversity protocol (Gontijo-Lopes et al. 2020), in the study folder ``out``:

1. a fixed held-out split of the data (``split/train.json``, ``split/val.json``) shared by all runs;
2. a clean model, trained without augmentation (``runs/full/none/seed<S>``);
3. affinity: the clean model's held-out accuracy with the candidate over its clean accuracy;
4. diversity: a short run's final training loss with the candidate over without it
   (``runs/short/<candidate>``, one schedule for all);
5. each candidate (or the ``top`` K by affinity x diversity) trained fully (``runs/full/...``);
6. Spearman's rank correlation between affinity x diversity and final top-1.

With ``self_paced=True`` the candidates form one policy, and the arms none / all / threshold /
ratio of self-paced augmentation (Takase et al. 2021) are compared over seeds. Every cell is an
ordinary ``train-classifier`` run folder; re-running resumes (finished runs are kept).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.atomic import write_bytes_atomic
from fdsl.errors import FdslError
from fdsl.studies.common import Cell, cell_threads, run_cells, study_folder, write_csv

log = logging.getLogger(__name__)

# Presets: the recipe, the config fields of every run, the short-run length and the held-out share.
PRESETS: dict[str, dict[str, Any]] = {
    # ResNet-18 at 16 px: a 10-class x 100-image FractalDB study in minutes on 2 CPU cores.
    "mini": {"recipe": "fractaldb-resnet", "short_epochs": 2, "val_fraction": 0.2,
             "fields": dict(model="resnet18", image_size=16, resize_ratio=1.0, batch_size=64, workers=0,
                            epochs=8, lr=0.02, warmup_epochs=0.5, weight_decay=5e-4, schedule="cosine")},
    "tiny": {"recipe": "fractaldb-resnet", "short_epochs": 1, "val_fraction": 0.25,
             "fields": dict(model="resnet18", image_size=16, resize_ratio=1.0, batch_size=16,  # tests
                            epochs=2, lr=0.05, schedule="cosine", workers=0, analysis=False)},
}
SELF_PACED_ARMS = ("none", "all", "threshold", "ratio")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]", "-", name)


def _metrics(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- affinity


def measure_affinity(run: str | Path, data: str | Path, val_idx: np.ndarray,
                     candidates: Mapping[str, Mapping[str, Any]], *, device: str = "cpu",
                     seed: int = 0, repeats: int = 2) -> tuple[float, dict[str, float]]:
    """The clean model of ``run`` on the held-out rows ``val_idx``: (clean accuracy, {candidate:
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


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None below 3 points or for a constant."""
    if len(x) < 3:
        return None

    def ranks(values: Sequence[float]) -> np.ndarray:
        v = np.asarray(values, dtype=float)
        r = np.empty(len(v))
        r[np.argsort(v, kind="stable")] = np.arange(len(v), dtype=float)
        for value in np.unique(v):
            r[v == value] = r[v == value].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


# ---------------------------------------------------------------- study folder


def _held_out(data: str, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The study's fixed (train, held-out) rows of ``data``; FdslError before any file is written."""
    from fdsl.train.data import open_data, split_indices

    train_idx, val_idx = split_indices(open_data(data, 32, 1.0).labels, val_fraction, 0)
    if len(val_idx) == 0 or len(train_idx) == 0:
        raise FdslError(f"{data}: too few images to hold out {val_fraction:.0%} per class")
    return train_idx, val_idx


def _split(out: Path, train_idx: np.ndarray, val_idx: np.ndarray) -> tuple[str, str, np.ndarray]:
    """The held-out split as index files in the study folder (the same rows for every run and seed)."""
    folder = out / "split"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in (("train", train_idx), ("val", val_idx)):
        write_bytes_atomic(folder / f"{name}.json", json.dumps(rows.tolist()).encode())
        paths.append(str((folder / f"{name}.json").resolve()))
    return paths[0], paths[1], val_idx


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None where there are too few values)."""
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def _scatter(rows: list[dict[str, Any]]) -> bytes:
    from fdsl.train.figures import figure_png, pyplot

    fig, ax = pyplot().subplots(figsize=(6, 5))
    trained = [r for r in rows if r["top1"] is not None]
    others = [r for r in rows if r["top1"] is None]
    points = ax.scatter([r["affinity"] for r in trained], [r["diversity"] for r in trained],
                        c=[r["top1"] for r in trained], cmap="viridis", s=60, edgecolors="k")
    if trained:
        fig.colorbar(points, ax=ax, label="final top-1")
    if others:
        ax.scatter([r["affinity"] for r in others], [r["diversity"] for r in others], s=60,
                   facecolors="none", edgecolors="grey", label="not trained fully")
        ax.legend()
    for r in rows:
        ax.annotate(r["candidate"], (r["affinity"], r["diversity"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set(xlabel="affinity (augmented / clean held-out accuracy)",
           ylabel="diversity (training loss with / without)", title="Affinity and Diversity")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


# ---------------------------------------------------------------- the public function


def run_augment_study(data: str | Path, out: str | Path, *, candidates: Sequence[str],
                      top: int | None = None, self_paced: bool = False, seeds: Sequence[int] = (0,),
                      preset: str = "mini", overrides: Mapping[str, Any] | None = None,
                      jobs: int = 1, overwrite: bool = False, threshold: float = 1.0,
                      ratio: float = 0.5, device: str = "auto", backend: str = "local",
                      threads: int | None = None) -> dict[str, Any]:
    """Run the augmentation study on ``data`` into ``out``; return its results.

    Args:
        data: shard folder or ImageFolder tree.
        out: study folder (``study.json``, ``split/``, ``runs/``, ``table.md``, ``results.csv``,
            and ``scatter.png`` for the Affinity/Diversity study).
        candidates: augmentation names with optional strength, pairs joined by ``+``
            (``fdsl.train.augment.build_candidate``): ``["flip", "erasing:0.5", "flip+mixup"]``.
        top: train only the K candidates of highest affinity x diversity fully (None: all).
        self_paced: compare none / all / threshold / ratio self-paced arms instead, with the
            candidates joined into one policy.
        seeds: training seeds of the full runs (the split stays fixed).
        preset: ``mini`` or ``tiny`` (see ``PRESETS``).
        overrides: config fields for every run (after the preset; augmentation fields set here
            become part of the clean baseline).
        jobs: cells trained in parallel on local processes.
        overwrite: restart a study folder made with other settings.
        threshold, ratio: the self-paced arms' loss threshold and batch share.
        device: ``auto``, ``cpu`` or ``cuda``.
        backend, threads: where cells run (``local`` processes or ``ray``) and torch threads per
            run, as in every study (``fdsl.studies.common.run_cells``).

    Returns:
        ``{"rows": [...], "spearman": rho or None, "seconds": ..., ...}`` (also ``table.md``).
    """
    from fdsl.train.augment import CLEAN_FIELDS, build_candidate
    from fdsl.train.recipes import resolve_config

    if preset not in PRESETS:
        raise FdslError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    built = [build_candidate(spec) for spec in candidates]
    names = [c.name for c in built]
    if not built or len(set(names)) != len(names) or "none" in names:
        raise FdslError("--candidates needs distinct augmentations (the clean baseline 'none' is always run)")
    if top is not None and top < 1:
        raise FdslError(f"--top must be at least 1, got {top}")
    if not seeds:
        raise FdslError("--seeds needs at least one seed")
    started = time.perf_counter()
    spec = PRESETS[preset]
    data, out = str(Path(data).resolve()), Path(out)
    study = {"kind": "augment", "data": data, "candidates": names, "top": top,
             "self_paced": self_paced, "seeds": list(seeds), "preset": preset,
             "overrides": dict(overrides or {}),
             **({"threshold": threshold, "ratio": ratio} if self_paced else {})}
    rows = _held_out(data, spec["val_fraction"])  # bad data is refused before the folder exists
    with study_folder(out, "augment", study, overwrite=overwrite):
        train_rows, val_rows, val_idx = _split(out, *rows)
        base = {**spec["fields"], **CLEAN_FIELDS, **(overrides or {})}
        split = {"train_indices": train_rows, "val_indices": val_rows}

        def cell(folder: str, fields: Mapping[str, Any]) -> Cell:
            merged = {**base, **fields, **split}
            resolve_config(spec["recipe"], sets=merged)  # a bad field fails here, before training
            return Cell(out=str(out / "runs" / folder), data=data, recipe=spec["recipe"], row={},
                        overrides=merged, threads=cell_threads(jobs, threads), device=device)

        def run(cells: list[Cell]) -> list[dict[str, Any]]:
            return run_cells(cells, jobs=jobs, backend=backend, desc="augment study")

        if self_paced:
            policy = {k: v for c in built for k, v in c.fields.items()}
            result = _self_paced_study(cell, run, policy, seeds, threshold, ratio)
        else:
            result = _affinity_study(out, cell, run, built, seeds, top, spec, val_idx, data, device)
        result["seconds"] = round(time.perf_counter() - started, 1)
        table = result["table"]
        write_bytes_atomic(out / "table.md", (
            f"# Augmentation study ({'self-paced arms' if self_paced else 'affinity and diversity'})\n\n"
            f"data `{data}`, preset `{preset}`, seeds {list(seeds)}, "
            f"{result['seconds']:.0f} s\n\n{table}").encode())
        write_csv(out / "results.csv", result["rows"], columns=list(result["rows"][0]))
    log.info("augment study done in %.0f s: %s", result["seconds"], out / "table.md")
    return result


def _affinity_study(out: Path, cell: Any, run: Any, built: list[Any], seeds: Sequence[int],
                    top: int | None, spec: Mapping[str, Any], val_idx: np.ndarray, data: str,
                    device: str) -> dict[str, Any]:
    short = {"epochs": spec["short_epochs"], "seed": seeds[0], "analysis": False}
    first = [cell(f"full/none/seed{seeds[0]}", {"seed": seeds[0]}), cell("short/none", short)]
    first += [cell(f"short/{_slug(c.name)}", {**c.fields, **short}) for c in built]
    run(first)
    losses = {name: _metrics(out / "runs" / "short" / name)[-1]["train_loss"]
              for name in ["none", *(_slug(c.name) for c in built)]}
    clean_acc, aug_acc = measure_affinity(out / "runs" / "full" / "none" / f"seed{seeds[0]}", data,
                                          val_idx, {c.name: c.fields for c in built},
                                          device="cpu" if device == "cpu" else "auto", seed=seeds[0])
    rows = [{"candidate": "none", "affinity": 1.0, "diversity": 1.0,
             "clean_accuracy": clean_acc, "augmented_accuracy": clean_acc,
             "short_train_loss": losses["none"]}]
    for c in built:
        rows.append({"candidate": c.name,
                     "affinity": aug_acc[c.name] / clean_acc if clean_acc > 0 else None,
                     "diversity": losses[_slug(c.name)] / losses["none"] if losses["none"] > 0 else None,
                     "clean_accuracy": clean_acc, "augmented_accuracy": aug_acc[c.name],
                     "short_train_loss": losses[_slug(c.name)]})
    for row in rows:
        a, d = row["affinity"], row["diversity"]
        row["score"] = a * d if a is not None and d is not None else None
    ranked = sorted(rows[1:], key=lambda r: -(r["score"] if r["score"] is not None else -np.inf))
    chosen = {r["candidate"] for r in (ranked if top is None else ranked[:top])} | {"none"}
    fields = {"none": {}, **{c.name: c.fields for c in built}}
    full = [cell(f"full/{_slug(name)}/seed{s}", {**fields[name], "seed": s})
            for name in fields if name in chosen for s in seeds]
    summaries = dict(zip([c.out for c in full], run(full), strict=True))
    for row in rows:
        tops = [summaries[str(out / "runs" / "full" / _slug(row["candidate"]) / f"seed{s}")]["top1"]
                for s in seeds] if row["candidate"] in chosen else []
        row["top1"], row["top1_std"] = _mean_std([t for t in tops if t is not None])
        row["trained_seeds"] = len(tops)
    scored = [r for r in rows if r["top1"] is not None and r["score"] is not None]
    rho = spearman([r["score"] for r in scored], [r["top1"] for r in scored])
    write_bytes_atomic(out / "scatter.png", _scatter([r for r in rows if r["score"] is not None]))
    lines = ["| candidate | affinity | diversity | affinity x diversity | top-1 |",
             "|---|---:|---:|---:|---:|"]
    for r in [rows[0], *ranked]:
        top1 = "not trained" if r["top1"] is None else (
            f"{r['top1']:.4f}" + (f" ± {r['top1_std']:.4f}" if len(seeds) > 1 else ""))
        lines.append(f"| {r['candidate']} | {_fmt(r['affinity'], 3)} | {_fmt(r['diversity'], 3)} | "
                     f"{_fmt(r['score'], 3)} | {top1} |")
    lines += ["", f"Spearman rank correlation of affinity x diversity with final top-1: {_fmt(rho, 3)} "
              f"over {len(scored)} trained rows (clean baseline included). Clean model's held-out "
              f"accuracy {clean_acc:.4f}; short runs of {spec['short_epochs']} epochs."]
    return {"rows": rows, "spearman": rho, "table": "\n".join(lines) + "\n"}


def _self_paced_study(cell: Any, run: Any, policy: Mapping[str, Any], seeds: Sequence[int],
                      threshold: float, ratio: float) -> dict[str, Any]:
    arms = {"none": {}, "all": dict(policy),
            "threshold": {**policy, "self_paced_threshold": threshold},
            "ratio": {**policy, "self_paced_ratio": ratio}}
    cells = [cell(f"{arm}/seed{s}", {**fields, "seed": s}) for arm, fields in arms.items() for s in seeds]
    summaries = run(cells)
    rows = []
    for done, summary in zip(cells, summaries, strict=True):
        folder = done.out
        metrics = _metrics(Path(folder))
        shares = [m.get("aug_fraction", m.get("augmented_fraction")) for m in metrics]
        shares = [s for s in shares if s is not None]
        rows.append({"arm": Path(folder).parent.name, "seed": int(Path(folder).name[4:]),
                     "top1": summary["top1"], "aug_fraction": float(np.mean(shares)) if shares else None,
                     "final_train_loss": metrics[-1]["train_loss"], "seconds": summary.get("seconds")})
    rows = [{**r, "aug_fraction": 0.0 if r["arm"] == "none" else r["aug_fraction"]} for r in rows]
    lines = [f"| arm | top-1 (mean ± std over {len(seeds)} seeds) | augmented share | seconds per run |",
             "|---|---:|---:|---:|"]
    for arm in SELF_PACED_ARMS:
        mine = [r for r in rows if r["arm"] == arm]
        mean, std = _mean_std([r["top1"] for r in mine if r["top1"] is not None])
        share = [r["aug_fraction"] for r in mine if r["aug_fraction"] is not None]
        label = {"threshold": f"threshold {threshold:g}", "ratio": f"ratio {ratio:g}"}.get(arm, arm)
        lines.append(f"| {label} | {_fmt(mean)} ± {_fmt(std)} | {_fmt(np.mean(share) if share else None, 3)} "
                     f"| {np.mean([r['seconds'] or 0 for r in mine]):.0f} |")
    policy_text = ", ".join(f"{k}={v}" for k, v in policy.items())
    return {"rows": rows, "table": "\n".join(lines) + f"\n\nPolicy: {policy_text}.\n"}
