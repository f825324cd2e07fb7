"""``run-study pruning``: does the better of min-area and max-area pruning flip with data size?

The protocol of the viewpoint-dependence study: a fixed test set of whole models (grouped by
``model_id``, so no model has views on both sides; ``test_per_class`` views per class), the
rest is the training pool. For each per-class training size the pool is cut into disjoint
per-class subsets of that size (``splits`` of them, or as many as fit); each subset is pruned by
``fraction`` per class three ways: at random, the smallest ``field`` values (``min-area``) or the
largest (``max-area``). One ``train_classifier`` run per (size, split, strategy, seed) trains on
the pruned subset and is tested on the whole test set.

The split is the unit of replication: seeds within a split are averaged before any comparison.
The random arm draws afresh for every split and seed; ties in ``field`` are broken at random from
``study_seed``, which also fixes the test set and the splits. A size at which pruning removes
nothing is left out with a one-line warning. ``fdsl.studies.pruning_report`` writes the tables
and tests; ``fdsl.studies.premise`` checks that small areas are hard images. With
``field="visible_parts"`` on ``import-cub`` data and ``preset="cub"`` it is the CUB protocol
(give the test split as ``test_data``: it must not share an image with ``data``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.errors import FdslError
from fdsl.studies import data as study_data
from fdsl.studies import runner
from fdsl.studies.pruning_report import write_outputs

log = logging.getLogger(__name__)

RESERVED = ("train_indices", "val_indices")  # the study sets them for every run
_TAG_TEST, _TAG_SPLIT, _TAG_TIES, _TAG_RANDOM = 0x7E57, 0x5B17, 0x71E5, 0x7A4D
_CPU = {"workers": 0, "amp": False}

# Training settings per preset; sizes are per class (None = the whole pool, one split).
PRESETS: dict[str, dict[str, Any]] = {
    # The viewpoint study: torchvision's fine-tuning recipe, ResNet-18, step x0.1 every 7 epochs.
    "paper": dict(sizes=(250, 500, 1000, 2000), splits=None, test_per_class=1000, field="area",
                  recipe="finetune",
                  train=dict(model="resnet18", optimizer="sgd", lr=0.001, momentum=0.9, weight_decay=0.0,
                             batch_size=4, epochs=30, schedule="step",
                             step_at=[7 / 30, 14 / 30, 21 / 30, 28 / 30], gamma=0.1, image_size=224)),
    # Sized for power on a 2-core CPU in about 30 minutes: 4 sizes (doubling) x 10 splits x 3
    # strategies = 120 ResNet-18 runs at 32 px on the 9 procedural classes, rendered with
    # render-shapenet --models-per-class 48 --views 50 --image-size 64 (2200 pool views per class
    # after 4 whole test models; size 200 x 10 splits needs 2000). Every run writes predictions.csv
    # for the premise check; the figures of the error analysis are left out.
    "mini": dict(sizes=(25, 50, 100, 200), splits=10, test_per_class=200, field="area", recipe="finetune",
                 train=dict(model="resnet18", optimizer="sgd", lr=0.02, momentum=0.9, weight_decay=5e-4,
                            batch_size=32, epochs=6, schedule="cosine", image_size=32, analysis=False,
                            **_CPU)),
    # A few minutes on make demo's renders (9 classes x 3 models x 100 views, 128 px).
    "demo": dict(sizes=(30, 60), splits=2, test_per_class=100, field="area", recipe="finetune",
                 train=dict(model="resnet18", optimizer="sgd", lr=0.02, momentum=0.9, weight_decay=5e-4,
                            batch_size=32, epochs=3, schedule="cosine", image_size=32, **_CPU)),
    # CUB-200-2011 with visible_parts: ResNet-50, 10% removed per class from the whole train split.
    "cub": dict(sizes=(None,), splits=1, test_per_class=None, field="visible_parts", recipe="finetune",
                train=dict(model="resnet50", optimizer="sgd", lr=0.001, weight_decay=1e-4, momentum=0.9,
                           batch_size=64, epochs=95)),
}


def strategies(field: str) -> dict[str, str]:
    """Strategy name -> pruning mode of ``fdsl.datasets.read.pruning`` (random first: the baseline)."""
    return {"random": "random", f"min-{field}": "drop-smallest", f"max-{field}": "drop-largest"}


def _check_fields(folder: Path, field: str, group_by: str | None) -> str | None:
    """Refuse a missing ranking field; the grouping field if the data records it, else None."""
    known = study_data.metadata_fields(folder)
    if field not in known:
        what = "no area in the data (render it with render-shapenet)" if field == "area" else \
            f"unknown field {field!r}"
        raise FdslError(f"--field: {what}; {folder} records {', '.join(known) or 'no metadata'}")
    if group_by and group_by not in known:
        log.warning("%s records no %s: the test set is held out image by image", folder, group_by)
        group_by = None
    return group_by


def tie_broken_ranks(values: np.ndarray, seed: int) -> np.ndarray:
    """The rank of every value (0 = smallest), equal values ordered at random from ``seed``, so
    an integer field (CUB's visible_parts) does not prune by file order."""
    key = np.random.default_rng([seed, _TAG_TIES]).random(len(values))
    ranks = np.empty(len(values), np.int64)
    ranks[np.lexsort((key, values))] = np.arange(len(values))
    return ranks


def hold_out(labels: np.ndarray, groups: np.ndarray | None, per_class: int, seed: int,
             classes: Sequence[str]) -> np.ndarray:
    """Test rows: per class, whole groups (or images) in a seeded order until ``per_class`` views;
    every group of a chosen id goes to the test side."""
    test = np.zeros(len(labels), bool)
    for c in range(len(classes)):
        members = np.flatnonzero(labels == c)
        rng = np.random.default_rng([seed, _TAG_TEST, c])
        if groups is None:
            if per_class >= len(members):
                raise FdslError(f"--test-per-class {per_class}: class {classes[c]!r} has only "
                                f"{len(members)} images, none would be left for training")
            test[rng.permutation(members)[:per_class]] = True
            continue
        ids, counts = np.unique(groups[members], return_counts=True)
        order = rng.permutation(len(ids))
        taken = int(np.searchsorted(np.cumsum(counts[order]), per_class) + 1)
        if taken >= len(ids):
            raise FdslError(f"--test-per-class {per_class}: class {classes[c]!r} has {len(members)} "
                            f"views of {len(ids)} models, no whole model would be left for training")
        test |= np.isin(groups, ids[order[:taken]])
    return np.flatnonzero(test)


def split_pool(labels: np.ndarray, pool: np.ndarray, size: int | None, splits: int | None,
               seed: int, classes: Sequence[str]) -> list[np.ndarray]:
    """Disjoint subsets of ``pool`` with ``size`` rows per class (as many as fit, at most
    ``splits``); ``size`` None is the whole pool as one subset."""
    if size is None:
        return [np.sort(pool)]
    per_class = [pool[labels[pool] == c] for c in range(len(classes))]
    smallest = min(range(len(classes)), key=lambda c: len(per_class[c]))
    fit = len(per_class[smallest]) // size
    if fit == 0:
        raise FdslError(f"--sizes {size} is larger than the training pool: class {classes[smallest]!r} "
                        f"has {len(per_class[smallest])} training images after the test set")
    if splits and fit < splits:
        log.warning("size %d: only %d disjoint splits fit in the pool (asked for %d)", size, fit, splits)
    count = min(fit, splits) if splits else fit
    orders = [np.random.default_rng([seed, _TAG_SPLIT, size, c]).permutation(m) for c, m in enumerate(per_class)]
    return [np.sort(np.concatenate([o[k * size:(k + 1) * size] for o in orders])) for k in range(count)]


def pruned_away(counts: Sequence[int], fraction: float) -> int:
    """Images the pruning removes from the class that loses fewest (``fdsl.datasets.read.pruning``
    keeps round((1 - fraction) * n) of a class of n, rounding half to even)."""
    return min(int(n - np.round((1.0 - fraction) * n)) for n in counts)


def prune(labels: np.ndarray, ranks: np.ndarray, subset: np.ndarray, mode: str, fraction: float,
          seed: int) -> np.ndarray:
    """The rows of ``subset`` kept after removing ``fraction`` per class by ``mode`` (``ranks``:
    tie-broken ranks of the field, so min and max never depend on file order)."""
    from fdsl.datasets.read.pruning import select_per_class

    kept = select_per_class(labels[subset], None if mode == "random" else ranks[subset], mode=mode,
                            keep_fraction=1.0 - fraction, seed=seed)
    return subset[kept]


def _stream(*parts: int) -> int:
    """One 63-bit seed from several integers (the random arm's draw of one split and seed)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def plan_cells(labels: np.ndarray, ranks: np.ndarray, pool: np.ndarray, settings: Mapping[str, Any],
               fraction: float, study_seed: int, seeds: Sequence[int],
               classes: Sequence[str]) -> tuple[dict[tuple[Any, int, str, int], np.ndarray], list[str]]:
    """(size label, split, strategy, seed) -> the training rows of that run, and one line per
    size left out because pruning removes nothing there."""
    plan: dict[tuple[Any, int, str, int], np.ndarray] = {}
    left_out = []
    for size in settings["sizes"]:
        label = "all" if size is None else size
        subsets = split_pool(labels, pool, size, settings["splits"], study_seed, classes)
        counts = [int(np.sum(labels[subsets[0]] == c)) for c in range(len(classes))]
        if pruned_away(counts, fraction) == 0:
            n = min(counts)
            left_out.append(f"size {label}: removing {fraction:g} per class removes nothing from a class of "
                            f"{n} (round({1 - fraction:g} x {n}) = {int(np.round((1 - fraction) * n))} kept), "
                            "so the three strategies would be the same runs")
            log.warning("left out %s", left_out[-1])
            continue
        for k, subset in enumerate(subsets):
            for name, mode in strategies(settings["field"]).items():
                for seed in seeds:
                    draw = _stream(study_seed, _TAG_RANDOM, 0 if size is None else size, k, seed)
                    plan[label, k, name, seed] = prune(labels, ranks, subset, mode, fraction, seed=draw)
    if not plan:
        raise FdslError(f"--fraction {fraction:g} removes nothing at any size ({'; '.join(left_out)}); "
                        "use larger --sizes or a larger --fraction")
    return plan, left_out


def _settings(spec: Mapping[str, Any], sizes: Sequence[int | None] | None, splits: int | None,
              test_per_class: int | None, field: str | None) -> dict[str, Any]:
    resolved = {"sizes": list(sizes) if sizes else list(spec["sizes"]),
                "splits": splits if splits is not None else spec["splits"],
                "test_per_class": test_per_class if test_per_class is not None else spec["test_per_class"],
                "field": field or spec["field"]}
    if any(s is not None and s <= 0 for s in resolved["sizes"]):
        raise FdslError(f"--sizes must be positive, got {resolved['sizes']}")
    return resolved


def run_pruning_study(
    data: str | Path,
    out: str | Path,
    *,
    preset: str | Mapping[str, Any] = "mini",
    sizes: Sequence[int | None] | None = None,
    splits: int | None = None,
    fraction: float = 0.1,
    field: str | None = None,
    test_per_class: int | None = None,
    test_data: str | Path | None = None,
    group_by: str | None = "model_id",
    seeds: Sequence[int] = (0,),
    study_seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    finetune_from: str | Path | None = None,
    jobs: int = 1,
    backend: str = "local",
    threads: int | None = None,
    device: str = "auto",
    keep_checkpoints: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) a pruning study of the render/CUB data set folder ``data`` into ``out``.

    Args:
        preset: ``paper``, ``mini``, ``demo`` or ``cub`` (training settings and defaults), or a
            mapping with the same keys (``sizes``, ``splits``, ``test_per_class``, ``field``,
            ``recipe``, ``train``).
        sizes: per-class training sizes (None in the list: the whole pool); default the preset's.
        splits: at most this many disjoint subsets per size (None: as many as fit).
        fraction: share of each class removed by every strategy.
        field: numeric metadata field ranking the images (``area``, ``visible_parts``).
        test_per_class: test views per class, held out as whole ``group_by`` groups.
        test_data: a separate test folder (e.g. CUB's test split); then all of ``data`` is the
            pool. Refused when an image of it has the same pixels as one of ``data``.
        seeds: training seeds per subset (averaged within a split before any comparison).
        study_seed: fixes the test set, the splits, the tie-breaking of ``field`` and, with each
            training seed, the random arm's draw.
        overrides: ``train-classifier`` config fields for every run (``--set``).
        finetune_from: weights every run starts from: an fdsl checkpoint or a torchvision/timm
            ResNet weight file (``.pth``/``.safetensors``), as ``train-classifier`` reads it.
        jobs, backend: parallel runs on local processes, or Ray tasks (``backend="ray"``).
        keep_checkpoints: keep each finished run's checkpoint.pt and model.safetensors (by default only its summary,
            metrics, predictions and curves stay: a paper-size study has hundreds of runs).
        progress: False shows no progress bars or lines (``--quiet``).

    Returns:
        ``{"rows", "table", "comparisons", "trend", "verdict", "left_out", "premise", "seconds",
        "out"}``; table.md, results.csv, results.png, difference.png, premise.csv/.png and
        results.json are written into ``out``.
    """
    started = time.perf_counter()
    data, out = Path(data), Path(out)
    preset_name, spec = runner.resolve_preset(preset, PRESETS)
    settings = _settings(spec, sizes, splits, test_per_class, field)
    field = settings["field"]
    if not 0.0 < fraction < 1.0:
        raise FdslError(f"--fraction must be in (0, 1), got {fraction}")
    if not seeds:
        raise FdslError("give at least one seed")
    bad = sorted(set(overrides or {}) & set(RESERVED))
    if bad:
        raise FdslError(f"--set {bad[0]}: the study sets the training and test rows itself")
    if not (data / "manifest.json").is_file():
        raise FdslError(f"{data}: not a data set folder (no manifest.json)")
    if test_data is not None and not (Path(test_data) / "manifest.json").is_file():
        raise FdslError(f"--test-data {test_data}: not a data set folder (no manifest.json)")
    if finetune_from is not None:  # read now: a bad file must not leave a study behind
        from fdsl.train.checkpoint import load_checkpoint

        load_checkpoint(finetune_from)
    if settings["test_per_class"] is None and test_data is None:
        raise FdslError(f"preset {preset_name} tests on a separate split: give --test-data DIR (or --test-per-class)")
    group_by = _check_fields(data, field, None if test_data is not None else group_by)
    classes, cols = study_data.columns(data, (field, *([group_by] if group_by else [])))
    labels, values = cols["labels"], cols[field]
    if values.dtype.kind not in "iufb":
        raise FdslError(f"--field {field!r} is not numeric ({values.dtype})")
    if test_data is not None:
        study_data.refuse_overlap(data, test_data, progress=progress)
    train = {**spec["train"], **(overrides or {})}
    identity = {**settings, "preset": preset_name, "recipe": spec["recipe"], "fraction": fraction,
                "group_by": group_by, "seeds": list(seeds), "study_seed": study_seed, "train": train,
                "data": str(data.resolve()), "images": len(labels),
                "test_data": None if test_data is None else str(Path(test_data).resolve()),
                "finetune_from": None if finetune_from is None else str(Path(finetune_from).resolve())}
    # Every subset is drawn before the folder is touched, so bad sizes leave no study behind.
    test = (hold_out(labels, cols.get(group_by), settings["test_per_class"], study_seed, classes)
            if test_data is None else np.zeros(0, np.int64))
    pool = np.setdiff1d(np.arange(len(labels)), test)
    plan, left_out = plan_cells(labels, tie_broken_ranks(values, study_seed), pool, settings, fraction,
                                study_seed, seeds, classes)
    threads = runner.cell_threads(jobs, threads)
    with runner.study_folder(out, "pruning", identity, overwrite=overwrite):
        indices = out / runner.INDICES
        val_file = runner.write_indices(indices / "test.json", test) if test_data is None else ""
        cells = []
        for (label, k, name, seed), kept in plan.items():
            # min/max keep the same rows for every seed; the random arm has a draw per seed
            tag = f"-seed{seed}" if name == "random" else ""
            rows_file = runner.write_indices(indices / f"size{label}-split{k}-{name}{tag}.json", kept)
            cells.append(runner.Cell(
                out=str(out / runner.RUNS / f"size{label}-split{k}-{name}-seed{seed}"), data=str(data),
                recipe=spec["recipe"], val_data=None if test_data is None else str(test_data),
                row={"size": label, "split": k, "strategy": name, "seed": seed},
                overrides={**train, "seed": seed, "train_indices": rows_file, "val_indices": val_file},
                finetune_from=None if finetune_from is None else str(finetune_from), threads=threads,
                device=device, keep_checkpoint=keep_checkpoints))
        rows = runner.run_cells(cells, jobs=jobs, backend=backend, desc="pruning study", progress=progress)
        held = (f"{len(test)} images of whole {group_by} groups" if group_by else
                f"{len(test)} images held out one by one" if len(test) else f"all of {test_data}")
        result = write_outputs(out, rows, list(strategies(field)), settings, held, classes, left_out,
                               seeds=list(seeds), fraction=fraction, study_seed=study_seed)
        result["seconds"] = round(time.perf_counter() - started, 1)
        runner.write_json(out / "results.json", {k: v for k, v in result.items() if k != "table"})
    return result
