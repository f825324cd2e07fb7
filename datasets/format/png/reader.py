"""Read and verify PNG-tree data sets: ``metadata.csv`` plus the per-task listings.

``check_entry`` checks one task: its listing inside the folder, of the recorded size and sha256,
written by this fdsl (with per-image metadata), every listed PNG inside the folder, present and
of the listed sha256, the combined ``png_sha256``, the row count, the labels within the classes
and the fields against the manifest. ``PngReader`` reads ``metadata.csv`` (size and sha256 from
the manifest, one row per image, paths inside the folder, labels in range) and decodes PNGs on
demand, checking each image's shape against the manifest.
"""

from __future__ import annotations

import csv
import hashlib
import io
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.atomic import disk_full_guard, sha256_file, write_bytes_atomic
from fdsl.datasets.format.base import (
    DatasetReader,
    Problem,
    check_arrays,
    check_record,
    require_totals,
)
from fdsl.datasets.format.png.writer import LISTING_PREFIX, METADATA_NAME
from fdsl.datasets.manifest import ShardRecord, resolve_member
from fdsl.errors import ShardError


def parse_column(values: Sequence[str], dtype: str | np.dtype) -> np.ndarray:
    """CSV text back to the stored dtype (numbers exactly, strings as fixed-width bytes)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "S":
        return np.array([v.encode("utf-8") for v in values], dtype=dtype)
    if dtype.kind in "iub":
        return np.array([int(v) for v in values], dtype=np.int64).astype(dtype)
    if dtype.kind == "f":
        return np.array([float(v) for v in values], dtype=np.float64).astype(dtype)
    return np.array(values, dtype=dtype)


def read_listing(path: Path) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """(fields as (name, dtype), rows ``[path, sha256, label, values...]``) of a task listing.
    ShardError for a listing without the header (written by an older fdsl) or a malformed row."""
    text = path.read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0][:3] != ["path", "sha256", "label"]:
        raise ShardError(f"{path}: PNG listing without per-image metadata (an older fdsl wrote it)")
    fields = [tuple(col.rsplit(":", 1)) for col in rows[0][3:]]
    if any(len(f) != 2 for f in fields):
        raise ShardError(f"{path}: malformed listing header")
    body = [r for r in rows[1:] if r]
    if any(len(r) != len(rows[0]) for r in body):
        raise ShardError(f"{path}: a listing row has the wrong number of columns")
    return fields, body  # type: ignore[return-value]


def old_listing_paths(path: Path) -> list[str]:
    """The PNG paths of a listing in either form (``rel<TAB>sha256`` lines of older fdsl)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if text.startswith("path,sha256,label"):
        return [row[0] for row in list(csv.reader(io.StringIO(text)))[1:] if row]
    return [line.partition("\t")[0] for line in text.splitlines() if line.strip()]


_CHANNELS = {0: (), 2: (3,), 4: (2,), 6: (4,)}  # PNG colour type -> trailing axis


