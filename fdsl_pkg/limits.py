"""Every size and memory limit of fdsl, in one module, checked before any work or file.

- Hard limits keep absurd values (``--image-size 1000000``, ``--classes 10**20``) from reaching
  a search or an allocation (``check_flags``).
- A worker renders a shard ``RENDER_PART`` images at a time, and a fifth as many once a part's
  images exceed ``PART_BYTES``, so it never holds a whole shard.
- ``check_plan`` is the one memory check: the number of items and shards against their limits,
  and the workers' buffers (``worker_bytes``) against ``MEMORY_SHARE`` of the memory available.
  ``gen-fractal`` calls it before its category search, and ``build_dataset`` for every source.
- ``DISK_MARGIN`` is kept free beyond every free-space estimate.

Every refusal is one FdslError line naming the flag or the limit hit. fdsl's root package: every
layer (generators, datasets, render, train) imports it; it imports nothing but ``fdsl.errors``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from fdsl.errors import FdslError

MAX_CLASSES = 1_000_000
MAX_INSTANCES = 1_000_000
MAX_ITEMS = 10_000_000_000
MAX_SHARDS = 1_000_000
MAX_IMAGE_SIZE = 16_384
MAX_POINTS = 100_000_000
POINT_BYTES = 48  # the largest per-point buffers of a generator (3-D float64 cloud + projections)
MEMORY_SHARE = 0.8  # of the available memory, leaving room for the OS and the page cache
# Images rendered and held in memory at a time per worker (a whole 10,000-image FractalDB shard
# would be 1.3 GB).
RENDER_PART = 1000
# A part of more image bytes than this is followed by parts a fifth as long (1000 -> 200 -> 40,
# so part boundaries stay on multiples of 40 or 100 views): big parts miss the CPU caches between
# render and compression (RCDB at 512 px: 1.43 -> 1.21 CPU-ms per image end to end at 200).
PART_BYTES = 64 * 2**20
DISK_MARGIN = 1 << 20  # bytes kept free beyond a free-space estimate: file system metadata, the manifest


def at_most(flag: str, value: int | float, limit: int | float) -> None:
    """FdslError unless ``value <= limit`` (``flag`` as the user typed it, e.g. ``--views``)."""
    if value > limit:
        raise FdslError(f"{flag} {value} exceeds the limit of {limit:,}")


def physical_memory() -> int | None:
    """Bytes of physical memory (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def available_memory() -> int | None:
    """Bytes available to new allocations: Linux's MemAvailable, else physical memory (None where
    neither is known)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return physical_memory()


def worker_bytes(image_shape: Sequence[int], shard_size: int, points: int = 0) -> int:
    """Estimated peak bytes of one worker: a render part of images of ``image_shape`` (H, W) or
    (H, W, C), its compressed copy, and ``points`` per-point buffers."""
    images = min(RENDER_PART, shard_size) * math.prod(image_shape) if image_shape else 0
    return 2 * images + points * POINT_BYTES


def check_flags(*, classes: int | None = None, instances: int | None = None,
                image_size: int | None = None, points: int | None = None) -> None:
    """Refuse (FdslError, one line) a flag over its hard limit (None: not given)."""
    if classes is not None:
        at_most("--classes", classes, MAX_CLASSES)
    if instances is not None:
        at_most("--instances", instances, MAX_INSTANCES)
        if classes is not None:
            at_most("--classes x --instances", classes * instances, MAX_ITEMS)
    if image_size is not None:
        at_most("--image-size", image_size, MAX_IMAGE_SIZE)
    if points is not None:
        at_most("--points", points, MAX_POINTS)


def check_plan(*, items: int, shard_size: int, workers: int, image_shape: Sequence[int] | None = None,
               points: int = 0, memory: int | None = None) -> None:
    """Refuse (FdslError, one line) a job of more than ``MAX_ITEMS`` images or ``MAX_SHARDS``
    shards, or whose busy workers' buffers (``worker_bytes``; at most one worker per shard)
    exceed ``MEMORY_SHARE`` of ``memory`` (default: this machine's available memory). Without
    ``image_shape`` only the point buffers are counted."""
    if items > MAX_ITEMS:
        raise FdslError(f"{items} images is more than the limit of {MAX_ITEMS:,}; ask for fewer "
                        "classes or images")
    shards = -(-items // shard_size)
    if shards > MAX_SHARDS:
        raise FdslError(f"{shards} shards is more than the limit of {MAX_SHARDS:,}; raise --shard-size")
    memory = available_memory() if memory is None else memory
    if memory is None:
        return
    busy = max(min(workers, shards), 1)
    need = busy * worker_bytes(image_shape or (), min(shard_size, max(items, 1)), points)
    if need > MEMORY_SHARE * memory:
        flags = "--image-size, --points, --shard-size or --workers" if points else \
            "--image-size, --shard-size or --workers"
        raise FdslError(f"{busy} worker(s) would need about {need / 2**30:.1f} GiB for their image "
                        f"{'and point ' if points else ''}buffers, more than {MEMORY_SHARE:.0%} of the "
                        f"{memory / 2**30:.1f} GiB of memory available; lower {flags}")


def check_job(*, classes: int, instances: int | None, image_size: int | None, points: int | None,
              workers: int, shard_size: int, channels: int = 1, memory: int | None = None) -> None:
    """A generator's job, before its category search: ``check_flags``, then ``check_plan`` for
    ``classes x instances`` images of ``image_size`` (512 when unknown) with ``channels``."""
    check_flags(classes=classes, instances=instances, image_size=image_size, points=points)
    side = image_size or 512
    check_plan(items=classes * (instances or 1), shard_size=shard_size, workers=workers,
               image_shape=(side, side) if channels == 1 else (side, side, channels),
               points=points or 0, memory=memory)
