"""One HDF5 shard file: opening it with one-line errors, and checking what it holds against the
manifest (``count`` attribute and label count, image dtype and shape, labels within the classes,
metadata fields and dtypes)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers LZ4/zstd, so any process that reads a shard can decode it)
import numpy as np

from fdsl.datasets.format.checks import Problem, check_arrays
from fdsl.errors import ShardError


def open_shard(path: str | Path) -> h5py.File:
    """Open a shard read-only, turning HDF5's errors into one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"{path}: shard file is missing")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ShardError(f"{path}: not a readable HDF5 shard (truncated or corrupted: {exc})") from None
    if "images" not in f or "labels" not in f:
        f.close()
        raise ShardError(f"{path}: shard lacks the images or labels dataset")
    return f


def check_content(path: Path, f: h5py.File, manifest: Mapping[str, Any], count: int) -> Problem | None:
    """An open shard against the manifest (see ``check_arrays``), plus its own ``count`` attribute
    and image dtype."""
    images, labels = f["images"], f["labels"]
    attr = f.attrs.get("count")
    if attr is not None and int(attr) != count:
        return Problem(str(path), "count", f"file says {int(attr)} images, manifest says {count}")
    if images.shape[0] != labels.shape[0]:
        return Problem(str(path), "count", f"{images.shape[0]} images but {labels.shape[0]} labels")
    if images.dtype != np.uint8:
        return Problem(str(path), "dtype", f"images are {images.dtype}, expected uint8")
    group = f.get("metadata")
    fields = {name: group[name].dtype for name in group} if group is not None else {}
    return check_arrays(path, manifest, count, np.asarray(labels[:], np.int64), images.shape[1:], fields)
