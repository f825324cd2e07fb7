"""Per-epoch sample order shared by every rank: seeded, padded to equal length per rank.

Every rank computes the same permutation from (seed, epoch), pads it (by repeating its start) to
a multiple of ``world_size`` and takes every ``world_size``-th element from ``rank``. All ranks so
get the same number of samples (no DDP hang on an uneven last batch) and every epoch is
reproducible whatever the number of loader workers.
"""

from __future__ import annotations

import numpy as np

from fdsl.errors import FdslError


def check_distributed(rank: int, world_size: int, seed: int) -> None:
    """Raise FdslError for an impossible rank / world size / seed."""
    if world_size < 1:
        raise FdslError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise FdslError(f"rank must be in 0..{world_size - 1}, got {rank}")
    if seed < 0:
        raise FdslError(f"seed must be >= 0, got {seed}")


def epoch_order(n: int, *, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    """Positions 0..n-1 in this epoch's order: int64 [n] (natural order when not shuffling)."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)


def per_rank(n: int, world_size: int) -> int:
    """How many samples each rank gets per epoch (n padded up to a multiple of world_size)."""
    return -(-n // world_size)


def rank_positions(n: int, *, shuffle: bool, seed: int, epoch: int, rank: int = 0,
                   world_size: int = 1) -> np.ndarray:
    """This rank's positions for ``epoch``: int64 [ceil(n / world_size)].

    The ranks' parts are disjoint except for the ``< world_size`` padding samples, and together
    cover all ``n`` positions.
    """
    check_distributed(rank, world_size, seed)
    order = epoch_order(n, shuffle=shuffle, seed=seed, epoch=epoch)
    total = per_rank(n, world_size) * world_size
    if total > n:
        order = np.concatenate([order, np.resize(order, total - n)])
    return order[rank::world_size]


def split_batches(positions: np.ndarray, batch_size: int, drop_last: bool) -> list[np.ndarray]:
    """Consecutive batches of ``positions``; the last may be short unless ``drop_last``."""
    if batch_size < 1:
        raise FdslError(f"batch_size must be >= 1, got {batch_size}")
    stop = len(positions) - len(positions) % batch_size if drop_last else len(positions)
    return [positions[i:i + batch_size] for i in range(0, stop, batch_size)]


def num_batches(n: int, batch_size: int, drop_last: bool, world_size: int = 1) -> int:
    """Batches per epoch for one rank."""
    count = per_rank(n, world_size)
    return count // batch_size if drop_last else -(-count // batch_size)
