"""What a loader reads at open: labels, metadata and where every image lies, for one data set.

An ``Index`` is shared, read-only, by a ShardDataset and all its subsets and DDP views. Its
``reader`` reads images by (shard, row in shard) into a uint8 batch (see ``_batches``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.datasets._chunks import ChunkReader, read_layout
from fdsl.datasets.format import open_dataset
from fdsl.datasets.manifest import resolve_member


@dataclass
class Index:
    """Everything read at open, shared by a data set and its subsets (read-only)."""

    folder: Path
    classes: list[str]
    image_shape: tuple[int, ...]  # as stored: (H, W) or (H, W, C)
    labels: np.ndarray  # int64 [N]
    metadata: dict[str, np.ndarray]  # name -> [N]
    shard_of: np.ndarray  # int32 [N], shard of each row
    local: np.ndarray  # int64 [N], row within its shard
    reader: Any  # read_many(shard_ids, local, out), advise(shard_ids, local)
    stored_bytes: int  # bytes on disk of the whole data set (images)


def _rows_of(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shard of each row, row within its shard) for shards of ``counts`` images."""
    shard_of = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    local = (np.concatenate([np.arange(c, dtype=np.int64) for c in counts]) if len(counts)
             else np.zeros(0, np.int64))
    return shard_of, local


class PngImages:
    """The reader interface over a PNG tree: ``local`` is the global image index (one "shard");
    each PNG is decoded by PIL (which releases the GIL while it decodes)."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader

    def read_many(self, shard_ids: list[int], local: list[int], out: np.ndarray) -> None:
        images = self.reader.read_images(local)  # checks every shape against the manifest
        out[...] = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)

    def advise(self, shard_ids: Any, local: Any) -> int:
        return 0  # one file per image: the kernel's per-file read-ahead already applies


def open_index(path: str | Path, verify: bool) -> Index:
    """Open a complete data set folder of either storage (``hdf5`` shards or a ``png`` tree).

    The format's reader validates the manifest and checks every shard against it (ShardError,
    one line, for anything broken); HDF5 images are then read by ``ChunkReader``, which
    bypasses h5py for speed.
    """
    folder = Path(path)
    dataset = open_dataset(folder, verify=verify)
    manifest = dataset.manifest
    if manifest.get("storage", "hdf5") == "png":
        shard_of, local = np.zeros(len(dataset), np.int32), np.arange(len(dataset), dtype=np.int64)
        reader: Any = PngImages(dataset)
        stored = sum(int(e.get("png_bytes", 0)) for e in manifest["shards"])
    else:
        shape = dataset.image_shape
        layouts = [read_layout(resolve_member(folder, r.file), r.count, shape) for r in dataset.records]
        shard_of, local = _rows_of(np.array([r.count for r in dataset.records], np.int64))
        reader = ChunkReader(layouts, shape)
        stored = sum(int(r.bytes) for r in dataset.records)
    metadata = dict(dataset.metadata())
    if isinstance(reader, ChunkReader):
        dataset.close()  # h5py handles are only needed for the metadata
    return Index(folder=folder, classes=list(dataset.classes), image_shape=tuple(dataset.image_shape),
                 labels=np.asarray(dataset.labels, np.int64), metadata=metadata,
                 shard_of=shard_of, local=local, reader=reader, stored_bytes=stored)
