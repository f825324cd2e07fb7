"""The two interfaces every storage format implements, and the checks they share.

A **writer** turns the parts of one shard (task) into files: ``append`` parts, then ``close``
returns the shard's manifest entry, or ``abort`` removes what it wrote to temporary names. A
**reader** gives one view of a finished data set whatever its storage: ``labels``,
``metadata(fields)`` and ``read_images(indices)`` by global image index, plus ``check_entry`` (the
per-shard verifier used by ``verify``, resume and the loaders) and ``entry_files`` (what
``--overwrite`` may delete).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.atomic import sha256_file
from fdsl.datasets.manifest import (
    ShardRecord,
    manifest_path,
    read_manifest,
    require_field,
    resolve_member,
    shard_records,
    totals_problem,
)
from fdsl.errors import ShardError

MARGIN = 1 << 20  # bytes kept free beyond a free-space estimate: file system metadata, the manifest


@dataclass(frozen=True)
class Problem:
    """One failed check: which file, which check, what was found."""

    file: str
    check: str
    detail: str

    def __str__(self) -> str:
        return f"{self.file}: {self.check} check failed: {self.detail}"

    @classmethod
    def from_error(cls, path: str | Path, check: str, exc: BaseException) -> Problem:
        """The failed ``check`` of ``path`` that ``exc`` reports (its message less the leading
        file name, which ``file`` already gives)."""
        return cls(str(path), check, str(exc).split(": ", 1)[-1])


def check_record(folder: Path, record: ShardRecord, checksum: bool = True) -> Problem | None:
    """Check one listed file: inside the folder, present, of the recorded size and (optionally)
    checksum."""
    try:
        path = resolve_member(folder, record.file)
    except ShardError as exc:
        return Problem.from_error(Path(folder) / str(record.file), "path", exc)
    if not path.is_file():
        return Problem(str(path), "exists", "file is missing")
    size = path.stat().st_size
    if size != record.bytes:
        kind = "truncated" if size < record.bytes else "too long"
        return Problem(str(path), "size", f"{kind}: {size} bytes, manifest says {record.bytes}")
    if checksum:
        digest = sha256_file(path)
        if digest != record.sha256:
            return Problem(str(path), "sha256", f"got {digest[:16]}..., manifest says {record.sha256[:16]}...")
    return None


def check_arrays(path: Path, manifest: Mapping[str, Any], count: int, labels: np.ndarray,
                 image_shape: tuple[int, ...] | None, fields: Mapping[str, np.dtype]) -> Problem | None:
    """The manifest against what one shard holds: count, image shape, label range, metadata
    fields and dtypes (an incomplete manifest may not know the shape and fields yet)."""
    if len(labels) != count:
        return Problem(str(path), "count", f"holds {len(labels)} images, manifest says {count}")
    want = manifest.get("image_shape")
    if want is not None and image_shape is not None and count and tuple(want) != tuple(image_shape):
        return Problem(str(path), "image_shape", f"images are {list(image_shape)}, manifest says {want}")
    classes = len(manifest["classes"])
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        return Problem(str(path), "labels", f"labels span {labels.min()}..{labels.max()} but there are "
                                            f"{classes} classes")
    declared = manifest.get("metadata_fields")
    if declared is not None:
        got = {name: np.dtype(dtype).str for name, dtype in fields.items()}
        want_fields = {name: np.dtype(dtype).str for name, dtype in declared.items()}
        if got != want_fields:
            return Problem(str(path), "metadata", f"fields {got} differ from the manifest's {want_fields}")
    return None


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
    ``close``. ``png_path`` (label, metadata of one image, item) -> relative path is used by
    formats that store one file per image; ``expected`` is the planned item count (for the
    free-space estimate)."""

    def __init__(self, folder: Path, index: int, *, compression: str = "lz4", png_path: Any = None,
                 expected: int = 0) -> None:
        self.folder, self.index, self.compression = Path(folder), index, compression
        self.png_path, self.expected = png_path, expected
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


class DatasetReader(ABC):
    """Read-only view of a data set: (images, labels, metadata) by global image index, in shard
    order. Subclasses implement the storage; ``open_dataset`` picks one from the manifest."""

    def __init__(self, folder: str | Path, manifest: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.manifest = manifest if manifest is not None else read_manifest(self.folder)
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

    def read_image(self, index: int) -> np.ndarray:
        return self.read_images([index])[0]

    @classmethod
    def check_entry(cls, folder: Path, entry: Mapping[str, Any], manifest: Mapping[str, Any],
                    checksum: bool = True) -> list[Problem]:
        """Problems with one ``shards`` entry: its files present, unchanged and agreeing with the
        manifest (count, shape, labels, fields)."""
        record = ShardRecord.from_entry(entry)
        if problem := check_record(folder, record, checksum):
            return [problem]
        return cls._check_files(folder, record, entry, manifest, checksum)

    @classmethod
    @abstractmethod
    def _check_files(cls, folder: Path, record: ShardRecord, entry: Mapping[str, Any],
                     manifest: Mapping[str, Any], checksum: bool) -> list[Problem]:
        """The format's own checks of an entry whose listed file is present and unchanged."""

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


def require_totals(folder: Path, manifest: Mapping[str, Any]) -> None:
    """ShardError unless the manifest's totals agree with its shard list (see ``totals_problem``)."""
    if problem := totals_problem(manifest):
        raise ShardError(f"{manifest_path(folder)}: {problem}")


def require_complete(folder: Path, manifest: Mapping[str, Any]) -> None:
    if not manifest.get("complete", False):
        raise ShardError(f"{manifest_path(folder)}: incomplete data set "
                         f"({len(manifest.get('shards', []))}/{manifest.get('num_shards', '?')} "
                         "shards); re-run the same command to finish it")
