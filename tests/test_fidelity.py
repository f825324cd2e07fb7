"""Fidelity to the official generators: each check pins a behaviour fixed against the official code
(docs/FIDELITY.md) and fails on fdsl's earlier behaviour."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_bytes_for_1_and_2_workers, counter_uniform

from fdsl.generators import cli as gen_cli
from fdsl.generators import exfractaldb, fractaldb
from fdsl.generators.exfractaldb import tables
from fdsl.generators.fractaldb import params as fdb_params
from fdsl.generators.generate import generate
from fdsl.generators.kernels import ifs2d, ifs3d
from fdsl.generators.seeding import stream_key

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.reference import exfractaldb_official as ref_ex  # noqa: E402
from benchmarks.reference import fractaldb_official as ref_fdb  # noqa: E402

PAD = 6


def kernel_pixels(maps, probs, points: int, size: int = 362, key: int = 12345):
    """(kept, px, py) from fdsl's kernels for an IFS."""
    maps, probs = np.asarray(maps, float), np.asarray(probs, float)
    cum = np.cumsum(probs)
    xs, ys, box = np.empty(points), np.empty(points), np.empty(4)
    kept = ifs2d.orbit(maps, cum, ifs2d.selection_table(cum), np.uint64(key), xs, ys, box)
    px, py = np.empty(points, np.int32), np.empty(points, np.int32)
    ifs2d.rescale(xs, 0, kept, box[0], box[1], size, PAD, px)
    ifs2d.rescale(ys, 0, kept, box[2], box[3], size, PAD, py)
    return kept, px[:kept], py[:kept]


def official_pixels(maps, probs, points: int, size: int = 362, key: int = 12345):
    """The official __rescale on the same orbit (reference port)."""
    ifs = ref_fdb._maps_to_ifs(np.asarray(maps, float), np.asarray(probs, float))
    ifs.calculate(points, key)
    return ref_fdb.rescale_xy(ifs.xs, ifs.ys, size, PAD)


def far_attractor() -> fractaldb.ClassParams:
    """Two half-size maps whose attractor is the anti-diagonal segment (10, 11)-(11, 10): far from
    the origin, and the corner (10, 10) of its own box stays empty (one class, candidate 0)."""
    maps = np.array([[0.5, 0, 0, 0.5, 5.0, 5.5], [0.5, 0, 0, 0.5, 5.5, 5.0]])
    return fractaldb.ClassParams.from_systems([(maps, np.array([0.5, 0.5]))], [0])


# --------------------------------------------------------------------------- FractalDB orbit


def test_far_attractor_puts_the_origin_patch_at_the_frame_corner():
    source = fractaldb.FractalDBSource(far_attractor(), instances=1000, seed=0, image_size=128,
                                       points=3000, color="gray", search={}, params_sha256=None)
    canvas = source.canvas(0, 2, 0)  # variant 2 is the identity
    # The official keeps the origin: its patch is pasted at (pad + 1, pad + 1) of the raw canvas.
    assert canvas[PAD + 1:PAD + 4, PAD + 1:PAD + 4].any()
    # the attractor itself sits in the opposite corner, the rest of the frame's first quarter is empty
    rows, cols = np.nonzero(canvas)
    assert ((rows > 100) & (cols > 100)).mean() > 0.6  # the rest: the transient from the origin
    assert not canvas[PAD + 4:40, PAD + 4:40].any()
    batch = source.render(2 * 40, 2 * 40 + 1)
    assert batch.metadata["points_drawn"][0] == 3000  # every point, the origin included


def test_orbit_keeps_the_origin_and_every_point_like_the_official():
    maps, probs = far_attractor().system(0)
    kept, px, py = kernel_pixels(maps, probs, 5000)
    theirs = official_pixels(maps, probs, 5000)
    assert kept == 5000 and (px[0], py[0]) == (PAD, PAD)
    assert np.array_equal(px, theirs[0]) and np.array_equal(py, theirs[1])


