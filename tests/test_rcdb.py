"""RCDB: Perlin noise, the rasteriser against Pillow, images against the reference port, determinism."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import assert_same_bytes_for_1_and_2_workers, counter_below, counter_uniform
from PIL import Image, ImageDraw

from fdsl.datasets.inspect import cli as inspect_cli
from fdsl.errors import FdslError
from fdsl.generators import rcdb
from fdsl.generators.generate import generate
from fdsl.generators.kernels import perlin, raster
from fdsl.generators.rcdb import params as rcdb_params
from fdsl.generators.rcdb import source as rcdb_source
from fdsl.generators.seeding import stream_key

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.reference import rcdb_official as ref  # noqa: E402


def test_contours_draw_with_the_reference_perlin_noise():
    """RCDB's kernel draws with pnoise1 (the noise package's values, tests/test_perlin.py): moving
    a vertex's noise input by one lattice cell changes the image; at an integer input the noise is
    0 so the vertex moves by the offset alone."""
    params = rcdb_params.sample_image(0, 0, 0, 5, 1)
    inputs = np.full_like(params.noise_inputs, 1000.0)  # integers: noise 0, every vertex at -c
    still = rcdb_params.ImageParams(50, 1.0, 1.0, 256.0, 256.0, np.array([0]), inputs, None)
    img = rcdb_source.draw_image(still, 2.0, 0.0, 512)
    # every vertex moved outward by c = 2 (noise * 2c - c = -c, minus that): radius 50 -> 52
    assert img[256, 256 + 52] == 0 and img[256, 256 + 50] == 255
    moved = rcdb_params.ImageParams(50, 1.0, 1.0, 256.0, 256.0, np.array([0]), inputs + 0.5, None)
    radius = 50 - (perlin.pnoise1(1000.5) * 4.0 - 2.0)
    img = rcdb_source.draw_image(moved, 2.0, 0.0, 512)
    assert img[256, int(256 + radius)] == 0 and int(radius) != 52


def test_rasterizer_matches_pillow_lines():
    rng = np.random.default_rng(2)
    for trial in range(400):
        x0, y0, x1, y1 = rng.uniform(-8, 40, 4) if trial % 2 else rng.integers(-4, 36, 4).astype(float)
        expected = Image.new("L", (32, 32), 0)
        ImageDraw.Draw(expected).line((x0, y0, x1, y1), fill=255, width=1)
        ours = np.zeros((32, 32), np.uint8)
        raster.draw_line(ours, int(x0), int(y0), int(x1), int(y1), 255)
        np.testing.assert_array_equal(ours, np.asarray(expected), err_msg=str((x0, y0, x1, y1)))


def test_draw_line_draws_both_ends_and_clips():
    img = np.zeros((8, 8), np.uint8)
    raster.draw_line(img, 0, 0, 3, 0, 255)
    raster.draw_line(img, -5, 7, 20, 7, 255)
    assert img[0, :4].tolist() == [255] * 4 and img[0, 4] == 0
    assert img[7].tolist() == [255] * 8


def test_class_parameters_in_official_ranges():
    params = rcdb.sample_classes(300, seed=4)
    assert params.vertices.min() >= 3 and params.vertices.max() <= 200
    assert params.contours.min() >= 1 and params.contours.max() <= 200
    assert 0 <= params.perlin.min() and params.perlin.max() < 4
    assert 0 <= params.offset.min() and params.offset.max() < 0.1
    # Exponential(mean 100) truncated to 3..200: the mean lies well below 100
    assert 55 < params.vertices.mean() < 95


@pytest.mark.parametrize("size", [64, 512])
def test_images_match_reference_port(size):
    params = rcdb.sample_classes(6, seed=1)
    for label in range(6):
        if params.vertices[label] * params.contours[label] > 12_000:
            continue  # keep the pure-Python port fast
        for instance in range(2):
            draws = rcdb_params.sample_image(1, label, instance, int(params.vertices[label]), int(params.contours[label]))
            ours = rcdb_source.draw_image(draws, params.perlin[label], params.offset[label], size)
            np.testing.assert_array_equal(ours, ref.draw_image(draws, params.perlin[label], params.offset[label], size))
            assert ours.min() < 255  # something was drawn


def _source(**kw) -> rcdb.RCDBSource:
    args = dict(classes=3, instances=4, seed=0, image_size=64, params_from=None, workers=1)
    return rcdb.make_source(**{**args, **kw})


def test_render_is_independent_of_the_split_and_records_metadata():
    src = _source()
    whole = src.render(0, 12)
    parts = [src.render(a, b) for a, b in ((0, 3), (3, 4), (4, 12))]
    np.testing.assert_array_equal(whole.images, np.concatenate([p.images for p in parts]))
    assert whole.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert whole.metadata["instance"].tolist() == [0, 1, 2, 3] * 3
    assert set(whole.metadata) == {"instance", "radius", "centre_x", "centre_y", "oval_x", "oval_y"}
    assert np.all((whole.metadata["oval_x"] >= 1) & (whole.metadata["oval_x"] < 2))
    assert np.all(np.abs(whole.metadata["centre_x"] - 256) <= 200)
    assert len({im.tobytes() for im in whole.images}) == 12


@pytest.mark.parametrize("broken", [0.0, 0.35])
def test_source_kernel_draws_exactly_the_sampled_draws(broken):
    """The source's kernel reads its draws from the counter-based stream as it draws; the
    explicit-draws path (sample_image -> draw_image, which the reference port is checked against)
    gives the same images."""
    src = _source(broken_fraction=broken, instances=3)
    batch = src.render(0, 9)
    c = src.params
    for row, item in enumerate(range(9)):
        label, instance = divmod(item, 3)
        draws = rcdb_params.sample_image(0, label, instance, int(c.vertices[label]), int(c.contours[label]), broken)
        np.testing.assert_array_equal(batch.images[row], rcdb_source.draw_image(draws, c.perlin[label], c.offset[label], 64))
        assert batch.metadata["radius"][row] == draws.radius
        assert batch.metadata["centre_x"][row] == np.float32(draws.centre_x)


def test_image_draws_are_the_counter_stream():
    """Draws of image (seed 3, class 1, instance 4), worked out in plain Python from seeding's
    splitmix64: 0 radius, 1-2 ovals, 3-4 centre y, x, 5+k greys, then the noise inputs."""
    key = stream_key(3, 2, 1, 4)

    def below(i: int, n: int) -> int:
        return counter_below(key, i, n)

    def uniform(i: int) -> float:
        return counter_uniform(key, i)

    draws = rcdb_params.sample_image(3, 1, 4, vertices=3, contours=2)
    assert draws.radius == below(0, 101)
    assert (draws.oval_x, draws.oval_y) == (1.0 + uniform(1), 1.0 + uniform(2))
    assert (draws.centre_y, draws.centre_x) == ((112 + below(3, 801)) / 2, (112 + below(4, 801)) / 2)
    assert draws.greys.tolist() == [min(below(5, 257), 255), min(below(6, 257), 255)]
    # contour k, axis a, vertex v: draw 5 + K + (2k + a) V + v
    assert draws.noise_inputs[1, 0, 2] == 1e4 * uniform(5 + 2 + 2 * 3 + 2)
    assert draws.noise_inputs[0, 1, 0] == 1e4 * uniform(5 + 2 + 1 * 3 + 0)
    assert draws.keep is None


def _shard_images(folder: Path) -> np.ndarray:
    with h5py.File(folder / "shard-00000.h5") as f:
        return f["images"][:]


@pytest.mark.slow
def test_generate_bytes_independent_of_workers_and_params_from(tmp_path):
    common = dict(classes=3, instances=5, seed=9, image_size=64, shard_size=4)
    assert_same_bytes_for_1_and_2_workers(generate, "rcdb", tmp_path, **common)
    generate("rcdb", tmp_path / "p", workers=1, params_from=tmp_path / "w1" / "classes.npz", **common)
    np.testing.assert_array_equal(_shard_images(tmp_path / "p"), _shard_images(tmp_path / "w1"))
    assert "params_sha256" in (tmp_path / "p" / "manifest.json").read_text()
    assert inspect_cli.main([str(tmp_path / "w1"), "--grid", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_png_layout(tmp_path):
    generate("rcdb", tmp_path / "png", classes=2, instances=2, image_size=32, workers=1, fmt="png")
    names = sorted(p.relative_to(tmp_path / "png").as_posix() for p in (tmp_path / "png").rglob("*.png"))
    assert names == ["00000/00000_0000.png", "00000/00000_0001.png", "00001/00001_0000.png", "00001/00001_0001.png"]


@pytest.mark.parametrize("name, value", [("vertices", 201), ("vertices", 2), ("contours", 0), ("contours", 500),
                                         ("perlin", np.nan), ("perlin", 4.5), ("offset", -0.01),
                                         ("offset", np.inf)])
def test_params_from_values_outside_the_sampling_ranges_are_refused(tmp_path, name, value):
    params = rcdb.sample_classes(2, seed=0)
    arrays = {k: getattr(params, k).copy() for k in ("vertices", "contours", "perlin", "offset")}
    path = tmp_path / "classes.npz"
    path.write_bytes(rcdb.ClassParams(**arrays).to_npz())
    assert rcdb.load_class_params(path).vertices.tolist() == params.vertices.tolist()
    arrays[name] = arrays[name].astype(np.float64 if isinstance(value, float) else np.int64)
    arrays[name][1] = value
    path.write_bytes(rcdb.ClassParams(**arrays).to_npz())
    with pytest.raises(FdslError, match=re.escape(f"{path}: {name} must be")) as info:
        rcdb.load_class_params(path)
    assert "\n" not in str(info.value)
