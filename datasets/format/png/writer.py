"""Write a data set as a PNG tree in the source's official layout, with a metadata sidecar.

Each task writes its images (the source's ``png_path`` gives each one's relative path, e.g.
``00003/00003_0001.png``) and then its listing (``listing.py``): one row per image with its path,
sha256, label and metadata. The listing is the task's manifest entry (``file``); ``png_sha256``
hashes the listed names and hashes (``checksum.ListDigest``). When every task is done, ``finish``
joins the listings into ``metadata.csv`` (``path,label,<fields>``, written atomically) and checks
that the class folders sort in label order, so an ImageFolder reader gives every image the label
fdsl gave it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.atomic import disk_full_error, disk_full_guard, free_bytes, write_bytes_atomic
from fdsl.datasets.format.base import ShardWriter, check_part, metadata_array
from fdsl.datasets.format.checksum import ListDigest, bytes_record, file_record, sha256_bytes
from fdsl.datasets.format.manifest import resolve_member
from fdsl.datasets.format.png.listing import (
    LISTING_HEADER,
    LISTING_PREFIX,
    METADATA_NAME,
    csv_bytes,
    format_value,
    listing_files,
    listing_name,
    png_shape,
    read_listing,
)
from fdsl.errors import ShardError
from fdsl.limits import DISK_MARGIN
from fdsl.sources import ShardSource


def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


class PngShardWriter(ShardWriter):
    """One task of a PNG tree: its images and its listing."""

    def __init__(self, folder: Path, index: int, source: ShardSource | None = None, *,
                 compression: str = "png", expected: int = 0) -> None:
        super().__init__(folder, index, source, compression=compression, expected=expected)
        self.png_path = getattr(source, "png_path", None)  # optional in a ShardSource
        if self.png_path is None:
            raise ShardError("the png format needs the source's png_path")
        self._rows: list[list[str]] = []
        self._fields: list[tuple[str, str]] | None = None
        self._digest = ListDigest()
        self._bytes = 0

    def append(self, images: np.ndarray, labels: np.ndarray, metadata: Mapping[str, np.ndarray] | None = None) -> None:
        images, labels = check_part(images, labels)
        n = len(labels)
        raw = dict(metadata or {})
        stored = {name: metadata_array(name, values, n) for name, values in raw.items()}
        fields = [(name, stored[name].dtype.str) for name in sorted(stored)]
        if self._fields is None:
            self._fields = fields
        if [f for f, _ in fields] != [f for f, _ in self._fields]:
            raise ShardError(f"{self.folder}: metadata fields {sorted(stored)} differ from {self._fields}")
        needed = int(self._bytes / self.count * n * 1.1) + DISK_MARGIN if self.count else 0
        if needed and free_bytes(self.folder) < needed:
            raise disk_full_error(self.folder, needed=needed)
        with disk_full_guard(self.folder, needed or None):
            for k in range(n):
                rel = self.png_path(int(labels[k]), {name: values[k] for name, values in raw.items()},
                                    int(stored["item"][k]) if "item" in stored else self.count + k)
                path = resolve_member(self.folder, rel)
                path.parent.mkdir(parents=True, exist_ok=True)
                data = encode_png(images[k])
                write_bytes_atomic(path, data, sync=False)
                digest = sha256_bytes(data)
                self._digest.add(rel, digest)
                self._bytes += len(data)
                self._rows.append([rel, digest, str(int(labels[k]))]
                                  + [format_value(stored[name][k]) for name, _ in fields])
        self.count += n

    def close(self) -> dict[str, Any]:
        header = LISTING_HEADER + [f"{name}:{dtype}" for name, dtype in self._fields or []]
        path = self.folder / listing_name(self.index)
        with disk_full_guard(self.folder):
            write_bytes_atomic(path, csv_bytes(header, self._rows))
        return {"index": self.index, "file": path.name, "count": self.count, **file_record(path),
                "png_bytes": self._bytes, "png_sha256": self._digest.hexdigest()}

    def abort(self) -> None:
        # Images already written stay under their final names but unlisted; the re-run rewrites
        # them with the same bytes. Temporary files were removed by write_bytes_atomic.
        self._rows = []


def finish(folder: Path, entries: Mapping[int, Mapping[str, Any]], classes: list[str]) -> tuple[
        list[int] | None, dict[str, str] | None, dict[str, Any]]:
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
    order = [sorted(labels) for _, labels in sorted(folders.items())]
    if any(len(labels) != 1 for labels in order) or [o[0] for o in order] != sorted(o[0] for o in order):
        raise ShardError(f"{folder}: the class folders do not sort in label order, so an ImageFolder "
                         "reader would mislabel images; this source's png_path needs zero-padded class folders")
    data = csv_bytes(["path", "label", *(name for name, _ in fields)], body)
    with disk_full_guard(folder):
        write_bytes_atomic(folder / METADATA_NAME, data)
    shape = png_shape(resolve_member(folder, body[0][0])) if body else None
    return (list(shape) if shape else None), dict(fields), {METADATA_NAME: bytes_record(data)}


def own_files(folder: Path) -> list[Path]:
    """What a PNG build names its own directly in ``folder`` (for a folder whose manifest cannot
    be trusted): the listings, the PNG files they name inside ``folder``, metadata.csv."""
    found = [p for listing in folder.glob(f"{LISTING_PREFIX}*") for p in listing_files(folder, listing.name)]
    return found + list(folder.glob(METADATA_NAME))

