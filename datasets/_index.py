"""What a loader reads at open: labels, metadata and where every image lies, for one data set.

An ``Index`` is shared, read-only, by a ShardDataset and all its subsets and DDP views. Its
``reader`` reads images by (shard, row in shard) into a uint8 batch (see ``_batches``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.datasets import shards
from fdsl.datasets._chunks import ChunkReader, read_layout
from fdsl.errors import ShardError


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


def _check_files(folder: Path, manifest: dict[str, Any], verify: bool) -> list[shards.ShardRecord]:
    if not manifest.get("complete", False):
        raise ShardError(f"{shards.manifest_path(folder)}: incomplete data set "
                         f"({len(manifest.get('shards', []))}/{manifest.get('num_shards', '?')} "
                         "shards); re-run the same command to finish it")
    records = shards.shard_records(manifest)
    for record in records:
        if problem := shards.check_record(folder, record, checksum=verify):
            raise ShardError(str(problem))
    return records


def _rows_of(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shard of each row, row within its shard) for shards of ``counts`` images."""
    shard_of = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    local = (np.concatenate([np.arange(c, dtype=np.int64) for c in counts]) if len(counts)
             else np.zeros(0, np.int64))
    return shard_of, local


def open_hdf5(folder: Path, manifest: dict[str, Any], verify: bool) -> Index:
    """The index of an HDF5 shard data set (ShardError, one line, for anything broken)."""
    records = _check_files(folder, manifest, verify)
    shape = tuple(manifest.get("image_shape") or ())
    if not shape and sum(r.count for r in records):
        raise ShardError(f"{shards.manifest_path(folder)}: image_shape missing")
    layouts, labels, meta_parts = [], [], {name: [] for name in manifest.get("metadata_fields") or {}}
    for record in records:
        layouts.append(read_layout(folder / record.file, record.count, shape))
        with shards.open_shard(folder / record.file) as f:
            labels.append(np.asarray(f["labels"][: record.count], np.int64))
            for name, parts in meta_parts.items():
                if name not in f["metadata"]:
                    raise ShardError(f"{folder / record.file}: metadata field {name!r} missing")
                parts.append(f["metadata"][name][: record.count])
    shard_of, local = _rows_of(np.array([r.count for r in records], np.int64))
    return Index(
        folder=folder,
        classes=list(manifest.get("classes", [])),
        image_shape=shape,
        labels=np.concatenate(labels) if labels else np.zeros(0, np.int64),
        metadata={k: np.concatenate(v) for k, v in meta_parts.items() if v},
        shard_of=shard_of,
        local=local,
        reader=ChunkReader(layouts, shape),
        stored_bytes=sum(int(r.bytes) for r in records),
    )


def open_index(path: str | Path, verify: bool) -> Index:
    """Open a data set folder of either storage (``hdf5`` shards or a ``png`` tree)."""
    folder = Path(path)
    manifest = shards.read_manifest(folder)
    if manifest.get("storage", "hdf5") != "hdf5":
        raise ShardError(f"{shards.manifest_path(folder)}: a PNG-folder data set; read it with "
                         "an image-folder loader, or rebuild it with --format hdf5")
    return open_hdf5(folder, manifest, verify)