@pytest.mark.parametrize("maps, first_nan", [
    # x overflows to inf, y = 0 * inf turns NaN next, x one step after y: cut at x's first NaN
    ([[2.0, 0, 0, 0.5, 1.0, 0.0]], "y"),
    # y overflows first: x turns NaN first
    ([[0.5, 0, 0, 2.0, 0.0, 1.0]], "x"),
])
def test_nan_orbit_deletes_the_100_points_before_the_first_nan_of_x(maps, first_nan):
    kept, px, py = kernel_pixels(maps, [1.0], 3000)
    ifs = ref_fdb._maps_to_ifs(np.array(maps), np.array([1.0]))
    ifs.calculate(3000, 12345)
    fx = int(np.argmax(np.isnan(ifs.xs)))
    fy = int(np.argmax(np.isnan(ifs.ys)))
    assert (fy < fx) == (first_nan == "y")
    assert kept == fx - 100  # not (first non-finite point) - 100 as fdsl cut before
    theirs = official_pixels(maps, [1.0], 3000)
    assert np.array_equal(px, theirs[0]) and np.array_equal(py, theirs[1])


def test_infinite_points_stay_and_land_where_numpy_puts_them():
    # x = y grow to +inf and stay there (inf + inf), never NaN: the official keeps them
    maps = [[1.5, 1.5, 1.5, 1.5, 1.0, 1.0]]
    kept, px, py = kernel_pixels(maps, [1.0], 3000)
    theirs = official_pixels(maps, [1.0], 3000)
    assert kept == 3000
    assert np.array_equal(px, theirs[0]) and np.array_equal(py, theirs[1])
    assert px[0] == PAD and px[-1] == 0  # finite / inf = 0 -> pad; inf / inf = NaN -> uint16 0


def test_nan_within_the_first_100_points_keeps_nothing():
    maps = [[1e155, 0, 0, 1e155, 1.0, 1.0]]
    kept, _, _ = kernel_pixels(maps, [1.0], 3000)
    assert kept == 0
    with pytest.raises(ValueError):  # the official fails on the empty array
        official_pixels(maps, [1.0], 3000)


def test_flat_axis_scales_like_the_official():
    # y stays 0: the official computes 0 / 0 -> NaN -> pixel row 0 (fdsl put it at the padding)
    kept, px, py = kernel_pixels([[0.5, 0, 0, 0.5, 1.0, 0.0]], [1.0], 500)
    theirs = official_pixels([[0.5, 0, 0, 0.5, 1.0, 0.0]], [1.0], 500)
    assert kept == 500 and np.all(py == 0)
    assert np.array_equal(px, theirs[0]) and np.array_equal(py, theirs[1])


def test_search_fill_rate_uses_the_official_orbit():
    params = far_attractor()
    need = fdb_params.fill_needed(1e-6)
    count = fdb_params.candidate_fill(params, 0, 5000, need)
    expected = ref_fdb.search_fill_rate(*params.system(0), 0, 0, points=5000)
    assert count / 512**2 == expected


# --------------------------------------------------------------------------- ExFractalDB

WEIGHTS_INS25 = """0.9,1,1,1,1,1,1,1,1,1,1,1
1,1,1,1,1,1,1,1,1,1,1,1
1.1,1,1,1,1,1,1,1,1,1,1,1
1,0.9,1,1,1,1,1,1,1,1,1,1
1,1.1,1,1,1,1,1,1,1,1,1,1
1,1,0.9,1,1,1,1,1,1,1,1,1
1,1,1.1,1,1,1,1,1,1,1,1,1
1,1,1,0.9,1,1,1,1,1,1,1,1
1,1,1,1.1,1,1,1,1,1,1,1,1
1,1,1,1,0.9,1,1,1,1,1,1,1
1,1,1,1,1.1,1,1,1,1,1,1,1
1,1,1,1,1,0.9,1,1,1,1,1,1
1,1,1,1,1,1.1,1,1,1,1,1,1
1,1,1,1,1,1,0.9,1,1,1,1,1
1,1,1,1,1,1,1.1,1,1,1,1,1
1,1,1,1,1,1,1,0.9,1,1,1,1
1,1,1,1,1,1,1,1.1,1,1,1,1
1,1,1,1,1,1,1,1,0.9,1,1,1
1,1,1,1,1,1,1,1,1.1,1,1,1
1,1,1,1,1,1,1,1,1,0.9,1,1
1,1,1,1,1,1,1,1,1,1.1,1,1
1,1,1,1,1,1,1,1,1,1,0.9,1
1,1,1,1,1,1,1,1,1,1,1.1,1
1,1,1,1,1,1,1,1,1,1,1,0.9
1,1,1,1,1,1,1,1,1,1,1,1.1"""

