"""The files a PNG tree is made of besides its images, shared by its writer and reader.

A task's listing ``.png-index-NNNNN.csv`` (hidden, so ImageFolder sees only class folders) has one
row per image: ``path,sha256,label,<field>:<dtype>...``. ``metadata.csv`` joins them at the end:
``path,label,<fields>``. Values are written as text that parses back to the same number or
string (``format_value`` / ``parse_column``); ``png_shape`` reads an image's shape from its header.
"""

from __future__ import annotations

import csv
import io
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.datasets.format.manifest import resolve_member
from fdsl.errors import ShardError

LISTING_PREFIX = ".png-index-"  # + task number
METADATA_NAME = "metadata.csv"
LISTING_HEADER = ["path", "sha256", "label"]


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


def csv_bytes(header: Sequence[str], rows: Sequence[Sequence[str]]) -> bytes:
    """A CSV file's bytes (``\\n`` line ends)."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(header)
    out.writerows(rows)
    return buf.getvalue().encode()


def read_csv(path: Path) -> list[list[str]]:
    """Every non-empty row of a CSV file, header first."""
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    return rows[:1] + [r for r in rows[1:] if r]


def read_listing(path: Path) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """(fields as (name, dtype), rows ``[path, sha256, label, values...]``) of a task listing.
    ShardError for a listing without the header (written by an older fdsl) or a malformed row."""
    rows = read_csv(path)
    if not rows or rows[0][:3] != LISTING_HEADER:
        raise ShardError(f"{path}: PNG listing without per-image metadata (an older fdsl wrote it)")
    fields = [tuple(col.rsplit(":", 1)) for col in rows[0][3:]]
    if any(len(f) != 2 for f in fields):
        raise ShardError(f"{path}: malformed listing header")
    if any(len(r) != len(rows[0]) for r in rows[1:]):
        raise ShardError(f"{path}: a listing row has the wrong number of columns")
    return fields, rows[1:]  # type: ignore[return-value]


def row_labels(rows: Sequence[Sequence[str]]) -> np.ndarray:
    """int64 labels of a listing's rows."""
    return np.array([int(row[2]) for row in rows], np.int64)


def listing_paths(path: Path) -> list[str]:
    """The PNG paths of a listing in either form (``rel<TAB>sha256`` lines of older fdsl)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if text.startswith(",".join(LISTING_HEADER)):
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


def listing_files(folder: Path, name: str) -> list[Path]:
    """A task's files: the PNGs its listing names inside ``folder``, then the listing."""
    listing = resolve_member(folder, name)
    if not listing.is_file():
        return [listing]
    inside = []
    for rel in listing_paths(listing):
        try:
            inside.append(resolve_member(folder, rel))
        except ShardError:
            continue  # never delete what a tampered listing names outside the folder
    return [*inside, listing]
