"""Repeated augmentation (Hoffer et al. 2020; DeiT): each image several times per epoch, each copy
augmented on its own, the copies of one image spread over the DDP ranks of one step.

``repeated_positions`` is the order of DeiT's ``RASampler``, which the FDSL ViT scripts use
(``data/loader.py``) and timm's ``RepeatAugSampler`` generalises: a permutation of the n
positions, each repeated ``repeats`` times in a row (a a a b b b ...), padded by its own start to
a multiple of the world size, rank r taking every world_size-th entry from r, and each rank
keeping only its first ``selected_count`` entries (floor(n // 256 * 256 / world_size)), so an
epoch still shows about n images in all. Consecutive copies go to consecutive ranks, and the
union of the ranks' k-th batches is the same block of the global order whatever the world size.

Differences from the official sampler, by design: the permutation comes from
``numpy.random.default_rng([seed, epoch, tag])`` (theirs: ``torch.randperm`` seeded by the
epoch alone, so every seed saw one order); the repeats are a setting (theirs: 3); data sets
under 256 images keep ceil(n / world_size) entries per rank (theirs: none); and it also runs with
one process (theirs falls back to plain shuffling without DDP), so a one-GPU run sees the same
global batches as a multi-GPU one.

``repeated_loader`` gives the run's ShardLoader / MapLoader with this order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fdsl.datasets import ShardLoader
from fdsl.datasets.read import sampler as base_sampler
from fdsl.train.data import DataSource, MapLoader

SELECTED_ROUND = 256  # RASampler: the epoch keeps a multiple of 256 images
_TAG = 0x4E9EA7  # stream tag of the repeated order's generator


def selected_count(n: int, world_size: int, selected_round: int = SELECTED_ROUND) -> int:
    """Entries each rank keeps per epoch: floor(n // round * round / world_size), or
    ceil(n / world_size) when n < round."""
    if selected_round and n >= selected_round:
        return int(math.floor(n // selected_round * selected_round / world_size))
    return -(-n // world_size)


def repeated_positions(n: int, *, repeats: int, seed: int, epoch: int, rank: int = 0,
                       world_size: int = 1, selected_round: int = SELECTED_ROUND) -> np.ndarray:
    """This rank's positions (into 0..n-1) for ``epoch``: int64 [selected_count(n, world_size)]."""
    base_sampler.check_distributed(rank, world_size, seed)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    order = np.random.default_rng([seed, epoch, _TAG]).permutation(n).astype(np.int64)
    copies = np.repeat(order, repeats)
    per_rank = -(-len(copies) // world_size)
    copies = np.concatenate([copies, np.resize(copies, per_rank * world_size - len(copies))])
    return copies[rank::world_size][:selected_count(n, world_size, selected_round)]


def _batch_count(count: int, batch_size: int, drop_last: bool) -> int:
    return count // batch_size if drop_last else -(-count // batch_size)


class RepeatedShardLoader(ShardLoader):
    """ShardLoader whose epoch order is ``repeated_positions`` (uniform reads: order ``full``)."""

    def __init__(self, *args: Any, repeats: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.repeats = repeats
        self.order = "full"

    def __len__(self) -> int:
        count = selected_count(len(self.dataset), self.world_size)
        return _batch_count(count, self.batch_size, self.drop_last)

    def epoch_rows(self) -> np.ndarray:
        positions = repeated_positions(len(self.dataset), repeats=self.repeats, seed=self.seed,
                                       epoch=self.epoch, rank=self.rank, world_size=self.world_size)
        return self.dataset.rows[positions]


class RepeatedMapLoader(MapLoader):
    """MapLoader (ImageFolder trees) whose epoch order is ``repeated_positions``."""

    def __init__(self, *args: Any, repeats: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.repeats = repeats

    def __len__(self) -> int:
        count = selected_count(len(self.indices), self.world_size)
        return _batch_count(count, self.batch_size, self.drop_last)

    def _batches(self) -> list[list[int]]:
        positions = repeated_positions(len(self.indices), repeats=self.repeats, seed=self.seed,
                                       epoch=self.epoch, rank=self.rank, world_size=self.world_size)
        return [self.indices[b].tolist() for b in
                base_sampler.split_batches(positions, self.batch_size, self.drop_last)]


def repeated_loader(source: DataSource, indices: Sequence[int] | np.ndarray, *, repeats: int,
                    batch_size: int, workers: int, seed: int, rank: int = 0,
                    world_size: int = 1, device: Any = None,
                    fresh_instances: bool = False) -> ShardLoader | MapLoader:
    """The training loader of ``source`` over ``indices`` with repeated augmentation; the last
    short batch is dropped when a rank has more than one batch (timm drops it always). Generated
    data: as ``DataSource.loader`` (``device``, ``fresh_instances``)."""
    count = selected_count(len(indices), world_size)
    drop_last = count > batch_size
    if source.kind == "shards":
        source.training_dataset(device, fresh_instances)  # refuses --fresh-instances
        return RepeatedShardLoader(source.dataset, batch_size=batch_size, shuffle="full",
                                   num_workers=workers, seed=seed, rank=rank, world_size=world_size,
                                   drop_last=drop_last, indices=np.asarray(indices), repeats=repeats)
    return RepeatedMapLoader(source.training_dataset(device, fresh_instances), batch_size, True, workers, seed,
                             rank, world_size, drop_last, np.asarray(indices), repeats=repeats)
