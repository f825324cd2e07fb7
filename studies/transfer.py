"""``run-study transfer``: does formula-driven pre-training help, and which data set helps most?

Each pre-training set (FractalDB, RCDB, ... shard folders) trains one model once. Every
downstream set (a shard folder, an ImageFolder tree, or the built-in ``digits``) is split once
into a fixed test set (``test_fraction`` per class) and a training part, from which each seed
draws ``train_per_class`` images per class (None: all). For each seed, every pre-trained model
is fine-tuned on that subset and a from-scratch model trains on the same subset with the same
settings, so arms differ only in their initial weights; all are tested on the same test set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.atomic import write_bytes_atomic
from fdsl.errors import FdslError
from fdsl.studies import common
from fdsl.studies.digits import import_digits

log = logging.getLogger(__name__)

SCRATCH = "scratch"
BUILT_IN = ("digits",)
_TAG_SUBSET = 0x5AB5
_CPU = {"workers": 0, "amp": False}
_FLAT = {"mean": [0.2, 0.2, 0.2], "std": [0.5, 0.5, 0.5], "hflip": 0.0}  # digits are not mirror-symmetric

PRESETS: dict[str, dict[str, Any]] = {
    # The FractalDB paper's recipes: ResNet-50 pre-training, then its fine-tuning recipe.
    "paper": dict(pretrain_recipe="fractaldb-resnet", pretrain=dict(model="resnet50"),
                  finetune_recipe="finetune", finetune=dict(model="resnet50"),
                  train_per_class=None, test_fraction=0.2),
    # Minutes on a 2-core CPU: ResNet-18 at 32 px, digits with 20 training images per class.
    "mini": dict(pretrain_recipe="fractaldb-resnet",
                 pretrain=dict(model="resnet18", epochs=6, batch_size=64, lr=0.05, schedule="cosine",
                               image_size=32, resize_ratio=1.15, val_fraction=0.0, **_CPU),
                 finetune_recipe="finetune",
                 finetune=dict(model="resnet18", epochs=12, batch_size=32, lr=0.01, schedule="cosine",
                               image_size=32, **_FLAT, **_CPU),
                 train_per_class=20, test_fraction=0.1),
    # Seconds, for the tests.
    "tiny": dict(pretrain_recipe="fractaldb-resnet",
                 pretrain=dict(model="resnet18", epochs=1, batch_size=16, lr=0.01, schedule="constant",
                               image_size=16, resize_ratio=1.0, val_fraction=0.0, **_CPU),
                 finetune_recipe="finetune",
                 finetune=dict(model="resnet18", epochs=1, batch_size=16, lr=0.01, schedule="constant",
                               image_size=16, resize_ratio=1.0, **_FLAT, **_CPU),
                 train_per_class=3, test_fraction=0.1),
}


def _downstream_labels(name: str, value: str, train: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
    """Labels and class names of a downstream set, read before anything is written."""
    if not value:
        if name not in BUILT_IN:
            raise FdslError(f"--downstream {name}: give NAME=DIR (built in: {', '.join(BUILT_IN)})")
        from fdsl.studies.digits import DigitsSource, digit_labels

        return digit_labels(), DigitsSource().class_names()
    if not Path(value).is_dir():
        raise FdslError(f"--downstream {name}: {value} is not a folder")
    from fdsl.train.data import open_data

    source = open_data(value, int(train.get("image_size", 224)), train.get("resize_ratio"))
    return source.labels, source.classes


def downstream_rows(labels: np.ndarray, classes: Sequence[str], test_fraction: float,
                    train_per_class: int | None, seeds: Sequence[int],
                    name: str) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The fixed test rows and, per seed, the training rows (``train_per_class`` per class)."""
    from fdsl.train.data import split_indices

    train, test = split_indices(labels, test_fraction, seed=0)
    if len(test) == 0:
        raise FdslError(f"--downstream {name}: the test fraction {test_fraction} holds out no image")
    subsets = {}
    for seed in seeds:
        if train_per_class is None:
            subsets[seed] = train
            continue
        picks = []
        for c in range(len(classes)):
            members = train[labels[train] == c]
            if len(members) < train_per_class:
                raise FdslError(f"--train-per-class {train_per_class}: class {classes[c]!r} of "
                                f"{name} has only {len(members)} training images")
            picks.append(np.random.default_rng([seed, _TAG_SUBSET, c]).permutation(members)[:train_per_class])
        subsets[seed] = np.sort(np.concatenate(picks))
    return test, subsets


