"""Stage 3 of a run: the data and its splits.

Which rows of the data train and which are held out (index files, the automatic stratified split
by image or by group), per-class pruning of the training rows, and the loaders of each side.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.errors import FdslError
from fdsl.train import data as data_mod
from fdsl.train.distributed import Dist
from fdsl.train.recipes import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class Splits:
    """The opened data and the rows of each side (sorted int64 positions)."""

    train_src: data_mod.DataSource
    train_idx: np.ndarray
    val_src: data_mod.DataSource
    val_idx: np.ndarray


def read_indices(path: str | Path, field: str, size: int) -> np.ndarray:
    """Row indices from a ``.npy`` array or a ``.json`` list of ints, checked against ``size`` rows:
    sorted int64, no repeats. FdslError (one line) naming ``field`` and the file otherwise."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False)
            ok = values.ndim == 1 and (values.dtype.kind in "iu" or values.size == 0)
        elif path.suffix == ".json":
            values = json.loads(path.read_text())
            ok = isinstance(values, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                                  for v in values)
        else:
            raise FdslError(f"{field} {path}: expected a .npy or .json file of row indices")
    except FileNotFoundError:
        raise FdslError(f"{field} file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise FdslError(f"{field} {path}: cannot read it ({str(exc).splitlines()[0]})") from None
    if not ok:
        raise FdslError(f"{field} {path}: expected a flat list of integer row indices")
    rows = np.asarray(values, dtype=np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= size):
        bad = int(rows[(rows < 0) | (rows >= size)][0])
        raise FdslError(f"{field} {path}: index {bad} is out of range for {size} images")
    rows = np.sort(rows)
    if np.any(rows[1:] == rows[:-1]):
        raise FdslError(f"{field} {path}: index {int(rows[1:][rows[1:] == rows[:-1]][0])} is listed twice")
    return rows


def _groups(source: data_mod.DataSource, field: str) -> np.ndarray:
    metadata = getattr(source.dataset, "metadata", {})
    if field not in metadata:
        raise FdslError(f"--split-by {field!r}: {source.path} records "
                        f"{', '.join(sorted(metadata)) or 'no metadata'}")
    return np.asarray(metadata[field])


def open_splits(data: str | Path, val_data: str | Path | None, config: TrainConfig) -> Splits:
    """Open ``data`` (and ``val_data``), choose the rows of each side and prune the training rows.

    ``train_indices`` are the training rows of ``data``. The held-out rows are ``val_indices``
    (of ``val_data`` if given, else of ``data``; no overlap with the training rows), else all of
    ``val_data``. Index files turn the automatic split off: ``train_indices`` alone leaves no
    held-out set. Without any, a stratified ``val_fraction`` of ``data`` is held out. Then
    ``config.prune`` thins the training rows per class (``pruned``).
    """
    splits = _choose_rows(data, val_data, config)
    splits.train_idx = pruned(splits.train_src, splits.train_idx, config)
    if len(splits.train_idx) == 0:
        raise FdslError(f"{data}: no training images left after holding out the validation split")
    return splits


def _choose_rows(data: str | Path, val_data: str | Path | None, config: TrainConfig) -> Splits:
    train_src = data_mod.open_data(data, config.image_size, config.resize_ratio)
    size = len(train_src.labels)
    rows = read_indices(config.train_indices, "train_indices", size) if config.train_indices else None
    if val_data is not None:
        val_src = data_mod.open_data(val_data, config.image_size, config.resize_ratio)
        if val_src.classes != train_src.classes:
            raise FdslError(f"--val-data {val_data} has other classes than {data}")
        val_idx = (read_indices(config.val_indices, "val_indices", len(val_src.labels))
                   if config.val_indices else np.arange(len(val_src.labels)))
        return Splits(train_src, np.arange(size) if rows is None else rows, val_src, val_idx)
    if config.val_indices:
        val_idx = read_indices(config.val_indices, "val_indices", size)
        if rows is None:
            return Splits(train_src, np.setdiff1d(np.arange(size), val_idx), train_src, val_idx)
        shared = np.intersect1d(rows, val_idx)
        if len(shared):
            raise FdslError(f"train_indices and val_indices share {len(shared)} rows of {data} "
                            f"(first: {int(shared[0])})")
        return Splits(train_src, rows, train_src, val_idx)
    if rows is not None:
        log.info("train_indices without val_indices: no held-out set")
        return Splits(train_src, rows, train_src, np.zeros(0, np.int64))
    groups = _groups(train_src, config.split_by) if config.split_by else None
    train_idx, val_idx = data_mod.split_indices(train_src.labels, config.val_fraction, config.seed,
                                                groups)
    return Splits(train_src, train_idx, train_src, val_idx)


def pruned(source: Any, train_idx: np.ndarray, config: TrainConfig) -> np.ndarray:
    """The training positions kept by ``config.prune`` (per class, ranked by ``prune_field``)."""
    if config.prune == "none":
        return train_idx
    from fdsl.datasets.read.pruning import select_per_class

    values = None
    if config.prune != "random":
        metadata = getattr(source.dataset, "metadata", {})
        if config.prune_field not in metadata:
            raise FdslError(f"--prune-field {config.prune_field!r}: {source.path} records "
                            f"{', '.join(sorted(metadata)) or 'no metadata'}")
        values = metadata[config.prune_field][train_idx]
    kept = select_per_class(source.labels[train_idx], values, mode=config.prune,
                            keep_fraction=config.keep_fraction, seed=config.seed)
    log.info("pruning (%s%s): kept %d of %d training images", config.prune,
             f" by {config.prune_field}" if values is not None else "", len(kept), len(train_idx))
    return train_idx[kept]


def make_loaders(splits: Splits, config: TrainConfig, ctx: Dist,
                 device: Any = None) -> tuple[Any, Any | None]:
    """This rank's (training loader, held-out loader or None). ``config.batch_size`` is global.

    Training batches are shuffled per epoch and split over the ranks; for evaluation each rank
    reads its own disjoint slice of the held-out rows (no padding), and the sums are all-reduced.
    Generated data (``gen:FOLDER``) is made on ``device`` when it is CUDA, each rank making only its
    own rows; with ``fresh_instances`` training draws new instances every epoch, the held-out rows
    stay the data set's own images.
    """
    per_rank = config.batch_size // ctx.world_size
    train_idx, val_idx = splits.train_idx, splits.val_idx
    made = {"device": device, "fresh_instances": config.fresh_instances}
    if config.aug_repeats:
        from fdsl.train.repeat_sampler import repeated_loader

        train = repeated_loader(splits.train_src, train_idx, repeats=config.aug_repeats,
                                batch_size=per_rank, workers=config.workers, seed=config.seed,
                                rank=ctx.rank, world_size=ctx.world_size, **made)
    else:
        train = splits.train_src.loader(train_idx, batch_size=per_rank, shuffle=True,
                                        workers=config.workers, seed=config.seed, rank=ctx.rank,
                                        world_size=ctx.world_size,
                                        drop_last=len(train_idx) > config.batch_size, **made)
    val = (splits.val_src.loader(val_idx[ctx.rank::ctx.world_size], batch_size=per_rank, shuffle=False,
                                 workers=config.workers, seed=config.seed, device=device)
           if len(val_idx) else None)
    return train, val
