"""The fdsl shard format: HDF5 shard files plus one ``manifest.json`` (see docs/FORMAT.md).

Every file is written to a temporary name in the same folder, flushed, fsynced and renamed, so a
reader never sees a half-written shard or manifest. Writing the same arrays twice gives the same
bytes: HDF5 object timestamps are off and the manifest holds no clock time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # registers the LZ4/zstd filters, so any process that reads a shard can decode it
import numpy as np

from fdsl.atomic import (  # noqa: F401  (re-exported: older callers import them from here)
    TMP_MARK,
    commit_file,
    ensure_writable,
    fsync_dir,
    sha256_file,
    temp_path,
    write_bytes_atomic,
)
from fdsl.errors import ShardError

log = logging.getLogger(__name__)

FORMAT_NAME = "fdsl-shards"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
FAILURES_NAME = "failures.jsonl"
COMPRESSIONS = ("none", "lz4", "zstd")


def shard_file_name(index: int) -> str:
    """The file name of shard ``index``: ``shard-00000.h5``."""
    return f"shard-{index:05d}.h5"


def _compression_kwargs(compression: str) -> dict[str, Any]:
    if compression == "none":
        return {}
    if compression == "lz4":
        return dict(hdf5plugin.LZ4())
    if compression == "zstd":
        return dict(hdf5plugin.Zstd(clevel=3))
    raise ShardError(f"unknown compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}")


def _metadata_array(name: str, values: np.ndarray, count: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (count,):
        raise ShardError(f"metadata field {name!r} has shape {arr.shape}, expected ({count},)")
    if arr.dtype.kind == "U":
        arr = np.char.encode(arr, "utf-8")
    if arr.dtype.kind == "O":
        raise ShardError(f"metadata field {name!r} has dtype object; use numbers or fixed strings")
    return arr


@dataclass(frozen=True)
class ShardRecord:
    """What the manifest records about one shard file."""

    index: int
    file: str
    count: int
    bytes: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "file": self.file, "count": self.count,
                "bytes": self.bytes, "sha256": self.sha256}


def _check_part(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = np.ascontiguousarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ShardError(f"images must be uint8 [N,H,W] or [N,H,W,C], got {images.dtype} {images.shape}")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (images.shape[0],):
        raise ShardError(f"labels have shape {labels.shape}, expected ({images.shape[0]},)")
    return images, labels


class ShardWriter:
    """Write one shard part by part, so a worker never holds more than one part in memory.

    Images go straight to the temporary file; labels and metadata (small) are kept and written at
    close. The file appears under its final name only when ``close`` succeeds. Appending the same
    parts gives the same bytes.
    """

    def __init__(self, path: str | Path, compression: str = "lz4", index: int = 0) -> None:
        self.path = Path(path)
        self.index = index
        self._filter = _compression_kwargs(compression)
        self._tmp = temp_path(self.path)
        self._file = h5py.File(self._tmp, "w", libver="earliest", track_order=False)
        self._images: h5py.Dataset | None = None
        self._image_shape: tuple[int, ...] | None = None
        self._labels: list[np.ndarray] = []
        self._metadata: dict[str, list[np.ndarray]] | None = None
        self.count = 0

    def append(self, images: np.ndarray, labels: np.ndarray,
               metadata: Mapping[str, np.ndarray] | None = None) -> None:
        """Add images uint8 [n,H,W] or [n,H,W,C], labels [n] and per-image 1-D metadata arrays [n]."""
        images, labels = _check_part(images, labels)
        n = images.shape[0]
        metadata = {name: _metadata_array(name, values, n) for name, values in (metadata or {}).items()}
        if self._image_shape is None:
            self._image_shape = images.shape[1:]
            self._metadata = {name: [] for name in metadata}
        if images.shape[1:] != self._image_shape:
            raise ShardError(f"{self.path}: image shape {images.shape[1:]} differs from {self._image_shape}")
        if set(metadata) != set(self._metadata):
            raise ShardError(f"{self.path}: metadata fields {sorted(metadata)} differ from {sorted(self._metadata)}")
        if n:
            if self._images is None:
                self._images = self._file.create_dataset(
                    "images", shape=(0, *self._image_shape), maxshape=(None, *self._image_shape),
                    dtype=np.uint8, chunks=(1, *self._image_shape), track_times=False, **self._filter)
            self._images.resize(self.count + n, axis=0)
            self._images[self.count:self.count + n] = images
        self._labels.append(labels)
        for name, values in metadata.items():
            self._metadata[name].append(values)
        self.count += n

    def close(self) -> ShardRecord:
        """Finish the file, fsync it, rename it to its final name and return its manifest record."""
        if self._image_shape is None:
            self.abort()
            raise ShardError(f"{self.path}: nothing was appended to the shard")
        f = self._file
        if self._images is None:
            f.create_dataset("images", data=np.zeros((0, *self._image_shape), np.uint8), track_times=False)
        f.create_dataset("labels", data=np.concatenate(self._labels), track_times=False)
        meta = f.create_group("metadata", track_order=False)
        for name in sorted(self._metadata):
            meta.create_dataset(name, data=np.concatenate(self._metadata[name]), track_times=False)
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["count"] = self.count
        f.close()
        commit_file(self._tmp, self.path)
        return ShardRecord(index=self.index, file=self.path.name, count=self.count,
                           bytes=self.path.stat().st_size, sha256=sha256_file(self.path))

    def abort(self) -> None:
        """Drop the temporary file."""
        with contextlib.suppress(Exception):
            self._file.close()
        self._tmp.unlink(missing_ok=True)


def write_shard(
    path: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    metadata: Mapping[str, np.ndarray] | None = None,
    compression: str = "lz4",
    index: int = 0,
) -> ShardRecord:
    """Write one shard atomically from whole arrays and return its manifest record.

    Args:
        path: final file name (``shard-00000.h5``); a temporary name is used until complete.
        images: uint8, [N, H, W] (grey) or [N, H, W, C]; stored one HDF5 chunk per image.
        labels: int, [N]; stored as int64.
        metadata: per-image 1-D arrays of length N (numbers or fixed-width strings).
        compression: ``none``, ``lz4`` or ``zstd`` (the last two through hdf5plugin).
        index: the shard's position in the data set.
    """
    images, labels = _check_part(images, labels)
    writer = ShardWriter(path, compression, index)
    try:
        writer.append(images, labels, metadata)
        return writer.close()
    except BaseException:
        writer.abort()
        raise


# --------------------------------------------------------------------------- manifest


def manifest_path(folder: str | Path) -> Path:
    return Path(folder) / MANIFEST_NAME


def dump_manifest(manifest: Mapping[str, Any]) -> bytes:
    """Canonical JSON bytes: sorted keys, so equal manifests are equal files."""
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()


def write_manifest(folder: str | Path, manifest: Mapping[str, Any]) -> None:
    """Atomically (re)write ``folder/manifest.json``."""
    write_bytes_atomic(manifest_path(folder), dump_manifest(manifest))


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """Read and check ``folder/manifest.json``; raise ShardError naming the problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ShardError(f"{folder}: no such data set folder")
    path = manifest_path(folder)
    if not path.is_file():
        raise ShardError(f"{path}: missing manifest (not an fdsl data set, or never finished a shard)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShardError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ShardError(f"{path}: not an fdsl manifest (format field missing)")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ShardError(f"{path}: format version {version!r} is newer than this fdsl reads "
                         f"({FORMAT_VERSION}); upgrade fdsl")
    return manifest


