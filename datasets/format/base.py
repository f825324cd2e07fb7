"""The interfaces every storage format implements; the rest of fdsl talks to these alone.

A **writer** turns the parts of one shard (task) into files: ``append`` parts, then ``close``
returns the shard's manifest entry, or ``abort`` removes what it wrote to temporary names. A
**reader** gives one view of a finished data set whatever its storage: ``labels``,
``metadata(fields)`` and ``read_images(indices)`` by global image index, ``row_reader()`` (the
loaders' batch path), plus ``check_entry`` (the per-shard verifier used by ``verify``, resume
and the loaders), ``entry_labels`` (the labels of one written shard, for summaries of unfinished
sets) and ``entry_files`` (what ``--overwrite`` may delete). A ``StorageFormat`` bundles a
format's writer and reader with what a build adds at the end (``finish``) and the files it names
its own in a folder (``own_files``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fdsl.datasets.format.checks import Problem
from fdsl.datasets.format.checksum import check_file
from fdsl.datasets.format.manifest import (
    EntryKeys,
    ShardRecord,
    manifest_path,
    require_field,
    shard_records,
)
from fdsl.errors import ShardError
from fdsl.sources import ShardSource

# Checks that fault a file itself: while one of them fails, the files are to blame.
FILE_CHECKS = frozenset({"path", "exists", "size", "sha256", "readable", "listing"})
# Checks of what a file holds against a manifest field: the manifest field they compare with.
_MANIFEST_FIELDS = {"image_shape": "image_shape", "labels": "classes", "metadata": "metadata_fields",
                    "count": "shards[{k}].count", "png_sha256": "shards[{k}].png_sha256"}


def blame_manifest(folder: Path, manifest: Mapping[str, Any], entry: Mapping[str, Any],
                   problems: list[Problem]) -> list[Problem]:
    """``problems`` of an entry whose files match their recorded sha256: the files are as
    written, so a disagreement with the manifest is the manifest's, and is reported against
    ``manifest.json`` and the field (the shard's own problems, when any, are left as they are)."""
    if any(p.check in FILE_CHECKS for p in problems):
        return problems
    k = next(i for i, e in enumerate(manifest["shards"]) if e["index"] == entry["index"])
    blamed = []
    for p in problems:
        key = _MANIFEST_FIELDS.get(p.check)
        if key is None:
            blamed.append(p)
            continue
        key = key.format(k=k)
        blamed.append(Problem(str(manifest_path(folder)), key,
                              f"{p.detail} in {Path(p.file).name}, whose bytes match their recorded "
                              f"sha256: the manifest's {key} is wrong"))
    return blamed


def metadata_array(name: str, values: np.ndarray, count: int) -> np.ndarray:
    """A metadata column as stored: 1-D of length ``count``, numbers or fixed-width bytes."""
    arr = np.asarray(values)
    if arr.shape != (count,):
        raise ShardError(f"metadata field {name!r} has shape {arr.shape}, expected ({count},)")
    if arr.dtype.kind == "U":
        arr = np.char.encode(arr, "utf-8")
    if arr.dtype.kind == "O":
        raise ShardError(f"metadata field {name!r} has dtype object; use numbers or fixed strings")
    return arr


def check_part(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = np.ascontiguousarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ShardError(f"images must be uint8 [N,H,W] or [N,H,W,C], got {images.dtype} {images.shape}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (images.shape[0],):
        raise ShardError(f"labels have shape {labels.shape}, expected ({images.shape[0]},)")
    return images, labels


class ShardWriter(ABC):
    """Writes one shard of a data set part by part; nothing appears under a final name until
    ``close``. ``source`` is the ShardSource being built (a format that stores one file per
    image asks it for each image's path); ``expected`` is the planned item count (for the
    free-space estimate)."""

    def __init__(self, folder: Path, index: int, source: ShardSource | None = None, *,
                 compression: str = "lz4", expected: int = 0) -> None:
        self.folder, self.index, self.compression = Path(folder), index, compression
        self.expected = expected
        self.count = 0

    @abstractmethod
    def append(self, images: np.ndarray, labels: np.ndarray, metadata: Mapping[str, np.ndarray]) -> None:
        """Add images uint8 [n,H,W(,C)], labels [n] and 1-D metadata [n] (``item`` among them)."""

    @abstractmethod
    def close(self) -> dict[str, Any]:
        """Finish the shard and return its manifest entry (``index, file, count, bytes, sha256``...)."""

    @abstractmethod
    def abort(self) -> None:
        """Remove the temporary files; the shard stays unlisted (a re-run writes it again)."""


class RowReader(Protocol):
    """How the loaders read images: by global row, into a batch, from any thread."""

    def read_rows(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Images at global ``rows`` (int64 [B]) into ``out``: uint8 [B, C, H, W]."""

    def advise(self, rows: np.ndarray) -> int:
        """Hint that ``rows`` will be read soon; returns how many read-ahead requests it made."""


class DecodedRows:
    """The generic RowReader: ``read_images`` of a DatasetReader, transposed to [B, C, H, W]."""

    def __init__(self, reader: DatasetReader) -> None:
        self.reader = reader

    def read_rows(self, rows: np.ndarray, out: np.ndarray) -> None:
        images = self.reader.read_images(rows)  # checks every shape against the manifest
        out[...] = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)

    def advise(self, rows: np.ndarray) -> int:
        return 0  # files read whole: the kernel's per-file read-ahead already applies


class DatasetReader(ABC):
    """Read-only view of a data set: (images, labels, metadata) by global image index, in shard
    order. Subclasses implement the storage; ``open_dataset`` picks one from the manifest, which
    it has validated."""

    def __init__(self, folder: str | Path, manifest: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.manifest = manifest
        self.records = shard_records(self.manifest)
        self.classes: list[str] = list(self.manifest["classes"])
        self.image_shape: tuple[int, ...] = tuple(self.manifest.get("image_shape") or ())
        self.metadata_fields: dict[str, str] = dict(self.manifest.get("metadata_fields") or {})

    def __len__(self) -> int:
        return int(self.manifest["num_images"])

    @property
    @abstractmethod
    def labels(self) -> np.ndarray:
        """int64 [N]: label of every image."""

    @property
    def stored_bytes(self) -> int:
        """Bytes on disk of the data set's images."""
        return sum(self.data_bytes(entry) for entry in self.manifest["shards"])

    def metadata(self, fields: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """name -> [N] array for ``fields`` (default: all), with the manifest's dtypes; ShardError
        (one line, listing the fields there are) for a field the data set lacks."""
        names = list(self.metadata_fields) if fields is None else list(fields)
        for name in names:
            require_field(self.manifest, name)
        return {name: self._column(name) for name in names}

    @abstractmethod
    def _column(self, name: str) -> np.ndarray:
        """One metadata column (a field the manifest declares)."""

    @abstractmethod
    def read_images(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 [n, *image_shape]: the images at these global indices, in the order given."""

    def sample_names(self) -> list[str]:
        """Every image's locator, relative to the folder, in row order: ``FILE:ROW`` (row ``ROW``
        of the listed file ``FILE``); formats that store a file per image name the file."""
        return [f"{record.file}:{j}" for record in self.records for j in range(record.count)]

    def row_reader(self) -> RowReader:
        """The loaders' reader of batches; formats with a faster path than ``read_images``
        override it. It may outlive this reader's open files (``close``)."""
        return DecodedRows(self)

    @classmethod
    def check_entry(cls, folder: Path, entry: Mapping[str, Any], manifest: Mapping[str, Any],
                    checksum: bool = True) -> list[Problem]:
        """Problems with one ``shards`` entry: its files present, unchanged and agreeing with the
        manifest (count, shape, labels, fields). With ``checksum``, a disagreement over files
        whose bytes match their recorded sha256 names ``manifest.json`` and the field."""
        record = ShardRecord.from_entry(entry)
        if problem := check_file(folder, record, checksum):
            return [problem]
        problems = cls._check_files(folder, record, entry, manifest, checksum)
        return blame_manifest(folder, manifest, entry, problems) if checksum else problems

    @classmethod
    @abstractmethod
    def _check_files(cls, folder: Path, record: ShardRecord, entry: Mapping[str, Any],
                     manifest: Mapping[str, Any], checksum: bool) -> list[Problem]:
        """The format's own checks of an entry whose listed file is present and unchanged."""

    @classmethod
    @abstractmethod
    def entry_labels(cls, folder: Path, entry: Mapping[str, Any]) -> np.ndarray:
        """int64 [count]: the labels of one written shard (ShardError if it cannot be read)."""

    @classmethod
    def data_bytes(cls, entry: Mapping[str, Any]) -> int:
        """Bytes of image data one entry stands for."""
        return int(entry["bytes"])

    @classmethod
    @abstractmethod
    def entry_files(cls, folder: Path, entry: Mapping[str, Any]) -> list[Path]:
        """Every file one entry owns, all inside ``folder`` (what ``--overwrite`` removes)."""

    def _check_index(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.size and idx.dtype.kind not in "iu":
            raise ShardError(f"{self.folder}: image indices must be integers, got {idx.dtype}")
        idx = idx.astype(np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise ShardError(f"{self.folder}: image index out of range (data set has {len(self)} images)")
        return np.where(idx < 0, idx + len(self), idx)

    def close(self) -> None:  # noqa: B027 - a reader without open files has nothing to release
        """Release open files (readers reopen lazily, also after a fork or pickling)."""

    def __enter__(self) -> DatasetReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# (folder, finished entries by index, class names) -> (image shape, metadata dtypes, extra_files
# entries of the sidecars it wrote)
Finish = Callable[[Path, Mapping[int, Mapping[str, Any]], list[str]],
                  tuple[list[int] | None, dict[str, str] | None, dict[str, Any]]]


@dataclass(frozen=True)
class StorageFormat:
    """One storage format: how to write a shard, read a data set, and finish a build."""

    name: str
    writer: type[ShardWriter]
    reader: type[DatasetReader]
    finish: Finish  # after the last shard: what the format adds to the final manifest
    own_files: Callable[[Path], list[Path]]  # what it names its own in a folder, without a manifest
    compression: str | None = None  # fixed (png), or None: the --compression given
    entry_keys: EntryKeys = field(default_factory=dict)  # keys its manifest entries add
