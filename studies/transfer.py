"""``run-study transfer``: does formula-driven pre-training help, and which data set helps most?

Each pre-training set (FractalDB, RCDB, LineDB, ... data set folders; the contour-study arms
are just more of them) trains one model per pre-training seed. Every downstream set (a data set
folder, an ImageFolder tree, or the built-in ``digits``) is split once into a fixed test set
(``test_fraction`` per class) and a training part, from which each fine-tuning seed draws
``train_per_class`` images per class (None: all). For each fine-tuning seed, every pre-trained
model is fine-tuned on that subset and a from-scratch model trains on the same subset with the
same settings, so arms differ only in their initial weights; all are tested on the same test set.

Fine-tuning (and the scratch arm) normalise with the pre-training recipe's mean and std. A
downstream set that is not mirror-symmetric (its manifest config says ``"mirror_symmetric":
false``, as the digits do, or it is named in ``not_mirror_symmetric``) trains without
horizontal flips.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.errors import FdslError
from fdsl.studies import runner
from fdsl.studies.digits import import_digits
from fdsl.studies.transfer_report import write_outputs

log = logging.getLogger(__name__)

SCRATCH = "scratch"
BUILT_IN = ("digits",)
_TAG_SUBSET = 0x5AB5
_CPU = {"workers": 0, "amp": False}

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
                               image_size=32, **_CPU),
                 train_per_class=20, test_fraction=0.1),
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


def _mirror_symmetric(name: str, value: str, declared_not: set[str]) -> bool:
    """False for a set named in ``not_mirror_symmetric`` or declared so by its manifest."""
    if name in declared_not:
        return False
    if not value:
        from fdsl.studies.digits import DigitsSource

        return DigitsSource().config().get("mirror_symmetric", True) is not False
    from fdsl.train.symmetry import declared_not_mirror_symmetric

    return not declared_not_mirror_symmetric(value)


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


def _normalisation(recipe: str, pre_train: Mapping[str, Any]) -> dict[str, Any]:
    """The pre-training recipe's mean and std (fine-tuning must see the inputs the same way)."""
    from fdsl.train.recipes import resolve_config

    config = resolve_config(recipe, sets=pre_train)
    return {"mean": list(config.mean), "std": list(config.std)}