def shard_records(manifest: Mapping[str, Any]) -> list[ShardRecord]:
    """The manifest's shard list as records, ordered by index."""
    return sorted((ShardRecord(**{k: s[k] for k in ("index", "file", "count", "bytes", "sha256")})
                   for s in manifest.get("shards", [])), key=lambda r: r.index)


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Problem:
    """One failed check: which file, which check, what was found."""

    file: str
    check: str
    detail: str

    def __str__(self) -> str:
        return f"{self.file}: {self.check} check failed: {self.detail}"


def check_record(folder: Path, record: ShardRecord, checksum: bool = True) -> Problem | None:
    """Check one listed file: present, of the recorded size and (optionally) checksum."""
    path = folder / record.file
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


def read_png_listing(path: Path) -> list[tuple[str, str | None]]:
    """The (relative path, sha256) lines of a PNG task's listing (sha256 None in old listings)."""
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rel, _, digest = line.partition("\t")
            rows.append((rel, digest or None))
    return rows


def check_png_entry(folder: Path, entry: Mapping[str, Any], checksum: bool = True) -> list[Problem]:
    """Problems with the PNG files a ``--format png`` task listed: each missing or changed file."""
    listing_path = folder / entry["file"]
    if "png_sha256" not in entry or not listing_path.is_file():
        return []
    problems, combined = [], hashlib.sha256()
    for rel, digest in read_png_listing(listing_path):
        path = folder / rel
        if not path.is_file():
            problems.append(Problem(str(path), "exists", "PNG file is missing"))
            continue
        if checksum:
            actual = sha256_file(path)
            combined.update(f"{rel}\t{actual}\n".encode())
            if digest is not None and actual != digest:
                problems.append(Problem(str(path), "sha256", f"got {actual[:16]}..., listing says {digest[:16]}..."))
    if checksum and not problems and combined.hexdigest() != entry["png_sha256"]:
        problems.append(Problem(str(listing_path), "png_sha256", "the listed PNG files changed"))
    return problems


def verify_dataset(folder: str | Path, checksum: bool = True) -> list[Problem]:
    """Check every file the manifest lists; return the problems found (empty when all is well)."""
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except ShardError as exc:
        return [Problem(str(manifest_path(folder)), "manifest", str(exc).split(": ", 1)[-1])]
    problems = [p for r in shard_records(manifest) if (p := check_record(folder, r, checksum))]
    for entry in manifest.get("shards", []):
        problems.extend(check_png_entry(folder, entry, checksum))
    for name, info in sorted(manifest.get("extra_files", {}).items()):
        rec = ShardRecord(index=-1, file=name, count=0, bytes=info["bytes"], sha256=info["sha256"])
        if p := check_record(folder, rec, checksum):
            problems.append(p)
    if not manifest.get("complete", False):
        done = len(manifest.get("shards", []))
        problems.append(Problem(str(manifest_path(folder)), "complete",
                                f"run not finished ({done}/{manifest.get('num_shards', '?')} shards); "
                                "re-run the same command to resume"))
    return problems


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


def iter_shard_arrays(folder: str | Path, fields: tuple[str, ...] = ()) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``{"labels": ..., field: ...}`` per shard in order (no images), for summaries."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for record in shard_records(manifest):
        with open_shard(folder / record.file) as f:
            out = {"labels": f["labels"][: record.count]}
            for name in fields:
                out[name] = f["metadata"][name][: record.count]
            yield out
