"""Training-time readers of a shard data set: a torch Dataset and a fast batch loader.

``ShardDataset`` is a map-style Dataset (``ds[i] -> (uint8 CxHxW tensor, label)``), a drop-in
for torchvision's ``ImageFolder`` (``transform``, ``target_transform``, ``targets``, ``classes``,
``class_to_idx``) that works in any torch DataLoader, fork or spawn. ``ShardLoader`` is the fast
path: it reads whole batches with ``os.preadv`` + liblz4 in threads (both release the GIL)
straight into one uint8 batch tensor (reused once the caller drops it), so no 16 MB batch is
ever copied between processes. Float conversion, normalisation and augmentation belong on the GPU.
"""

from __future__ import annotations

import logging
import operator
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdsl.datasets.read import sampler
from fdsl.datasets.read._batches import BatchSet, BufferPool, ReadAhead, read_batch
from fdsl.datasets.read._index import Index, open_index
from fdsl.errors import FdslError
from fdsl.limits import physical_memory

log = logging.getLogger(__name__)

WORKER_KINDS = ("thread", "process")
SHUFFLES = ("auto", "full", "block", "none")
_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


class IndexTypeError(FdslError, TypeError):
    """A float, boolean or other non-integer index (a TypeError, and one line from a command)."""


def _position(i: Any) -> int:
    """``i`` as an int, never a truncated float."""
    if isinstance(i, bool | np.bool_):
        raise IndexTypeError(f"indices must be integers, not {type(i).__name__}")
    try:
        return operator.index(i)
    except TypeError:
        raise IndexTypeError(f"indices must be integers, not {type(i).__name__}") from None


def _positions(indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Integer positions as int64 [k], never truncated floats."""
    array = np.asarray(indices)
    if array.size and array.dtype.kind not in "iu":
        raise IndexTypeError(f"indices must be integers, got {array.dtype} values")
    return array.astype(np.int64).reshape(-1)


class ShardDataset(torch.utils.data.Dataset):
    """A map-style torch Dataset over a shard folder (see docs/FORMAT.md), ImageFolder-style.

    ``ds[i]`` is ``(image, label)``. Without ``transform`` (the fast default) the image is a
    uint8 tensor [C, H, W] (C = 1 for grey shards); with one, like torchvision's ImageFolder,
    the transform gets a PIL image (mode ``L`` for grey, ``RGB``, ``RGBA``) and its result is
    returned. ``target_transform`` maps the int label. ``ds.labels`` (int64 [N]), ``ds.targets``
    (the same as a list), ``ds.classes`` (names, index = label), ``ds.class_to_idx`` and
    ``ds.metadata`` (name -> [N] array, every per-image field) are read at open; images are read
    on demand. Files are opened lazily in each process, so the data set is safe to send to fork-
    or spawn-started DataLoader workers. ShardLoader reads raw uint8 batches and ignores the
    transforms.

    Args:
        path: the data set folder (with manifest.json).
        transform: called on each PIL image by ``ds[i]``.
        target_transform: called on each label by ``ds[i]``.
        verify: also check every shard's sha256 at open (sizes are always checked).

    Raises ShardError (one line naming the file) for a missing manifest or shard, an incomplete
    data set, a truncated file or, with ``verify``, a checksum mismatch.
    """

    def __init__(self, path: str | Path, transform: Callable | None = None,
                 target_transform: Callable | None = None, verify: bool = False) -> None:
        self._index = open_index(path, verify)
        self._rows: np.ndarray | None = None
        self.transform, self.target_transform = transform, target_transform

    @classmethod
    def _view(cls, index: Index, rows: np.ndarray | None, transform: Callable | None = None,
              target_transform: Callable | None = None) -> ShardDataset:
        view = cls.__new__(cls)
        view._index, view._rows = index, rows
        view.transform, view.target_transform = transform, target_transform
        return view

    @property
    def folder(self) -> Path:
        return self._index.folder

    @property
    def classes(self) -> list[str]:
        return self._index.classes

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self._index.classes)}

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one returned image: (C, H, W)."""
        shape = self._index.image_shape
        return (1, *shape) if len(shape) == 2 else (shape[2], shape[0], shape[1])

    @property
    def stored_bytes(self) -> int:
        """Bytes on disk of this view's images (estimated from the whole data set's)."""
        total = len(self._index.labels)
        return self._index.stored_bytes * len(self) // total if total else 0

    @property
    def rows(self) -> np.ndarray:
        """The global row (position in the full data set) of each of this view's items."""
        return np.arange(len(self._index.labels)) if self._rows is None else self._rows

    @property
    def labels(self) -> np.ndarray:
        return self._index.labels if self._rows is None else self._index.labels[self._rows]

    @property
    def targets(self) -> list[int]:
        """The labels as a list of ints, as torchvision's ImageFolder has them."""
        return self.labels.tolist()

    @property
    def metadata(self) -> dict[str, np.ndarray]:
        if self._rows is None:
            return dict(self._index.metadata)
        return {k: v[self._rows] for k, v in self._index.metadata.items()}

    def __len__(self) -> int:
        return len(self._index.labels) if self._rows is None else len(self._rows)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ShardDataset:
        """A view of items ``indices`` (integer positions in this data set), same interface and
        transforms; IndexTypeError for non-integer indices, IndexError out of range."""
        positions = _positions(indices)
        if positions.size and (positions.min() < -len(self) or positions.max() >= len(self)):
            raise IndexError(f"subset index out of range for a data set of {len(self)} items")
        positions = positions % max(len(self), 1)
        return self._view(self._index, self.rows[positions], self.transform, self.target_transform)

    def _row(self, i: Any) -> int:
        i, n = _position(i), len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a data set of {n} items")
        i %= n
        return i if self._rows is None else int(self._rows[i])

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        row = self._row(i)
        out = torch.empty(self.image_shape, dtype=torch.uint8)
        self._read_into([row], out.numpy()[None])
        label: Any = int(self._index.labels[row])
        image: Any = out
        if self.transform is not None:
            image = self.transform(self.pil_image(out))
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    @staticmethod
    def pil_image(image: torch.Tensor):
        """A uint8 [C, H, W] tensor as the PIL image torchvision's transforms expect."""
        from PIL import Image

        mode = _PIL_MODES.get(image.shape[0])
        if mode is None:
            raise FdslError(f"no PIL mode for {image.shape[0]}-channel images; read them without "
                            "a transform")
        array = image.numpy()
        return Image.fromarray(array[0] if mode == "L" else np.ascontiguousarray(array.transpose(1, 2, 0)),
                               mode)

    def _read_into(self, rows: Sequence[int] | np.ndarray, out: np.ndarray) -> None:
        """Read global ``rows`` into ``out``: uint8 [len(rows), C, H, W]."""
        self._index.images.read_rows(np.asarray(rows, np.int64), out)


class ShardLoader:
    """Batches ``(uint8 images [B, C, H, W], int64 labels [B])`` from a shard data set, fast.

    Each epoch's order depends only on (seed, epoch) (see ``fdsl.datasets.read.sampler``), is padded
    to a multiple of ``world_size`` and split into equal parts, one per DDP rank; call
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
        self._pool = BufferPool((batch_size, *self.dataset.image_shape))

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
        full = ShardDataset._view(self.dataset._index, None)
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
