"""What the studies read from a data set folder, through the data layer's one public reader
(``open_dataset``, HDF5 and PNG alike): labels and metadata columns, and a content hash of every
image (to prove two sets disjoint)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.errors import FdslError
from fdsl.progress import Progress

HASH_BATCH = 256  # images read per call while hashing


def _reader(folder: str | Path) -> Any:
    """The data set's reader (a context manager that closes its files)."""
    from fdsl.datasets.format import open_dataset

    if not (Path(folder) / "manifest.json").is_file():
        raise FdslError(f"{folder}: not an fdsl data set folder (no manifest.json)")
    return open_dataset(folder)


def columns(folder: str | Path, fields: tuple[str, ...] = ()) -> tuple[list[str], dict[str, np.ndarray]]:
    """Class names and ``{"labels": int64 [N], field: [N] ...}`` in the loaders' row order;
    FdslError naming the recorded fields for a field the set lacks."""
    with _reader(folder) as reader:
        missing = [f for f in fields if f not in reader.metadata_fields]
        if missing:
            raise FdslError(f"{folder} records no {missing[0]!r}; it records "
                            f"{', '.join(sorted(reader.metadata_fields)) or 'no metadata'}")
        if len(reader) == 0:
            raise FdslError(f"{folder}: the data set holds no images")
        return list(reader.classes), {"labels": np.asarray(reader.labels), **reader.metadata(list(fields))}


def metadata_fields(folder: str | Path) -> list[str]:
    """The per-image metadata fields the set records."""
    with _reader(folder) as reader:
        return sorted(reader.metadata_fields)


def content_hashes(folder: str | Path, desc: str = "hashing images", progress: bool = True) -> list[bytes]:
    """SHA-256 of every image's pixels (with its shape), in row order."""
    hashes: list[bytes] = []
    with _reader(folder) as reader, Progress(total=len(reader), desc=desc, unit="img", disable=not progress) as bar:
        for start in range(0, len(reader), HASH_BATCH):
            images = reader.read_images(range(start, min(start + HASH_BATCH, len(reader))))
            for image in images:
                if image.ndim == 3 and image.shape[-1] == 1:  # grey with or without a channel axis
                    image = image[..., 0]
                digest = hashlib.sha256(repr(image.shape).encode())
                digest.update(np.ascontiguousarray(image).tobytes())
                hashes.append(digest.digest())
            bar.update(len(images))
    return hashes


def refuse_overlap(data: str | Path, test_data: str | Path, progress: bool = True) -> None:
    """FdslError (one line) when an image of ``test_data`` has the same pixels as one of ``data``."""
    train = {h: i for i, h in enumerate(content_hashes(data, "hashing --data", progress))}
    shared = [(j, train[h]) for j, h in enumerate(content_hashes(test_data, "hashing --test-data", progress)) if h in train]
    if shared:
        raise FdslError(f"--test-data {test_data} shares {len(shared)} images with --data {data} (same "
                        f"pixels; first: test image {shared[0][0]} = training image {shared[0][1]}); the "
                        "test set must be disjoint from the training data")