def run_transfer_study(
    out: str | Path,
    *,
    pretrain: Mapping[str, str | Path],
    downstream: Mapping[str, str | Path],
    seeds: Sequence[int] = (0, 1, 2),
    preset: str = "mini",
    train_per_class: int | None = -1,
    test_fraction: float | None = None,
    pretrain_overrides: Mapping[str, Any] | None = None,
    finetune_overrides: Mapping[str, Any] | None = None,
    jobs: int = 1,
    backend: str = "local",
    threads: int | None = None,
    device: str = "auto",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run (or resume) a transfer study into ``out``.

    Args:
        pretrain: name -> shard folder of a pre-training set (each pre-trains one model), or
            ``gen:FOLDER``: a generated set made as the pre-training reads it.
        downstream: name -> shard folder or ImageFolder tree; ``""`` for a built-in (``digits``).
        seeds: fine-tuning seeds (each draws its own training subset, shared by all arms).
        preset: ``paper``, ``mini`` or ``tiny``.
        train_per_class: training images per class of each downstream set (None: all; -1: the
            preset's).
        test_fraction: share of each downstream class held out for testing (None: the preset's).
        pretrain_overrides, finetune_overrides: config fields for those runs (``--set``).

    Returns:
        ``{"rows": [...], "pretrain": [...], "table": str, "seconds": float, "out": str}``;
        table.md, results.csv and results.json are written into ``out``.
    """
    started = time.perf_counter()
    if preset not in PRESETS:
        raise FdslError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if not downstream:
        raise FdslError("give at least one --downstream set")
    if not seeds:
        raise FdslError("give at least one seed")
    if SCRATCH in pretrain:
        raise FdslError(f"--pretrain name {SCRATCH!r} is the from-scratch arm; choose another name")
    p = PRESETS[preset]
    train_per_class = p["train_per_class"] if train_per_class == -1 else train_per_class
    test_fraction = p["test_fraction"] if test_fraction is None else test_fraction
    if not 0.0 < test_fraction < 1.0:
        raise FdslError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    from fdsl.train.dataarg import absolute_data, data_root

    for name, folder in pretrain.items():
        if not folder or not data_root(folder).is_dir():
            raise FdslError(f"--pretrain {name}: give NAME=DIR (or NAME=gen:DIR) with an existing folder, "
                            f"got {folder!r}")
    out = Path(out)
    pre_train = {**p["pretrain"], **(pretrain_overrides or {})}
    fine_train = {**p["finetune"], **(finetune_overrides or {})}
    identity = {"preset": preset, "seeds": list(seeds), "train_per_class": train_per_class,
                "test_fraction": test_fraction, "pretrain_train": pre_train, "finetune_train": fine_train,
                "pretrain": {k: str(absolute_data(v)) for k, v in pretrain.items()},
                "downstream": {k: str(Path(v).resolve()) if v else f"built-in {k}" for k, v in downstream.items()}}
    splits = {}
    for down, value in downstream.items():  # bad sets and sizes fail before the folder is touched
        labels, classes = _downstream_labels(down, str(value), fine_train)
        splits[down] = downstream_rows(labels, classes, test_fraction, train_per_class, seeds, down)
    threads = common.cell_threads(jobs, threads)
    with common.study_folder(out, "transfer", identity, overwrite=overwrite):
        pre_cells = [common.Cell(out=str(out / common.RUNS / f"pretrain-{name}"), data=str(folder),
                                 recipe=p["pretrain_recipe"], row={"pretrain": name},
                                 overrides={**pre_train}, threads=threads, device=device)
                     for name, folder in pretrain.items()]
        cells = []
        for down, value in downstream.items():
            folder = value or import_digits(out / f"digits-{fine_train.get('image_size', 224)}px",
                                            image_size=int(fine_train.get("image_size", 224)))
            cells += _downstream_cells(out, down, str(folder), *splits[down], list(pretrain), seeds,
                                       p["finetune_recipe"], fine_train, threads, device)
        pre_rows = common.run_cells(pre_cells, jobs=jobs, backend=backend, desc="pre-training")
        rows = common.run_cells(cells, jobs=jobs, backend=backend, desc="fine-tuning")
        result = write_outputs(out, rows, pre_rows, [SCRATCH, *pretrain], list(downstream), train_per_class)
        result["seconds"] = round(time.perf_counter() - started, 1)
        common.write_json(out / "results.json", {k: v for k, v in result.items() if k != "table"})
    return result


def _downstream_cells(out: Path, down: str, folder: str, test: np.ndarray, subsets: Mapping[int, np.ndarray],
                      pretrain: list[str], seeds: Sequence[int], recipe: str, train: Mapping[str, Any],
                      threads: int | None, device: str) -> list[common.Cell]:
    test_file = common.write_indices(out / common.INDICES / f"{down}-test.json", test)
    cells = []
    for seed in seeds:
        train_file = common.write_indices(out / common.INDICES / f"{down}-train-seed{seed}.json", subsets[seed])
        for arm in [SCRATCH, *pretrain]:
            start = None if arm == SCRATCH else str(out / common.RUNS / f"pretrain-{arm}" / "checkpoint.pt")
            cells.append(common.Cell(
                out=str(out / common.RUNS / down / f"{arm}-seed{seed}"), data=folder, recipe=recipe,
                row={"downstream": down, "arm": arm, "seed": seed},
                overrides={**train, "seed": seed, "train_indices": train_file, "val_indices": test_file},
                finetune_from=start, threads=threads, device=device, keep_checkpoint=False))
    return cells


def write_outputs(out: Path, rows: list[dict[str, Any]], pre_rows: list[dict[str, Any]],
                  arms: list[str], downs: list[str], train_per_class: int | None) -> dict[str, Any]:
    """table.md (arms x downstream sets, mean ± std of top-1, paired gaps to scratch), results.csv."""
    common.write_csv(out / "results.csv", rows, ["downstream", "arm", "seed", "top1", "train_images",
                                                 "val_images", "epochs", "seconds", "run"])
    top1 = {(r["arm"], r["downstream"], r["seed"]): r["top1"] for r in rows}
    cell = {(a, d): common.format_mean_std([v for (x, y, _), v in top1.items() if x == a and y == d])
            for a in arms for d in downs}
    notes = []
    for d in downs:
        seeds = sorted({s for (_, y, s) in top1 if y == d})
        for a in arms[1:]:
            diff = common.paired_difference([top1[(a, d, s)] for s in seeds], [top1[(SCRATCH, d, s)] for s in seeds])
            notes.append(f"- {d}: " + common.describe_difference(a, SCRATCH, diff))
    pre = [f"- {r['pretrain']}: {r['train_images']} images, {r['epochs']} epochs, {r['seconds']:.0f} s"
           for r in pre_rows]
    subset = "all training images" if train_per_class is None else f"{train_per_class} training images per class"
    table = (f"# Transfer study: top-1 on each downstream test set\n\n"
             f"Fine-tuned from each pre-trained model, or trained from scratch with the same settings, on "
             f"{subset} (one subset per seed, shared by all arms). Mean ± std over seeds.\n\n"
             + common.markdown_table("arm \\ downstream", arms, downs, cell)
             + "\nPaired difference against scratch (same seed and subset), t-based 95% interval:\n\n"
             + "\n".join(notes) + "\n\nPre-training runs:\n\n" + "\n".join(pre) + "\n")
    write_bytes_atomic(out / "table.md", table.encode())
    return {"rows": rows, "pretrain": pre_rows, "table": table, "out": str(out)}
