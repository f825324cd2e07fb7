"""Read and verify HDF5 shard data sets (``shard-NNNNN.h5`` files listed in the manifest).

``check_entry`` checks one listed shard: inside the folder, present, size and sha256 as recorded,
and its content agreeing with the manifest (``shardfile.check_content``). ``Hdf5Reader`` runs the
content check on every shard when it opens, so a tampered count can never make a loader return
fewer or more images than the files hold. Files open lazily and per process (safe after fork or
pickling); the loaders read through ``chunks.ChunkReader`` instead of h5py (``row_reader``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from fdsl.datasets.format.base import DatasetReader, RowReader, blame_manifest
from fdsl.datasets.format.checks import Problem
from fdsl.datasets.format.checksum import check_file
from fdsl.datasets.format.hdf5.chunks import ChunkReader, read_layout
from fdsl.datasets.format.hdf5.shardfile import check_content, open_shard
from fdsl.datasets.format.manifest import ShardRecord, require_totals, resolve_member
from fdsl.errors import ShardError


class Hdf5Reader(DatasetReader):
    """(images, labels, metadata) of an HDF5 shard data set by global image index."""

    def __init__(self, folder: str | Path, manifest: dict[str, Any], *, verify: bool = False) -> None:
        super().__init__(folder, manifest)
        labels = []
        for record in self.records:
            path = record.path(self.folder)
            if problem := check_file(self.folder, record, checksum=verify):
                raise ShardError(str(problem))
            with open_shard(path) as f:
                if problem := check_content(path, f, self.manifest, record.count):
                    entry = next(e for e in self.manifest["shards"] if e["index"] == record.index)
                    blamed = blame_manifest(self.folder, self.manifest, entry, [problem]) if verify else [problem]
                    raise ShardError(str(blamed[0]))
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

    def row_reader(self) -> RowReader:
        """Chunk offsets read once, then ``os.pread`` + LZ4 decoding outside h5py's lock."""
        layouts = [read_layout(record.path(self.folder), record.count, self.image_shape)
                   for record in self.records]
        return ChunkReader(layouts, self.image_shape)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files, self._metadata = {}, {}  # columns are read again on demand

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
    def entry_labels(cls, folder: Path, entry: Mapping[str, Any]) -> np.ndarray:
        with open_shard(resolve_member(folder, entry["file"])) as f:
            return np.asarray(f["labels"][: entry["count"]], np.int64)

    @classmethod
    def entry_files(cls, folder: Path, entry: Mapping[str, Any]) -> list[Path]:
        return [resolve_member(folder, entry["file"])]
