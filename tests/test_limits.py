"""fdsl.limits: the one module of size and memory limits (numbers worked out by hand)."""

from __future__ import annotations

import pytest

from fdsl import limits
from fdsl.errors import FdslError


def test_worker_bytes_counts_a_render_part_twice_and_the_point_buffers() -> None:
    assert limits.worker_bytes((512, 512), 10_000) == 524_288_000  # 2 x 1000 x 512 x 512
    assert limits.worker_bytes((512, 512), 10, points=10**6) == 53_242_880  # 2 x 10 x 262,144 + 48 x 10^6
    assert limits.worker_bytes((64, 64, 3), 500) == 12_288_000  # 2 x 500 x 12,288
    assert limits.worker_bytes((), 10_000, points=1000) == 48_000  # no image shape: points only


def test_memory_check_counts_the_busy_workers_against_a_share_of_memory() -> None:
    # 40,000 images in 4 shards on 4 workers: 4 x 524,288,000 = 2,097,152,000 bytes, which is
    # exactly 80% of 2,621,440,000.
    job = dict(items=40_000, shard_size=10_000, workers=4, image_shape=(512, 512))
    limits.check_plan(**job, memory=2_621_440_000)
    with pytest.raises(FdslError, match=r"4 worker\(s\) would need about 2\.0 GiB"):
        limits.check_plan(**job, memory=2_621_439_999)
    # one shard keeps one worker busy, whatever --workers says: 524,288,000 / 0.8 = 655,360,000
    limits.check_plan(items=10_000, shard_size=10_000, workers=4, image_shape=(512, 512), memory=655_360_000)
    with pytest.raises(FdslError, match="1 worker"):
        limits.check_plan(items=10_000, shard_size=10_000, workers=4, image_shape=(512, 512), memory=655_359_999)


def test_generator_jobs_go_through_the_same_check() -> None:
    # 1000 classes x 40 images, colour: 4 x 2 x 1000 x 512 x 512 x 3 = 6,291,456,000 = 80% of 7,864,320,000
    job = dict(classes=1000, instances=40, image_size=512, points=None, workers=4, shard_size=10_000, channels=3)
    limits.check_job(**job, memory=7_864_320_000)
    with pytest.raises(FdslError, match="lower --image-size, --shard-size or --workers"):
        limits.check_job(**job, memory=7_864_319_999)
    with pytest.raises(FdslError, match="and point buffers"):
        limits.check_job(**dict(job, points=10**6), memory=7_864_320_000)


@pytest.mark.parametrize("kwargs,message", [
    (dict(classes=1_000_001), "--classes 1000001 exceeds the limit of 1,000,000"),
    (dict(classes=10, instances=1_000_001), "--instances 1000001 exceeds"),
    (dict(classes=1_000_000, instances=10_001), "--classes x --instances 10001000000 exceeds the limit of 10,000,000,000"),
    (dict(image_size=16_385), "--image-size 16385 exceeds the limit of 16,384"),
    (dict(points=100_000_001), "--points 100000001 exceeds"),
])
def test_flags_over_their_hard_limits_are_refused(kwargs, message) -> None:
    with pytest.raises(FdslError, match=message):
        limits.check_flags(**kwargs)


def test_item_and_shard_counts_over_their_limits_are_refused() -> None:
    with pytest.raises(FdslError, match="10000000001 images is more than the limit of 10,000,000,000"):
        limits.check_plan(items=10**10 + 1, shard_size=10**6, workers=1, memory=10**15)
    with pytest.raises(FdslError, match="1000001 shards is more than the limit of 1,000,000"):
        limits.check_plan(items=1_000_001, shard_size=1, workers=1, memory=10**15)
    limits.check_plan(items=1_000_000, shard_size=1, workers=1, memory=10**15)