def run_transfer_study(
    out: str | Path,
    *,
    pretrain: Mapping[str, str | Path],
    downstream: Mapping[str, str | Path],
    seeds: Sequence[int] = (0, 1, 2),
    pretrain_seeds: Sequence[int] = (0, 1),
    preset: str | Mapping[str, Any] = "mini",
    train_per_class: int | None = -1,
    test_fraction: float | None = None,
    pretrain_overrides: Mapping[str, Any] | None = None,
    finetune_overrides: Mapping[str, Any] | None = None,
    not_mirror_symmetric: Sequence[str] = (),
    jobs: int = 1,
    backend: str = "local",
    threads: int | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) a transfer study into ``out``.

    Args:
        pretrain: name -> data set folder of a pre-training set, or ``gen:FOLDER``: a generated
            set made as the pre-training reads it (the contour-study arms, e.g. LineDB and its
            ``--shuffle-counts`` control, RCDB with ``--broken-fraction``, FractalDB with few
            ``--points``, are further entries).
        downstream: name -> data set folder or ImageFolder tree; ``""`` for a built-in (``digits``).
        seeds: fine-tuning seeds (each draws its own training subset, shared by all arms).
        pretrain_seeds: every pre-training set trains once per seed (two by default, so that
            the spread and the intervals cover pre-training variation); each pre-trained model is
            fine-tuned with every fine-tuning seed.
        preset: ``paper`` or ``mini``, or a mapping with the same keys.
        train_per_class: training images per class of each downstream set (None: all; -1: the
            preset's).
        test_fraction: share of each downstream class held out for testing (None: the preset's).
        pretrain_overrides, finetune_overrides: config fields for those runs (``--set``).
        not_mirror_symmetric: downstream names that train without horizontal flips (sets whose
            manifest declares ``"mirror_symmetric": false`` need not be named).
        progress: False shows no progress bars or lines (``--quiet``).

    Returns:
        ``{"rows", "pretrain", "comparisons", "table", "seconds", "out"}``; table.md,
        results.csv and results.json are written into ``out``.
    """
    started = time.perf_counter()
    preset_name, p = runner.resolve_preset(preset, PRESETS)
    if not downstream:
        raise FdslError("give at least one --downstream set")
    if not seeds or not pretrain_seeds:
        raise FdslError("give at least one seed and one pre-training seed")
    if SCRATCH in pretrain:
        raise FdslError(f"--pretrain name {SCRATCH!r} is the from-scratch arm; choose another name")
    unknown = sorted(set(not_mirror_symmetric) - set(downstream))
    if unknown:
        raise FdslError(f"--not-mirror-symmetric {unknown[0]}: no --downstream set of that name")
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
    fine_train = {**p["finetune"], **_normalisation(p["pretrain_recipe"], pre_train), **(finetune_overrides or {})}
    flips = {name: _mirror_symmetric(name, str(value), set(not_mirror_symmetric))
             for name, value in downstream.items()}
    identity = {"preset": preset_name, "seeds": list(seeds), "pretrain_seeds": list(pretrain_seeds),
                "train_per_class": train_per_class, "test_fraction": test_fraction,
                "pretrain_recipe": p["pretrain_recipe"], "finetune_recipe": p["finetune_recipe"],
                "pretrain_train": pre_train, "finetune_train": fine_train,
                "pretrain": {k: str(absolute_data(v)) for k, v in pretrain.items()},
                "downstream": {k: str(Path(v).resolve()) if v else f"built-in {k}" for k, v in downstream.items()},
                "mirror_symmetric": flips}
    splits = {}
    for down, value in downstream.items():  # bad sets and sizes fail before the folder is touched
        labels, classes = _downstream_labels(down, str(value), fine_train)
        splits[down] = downstream_rows(labels, classes, test_fraction, train_per_class, seeds, down)
    threads = runner.cell_threads(jobs, threads)
    with runner.study_folder(out, "transfer", identity, overwrite=overwrite):
        pre_cells = [runner.Cell(out=str(out / runner.RUNS / f"pretrain-{name}-seed{ps}"), data=str(folder),
                                 recipe=p["pretrain_recipe"], row={"pretrain": name, "pretrain_seed": ps},
                                 overrides={**pre_train, "seed": ps}, threads=threads, device=device)
                     for name, folder in pretrain.items() for ps in pretrain_seeds]
        cells = []
        for down, value in downstream.items():
            folder = value or import_digits(out / f"digits-{fine_train.get('image_size', 224)}px",
                                            image_size=int(fine_train.get("image_size", 224)), progress=progress)
            train = {**fine_train, **({} if flips[down] else {"hflip": 0.0})}
            cells += _downstream_cells(out, down, str(folder), *splits[down], list(pretrain), seeds,
                                       pretrain_seeds, p["finetune_recipe"], train, threads, device)
        pre_rows = runner.run_cells(pre_cells, jobs=jobs, backend=backend, desc="pre-training", progress=progress)
        rows = runner.run_cells(cells, jobs=jobs, backend=backend, desc="fine-tuning", progress=progress)
        result = write_outputs(out, rows, pre_rows, [SCRATCH, *pretrain], list(downstream), train_per_class,
                               flips=flips, normalisation=_normalisation(p["pretrain_recipe"], pre_train))
        result["seconds"] = round(time.perf_counter() - started, 1)
        runner.write_json(out / "results.json", {k: v for k, v in result.items() if k != "table"})
    return result


def _downstream_cells(out: Path, down: str, folder: str, test: np.ndarray, subsets: Mapping[int, np.ndarray],
                      pretrain: list[str], seeds: Sequence[int], pretrain_seeds: Sequence[int], recipe: str,
                      train: Mapping[str, Any], threads: int | None, device: str) -> list[runner.Cell]:
    test_file = runner.write_indices(out / runner.INDICES / f"{down}-test.json", test)
    cells = []
    for seed in seeds:
        train_file = runner.write_indices(out / runner.INDICES / f"{down}-train-seed{seed}.json", subsets[seed])
        arms = [(SCRATCH, None)] + [(arm, ps) for arm in pretrain for ps in pretrain_seeds]
        for arm, ps in arms:
            start = None if ps is None else str(out / runner.RUNS / f"pretrain-{arm}-seed{ps}" / "checkpoint.pt")
            cells.append(runner.Cell(
                out=str(out / runner.RUNS / down / (f"{arm}-seed{seed}" if ps is None else f"{arm}-pre{ps}-seed{seed}")),
                data=folder, recipe=recipe,
                row={"downstream": down, "arm": arm, "pretrain_seed": "" if ps is None else ps, "seed": seed},
                overrides={**train, "seed": seed, "train_indices": train_file, "val_indices": test_file},
                finetune_from=start, threads=threads, device=device, keep_checkpoint=False))
    return cells