# Rows of the released weights_ins145.csv (row index: text), including its slip at parameter i.
WEIGHTS_INS145_ROWS = {
    0: "0.4,1,1,1,1,1,1,1,1,1,1,1", 6: "1,1,1,1,1,1,1,1,1,1,1,1", 12: "1.6,1,1,1,1,1,1,1,1,1,1,1",
    13: "1,0.4,1,1,1,1,1,1,1,1,1,1", 24: "1,1.6,1,1,1,1,1,1,1,1,1,1", 97: "1,1,1,1,1,1,1,1,0.4,1,1,1",
    107: "1,1,1,1,1,1,1,1,1.5,1,1,1", 108: "1,1,1,1,1,1,1,1,0.6,1,1,1", 109: "1,1,1,1,1,1,1,1,1,0.4,1,1",
    144: "1,1,1,1,1,1,1,1,1,1,1,1.6",
}


def _csv(text: str) -> np.ndarray:
    return np.array([[float(v) for v in line.split(",")] for line in text.splitlines()])


def test_instance_tables_are_the_official_files():
    paper = tables.instance_table("paper25")
    np.testing.assert_array_equal(paper[:25], _csv(WEIGHTS_INS25))  # the released file, in its order
    released = tables.instance_table("released145")
    assert released.shape == (145, 12)
    for row, text in WEIGHTS_INS145_ROWS.items():
        np.testing.assert_array_equal(released[row], _csv(text)[0], err_msg=f"row {row}")
    assert released[97:109, 8].tolist() == [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.1, 1.2, 1.3, 1.4, 1.5, 0.6]


def _one_class_npz(tmp_path) -> Path:
    params = np.zeros((1, 7, 12))
    params[0, :3, [0, 4, 8]] = 0.5
    params[0, :3, 9:] = [[0, 0, 0], [1, 0, 0], [0, 1, 1]]
    classes = exfractaldb.ClassParams(params, np.array([[1 / 3] * 3 + [0] * 4]), np.array([3]), np.array([-1]))
    path = tmp_path / "classes.npz"
    path.write_bytes(classes.to_npz())
    return path


def _make(path: Path, **kwargs) -> exfractaldb.ExFractalDBSource:
    args = dict(classes=1, instances=None, seed=0, image_size=64, points=None, params_from=path, workers=1)
    return exfractaldb.make_source(**{**args, **kwargs})


def test_exfractaldb_draws_10k_points_per_model_by_default(tmp_path):
    source = _make(_one_class_npz(tmp_path))
    assert source.points == 10_000 and source.config()["points"] == 10_000
    assert source.cloud(0, 1).shape == (10_000, 3)
    assert (source.instance_table, source.instances_3d, source.views, source.views_mode) == ("paper25", 25, 40, "random")


class _CounterStream:
    """fdsl's counter-based stream ``key`` with the ``random(n)`` of a NumPy Generator, for the ports."""

    def __init__(self, key: int) -> None:
        self.key = key

    def random(self, count: int) -> np.ndarray:
        return np.array([counter_uniform(self.key, i) for i in range(count)])


