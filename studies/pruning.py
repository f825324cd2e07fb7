"""``run-study pruning``: data pruning per class by a recorded field, against random pruning.

The protocol of the viewpoint-dependence study: a fixed test set of whole models (grouped by
``model_id``, so no model has views on both sides; ``test_per_class`` views per class), the
rest is the training pool. For each per-class training size the pool is cut into disjoint
per-class subsets of that size (as many as fit, or ``splits``); each subset is pruned by 10% per
class three ways: at random, the smallest ``field`` values (``min-area``) or the largest
(``max-area``). One ``train_classifier`` run per (size, split, strategy, seed) trains on the
pruned subset and is tested on the whole test set. With ``field="visible_parts"`` on
``import-cub`` data and ``preset="cub"`` it is the CUB protocol (give the test split as
``test_data``).
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

log = logging.getLogger(__name__)

RESERVED = ("train_indices", "val_indices")  # the study sets them for every run
_TAG_TEST, _TAG_SPLIT = 0x7E57, 0x5B17
_CPU = {"workers": 0, "amp": False}

# Training settings per preset; sizes are per class (None = the whole pool, one split).
PRESETS: dict[str, dict[str, Any]] = {
    # The viewpoint study: torchvision's fine-tuning recipe, ResNet-18, step x0.1 every 7 epochs.
    "paper": dict(sizes=(250, 500, 1000, 2000), splits=None, test_per_class=1000, field="area",
                  recipe="finetune",
                  train=dict(model="resnet18", optimizer="sgd", lr=0.001, momentum=0.9, weight_decay=0.0,
                             batch_size=4, epochs=30, schedule="step",
                             step_at=[7 / 30, 14 / 30, 21 / 30, 28 / 30], gamma=0.1, image_size=224)),
    # Minutes on a 2-core CPU: ResNet-18 at 32 px on a procedural render set (e.g. 9 classes x 12
    # models x 100 views at 64 px: render-shapenet --models-per-class 12 --views 100 --image-size 64).
    "mini": dict(sizes=(20, 60), splits=3, test_per_class=100, field="area", recipe="finetune",
                 train=dict(model="resnet18", optimizer="sgd", lr=0.02, momentum=0.9, weight_decay=5e-4,
                            batch_size=32, epochs=6, schedule="cosine", image_size=32, **_CPU)),
    # A few minutes on make demo's renders (9 classes x 3 models x 100 views, 128 px).
    "demo": dict(sizes=(30, 60), splits=2, test_per_class=100, field="area", recipe="finetune",
                 train=dict(model="resnet18", optimizer="sgd", lr=0.02, momentum=0.9, weight_decay=5e-4,
                            batch_size=32, epochs=3, schedule="cosine", image_size=32, **_CPU)),
    # Seconds, for the tests.
    "tiny": dict(sizes=(4, 8), splits=2, test_per_class=4, field="area", recipe="finetune",
                 train=dict(model="resnet18", optimizer="sgd", lr=0.01, batch_size=16, epochs=1,
                            schedule="constant", image_size=16, resize_ratio=1.0, **_CPU)),
    # CUB-200-2011 with visible_parts: ResNet-50, 10% removed per class from the whole train split.
    "cub": dict(sizes=(None,), splits=1, test_per_class=None, field="visible_parts", recipe="finetune",
                train=dict(model="resnet50", optimizer="sgd", lr=0.001, weight_decay=1e-4, momentum=0.9,
                           batch_size=64, epochs=95)),
}


def strategies(field: str) -> dict[str, str]:
    """Strategy name -> pruning mode of ``fdsl.datasets.read.pruning`` (random first: the baseline)."""
    return {"random": "random", f"min-{field}": "drop-smallest", f"max-{field}": "drop-largest"}


def _columns(folder: Path, fields: Sequence[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Class names and the labels plus ``fields`` of every row (in the loaders' row order)."""
    from fdsl.datasets.format import open_dataset

    with open_dataset(folder) as reader:
        if not len(reader):
            raise FdslError(f"{folder}: the data set holds no images")
        return list(reader.classes), {"labels": reader.labels, **reader.metadata(fields)}


def _check_fields(folder: Path, field: str, group_by: str | None) -> str | None:
    """Refuse a missing ranking field; the grouping field if the data records it, else None."""
    from fdsl.datasets.format import read_manifest

    known = read_manifest(folder).get("metadata_fields") or {}
    if field not in known:
        what = "no area in the data (render it with render-shapenet)" if field == "area" else \
            f"unknown field {field!r}"
        raise FdslError(f"--field: {what}; {folder} records {', '.join(sorted(known)) or 'no metadata'}")
    if group_by and group_by not in known:
        log.warning("%s records no %s: the test set is held out image by image", folder, group_by)
        group_by = None
    return group_by


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
    count = min(fit, splits) if splits else fit
    orders = [np.random.default_rng([seed, _TAG_SPLIT, size, c]).permutation(m) for c, m in enumerate(per_class)]
    return [np.sort(np.concatenate([o[k * size:(k + 1) * size] for o in orders])) for k in range(count)]


