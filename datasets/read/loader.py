"""``ShardLoader``: the fast batch loader of an fdsl data set (``dataset.py``'s ShardDataset is
the per-image, ImageFolder-style view).

It reads whole batches through the format's row reader (HDF5: ``os.preadv`` + liblz4 in threads,
both release the GIL) straight into one uint8 batch tensor (reused once the caller drops it), so
no 16 MB batch is ever copied between processes. Float conversion, normalisation and augmentation
belong on the GPU; a data set's ``transform`` / ``target_transform``, when it has them, are
applied per image as torch's DataLoader would.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from fdsl.datasets.read import sampler
from fdsl.datasets.read._batches import BatchSet, BufferPool, ReadAhead, read_batch
from fdsl.datasets.read.dataset import ShardDataset
from fdsl.errors import FdslError
from fdsl.limits import physical_memory

log = logging.getLogger(__name__)

WORKER_KINDS = ("thread", "process")
SHUFFLES = ("auto", "full", "block", "none")


class ShardLoader:
    """Batches ``(uint8 images [B, C, H, W], int64 labels [B])`` from a shard data set, fast.

    The images are as stored (C = 1 for grey sets: expand them on the device). A ShardDataset
    with a ``transform`` or ``target_transform`` gets them applied: each batch is then what
    ``torch.utils.data.DataLoader(dataset)`` would collate, ``dataset[i]`` per item (the image
    in the data set's ``mode``, through ``transform``; the label through ``target_transform``),
    computed in the reader threads. Random transforms then draw on torch's global RNG in those
    threads; for a seeded pipeline, leave the data set without transforms and transform each
    batch (e.g. kornia or torchvision.transforms.v2 on the device).

    Each epoch's order depends only on (seed, epoch) (see ``fdsl.datasets.read.sampler``), is
    padded to a multiple of ``world_size`` and split into equal parts, one per DDP rank; call
    ``set_epoch`` before each epoch. Batches come in the same order whatever the number of
    workers.

    ``shuffle``: ``"auto"`` (or True, the default) picks ``"full"``, a uniform permutation, when
    the data set's files take at most ``ram_fraction`` of this machine's memory, and ``"block"``
    otherwise: blocks of ``block_size`` consecutive images, shuffled, then mixed within windows
    of ``window_blocks`` blocks, read with large read-ahead requests, so that data bigger than
    memory streams from disk. On class-ordered data a block-shuffled batch of 256 holds about
    0.8x the distinct classes of a uniform one (``sampler.batch_diversity`` measures it).
    ``"none"`` (or False) reads in natural order.

    Args:
        data: a data set folder, or a ShardDataset (or subset of one).
        batch_size: images per batch.
        shuffle: ``auto``, ``full``, ``block``, ``none`` (True = ``auto``, False = ``none``).
        num_workers: reader threads (``workers="thread"``) or processes; 0 reads in the caller.
        seed, rank, world_size: the order's seed and this process's DDP rank / world size.
        drop_last: drop this rank's last, short batch.
        indices: read only these positions of ``data`` (e.g. kept indices after pruning).
        pin_memory: allocate batches in pinned memory (default: when CUDA is available).
        workers: ``thread`` (default, fastest: no inter-process copy) or ``process``
            (a torch DataLoader whose workers each read whole batches).
        prefetch: batches in flight per worker.
        verify: with a folder, check shard checksums at open.
        ram_fraction: the share of memory above which ``auto`` picks ``block``.
        block_size, window_blocks: the block order's block length and blocks per window.
    """

    def __init__(self, data: str | Path | ShardDataset, batch_size: int = 256,
                 shuffle: bool | str = True, num_workers: int = 2, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False,
                 indices: Sequence[int] | np.ndarray | None = None, pin_memory: bool | None = None,
                 workers: str = "thread", prefetch: int = 2, verify: bool = False,
                 ram_fraction: float = 0.5, block_size: int = sampler.BLOCK_SIZE,
                 window_blocks: int = sampler.WINDOW_BLOCKS) -> None:
        sampler.check_distributed(rank, world_size, seed)
        if batch_size < 1 or num_workers < 0 or prefetch < 1 or block_size < 1 or window_blocks < 1:
            raise FdslError("batch_size, prefetch, block_size and window_blocks must be >= 1 and "
                            "num_workers >= 0")
        if workers not in WORKER_KINDS:
            raise FdslError(f"unknown workers {workers!r}; choose one of {', '.join(WORKER_KINDS)}")
        if isinstance(shuffle, bool):
            shuffle = "auto" if shuffle else "none"
        if shuffle not in SHUFFLES:
            raise FdslError(f"unknown shuffle {shuffle!r}; choose one of {', '.join(SHUFFLES)}")
        if not ram_fraction > 0:  # also refuses NaN
            raise FdslError(f"ram_fraction must be > 0, got {ram_fraction}")
        dataset = data if isinstance(data, ShardDataset) else ShardDataset(data, verify=verify)
        self.dataset = dataset if indices is None else dataset.subset(indices)
        self.batch_size, self.drop_last = batch_size, drop_last
        self.num_workers, self.workers, self.prefetch = num_workers, workers, prefetch
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.block_size, self.window_blocks = block_size, window_blocks
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.shuffle = shuffle
        self.order = self._resolve(shuffle, ram_fraction)
        self.epoch = 0
        self._pool = BufferPool((batch_size, *self.dataset.stored_shape))

    def _resolve(self, shuffle: str, ram_fraction: float) -> str:
        if shuffle != "auto":
            return shuffle
        size, ram = self.dataset.stored_bytes, physical_memory() or 0
        order = "block" if ram and size > ram_fraction * ram else "full"
        log.info("shuffle=auto: %s order (%.1f GB of data, %.1f GB of memory, ram_fraction %g)",
                 order, size / 1e9, ram / 1e9, ram_fraction)
        return order

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order for the next iteration."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return sampler.num_batches(len(self.dataset), self.batch_size, self.drop_last, self.world_size)

    def epoch_rows(self) -> np.ndarray:
        """This rank's global rows for the current epoch, in reading order: int64 [per rank]."""
        positions = sampler.rank_positions(len(self.dataset), shuffle=self.order, seed=self.seed,
                                           epoch=self.epoch, rank=self.rank,
                                           world_size=self.world_size, block_size=self.block_size,
                                           window_blocks=self.window_blocks)
        return self.dataset.rows[positions]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rows = self.epoch_rows()
        batches = sampler.split_batches(rows, self.batch_size, self.drop_last)
        full = self.dataset._view(None)  # rows are global; the transforms and mode stay
        # a uniform order has no runs to fetch ahead; the others read ahead one window
        ahead = None if self.order == "full" else ReadAhead(full._index, rows,
                                                             self.block_size * self.window_blocks)
        if self.num_workers == 0:
            return self._inline(full, batches, ahead)
        if self.workers == "process":
            loader = torch.utils.data.DataLoader(
                BatchSet(full, batches), batch_size=None, shuffle=False,
                num_workers=self.num_workers, pin_memory=self.pin_memory,
                prefetch_factor=self.prefetch)
            return self._advised(iter(loader), ahead, self.num_workers * self.prefetch + 1)
        return self._threaded(full, batches, ahead)

    def _inline(self, full: ShardDataset, batches: list[np.ndarray],
                ahead: ReadAhead | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._advised((read_batch(full, rows, self.pin_memory, self._pool) for rows in batches),
                             ahead, 1)

    def _advised(self, batches: Iterator, ahead: ReadAhead | None, in_flight: int) -> Iterator:
        """``batches``, keeping read-ahead advice ``in_flight`` batches ahead of the consumer."""
        try:
            if ahead is not None:
                ahead.ensure(in_flight * self.batch_size)
            for seen, batch in enumerate(batches, 1):
                if ahead is not None:
                    ahead.ensure((seen + in_flight) * self.batch_size)
                yield batch
        finally:
            if ahead is not None:
                ahead.close()

    def _threaded(self, full: ShardDataset, batches: list[np.ndarray],
                  ahead: ReadAhead | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="fdsl-loader")
        pending: deque = deque()
        todo = iter(batches)
        submitted = 0

        def submit(rows: np.ndarray) -> None:
            nonlocal submitted
            submitted += len(rows)
            if ahead is not None:
                ahead.ensure(submitted)
            pending.append(pool.submit(read_batch, full, rows, self.pin_memory, self._pool))

        try:
            for rows in todo:
                submit(rows)
                if len(pending) >= self.num_workers * self.prefetch:
                    break
            while pending:
                batch = pending.popleft().result()
                if (rows := next(todo, None)) is not None:
                    submit(rows)
                yield batch
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if ahead is not None:
                ahead.close()
