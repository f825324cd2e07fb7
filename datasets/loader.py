"""Training-time readers of a shard data set: a torch Dataset and a fast batch loader.

``ShardDataset`` is a plain map-style Dataset (``ds[i] -> (uint8 CxHxW tensor, label)``) that
works in any torch DataLoader, fork or spawn. ``ShardLoader`` is the fast path: it reads whole
batches with ``os.preadv`` + liblz4 in threads (both release the GIL) straight into one uint8
batch tensor (reused once the caller drops it), so no 16 MB batch is ever copied between
processes. Float conversion, normalisation and augmentation belong on the GPU.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdsl.datasets import sampler, shards
from fdsl.datasets._chunks import ChunkReader, read_layout
from fdsl.errors import FdslError, ShardError

log = logging.getLogger(__name__)

WORKER_KINDS = ("thread", "process")


@dataclass
class _Index:
    """Everything read at open, shared by a data set and its subsets (read-only)."""

    folder: Path
    classes: list[str]
    image_shape: tuple[int, ...]
    labels: np.ndarray  # int64 [N]
    metadata: dict[str, np.ndarray]  # name -> [N]
    shard_of: np.ndarray  # int32 [N], shard of each row
    local: np.ndarray  # int64 [N], row within its shard
    reader: ChunkReader


def _check_files(folder: Path, manifest: dict[str, Any], verify: bool) -> list[shards.ShardRecord]:
    if manifest.get("storage", "hdf5") != "hdf5":
        raise ShardError(f"{shards.manifest_path(folder)}: a PNG-folder data set; read it with "
                         "an image-folder loader, or rebuild it with --format hdf5")
    if not manifest.get("complete", False):
        raise ShardError(f"{shards.manifest_path(folder)}: incomplete data set "
                         f"({len(manifest.get('shards', []))}/{manifest.get('num_shards', '?')} "
                         "shards); re-run the same command to finish it")
    records = shards.shard_records(manifest)
    for record in records:
        if problem := shards.check_record(folder, record, checksum=verify):
            raise ShardError(str(problem))
    return records


def _open_index(path: str | Path, verify: bool) -> _Index:
    folder = Path(path)
    manifest = shards.read_manifest(folder)
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
    counts = np.array([r.count for r in records], np.int64)
    return _Index(
        folder=folder,
        classes=list(manifest.get("classes", [])),
        image_shape=shape,
        labels=np.concatenate(labels) if labels else np.zeros(0, np.int64),
        metadata={k: np.concatenate(v) for k, v in meta_parts.items() if v},
        shard_of=np.repeat(np.arange(len(records), dtype=np.int32), counts),
        local=np.concatenate([np.arange(c, dtype=np.int64) for c in counts]) if len(counts)
        else np.zeros(0, np.int64),
        reader=ChunkReader(layouts, shape),
    )


class ShardDataset(torch.utils.data.Dataset):
    """A map-style torch Dataset over a shard folder (see docs/FORMAT.md).

    ``ds[i]`` is ``(image, label)``: image a uint8 tensor [C, H, W] (C = 1 for grey shards),
    label an int. ``ds.labels`` (int64 [N]), ``ds.metadata`` (name -> [N] array, every
    per-image field concatenated over shards) and ``ds.classes`` (names, index = label) are read
    at open; images are read on demand. Files are opened lazily in each process, so the data set
    is safe to send to fork- or spawn-started DataLoader workers.

    Args:
        path: the data set folder (with manifest.json).
        verify: also check every shard's sha256 at open (sizes are always checked).

    Raises ShardError (one line naming the file) for a missing manifest or shard, an incomplete
    data set, a truncated file or, with ``verify``, a checksum mismatch.
    """

    def __init__(self, path: str | Path, verify: bool = False) -> None:
        self._index = _open_index(path, verify)
        self._rows: np.ndarray | None = None

    @classmethod
    def _view(cls, index: _Index, rows: np.ndarray) -> ShardDataset:
        view = cls.__new__(cls)
        view._index, view._rows = index, rows
        return view

    @property
    def folder(self) -> Path:
        return self._index.folder

    @property
    def classes(self) -> list[str]:
        return self._index.classes

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one returned image: (C, H, W)."""
        shape = self._index.image_shape
        return (1, *shape) if len(shape) == 2 else (shape[2], shape[0], shape[1])

    @property
    def rows(self) -> np.ndarray:
        """The global row (position in the full data set) of each of this view's items."""
        return np.arange(len(self._index.labels)) if self._rows is None else self._rows

    @property
    def labels(self) -> np.ndarray:
        return self._index.labels if self._rows is None else self._index.labels[self._rows]

    @property
    def metadata(self) -> dict[str, np.ndarray]:
        if self._rows is None:
            return dict(self._index.metadata)
        return {k: v[self._rows] for k, v in self._index.metadata.items()}

    def __len__(self) -> int:
        return len(self._index.labels) if self._rows is None else len(self._rows)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ShardDataset:
        """A view of items ``indices`` (positions in this data set), with the same interface."""
        positions = np.asarray(indices, dtype=np.int64).reshape(-1)
        if positions.size and (positions.min() < -len(self) or positions.max() >= len(self)):
            raise IndexError(f"subset index out of range for a data set of {len(self)} items")
        positions = positions % max(len(self), 1)
        return self._view(self._index, self.rows[positions])

    def _row(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a data set of {n} items")
        i %= n
        return i if self._rows is None else int(self._rows[i])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        row = self._row(int(i))
        out = torch.empty(self.image_shape, dtype=torch.uint8)
        self._read_into([row], out.numpy()[None])
        return out, int(self._index.labels[row])

    def _read_into(self, rows: Sequence[int] | np.ndarray, out: np.ndarray) -> None:
        """Read global ``rows`` into ``out``: uint8 [len(rows), C, H, W]."""
        index = self._index
        index.reader.read_many(index.shard_of[rows].tolist(), index.local[rows].tolist(), out)


class _BatchSet(torch.utils.data.Dataset):
    """Batch ``b`` of one epoch, for the process-worker path (one DataLoader item per batch)."""

    def __init__(self, dataset: ShardDataset, batches: list[np.ndarray]) -> None:
        self.dataset, self.batches = dataset, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.batches[b]
        # allocate straight in shared memory, as torch's default collate does in workers:
        # otherwise sending the batch to the main process copies it once more
        storage = torch.UntypedStorage._new_shared(len(rows) * int(np.prod(self.dataset.image_shape)))
        images = torch.empty(0, dtype=torch.uint8).set_(storage).view(len(rows), *self.dataset.image_shape)
        self.dataset._read_into(rows, images.numpy())
        return images, torch.from_numpy(self.dataset._index.labels[rows])


class _BufferPool:
    """Reusable uint8 batch buffers: fresh memory costs a page fault per 4 KiB, every batch.

    A buffer is handed out again only when nothing but the pool refers to it: every tensor made
    from it (and every view of those) holds a reference to the numpy array through its storage,
    so a batch the caller still keeps is never overwritten.
    """

    _SPARE = 4  # free buffers kept for reuse beyond those in use

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self._buffers: list[np.ndarray] = []
        self._lock = threading.Lock()

    def get(self, n: int) -> np.ndarray:
        """A buffer [n, *shape] nobody else holds (n <= the batch size of ``shape``)."""
        with self._lock:
            free = [k for k in range(len(self._buffers))
                    if sys.getrefcount(self._buffers[k]) <= _POOL_REFS]
            for k in reversed(free[self._SPARE:]):
                del self._buffers[k]  # the caller kept many batches; don't hold them all forever
            if free:
                return self._buffers[free[0]][:n]
            buf = np.empty(self.shape, np.uint8)
            self._buffers.append(buf)
            return buf[:n]


# references to a free pooled buffer while get() inspects it: the list's and getrefcount's own
_POOL_REFS = 2


def _read_batch(dataset: ShardDataset, rows: np.ndarray, pin: bool,
                pool: _BufferPool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (len(rows), *dataset.image_shape)
    if pool is not None and not pin:
        images = torch.from_numpy(pool.get(len(rows)))
    else:
        # pinned memory comes from torch's caching host allocator, which is reuse-safe with
        # non_blocking copies; a home-made pool would not know when the GPU copy is done
        images = torch.empty(shape, dtype=torch.uint8, pin_memory=pin)
    dataset._read_into(rows, images.numpy())
    return images, torch.from_numpy(dataset._index.labels[rows])


class ShardLoader:
    """Batches ``(uint8 images [B, C, H, W], int64 labels [B])`` from a shard data set, fast.

    Each epoch's order is a seeded permutation of (seed, epoch) (natural order without
    ``shuffle``), padded to a multiple of ``world_size`` and split into equal parts, one per DDP
    rank; call ``set_epoch`` before each epoch. Batches come in the same order whatever the
    number of workers.

    Args:
        data: a data set folder, or a ShardDataset (or subset of one).
        batch_size: images per batch.
        shuffle: permute each epoch (else natural order).
        num_workers: reader threads (``workers="thread"``) or processes; 0 reads in the caller.
        seed, rank, world_size: the permutation seed and this process's DDP rank / world size.
        drop_last: drop this rank's last, short batch.
        indices: read only these positions of ``data`` (e.g. kept indices after pruning).
        pin_memory: allocate batches in pinned memory (default: when CUDA is available).
        workers: ``thread`` (default, fastest: no inter-process copy) or ``process``
            (a torch DataLoader whose workers each read whole batches).
        prefetch: batches in flight per worker.
        verify: with a folder, check shard checksums at open.
    """

    def __init__(self, data: str | Path | ShardDataset, batch_size: int = 256, shuffle: bool = True,
                 num_workers: int = 2, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False, indices: Sequence[int] | np.ndarray | None = None,
                 pin_memory: bool | None = None, workers: str = "thread", prefetch: int = 2,
                 verify: bool = False) -> None:
        sampler.check_distributed(rank, world_size, seed)
        if batch_size < 1 or num_workers < 0 or prefetch < 1:
            raise FdslError("batch_size and prefetch must be >= 1 and num_workers >= 0")
        if workers not in WORKER_KINDS:
            raise FdslError(f"unknown workers {workers!r}; choose one of {', '.join(WORKER_KINDS)}")
        dataset = data if isinstance(data, ShardDataset) else ShardDataset(data, verify=verify)
        self.dataset = dataset if indices is None else dataset.subset(indices)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.num_workers, self.workers, self.prefetch = num_workers, workers, prefetch
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.epoch = 0
        self._pool = _BufferPool((batch_size, *self.dataset.image_shape))

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s permutation for the next iteration."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return sampler.num_batches(len(self.dataset), self.batch_size, self.drop_last, self.world_size)

    def epoch_rows(self) -> np.ndarray:
        """This rank's global rows for the current epoch, in reading order: int64 [per rank]."""
        positions = sampler.rank_positions(len(self.dataset), shuffle=self.shuffle, seed=self.seed,
                                           epoch=self.epoch, rank=self.rank,
                                           world_size=self.world_size)
        return self.dataset.rows[positions]

    def _batches(self) -> list[np.ndarray]:
        return sampler.split_batches(self.epoch_rows(), self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = self._batches()
        full = ShardDataset._view(self.dataset._index, None)
        if self.num_workers == 0:
            return (_read_batch(full, rows, self.pin_memory, self._pool) for rows in batches)
        if self.workers == "process":
            return iter(torch.utils.data.DataLoader(
                _BatchSet(full, batches), batch_size=None, shuffle=False,
                num_workers=self.num_workers, pin_memory=self.pin_memory,
                prefetch_factor=self.prefetch))
        return self._threaded(full, batches)

    def _threaded(self, full: ShardDataset, batches: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="fdsl-loader")
        pending: deque = deque()
        todo = iter(batches)
        try:
            for rows in todo:
                pending.append(pool.submit(_read_batch, full, rows, self.pin_memory, self._pool))
                if len(pending) >= self.num_workers * self.prefetch:
                    break
            while pending:
                batch = pending.popleft().result()
                if (rows := next(todo, None)) is not None:
                    pending.append(pool.submit(_read_batch, full, rows, self.pin_memory, self._pool))
                yield batch
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
