"""The CVPR 2022 ablation knobs: RCDB with broken contours and FractalDB with few points
(LineDB, the third, is in test_linedb.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import assert_same_bytes_for_1_and_2_workers

from fdsl.errors import FdslError
from fdsl.generators import cli, fractaldb, rcdb
from fdsl.generators.generate import generate
from fdsl.generators.rcdb import params as rcdb_params
from fdsl.generators.rcdb import source as rcdb_source


def _rcdb(**kw) -> rcdb.RCDBSource:
    return rcdb.make_source(**{"classes": 2, "instances": 3, "seed": 1, "image_size": 96, **kw})


def test_broken_segments_remove_the_fraction_of_each_contour():
    keep = rcdb_params.broken_segments(0, 0, 0, vertices=10, contours=50, fraction=0.3)
    assert keep.shape == (50, 10) and np.all(keep.sum(axis=1) == 7)
    assert len({tuple(row) for row in keep.tolist()}) > 10  # chosen per contour
    assert rcdb_params.broken_segments(0, 0, 0, 10, 50, 1.0).sum() == 0
    assert rcdb_params.broken_segments(0, 0, 0, 3, 4, 0.5).sum(axis=1).tolist() == [1] * 4  # round(1.5) = 2 removed


def test_broken_contours_ink_less_and_zero_is_the_closed_drawing():
    closed = _rcdb().render(0, 6)
    np.testing.assert_array_equal(_rcdb(broken_fraction=0.0).render(0, 6).images, closed.images)
    half = _rcdb(broken_fraction=0.5).render(0, 6)
    inked_closed = (closed.images < 255).sum(axis=(1, 2))
    inked_half = (half.images < 255).sum(axis=(1, 2))
    assert np.all(inked_half < inked_closed)
    # One contour (no overlaps): about half of its pixels go with half of its segments.
    one = rcdb_params.sample_image(0, 0, 0, vertices=40, contours=1)
    half_one = rcdb_params.sample_image(0, 0, 0, vertices=40, contours=1, broken_fraction=0.5)
    ratio = (rcdb_source.draw_image(half_one, 1.0, 0.05, 512) < 255).sum() / (rcdb_source.draw_image(one, 1.0, 0.05, 512) < 255).sum()
    assert 0.35 < ratio < 0.65, ratio
    assert np.all(_rcdb(broken_fraction=1.0).render(0, 6).images == 255)
    np.testing.assert_array_equal(_rcdb(broken_fraction=0.5).render(2, 4).images, half.images[2:4])
    assert "broken_fraction" not in _rcdb().config() and _rcdb(broken_fraction=0.5).config()["broken_fraction"] == 0.5


def test_broken_fraction_through_the_cli(tmp_path, hashes, capsys):
    common = ["--db", "rcdb", "--classes", "2", "--instances", "3", "--image-size", "48", "--shard-size", "2",
              "--broken-fraction", "0.4"]
    assert cli.main([*common, "--workers", "1", "--out", str(tmp_path / "w1")]) == 0
    assert cli.main([*common, "--workers", "2", "--out", str(tmp_path / "w2")]) == 0
    assert hashes(tmp_path / "w1") == hashes(tmp_path / "w2")
    assert json.loads((tmp_path / "w1" / "manifest.json").read_text())["config"]["broken_fraction"] == 0.4
    capsys.readouterr()
    assert cli.main([*common[:-1], "1.5", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "gen-fractal: error: --broken-fraction must be in [0, 1], got 1.5"
    with pytest.raises(FdslError, match="--broken-fraction does not apply to --db linedb"):
        generate("linedb", tmp_path / "x", classes=1, broken_fraction=0.5)


@pytest.fixture(scope="module")
def two_classes():
    return fractaldb.search_classes(2, seed=0, search_points=20_000, fill_rate=0.05)


@pytest.mark.parametrize("points", [1000, 5000])
def test_fractaldb_with_few_points_renders_whole_fractals(two_classes, points):
    src = fractaldb.FractalDBSource(two_classes, instances=4, seed=0, image_size=128, points=points,
                                   color="gray", search={}, params_sha256=None)
    images = src.render(0, 8).images
    full = fractaldb.FractalDBSource(two_classes, instances=4, seed=0, image_size=128, points=50_000,
                                     color="gray", search={}, params_sha256=None).render(0, 8).images
    for few, many in zip(images, full, strict=True):
        rows, cols = np.nonzero(few)
        # The frame is still the attractor's box: the drawing spans the image, like the dense one.
        assert rows.max() - rows.min() > 0.6 * 128 and cols.max() - cols.min() > 0.6 * 128
        assert 0 < np.count_nonzero(few) < np.count_nonzero(many)
        # Every lit pixel lies near the dense drawing: the same fractal, only sparser.
        near = np.zeros_like(many, dtype=bool)
        lit = many > 0
        for dy in (-2, -1, 0, 1, 2):
            for dx in (-2, -1, 0, 1, 2):
                near |= np.roll(np.roll(lit, dy, axis=0), dx, axis=1)
        assert np.mean(near[few > 0]) > 0.95


def test_fractaldb_few_points_through_the_cli_is_worker_independent(tmp_path):
    common = dict(classes=1, instances=6, seed=3, image_size=32, points=1000, shard_size=2,
                  fill_rate=0.05, search_points=20_000)
    assert_same_bytes_for_1_and_2_workers(generate, "fractaldb", tmp_path, **common)