def prune(labels: np.ndarray, values: np.ndarray, subset: np.ndarray, mode: str, fraction: float,
          seed: int) -> np.ndarray:
    """The rows of ``subset`` kept after removing ``fraction`` per class by ``mode``."""
    from fdsl.datasets.read.pruning import select_per_class

    kept = select_per_class(labels[subset], None if mode == "random" else values[subset], mode=mode,
                            keep_fraction=1.0 - fraction, seed=seed)
    return subset[kept]


def _settings(preset: str, sizes: Sequence[int | None] | None, splits: int | None,
              test_per_class: int | None, field: str | None) -> dict[str, Any]:
    if preset not in PRESETS:
        raise FdslError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    resolved = {"sizes": list(sizes) if sizes else list(p["sizes"]),
                "splits": splits if splits is not None else p["splits"],
                "test_per_class": test_per_class if test_per_class is not None else p["test_per_class"],
                "field": field or p["field"]}
    if any(s is not None and s <= 0 for s in resolved["sizes"]):
        raise FdslError(f"--sizes must be positive, got {resolved['sizes']}")
    return resolved


def run_pruning_study(
    data: str | Path,
    out: str | Path,
    *,
    preset: str = "mini",
    sizes: Sequence[int | None] | None = None,
    splits: int | None = None,
    fraction: float = 0.1,
    field: str | None = None,
    test_per_class: int | None = None,
    test_data: str | Path | None = None,
    group_by: str | None = "model_id",
    seeds: Sequence[int] = (0,),
    overrides: Mapping[str, Any] | None = None,
    finetune_from: str | Path | None = None,
    jobs: int = 1,
    backend: str = "local",
    threads: int | None = None,
    device: str = "auto",
    keep_checkpoints: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run (or resume) a pruning study of the render/CUB shard folder ``data`` into ``out``.

    Args:
        preset: ``paper``, ``mini``, ``demo``, ``tiny`` or ``cub`` (training settings and defaults).
        sizes: per-class training sizes (None in the list: the whole pool); default the preset's.
        splits: at most this many disjoint subsets per size (None: as many as fit).
        fraction: share of each class removed by every strategy.
        field: numeric metadata field ranking the images (``area``, ``visible_parts``).
        test_per_class: test views per class, held out as whole ``group_by`` groups.
        test_data: a separate test folder (e.g. CUB's test split); then all of ``data`` is the pool.
        seeds: training seeds per subset (the split and pruning draws use the first).
        overrides: ``train-classifier`` config fields for every run (``--set``).
        finetune_from: pre-trained checkpoint every run starts from.
        jobs, backend: parallel runs on local processes, or Ray tasks (``backend="ray"``).
        keep_checkpoints: keep each finished run's checkpoint.pt (by default only its summary,
            metrics and curves stay: a paper-size study has hundreds of runs).

    Returns:
        ``{"rows": [...], "table": str, "significance": [...], "seconds": float, "out": str}``;
        table.md, results.csv, results.png and results.json are written into ``out``.
    """
    started = time.perf_counter()
    data, out = Path(data), Path(out)
    settings = _settings(preset, sizes, splits, test_per_class, field)
    field = settings["field"]
    if not 0.0 < fraction < 1.0:
        raise FdslError(f"--fraction must be in (0, 1), got {fraction}")
    if not seeds:
        raise FdslError("give at least one seed")
    bad = sorted(set(overrides or {}) & set(RESERVED))
    if bad:
        raise FdslError(f"--set {bad[0]}: the study sets the training and test rows itself")
    if not (data / "manifest.json").is_file():
        raise FdslError(f"{data}: not a shard folder (no manifest.json)")
    if test_data is not None and not (Path(test_data) / "manifest.json").is_file():
        raise FdslError(f"--test-data {test_data}: not a shard folder (no manifest.json)")
    if finetune_from is not None:  # read now: a bad file must not leave a study behind
        from fdsl.train.checkpoint import load_checkpoint

        load_checkpoint(finetune_from)
    if settings["test_per_class"] is None and test_data is None:
        raise FdslError(f"preset {preset} tests on a separate split: give --test-data DIR (or --test-per-class)")
    group_by = _check_fields(data, field, None if test_data is not None else group_by)
    classes, cols = _columns(data, (field, *([group_by] if group_by else [])))
    labels, values = cols["labels"], cols[field]
    if values.dtype.kind not in "iufb":
        raise FdslError(f"--field {field!r} is not numeric ({values.dtype})")
    train = {**PRESETS[preset]["train"], **(overrides or {})}
    identity = {**settings, "preset": preset, "fraction": fraction, "group_by": group_by,
                "seeds": list(seeds), "train": train, "data": str(data.resolve()), "images": len(labels),
                "test_data": None if test_data is None else str(Path(test_data).resolve()),
                "finetune_from": None if finetune_from is None else str(Path(finetune_from).resolve())}
    # Every subset is drawn before the folder is touched, so bad sizes leave no study behind.
    test = (hold_out(labels, cols.get(group_by), settings["test_per_class"], seeds[0], classes)
            if test_data is None else np.zeros(0, np.int64))
    plan = _plan(labels, values, np.setdiff1d(np.arange(len(labels)), test), settings, fraction, seeds[0], classes)
    threads = common.cell_threads(jobs, threads)
    with common.study_folder(out, "pruning", identity, overwrite=overwrite):
        val_file = common.write_indices(out / common.INDICES / "test.json", test) if test_data is None else ""
        cells = []
        for (label, k, name), kept in plan.items():
            rows_file = common.write_indices(out / common.INDICES / f"size{label}-split{k}-{name}.json", kept)
            cells += [common.Cell(
                out=str(out / common.RUNS / f"size{label}-split{k}-{name}-seed{seed}"), data=str(data),
                recipe=PRESETS[preset]["recipe"], val_data=None if test_data is None else str(test_data),
                row={"size": label, "split": k, "strategy": name, "seed": seed},
                overrides={**train, "seed": seed, "train_indices": rows_file, "val_indices": val_file},
                finetune_from=None if finetune_from is None else str(finetune_from), threads=threads,
                device=device, keep_checkpoint=keep_checkpoints) for seed in seeds]
        rows = common.run_cells(cells, jobs=jobs, backend=backend, desc="pruning study")
        held = (f"{len(test)} images of whole {group_by} groups" if group_by else
                f"{len(test)} images held out one by one" if len(test) else f"all of {test_data}")
        result = write_outputs(out, rows, list(strategies(field)), settings, held, classes)
        result["seconds"] = round(time.perf_counter() - started, 1)
        common.write_json(out / "results.json", {k: v for k, v in result.items() if k != "table"})
    return result


def _plan(labels: np.ndarray, values: np.ndarray, pool: np.ndarray, settings: Mapping[str, Any],
          fraction: float, seed: int, classes: Sequence[str]) -> dict[tuple[Any, int, str], np.ndarray]:
    """(size label, split, strategy) -> the training rows of that cell."""
    plan = {}
    for size in settings["sizes"]:
        for k, subset in enumerate(split_pool(labels, pool, size, settings["splits"], seed, classes)):
            for name, mode in strategies(settings["field"]).items():
                plan["all" if size is None else size, k, name] = prune(labels, values, subset, mode, fraction,
                                                                       seed=seed * 1_000_003 + k)
    return plan


def write_outputs(out: Path, rows: list[dict[str, Any]], names: list[str], settings: Mapping[str, Any],
                  test: str, classes: Sequence[str]) -> dict[str, Any]:
    """table.md (strategies x sizes, mean ± std of top-1, significance notes), results.csv and
    results.png from the runs' rows."""
    sizes = ["all" if s is None else s for s in settings["sizes"]]
    common.write_csv(out / "results.csv", rows, ["size", "split", "strategy", "seed", "top1",
                                                 "train_images", "epochs", "seconds", "run"])
    top1 = {(r["strategy"], r["size"], r["split"], r["seed"]): r["top1"] for r in rows}
    cell = {(n, str(s)): common.format_mean_std([v for (a, b, _, _), v in top1.items() if a == n and b == s])
            for n in names for s in sizes}
    notes, significance = [], []
    for s in sizes:
        pairs = sorted({(k, seed) for (_, b, k, seed) in top1 if b == s})
        for name in names[1:]:
            diff = common.paired_difference([top1[(name, s, *p)] for p in pairs],
                                            [top1[(names[0], s, *p)] for p in pairs])
            significance.append({"size": s, "strategy": name, "baseline": names[0], **diff})
            notes.append(f"- size {s}: " + common.describe_difference(name, names[0], diff))
    splits = {s: len({k for (_, b, k, _) in top1 if b == s}) for s in sizes}
    table = (f"# Pruning study: top-1 by per-class training size\n\n"
             f"{len(classes)} classes; {settings['field']} ranks the images; each strategy removes the same "
             f"share per class; test set: {test}, never pruned. Mean ± "
             f"std over splits and seeds (splits per size: "
             f"{', '.join(f'{s}: {n}' for s, n in splits.items())}).\n\n"
             + common.markdown_table("strategy \\ size", names, [str(s) for s in sizes], cell)
             + "\nPaired difference against random (same split and seed), t-based 95% interval:\n\n"
             + "\n".join(notes) + "\n")
    write_bytes_atomic(out / "table.md", table.encode())
    series = {}
    for n in names:
        stats = [common.mean_std([v for (a, b, _, _), v in top1.items() if a == n and b == s]) for s in sizes]
        series[n] = (sizes, [m for m, _ in stats], [d for _, d in stats])
    common.plot_series(out / "results.png", series, xlabel="training images per class",
                       ylabel="top-1 on the test set", title=f"pruning by {settings['field']}")
    return {"rows": rows, "table": table, "significance": significance, "out": str(out)}