def test_ring_views_follow_the_released_render_script(tmp_path):
    source = _make(_one_class_npz(tmp_path), views_mode="ring", views=12, instances_3d=1)
    cloud = source.cloud(0, 0)
    batch = source.render(0, 12)
    assert batch.metadata["elevation"].tolist() == [0.0] * 12 and batch.metadata["roll"].tolist() == [0.0] * 12
    yaw = (batch.metadata["azimuth"].astype(float) + 90.0 - 30.0 - np.arange(12) * 30.0 + 180.0) % 360.0 - 180.0
    assert np.abs(yaw).max() <= math.pi + 1e-4  # jitter: +-pi *degrees* (glm.radians of U(-pi, pi))
    assert np.abs(yaw).max() > 0.1  # jittered
    for view in range(12):
        jitter = -math.pi + 2 * math.pi * counter_uniform(stream_key(0, 3, 0, 0, view), 0)  # its stream
        expected = ref_ex.ring_render(cloud, view, 12, jitter, 64)[::-1]  # the script's rows, turned
        mismatch = np.count_nonzero(batch.images[view] != expected)
        assert mismatch <= 0.01 * max(1, np.count_nonzero(expected))  # float32 on the GPU vs float64


def test_released_code_preset_selects_all_the_released_choices(tmp_path):
    path = _one_class_npz(tmp_path)
    source = _make(path, preset="released-code")
    assert (source.instance_table, source.instances_3d, source.views, source.views_mode, source.points,
            source.gl_rows, source.per_class) == ("released145", 145, 12, "ring", 10_000, True, 1740)
    plain = _make(path, views_mode="ring", views=12, instances_3d=145, instance_table="released145")
    np.testing.assert_array_equal(source.render(0, 3).images, plain.render(0, 3).images[:, ::-1])
    assert _make(path, preset="released-code", views=4).views == 4  # flags override the preset


def test_help_documents_the_fidelity_switches(capsys):
    with pytest.raises(SystemExit):
        gen_cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--preset", "released-code", "--instance-table", "released145", "--views-mode", "ring"):
        assert flag in text


@pytest.mark.slow
def test_released_code_preset_bytes_do_not_depend_on_workers(tmp_path):
    path = _one_class_npz(tmp_path)
    common = dict(classes=1, instances_3d=3, views=10, image_size=48, params_from=path, preset="released-code",
                  shard_size=7)
    assert_same_bytes_for_1_and_2_workers(generate, "exfractaldb", tmp_path, **common)


def test_models_are_the_released_instance_py_clouds_with_one_point_more(tmp_path):
    source = _make(_one_class_npz(tmp_path), instance_table="released145", instances_3d=145, views=12,
                   views_mode="ring", image_size=224)
    params = source.params
    for variant in (0, 6, 50):
        ours = source.cloud(0, variant)
        weights = tables.instance_table("released145")[variant]
        theirs = ref_ex.instance_cloud(params.params[0, :3], params.probs[0, :3], weights,
                                       _CounterStream(stream_key(0, 2, 0, variant)))  # fdsl's model stream
        assert ours.shape == (10_000, 3) and theirs.shape == (9_999, 3)  # --point_num 10000: 9,999 iterates
        shift = theirs - ours[:9999]  # the centring (sums / 10,000) and the box of one point fewer
        assert 0 < np.abs(shift).max() < 1e-3
        # sub-pixel: the released ring views of both clouds differ in under 1% of their lit pixels
        angles = np.array([(view / 12 * 2 * math.pi + math.radians(30) - math.pi / 2, 0.0, 0.0) for view in range(12)])
        bases = np.stack([ifs3d.camera_basis(*a) for a in angles])
        mine, official = np.zeros((2, 12, 224, 224), np.uint8)
        ifs3d.project_views(ours, bases, mine)
        ifs3d.project_views(theirs, bases, official)
        assert 0 < np.count_nonzero(mine != official) <= 0.01 * np.count_nonzero(official)
