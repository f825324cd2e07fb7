"""Write a data set as a PNG tree in the source's official layout, with a metadata sidecar.

Each task writes its images (``png_path`` gives each one's relative path, e.g.
``00003/00003_0001.png``) and then a hidden listing ``.png-index-NNNNN.csv``: one row per image
with its path, sha256, label and metadata (header ``path,sha256,label,<field>:<dtype>...``). The
listing is the task's manifest entry (``file``); ``png_sha256`` hashes the listed names and hashes.
When every task is done, ``finish`` joins the listings into ``metadata.csv`` (``path,label,
<fields>``, written atomically) and checks that the class folders sort in label order, so an
ImageFolder reader gives every image the label fdsl gave it.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.atomic import (
    disk_full_error,
    disk_full_guard,
    free_bytes,
    sha256_file,
    write_bytes_atomic,
)
from fdsl.datasets.format.base import MARGIN, ShardWriter, check_part, metadata_array
from fdsl.datasets.manifest import resolve_member
from fdsl.errors import ShardError

LISTING_PREFIX = ".png-index-"  # + task number: a hidden file, so ImageFolder sees only class folders
METADATA_NAME = "metadata.csv"


def listing_name(index: int) -> str:
    return f"{LISTING_PREFIX}{index:05d}.csv"


def format_value(value: Any) -> str:
    """One metadata value as CSV text that parses back to the same number or string."""
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, float | np.floating):
        return repr(float(value))
    if isinstance(value, int | np.integer | bool | np.bool_):
        return str(int(value))
    return str(value)


def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


class PngShardWriter(ShardWriter):
    """One task of a PNG tree: its images and its listing."""

    def __init__(self, folder: Path, index: int, *, compression: str = "png", png_path: Any = None,
                 expected: int = 0) -> None:
        super().__init__(folder, index, compression=compression, png_path=png_path, expected=expected)
        if png_path is None:
            raise ShardError("the png format needs the source's png_path")
        self._rows: list[list[str]] = []
        self._fields: list[tuple[str, str]] | None = None
        self._digest = hashlib.sha256()
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
        needed = int(self._bytes / self.count * n * 1.1) + MARGIN if self.count else 0
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
                digest = hashlib.sha256(data).hexdigest()
                self._digest.update(f"{rel}\t{digest}\n".encode())
                self._bytes += len(data)
                self._rows.append([rel, digest, str(int(labels[k]))]
                                  + [format_value(stored[name][k]) for name, _ in fields])
        self.count += n

    def close(self) -> dict[str, Any]:
        buf = io.StringIO()
        out = csv.writer(buf, lineterminator="\n")
        out.writerow(["path", "sha256", "label"] + [f"{name}:{dtype}" for name, dtype in self._fields or []])
        out.writerows(self._rows)
        path = self.folder / listing_name(self.index)
        with disk_full_guard(self.folder):
            write_bytes_atomic(path, buf.getvalue().encode())
        return {"index": self.index, "file": path.name, "count": self.count, "bytes": path.stat().st_size,
                "sha256": sha256_file(path), "png_bytes": self._bytes, "png_sha256": self._digest.hexdigest()}

    def abort(self) -> None:
        # Images already written stay under their final names but unlisted; the re-run rewrites
        # them with the same bytes. Temporary files were removed by write_bytes_atomic.
        self._rows = []
