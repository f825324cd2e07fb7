"""Size limits checked before a generator does any work or writes any file.

Hard limits keep absurd values (``--image-size 1000000``, ``--classes 10**20``) from reaching a
search or an allocation; the memory estimate refuses jobs whose workers' buffers cannot fit in
this machine's memory. Every refusal is one FdslError line naming the flag and the limit hit.
"""

from __future__ import annotations

import os

from fdsl.errors import FdslError

MAX_CLASSES = 1_000_000
MAX_INSTANCES = 1_000_000
MAX_ITEMS = 10_000_000_000
MAX_IMAGE_SIZE = 16_384
MAX_POINTS = 100_000_000
POINT_BYTES = 48  # the largest per-point buffers of a generator (3-D float64 cloud + projections)
MEMORY_SHARE = 0.8  # of physical memory, leaving room for the OS and the page cache
RENDER_PART = 1000  # images a worker renders at once (fdsl.datasets.build.RENDER_PART)


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


def worker_bytes(image_size: int, points: int, shard_size: int, channels: int = 1) -> int:
    """Estimated peak bytes of one worker: a render part of images, its compressed copy, and
    the point buffers."""
    images = min(RENDER_PART, shard_size) * image_size * image_size * channels
    return 2 * images + points * POINT_BYTES


def check_job(*, classes: int, instances: int | None, image_size: int | None, points: int | None,
              workers: int, shard_size: int, channels: int = 1, memory: int | None = None) -> None:
    """Refuse (FdslError, one line) sizes over the hard limits or whose ``workers`` buffers
    (``worker_bytes``) exceed ``MEMORY_SHARE`` of ``memory`` (default: this machine's)."""
    at_most("--classes", classes, MAX_CLASSES)
    if instances is not None:
        at_most("--instances", instances, MAX_INSTANCES)
        at_most("--classes x --instances", classes * instances, MAX_ITEMS)
    if image_size is not None:
        at_most("--image-size", image_size, MAX_IMAGE_SIZE)
    if points is not None:
        at_most("--points", points, MAX_POINTS)
    memory = physical_memory() if memory is None else memory
    if memory is None:
        return
    need = workers * worker_bytes(image_size or 512, points or 0, shard_size, channels)
    if need > MEMORY_SHARE * memory:
        raise FdslError(f"{workers} worker(s) would need about {need / 2**30:.1f} GiB for their image and "
                        f"point buffers, more than {MEMORY_SHARE:.0%} of this machine's "
                        f"{memory / 2**30:.1f} GiB; lower --image-size, --points, --shard-size or --workers")
