"""Shard tasks render in parts: a fifth as long once a part exceeds the part byte limit, same bytes out."""

from __future__ import annotations

from toy_source import ToySource

from fdsl.datasets.builder.build import build_dataset, render_parts


class Recording(ToySource):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.calls: list[tuple[int, int]] = []

    def render(self, start: int, stop: int):
        self.calls.append((start, stop))
        return super().render(start, stop)


def test_parts_shrink_by_fifths_past_the_byte_limit_and_stay_aligned() -> None:
    source = Recording(classes=1, per_class=130, size=16)  # 256 bytes per image
    # 50 images = 12,800 bytes > 3,000: 10 (2,560) fit
    batches = list(render_parts(source, 0, 130, part=50, part_bytes=3000))
    assert source.calls == [(0, 50)] + [(s, s + 10) for s in range(50, 130, 10)]
    assert [int(i) for b in batches for i in b.items] == list(range(130))
    source.calls.clear()
    list(render_parts(source, 20, 130, part=50, part_bytes=10**9))
    assert source.calls == [(20, 70), (70, 120), (120, 130)]


def test_small_parts_write_the_same_files(tmp_path, hashes) -> None:
    source = ToySource(classes=2, per_class=15, size=16, fail_every=7)
    build_dataset(source, tmp_path / "whole", shard_size=20, workers=1)
    # parts of 25, then 5, then 1
    build_dataset(source, tmp_path / "parts", shard_size=20, workers=1, render_part=25, part_bytes=1000)
    assert hashes(tmp_path / "whole") == hashes(tmp_path / "parts")
