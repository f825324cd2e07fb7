"""Batch plumbing behind ShardLoader: reused batch buffers, process-worker batches, read-ahead.

Images come from the data set's ``Index.images``, its format's ``RowReader`` (``read_rows(rows,
out)``, ``advise(rows)``).
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch


class BufferPool:
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


def read_batch(dataset: Any, rows: np.ndarray, pin: bool,
               pool: BufferPool | None = None) -> tuple[Any, Any]:
    """Global ``rows`` of a ShardDataset as (uint8 [B, C, H, W], int64 [B]), or, when it has
    transforms, its items collated (see ``transformed``)."""
    if dataset.has_transforms:
        return transformed(dataset, rows, pin)
    shape = (len(rows), *dataset.stored_shape)
    if pool is not None and not pin:
        images = torch.from_numpy(pool.get(len(rows)))
    else:
        # pinned memory comes from torch's caching host allocator, which is reuse-safe with
        # non_blocking copies; a home-made pool would not know when the GPU copy is done
        images = torch.empty(shape, dtype=torch.uint8, pin_memory=pin)
    dataset._read_into(rows, images.numpy())
    return images, torch.from_numpy(dataset._index.labels[rows])


def transformed(dataset: Any, rows: np.ndarray, pin: bool) -> tuple[Any, Any]:
    """``dataset.item`` of every row (its mode, ``transform`` and ``target_transform``), collated
    as torch's DataLoader does (``default_collate``)."""
    raw = torch.empty((len(rows), *dataset.stored_shape), dtype=torch.uint8)
    dataset._read_into(rows, raw.numpy())
    labels = dataset._index.labels[rows].tolist()
    batch = torch.utils.data.default_collate([dataset.item(raw[k], labels[k]) for k in range(len(rows))])
    if pin:
        batch = [part.pin_memory() if isinstance(part, torch.Tensor) else part for part in batch]
    return tuple(batch)


class BatchSet(torch.utils.data.Dataset):
    """Batch ``b`` of one epoch, for the process-worker path (one DataLoader item per batch)."""

    def __init__(self, dataset: Any, batches: list[np.ndarray]) -> None:
        self.dataset, self.batches = dataset, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, b: int) -> tuple[Any, Any]:
        rows = self.batches[b]
        if self.dataset.has_transforms:
            return transformed(self.dataset, rows, False)
        # allocate straight in shared memory, as torch's default collate does in workers:
        # otherwise sending the batch to the main process copies it once more
        shape = self.dataset.stored_shape
        storage = torch.UntypedStorage._new_shared(len(rows) * int(np.prod(shape)))
        images = torch.empty(0, dtype=torch.uint8).set_(storage).view(len(rows), *shape)
        self.dataset._read_into(rows, images.numpy())
        return images, torch.from_numpy(self.dataset._index.labels[rows])


class ReadAhead:
    """Asks the kernel, one thread in the background, to fetch the chunks of the next ``span``
    rows of an epoch before the readers need them, as a few large reads per window.

    ``ensure(stop)`` makes sure rows up to ``stop + span`` have been advised. Advice is only a
    hint: a read never waits for it, and a failed one (its future's error is never fetched)
    leaves the read to report the problem.
    """

    def __init__(self, index: Any, rows: np.ndarray, span: int) -> None:
        self.index, self.rows, self.span = index, rows, max(int(span), 1)
        self.done = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fdsl-readahead")

    def _advise(self, rows: np.ndarray) -> None:
        self.index.images.advise(rows)

    def ensure(self, stop: int) -> None:
        target = min(len(self.rows), stop + self.span)
        while self.done < target:
            chunk = self.rows[self.done:self.done + self.span]
            self._pool.submit(self._advise, chunk)
            self.done += len(chunk)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
