"""Read and verify HDF5 shard data sets (``shard-NNNNN.h5`` files listed in the manifest).

``check_entry`` checks one listed shard: inside the folder, present, size and sha256 as recorded,
and its content agreeing with the manifest (``count`` attribute and label count, image shape and
dtype, labels within the classes, metadata fields and dtypes). ``Hdf5Reader`` runs the content
check on every shard when it opens, so a tampered count can never make a loader return fewer or
more images than the files hold. Files open lazily and per process (safe after fork or pickling).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers LZ4/zstd, so any process that reads a shard can decode it)
import numpy as np

from fdsl.datasets.format.base import (
    DatasetReader,
    Problem,
    check_arrays,
    check_record,
    require_totals,
)
from fdsl.datasets.manifest import ShardRecord, read_manifest, resolve_member, shard_records
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


class Hdf5Reader(DatasetReader):
    """(images, labels, metadata) of an HDF5 shard data set by global image index."""

    def __init__(self, folder: str | Path, manifest: dict[str, Any] | None = None, *, verify: bool = False) -> None:
        super().__init__(folder, manifest)
        labels = []
        for record in self.records:
            path = resolve_member(self.folder, record.file)
            if problem := check_record(self.folder, record, checksum=verify):
                raise ShardError(str(problem))
            with open_shard(path) as f:
                if problem := check_content(path, f, self.manifest, record.count):
                    raise ShardError(str(problem))
                labels.append(np.asarray(f["labels"][:], np.int64))
        require_totals(self.folder, self.manifest)
        self._labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
        self._metadata: dict[str, np.ndarray] = {}  # read on first use
        self.starts = np.cumsum([0] + [r.count for r in self.records])
        self._files: dict[int, h5py.File] = {}
        self._pid = os.getpid()

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def _column(self, name: str) -> np.ndarray:
        if name not in self._metadata:
            parts = [self._shard(s)["metadata"][name][:] for s in range(len(self.records))]
            self._metadata[name] = (np.concatenate(parts) if parts
                                    else np.zeros(0, np.dtype(self.metadata_fields[name])))
        return self._metadata[name]

    def _shard(self, s: int) -> h5py.File:
        if self._pid != os.getpid():  # HDF5 handles must not cross a fork
            self._files, self._pid = {}, os.getpid()
        if s not in self._files:
            self._files[s] = open_shard(self.folder / self.records[s].file)
        return self._files[s]

    def read_images(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check_index(indices)
        out = np.empty((len(idx), *self.image_shape), np.uint8)
        shard_of = np.searchsorted(self.starts, idx, side="right") - 1
        for s in np.unique(shard_of):
            rows = np.flatnonzero(shard_of == s)
            uniq, inverse = np.unique(idx[rows] - self.starts[s], return_inverse=True)
            out[rows] = self._shard(int(s))["images"][uniq][inverse]  # h5py wants increasing indices
        return out

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"] = {}
        return state

    @classmethod
    def _check_files(cls, folder: Path, record: ShardRecord, entry: Mapping[str, Any],
                     manifest: Mapping[str, Any], checksum: bool) -> list[Problem]:
        path = folder / record.file
        try:
            with open_shard(path) as f:
                problem = check_content(path, f, manifest, record.count)
        except (ShardError, OSError, KeyError) as exc:
            return [Problem.from_error(path, "readable", exc)]
        return [problem] if problem else []

    @classmethod
    def entry_files(cls, folder: Path, entry: Mapping[str, Any]) -> list[Path]:
        return [resolve_member(folder, entry["file"])]


def read_layout(folder: Path, entries: Mapping[int, Mapping[str, Any]]) -> tuple[list[int] | None, dict[str, str] | None]:
    """Image shape and metadata dtypes, from the first non-empty shard (for the final manifest)."""
    for index in sorted(entries):
        if entries[index]["count"]:
            with open_shard(resolve_member(folder, entries[index]["file"])) as f:
                return list(f["images"].shape[1:]), {k: f["metadata"][k].dtype.str for k in sorted(f["metadata"])}
    return None, None


def iter_shard_arrays(folder: str | Path, fields: tuple[str, ...] = ()) -> Any:
    """Yield ``{"labels": ..., field: ...}`` per shard in order (no images), for summaries."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for record in shard_records(manifest):
        with open_shard(resolve_member(folder, record.file)) as f:
            out = {"labels": f["labels"][: record.count]}
            for name in fields:
                out[name] = f["metadata"][name][: record.count]
            yield out
