"""Per-class data pruning by a recorded metadata field (e.g. the silhouette ``area`` of a view).

DeepCore's convention: class ``c`` with ``n_c`` images keeps ``round(keep_fraction * n_c)`` of
them (numpy rounding, half to even); ties in the field are broken by a stable sort (the earlier
image counts as smaller); random pruning is seeded per (seed, class). The kept indices are
positions in the data set (or view) given, usable with ``ShardDataset.subset`` or
``ShardLoader(indices=...)``, and can be saved to a JSON file for the record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.atomic import write_bytes_atomic
from fdsl.errors import FdslError

MODES = ("random", "drop-smallest", "drop-largest")
_TAG_RANDOM = 0x5052  # stream tag of the random mode's generators


def _check(mode: str, keep_fraction: float) -> None:
    if mode not in MODES:
        raise FdslError(f"unknown pruning mode {mode!r}; choose one of {', '.join(MODES)}")
    if not 0.0 <= keep_fraction <= 1.0:
        raise FdslError(f"keep fraction must be in [0, 1], got {keep_fraction}")


def select_per_class(labels: np.ndarray, values: np.ndarray | None, *, mode: str,
                     keep_fraction: float, seed: int = 0) -> np.ndarray:
    """Kept positions, ascending: int64 [kept].

    Args:
        labels: int [N], the class of each image.
        values: [N] numbers ranking the images (None only for ``random``).
        mode: ``random``, ``drop-smallest`` (keep the largest values) or ``drop-largest``.
        keep_fraction: fraction of each class kept (budget ``round(keep_fraction * n_c)``).
        seed: seeds the random mode (one generator per (seed, class)).
    """
    _check(mode, keep_fraction)
    labels = np.asarray(labels)
    if mode != "random":
        if values is None:
            raise FdslError(f"pruning mode {mode!r} needs a metadata field to rank by")
        values = np.asarray(values)
        if values.shape != labels.shape or values.dtype.kind not in "iufb":
            raise FdslError(f"the ranking field must be numeric with one value per image, got "
                            f"{values.dtype} {values.shape} for {labels.shape[0]} images")
    kept = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        budget = int(np.round(keep_fraction * len(members)))
        if mode == "random":
            rng = np.random.default_rng([seed, _TAG_RANDOM, int(label)])
            kept.append(members[rng.permutation(len(members))[:budget]])
            continue
        ascending = members[np.argsort(values[members], kind="stable")]
        kept.append(ascending[len(ascending) - budget:] if mode == "drop-smallest" else ascending[:budget])
    return np.sort(np.concatenate(kept)).astype(np.int64) if kept else np.zeros(0, np.int64)


def prune_dataset(dataset: Any, *, mode: str, keep_fraction: float, field: str | None = None,
                  seed: int = 0, out: str | Path | None = None) -> np.ndarray:
    """Kept positions of ``dataset`` (anything with ``labels`` and ``metadata``, e.g. a
    ShardDataset); with ``out``, also written to that JSON file (see ``load_kept``)."""
    values = None
    if mode != "random" or field is not None:
        if field not in dataset.metadata:
            raise FdslError(f"no metadata field {field!r}; the data set records "
                            f"{', '.join(sorted(dataset.metadata)) or 'none'}")
        values = dataset.metadata[field]
    kept = select_per_class(dataset.labels, values, mode=mode, keep_fraction=keep_fraction, seed=seed)
    if out is not None:
        record = {"mode": mode, "keep_fraction": keep_fraction, "field": field, "seed": seed,
                  "num_images": len(dataset.labels), "num_kept": len(kept),
                  "source": str(getattr(dataset, "folder", "")), "indices": kept.tolist()}
        write_bytes_atomic(Path(out), (json.dumps(record, indent=1) + "\n").encode())
    return kept


def load_kept(path: str | Path) -> np.ndarray:
    """The kept positions saved by ``prune_dataset``: int64 [kept]."""
    try:
        record = json.loads(Path(path).read_text())
        return np.asarray(record["indices"], dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FdslError(f"{path}: not a kept-indices file ({exc})") from None