def png_shape(path: Path) -> tuple[int, ...] | None:
    """[H, W] or [H, W, C] of an 8-bit PNG from its header alone (None: not such a PNG)."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    if head[24] != 8 or head[25] not in _CHANNELS:
        return None
    return (height, width, *_CHANNELS[head[25]])


def _load_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ShardError(f"{path}: unreadable PNG ({exc})") from None


class PngReader(DatasetReader):
    """(images, labels, metadata) of a PNG tree by global image index (rows of metadata.csv)."""

    def __init__(self, folder: str | Path, manifest: dict[str, Any] | None = None, *, verify: bool = False) -> None:
        super().__init__(folder, manifest)
        info = self.manifest.get("extra_files", {}).get(METADATA_NAME)
        if info is None:
            raise ShardError(f"{self.folder}: PNG data set without {METADATA_NAME} (an older fdsl wrote "
                             "it); re-run the same command to add it")
        record = ShardRecord.for_extra(METADATA_NAME, info)
        if problem := check_record(self.folder, record, checksum=True):
            raise ShardError(str(problem))
        for entry in self.manifest["shards"]:
            if verify:
                problems = self.check_entry(self.folder, entry, self.manifest, checksum=True)
            else:  # the listings only (cheap): each count against its rows
                problems = self._check_listing(entry)
            if problems:
                raise ShardError(str(problems[0]))
        require_totals(self.folder, self.manifest)
        rows = list(csv.reader(io.StringIO((self.folder / METADATA_NAME).read_text(encoding="utf-8"))))
        header, body = rows[0], [r for r in rows[1:] if r]
        names = sorted(self.metadata_fields)
        if header != ["path", "label", *names]:
            raise ShardError(f"{self.folder / METADATA_NAME}: columns {header} differ from path, label, {names}")
        if len(body) != len(self):
            raise ShardError(f"{self.folder / METADATA_NAME}: {len(body)} rows, manifest says {len(self)} images")
        columns = list(zip(*body, strict=True)) if body else [()] * len(header)
        self.paths = [resolve_member(self.folder, p) for p in columns[0]]
        self._labels = np.array([int(v) for v in columns[1]], np.int64)
        if len(self._labels) and (self._labels.min() < 0 or self._labels.max() >= len(self.classes)):
            raise ShardError(f"{self.folder / METADATA_NAME}: labels outside 0..{len(self.classes) - 1}")
        self._metadata = {name: parse_column(columns[2 + k], self.metadata_fields[name])
                          for k, name in enumerate(names)}

    def _check_listing(self, entry: Mapping[str, Any]) -> list[Problem]:
        record = ShardRecord.from_entry(entry)
        if problem := check_record(self.folder, record, checksum=False):
            return [problem]
        try:
            fields, rows = read_listing(self.folder / record.file)
        except (ShardError, UnicodeDecodeError) as exc:
            return [Problem.from_error(self.folder / record.file, "listing", exc)]
        labels = np.array([int(row[2]) for row in rows], np.int64)
        first = resolve_member(self.folder, rows[0][0]) if rows else None
        shape = png_shape(first) if first is not None and first.is_file() else None
        problem = check_arrays(self.folder / record.file, self.manifest, record.count, labels, shape, dict(fields))
        return [problem] if problem else []

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def _column(self, name: str) -> np.ndarray:
        return self._metadata[name]

    def read_images(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check_index(indices)
        out = np.empty((len(idx), *self.image_shape), np.uint8)
        for k, i in enumerate(idx):
            image = _load_png(self.paths[i])
            if image.shape != self.image_shape or image.dtype != np.uint8:
                raise ShardError(f"{self.paths[i]}: image is {image.dtype} {list(image.shape)}, manifest "
                                 f"says uint8 {list(self.image_shape)}")
            out[k] = image
        return out

    @classmethod
    def _check_files(cls, folder: Path, record: ShardRecord, entry: Mapping[str, Any],
                     manifest: Mapping[str, Any], checksum: bool) -> list[Problem]:
        listing = folder / record.file
        try:
            fields, rows = read_listing(listing)
            paths = [resolve_member(folder, row[0]) for row in rows]
            labels = np.array([int(row[2]) for row in rows], np.int64)
        except (ShardError, ValueError, UnicodeDecodeError) as exc:
            return [Problem.from_error(listing, "listing", exc)]
        problems, combined = [], hashlib.sha256()
        want = tuple(manifest.get("image_shape") or ())
        for path, row in zip(paths, rows, strict=True):
            if not path.is_file():
                problems.append(Problem(str(path), "exists", "PNG file is missing"))
                continue
            shape = png_shape(path)
            if want and shape != want and not any(p.check == "image_shape" for p in problems):
                problems.append(Problem(str(path), "image_shape",
                                        f"PNG is {list(shape) if shape else 'not an 8-bit PNG'}, manifest says {list(want)}"))
            if checksum:
                actual = sha256_file(path)
                combined.update(f"{row[0]}\t{actual}\n".encode())
                if actual != row[1]:
                    problems.append(Problem(str(path), "sha256", f"got {actual[:16]}..., listing says {row[1][:16]}..."))
        if checksum and not problems and combined.hexdigest() != entry["png_sha256"]:
            problems.append(Problem(str(listing), "png_sha256", "the listed PNG files changed"))
        if problem := check_arrays(listing, manifest, record.count, labels, None, dict(fields)):
            problems.append(problem)
        return problems

    @classmethod
    def data_bytes(cls, entry: Mapping[str, Any]) -> int:
        return int(entry["png_bytes"])

    @classmethod
    def entry_files(cls, folder: Path, entry: Mapping[str, Any]) -> list[Path]:
        listing = resolve_member(folder, entry["file"])
        if not listing.is_file():
            return [listing]
        inside = []
        for rel in old_listing_paths(listing):
            try:
                inside.append(resolve_member(folder, rel))
            except ShardError:
                continue  # never delete what a tampered listing names outside the folder
        return [*inside, listing]


def finish(folder: Path, entries: Mapping[int, Mapping[str, Any]], classes: Sequence[str]) -> tuple[list[int] | None, dict[str, str] | None, dict[str, Any]]:
    """Join the task listings into ``metadata.csv``; return (image shape, metadata dtypes, its
    extra_files entry). Raises ShardError when the class folders would not sort in label order."""
    fields: list[tuple[str, str]] = []
    body: list[list[str]] = []
    folders: dict[str, set[int]] = {}
    for index in sorted(entries):
        task_fields, rows = read_listing(resolve_member(folder, entries[index]["file"]))
        if rows:
            fields = fields or task_fields
        for row in rows:
            body.append([row[0], row[2], *row[3:]])
            folders.setdefault(row[0].split("/", 1)[0], set()).add(int(row[2]))
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["path", "label", *(name for name, _ in fields)])
    out.writerows(body)
    first = body[0][0] if body else None
    order = [sorted(labels) for _, labels in sorted(folders.items())]
    if any(len(labels) != 1 for labels in order) or [o[0] for o in order] != sorted(o[0] for o in order):
        raise ShardError(f"{folder}: the class folders do not sort in label order, so an ImageFolder "
                         "reader would mislabel images; this source's png_path needs zero-padded class folders")
    data = buf.getvalue().encode()
    with disk_full_guard(folder):
        write_bytes_atomic(folder / METADATA_NAME, data)
    shape = list(_load_png(resolve_member(folder, first)).shape) if first else None
    extra = {METADATA_NAME: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
    return shape, {name: dtype for name, dtype in fields}, extra


def stale_listings(folder: Path, keep: set[str]) -> list[Path]:
    """Listings no manifest entry names (left by an older layout or a rebuilt task)."""
    return [p for p in folder.glob(f"{LISTING_PREFIX}*") if p.name not in keep]


def own_files(folder: Path) -> list[Path]:
    """What a PNG build names its own directly in ``folder`` (for a folder whose manifest cannot
    be trusted): the listings, the PNG files they name inside ``folder``, metadata.csv."""
    found = [p for listing in folder.glob(f"{LISTING_PREFIX}*")
             for p in PngReader.entry_files(folder, {"file": listing.name})]
    return found + list(folder.glob(METADATA_NAME))
