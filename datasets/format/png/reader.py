"""Read and verify PNG-tree data sets: ``metadata.csv`` plus the per-task listings.

``check_entry`` checks one task: its listing inside the folder, of the recorded size and sha256,
written by this fdsl (with per-image metadata), every listed PNG inside the folder, present and
of the listed sha256, the combined ``png_sha256``, the row count, the labels within the classes
and the fields against the manifest. ``PngReader`` reads ``metadata.csv`` (size and sha256 from
the manifest, one row per image, paths inside the folder, labels in range) and decodes PNGs on
demand, checking each image's shape against the manifest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.datasets.format.base import DatasetReader
from fdsl.datasets.format.checks import Problem, check_arrays
from fdsl.datasets.format.checksum import ListDigest, check_digest, check_file, sha256_file
from fdsl.datasets.format.manifest import ShardRecord, require_totals, resolve_member
from fdsl.datasets.format.png.listing import (
    METADATA_NAME,
    listing_files,
    parse_column,
    png_shape,
    read_csv,
    read_listing,
    row_labels,
)
from fdsl.errors import ShardError


def _load_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ShardError(f"{path}: unreadable PNG ({exc})") from None


class PngReader(DatasetReader):
    """(images, labels, metadata) of a PNG tree by global image index (rows of metadata.csv)."""

    def __init__(self, folder: str | Path, manifest: dict[str, Any], *, verify: bool = False) -> None:
        super().__init__(folder, manifest)
        info = self.manifest.get("extra_files", {}).get(METADATA_NAME)
        if info is None:
            raise ShardError(f"{self.folder}: PNG data set without {METADATA_NAME} (an older fdsl wrote "
                             "it); re-run the same command to add it")
        record = ShardRecord.for_extra(METADATA_NAME, info)
        if problem := check_file(self.folder, record, checksum=True):
            raise ShardError(str(problem))
        for entry in self.manifest["shards"]:
            if verify:
                problems = self.check_entry(self.folder, entry, self.manifest, checksum=True)
            else:  # the listings only (cheap): each count against its rows
                problems = self._check_listing(entry)
            if problems:
                raise ShardError(str(problems[0]))
        require_totals(self.folder, self.manifest)
        rows = read_csv(self.folder / METADATA_NAME)
        header, body = rows[0], rows[1:]
        names = sorted(self.metadata_fields)
        if header != ["path", "label", *names]:
            raise ShardError(f"{self.folder / METADATA_NAME}: columns {header} differ from path, label, {names}")
        if len(body) != len(self):
            raise ShardError(f"{self.folder / METADATA_NAME}: {len(body)} rows, manifest says {len(self)} images")
        columns = list(zip(*body, strict=True)) if body else [()] * len(header)
        self.names = list(columns[0])
        self.paths = [resolve_member(self.folder, p) for p in self.names]
        self._labels = np.array([int(v) for v in columns[1]], np.int64)
        if len(self._labels) and (self._labels.min() < 0 or self._labels.max() >= len(self.classes)):
            raise ShardError(f"{self.folder / METADATA_NAME}: labels outside 0..{len(self.classes) - 1}")
        self._metadata = {name: parse_column(columns[2 + k], self.metadata_fields[name])
                          for k, name in enumerate(names)}

    def _check_listing(self, entry: Mapping[str, Any]) -> list[Problem]:
        record = ShardRecord.from_entry(entry)
        if problem := check_file(self.folder, record, checksum=False):
            return [problem]
        try:
            fields, rows = read_listing(self.folder / record.file)
        except (ShardError, UnicodeDecodeError) as exc:
            return [Problem.from_error(self.folder / record.file, "listing", exc)]
        labels = row_labels(rows)
        first = resolve_member(self.folder, rows[0][0]) if rows else None
        shape = png_shape(first) if first is not None and first.is_file() else None
        problem = check_arrays(self.folder / record.file, self.manifest, record.count, labels, shape, dict(fields))
        return [problem] if problem else []

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def sample_names(self) -> list[str]:
        return list(self.names)

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
            labels = row_labels(rows)
        except (ShardError, ValueError, UnicodeDecodeError) as exc:
            return [Problem.from_error(listing, "listing", exc)]
        problems, combined = [], ListDigest()
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
                combined.add(row[0], actual)
                if problem := check_digest(path, row[1], "listing", actual):
                    problems.append(problem)
        if checksum and not problems and combined.hexdigest() != entry["png_sha256"]:
            problems.append(Problem(str(listing), "png_sha256", "the listed PNG files changed"))
        if problem := check_arrays(listing, manifest, record.count, labels, None, dict(fields)):
            problems.append(problem)
        return problems

    @classmethod
    def data_bytes(cls, entry: Mapping[str, Any]) -> int:
        return int(entry["png_bytes"])

    @classmethod
    def entry_labels(cls, folder: Path, entry: Mapping[str, Any]) -> np.ndarray:
        _, rows = read_listing(resolve_member(folder, entry["file"]))
        return row_labels(rows)

    @classmethod
    def entry_files(cls, folder: Path, entry: Mapping[str, Any]) -> list[Path]:
        return listing_files(folder, entry["file"])
