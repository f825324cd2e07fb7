"""Write one HDF5 shard (``shard-00000.h5``) part by part, atomically and byte-stably.

Images go straight to a temporary file, one chunk per image; labels and metadata (small) are
kept and written at close; the file appears under its final name only when ``close`` succeeds.
HDF5 must never meet a full disk: after a failed write its open file crashes the process when
it is released. So a shard whose uncompressed size is not well below the free space is built in
memory (HDF5's core driver, the same bytes) and written out by Python, where ENOSPC is an ordinary
error; free space is also checked before each part from the bytes per image written so far. Any
OSError still raised inside h5py closes and removes the temporary file before it becomes one line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # registers the LZ4/zstd filters
import numpy as np

from fdsl.atomic import (
    commit_file,
    disk_full_error,
    disk_full_guard,
    free_bytes,
    is_disk_full,
    remove_quietly,
    temp_path,
    write_bytes_atomic,
)
from fdsl.datasets.format.base import ShardWriter, check_part, metadata_array
from fdsl.datasets.format.checksum import file_record
from fdsl.datasets.format.hdf5.shardfile import open_shard
from fdsl.datasets.format.manifest import FORMAT_NAME, FORMAT_VERSION, resolve_member
from fdsl.errors import ShardError
from fdsl.limits import DISK_MARGIN
from fdsl.sources import ShardSource

COMPRESSIONS = ("none", "lz4", "zstd")
# Write straight to disk only when this many uncompressed shards would fit in the free space
# (room for parallel workers); otherwise build the file in memory.
SAFE_FACTOR = 8


def shard_file_name(index: int) -> str:
    """The file name of shard ``index``: ``shard-00000.h5``."""
    return f"shard-{index:05d}.h5"


def compression_kwargs(compression: str) -> dict[str, Any]:
    if compression == "none":
        return {}
    if compression == "lz4":
        return dict(hdf5plugin.LZ4())
    if compression == "zstd":
        return dict(hdf5plugin.Zstd(clevel=3))
    raise ShardError(f"unknown compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}")


def _h5_disk_full(exc: BaseException) -> bool:
    # h5py reports a failed write as OSError without errno; the HDF5 message carries it.
    text = str(exc)
    return is_disk_full(exc) or "errno = 28" in text or "No space left" in text or "errno = 5," in text


class Hdf5ShardWriter(ShardWriter):
    """One HDF5 shard: ``FOLDER/shard-NNNNN.h5``."""

    def __init__(self, folder: Path, index: int, source: ShardSource | None = None, *,
                 compression: str = "lz4", expected: int = 0) -> None:
        super().__init__(folder, index, source, compression=compression, expected=expected)
        self.path = self.folder / shard_file_name(index)
        self._filter = compression_kwargs(compression)
        self._tmp = temp_path(self.path)
        self._file: h5py.File | None = None
        self._images: h5py.Dataset | None = None
        self._image_shape: tuple[int, ...] | None = None
        self._labels: list[np.ndarray] = []
        self._metadata: dict[str, list[np.ndarray]] = {}
        self.in_memory = False

    def _guarded(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except OSError as exc:
            self.abort()
            if _h5_disk_full(exc):
                raise disk_full_error(self.path.parent, exc, self._estimate(self.expected)) from None
            raise

    def _estimate(self, items: int) -> int:
        """Bytes ``items`` more images will take, from this shard's bytes per image so far."""
        if not self.count or not self._tmp.exists():
            return 0
        return int(self._tmp.stat().st_size / self.count * items * 1.1) + DISK_MARGIN

    def append(self, images: np.ndarray, labels: np.ndarray, metadata: Mapping[str, np.ndarray] | None = None) -> None:
        images, labels = check_part(images, labels)
        n = images.shape[0]
        metadata = {name: metadata_array(name, values, n) for name, values in (metadata or {}).items()}
        if self._image_shape is None:
            self._image_shape = images.shape[1:]
            self._metadata = {name: [] for name in metadata}
        if images.shape[1:] != self._image_shape:
            raise ShardError(f"{self.path}: image shape {images.shape[1:]} differs from {self._image_shape}")
        if set(metadata) != set(self._metadata):
            raise ShardError(f"{self.path}: metadata fields {sorted(metadata)} differ from {sorted(self._metadata)}")
        if n:
            needed = 0 if self.in_memory else self._estimate(n)
            if needed and free_bytes(self.path.parent) < needed:
                self.abort()
                raise disk_full_error(self.path.parent, needed=needed)
            self._guarded(self._write_images, images)
        self._labels.append(labels)
        for name, values in metadata.items():
            self._metadata[name].append(values)
        self.count += n

    def _open(self) -> h5py.File:
        if self._file is None:
            upper = (max(self.expected, self.count, 1) * int(np.prod(self._image_shape or (1,))) * 1.1 + DISK_MARGIN)
            self.in_memory = free_bytes(self.path.parent) < SAFE_FACTOR * upper
            if self.in_memory:
                self._file = h5py.File(self._tmp.name, "w", libver="earliest", track_order=False,
                                       driver="core", backing_store=False)
            else:
                self._file = h5py.File(self._tmp, "w", libver="earliest", track_order=False)
        return self._file

    def _write_images(self, images: np.ndarray) -> None:
        n = images.shape[0]
        if self._images is None:
            self._images = self._open().create_dataset(
                "images", shape=(0, *self._image_shape), maxshape=(None, *self._image_shape),
                dtype=np.uint8, chunks=(1, *self._image_shape), track_times=False, **self._filter)
        self._images.resize(self.count + n, axis=0)
        self._images[self.count:self.count + n] = images

    def _finish(self) -> None:
        f = self._open()
        if self._images is None:
            f.create_dataset("images", data=np.zeros((0, *self._image_shape), np.uint8), track_times=False)
        f.create_dataset("labels", data=np.concatenate(self._labels), track_times=False)
        meta = f.create_group("metadata", track_order=False)
        for name in sorted(self._metadata):
            meta.create_dataset(name, data=np.concatenate(self._metadata[name]), track_times=False)
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["count"] = self.count
        if self.in_memory:
            f.flush()
            image = f.id.get_file_image()
            f.close()
            self._file = None
            with disk_full_guard(self.path.parent, len(image) + DISK_MARGIN):
                write_bytes_atomic(self.path, image)
            return
        f.close()
        self._file = None
        commit_file(self._tmp, self.path)

    def close(self) -> dict[str, Any]:
        """Finish the file, fsync it, rename it to its final name and return its entry."""
        if self._image_shape is None:
            self.abort()
            raise ShardError(f"{self.path}: nothing was appended to the shard")
        self._guarded(self._finish)
        return {"index": self.index, "file": self.path.name, "count": self.count, **file_record(self.path)}

    def abort(self) -> None:
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None
        remove_quietly(self._tmp)


def finish(folder: Path, entries: Mapping[int, Mapping[str, Any]], classes: list[str]) -> tuple[
        list[int] | None, dict[str, str] | None, dict[str, Any]]:
    """Image shape and metadata dtypes for the final manifest, from the first non-empty shard
    (HDF5 sets have no sidecar files)."""
    for index in sorted(entries):
        if entries[index]["count"]:
            with open_shard(resolve_member(folder, entries[index]["file"])) as f:
                shape = list(f["images"].shape[1:])
                return shape, {k: f["metadata"][k].dtype.str for k in sorted(f["metadata"])}, {}
    return None, None, {}


def own_files(folder: Path) -> list[Path]:
    """What an HDF5 build names its own directly in ``folder``: its shard files."""
    return list(folder.glob("shard-[0-9]*.h5"))
