"""ExFractalDB: kernels against the plain-Python reference port, search, projection, determinism."""

from __future__ import annotations

import json
import math
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import (
    assert_refused_in_one_line,
    assert_same_bytes_for_1_and_2_workers,
    counter_uniform,
)

from fdsl.datasets.inspect import cli as inspect_cli
from fdsl.errors import FdslError
from fdsl.generators import cli, exfractaldb
from fdsl.generators.exfractaldb import params as ex_params
from fdsl.generators.exfractaldb import source as ex_source
from fdsl.generators.exfractaldb import tables
from fdsl.generators.generate import generate
from fdsl.generators.kernels import ifs3d
from fdsl.generators.seeding import stream_key

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.reference import exfractaldb_official as ref  # noqa: E402

SMALL = dict(classes=2, instances_3d=2, views=3, image_size=64, points=3000, search_points_3d=2000)


def test_candidates_match_the_reference_stream():
    for k in range(20):
        ours, (params, probs, _) = ex_params.sample_candidate(7, k), ref.sample_candidate(7, k)
        n = len(params)
        assert ours.num_maps.tolist() == [n] and ours.candidate.tolist() == [k]
        np.testing.assert_array_equal(ours.params[0, :n], params)
        np.testing.assert_array_equal(ours.probs[0, :n], probs)


def test_chaos_game_is_the_official_calculate_with_one_point_more():
    params, probs, rng = ref.sample_candidate(7, 3)
    uniforms = rng.random(4000)
    n = len(params)
    ours = ifs3d.chaos_game(params[:, :9].reshape(n, 3, 3), params[:, 9:], probs, uniforms)
    theirs = ref.calculate(params, probs, uniforms)  # calculate(4000): 3,999 iterates
    assert ours.shape == (4000, 3) and theirs.shape == (3, 3999)
    np.testing.assert_array_equal(ours[:3999], theirs.T)  # the same points, fdsl one more


def test_a_draw_above_the_last_running_sum_repeats_the_point_officially_not_in_fdsl():
    # probabilities summing to 0.9: a draw of 0.95 reaches no running sum
    params = np.zeros((2, 12))
    params[:, [0, 4, 8]] = 0.5
    params[0, 9:], params[1, 9:] = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    probs, uniforms = np.array([0.5, 0.4]), np.array([0.1, 0.95, 0.2, 0.0])
    theirs = ref.calculate(params, probs, uniforms).T
    assert theirs[1].tolist() == theirs[0].tolist() == [1.0, 0.0, 0.0]  # the official stores point 0 again
    ours = ifs3d.chaos_game(params[:, :9].reshape(2, 3, 3), params[:, 9:], probs, uniforms)
    assert ours[1].tolist() == [0.5, 1.0, 0.0]  # fdsl takes the last map: (1, 0, 0) / 2 + (0, 1, 0)


def test_centring_differs_from_the_official_by_a_thousandth_of_a_pixel():
    params, probs, rng = ref.sample_candidate(0, 2)
    uniforms = rng.random(10_000)
    theirs = ref.normalized_cloud(params, probs, uniforms).T  # 9,999 points, sums / 10,000
    n = len(params)
    ours = ifs3d.chaos_game(params[:, :9].reshape(n, 3, 3), params[:, 9:], probs, uniforms)[:9999]
    assert ifs3d.normalize_center(ours)  # the same 9,999 points, centred on their true mean
    shift = theirs - ours
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-12)  # one offset
    # the official centroid is 9,999 / 10,000 of the mean: its cloud keeps 1/10,000 of the mean
    np.testing.assert_allclose(shift[0], theirs.sum(axis=0) / 9999, rtol=1e-9, atol=1e-15)
    assert 0 < np.abs(shift[0]).max() < 1e-4  # at most 1e-4 of the unit: under 0.01 px at 224 px


def test_search_judges_like_the_official_script_up_to_one_point():
    ours = ex_params.search_classes(2, seed=0, points=2000, threshold=0.05, workers=1, backend="inline")
    # category_search.py with --point_num 2000 iterates 1,999 times and centres by sums / 2,000
    assert ours.candidate.tolist() == ref.search(0, 2, point_num=2000, variance=0.05)
    again = ex_params.search_classes(2, seed=0, points=2000, threshold=0.05, workers=3, backend="inline")
    np.testing.assert_array_equal(ours.params, again.params)
    assert set(ours.num_maps.tolist()) <= set(range(2, 8))
    np.testing.assert_allclose(ours.probs.sum(axis=1), 1.0)
    # the variances the two judge by differ, slightly: the point fdsl draws more and the centring
    for k in ours.candidate.tolist():
        params, probs, rng = ref.sample_candidate(0, k)
        uniforms = rng.random(2000)
        theirs = np.var(ref.normalized_cloud(params, probs, uniforms, 2000), axis=1)
        mine = ex_params.cloud_variances(ex_params.sample_candidate(0, k), uniforms)
        assert not np.array_equal(mine, theirs)
        np.testing.assert_allclose(mine, theirs, rtol=0.02)


def _tetrahedron() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    corners = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float)
    return np.tile(np.eye(3) * 0.5, (4, 1, 1)), corners * 0.5, np.full(4, 0.25)


def test_variance_acceptance_flat_rejected_spread_accepted():
    uniforms = np.random.default_rng(1).random(5000)
    matrices, shifts, probs = _tetrahedron()
    spread = ifs3d.chaos_game(matrices, shifts, probs, uniforms)
    assert ifs3d.normalize_center(spread)
    variances = ifs3d.axis_variances(spread)
    assert ex_params.accepts(variances, 0.05)
    # the threshold is respected on both sides of the smallest variance
    assert ex_params.accepts(variances, variances.min() - 1e-9)
    assert not ex_params.accepts(variances, variances.min() + 1e-9)
    flat_matrices, flat_shifts = matrices.copy(), shifts.copy()
    flat_matrices[:, 2, :] = 0.0
    flat_shifts[:, 2] = 0.0  # every point lies in the plane z = 0
    flat = ifs3d.chaos_game(flat_matrices, flat_shifts, probs, uniforms)
    assert ifs3d.normalize_center(flat)
    assert ifs3d.axis_variances(flat)[2] == pytest.approx(0.0, abs=1e-20)
    assert not ex_params.accepts(ifs3d.axis_variances(flat), 0.05)
    diverging = ifs3d.chaos_game(matrices * 8.0, shifts, probs, uniforms)
    assert not ifs3d.normalize_center(diverging)  # overflows to inf: not finite, rejected
    params = np.c_[(matrices * 8.0).reshape(4, 9), shifts]
    assert not ref.accepted(ref.normalized_cloud(params, probs, uniforms), 0.05)  # by the official too


def project(points: np.ndarray, basis: np.ndarray, img: np.ndarray) -> int:
    """One view of ``ifs3d.project_views`` into ``img``; its lit pixel count."""
    return int(ifs3d.project_views(points, basis[None], img[None])[0])


def test_projection_matches_hand_computed_pinhole():
    size = 64
    focal = 1.0 / math.tan(math.radians(22.5))  # 2.41421...
    points = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.5],
                       [0.0, 0.0, -200.0]])
    img = np.zeros((size, size), np.uint8)
    lit = project(points, ifs3d.camera_basis(0.0, 0.0, 0.0), img)
    # camera at (0, 0, 4) looking down -z: depth 4 for the first three points, 0.5 (< near) for
    # the fourth, 204 (> far) for the fifth.
    expected = {(32, 32), (32, math.floor((focal / 4 + 1) * 32)), (math.floor((1 - focal / 4) * 32), 32)}
    assert expected == {(32, 32), (32, 51), (12, 32)}  # 32 * (1 + 2.414 / 4) = 51.3, 32 * (1 - 2.414 / 4) = 12.7
    assert {tuple(p) for p in np.argwhere(img == 255).tolist()} == expected
    assert lit == 3
    # a quarter turn of azimuth puts the camera on +x looking toward -x: its right is -z, so
    # (0, 0, -1) lands right of the centre. A roll of +90 degrees turns the camera's right axis onto
    # the old up axis, so a point on the old right, (1, 0, 0), lands below the centre.
    img = np.zeros((size, size), np.uint8)
    project(np.array([[0.0, 0.0, -1.0]]), ifs3d.camera_basis(math.pi / 2, 0.0, 0.0), img)
    assert np.argwhere(img).tolist() == [[32, 51]]
    img = np.zeros((size, size), np.uint8)
    project(np.array([[1.0, 0.0, 0.0]]), ifs3d.camera_basis(0.0, 0.0, math.pi / 2), img)
    assert np.argwhere(img).tolist() == [[51, 32]]


def test_views_match_reference_opengl_style_projection():
    """The source's images (its kernel's projection of its cloud) are the reference projection
    of the same cloud from the same angles."""
    classes = exfractaldb.search_classes(1, seed=3, points=2000, workers=1)
    source = exfractaldb.ExFractalDBSource(classes, seed=3, instances_3d=6, views=6, points=8000,
                                           image_size=64, roll=True, search={})
    batch = source.render(30, 36)  # variant 5, views 0..5
    cloud = ex_source.variant_cloud(classes, 0, 5, 3, 8000)
    for view in range(6):
        angles = ex_source.view_angles(3, 0, 5, view, roll=True)
        np.testing.assert_array_equal(batch.images[view], ref.render_view(cloud, *angles, 64))


def test_random_view_angles_are_the_views_counter_stream():
    """View 7 of model (class 2, variant 4), seed 5: draws 0, 1, 2 of stream (5, 3, 2, 4, 7), worked
    out in plain Python: height U(-1, 1), azimuth U(0, 2 pi), roll U(-pi, pi)."""
    key = stream_key(5, 3, 2, 4, 7)
    u = [counter_uniform(key, i) for i in range(3)]
    azimuth, elevation, roll = ex_source.view_angles(5, 2, 4, 7, roll=True)
    assert azimuth == 2 * math.pi * u[1]
    assert elevation == math.asin(-1.0 + 2.0 * u[0])
    assert roll == -math.pi + 2 * math.pi * u[2]
    assert ex_source.view_angles(5, 2, 4, 7, roll=False)[2] == 0.0


def test_variant_tables_have_one_changed_parameter_per_row():
    for name in ("paper25", "released145"):
        table = tables.instance_table(name)
        assert table.shape == (exfractaldb.MAX_VARIANTS, 12)
        changed = (table != 1.0).sum(axis=1)
        assert changed.tolist().count(0) == 1 and set(changed.tolist()) == {0, 1}  # one identity row
    factors = sorted({round(float(x), 6) for x in tables.instance_table("paper25")[:25].ravel()})
    assert factors == [0.9, 1.0, 1.1]
    with pytest.raises(FdslError, match="instance-table"):
        tables.instance_table("paper1000")


def _source(**overrides) -> exfractaldb.ExFractalDBSource:
    opts = dict(SMALL, **overrides)
    return exfractaldb.make_source(classes=opts.pop("classes"), instances=opts.pop("instances", None), seed=0,
                                   image_size=opts.pop("image_size"), points=opts.pop("points"),
                                   params_from=None, workers=1, backend="inline", **opts)


def test_render_is_independent_of_the_split():
    src = _source()
    whole = src.render(0, src.num_items())
    parts = [src.render(a, b) for a, b in ((0, 1), (1, 5), (5, 8), (8, src.num_items()))]
    np.testing.assert_array_equal(whole.images, np.concatenate([p.images for p in parts]))
    for key, values in whole.metadata.items():
        np.testing.assert_array_equal(values, np.concatenate([p.metadata[key] for p in parts]))
    assert whole.labels.tolist() == [0] * 6 + [1] * 6
    assert whole.metadata["variant"].tolist()[:6] == [0, 0, 0, 1, 1, 1]
    assert whole.metadata["view"].tolist()[:6] == [0, 1, 2, 0, 1, 2]
    lit = (whole.images == 255).mean(axis=(1, 2))
    np.testing.assert_allclose(whole.metadata["fill"], lit, rtol=1e-6)
    assert np.all(lit > 0) and set(np.unique(whole.images)) <= {0, 255}


def test_no_roll_keeps_direction_and_zeroes_roll():
    rolled, upright = _source().render(0, 3), _source(no_roll=True).render(0, 3)
    np.testing.assert_array_equal(rolled.metadata["azimuth"], upright.metadata["azimuth"])
    assert np.all(upright.metadata["roll"] == 0) and np.any(rolled.metadata["roll"] != 0)


def test_diverging_variant_is_reported_not_drawn():
    expanding = np.zeros((1, 7, 12))
    expanding[0, :2, [0, 4, 8]] = 9.0  # two maps scaling by 9: the chaos game overflows to inf
    classes = exfractaldb.ClassParams(expanding, np.array([[0.5, 0.5, 0, 0, 0, 0, 0]]), np.array([2]),
                                      np.array([-1]))
    src = exfractaldb.ExFractalDBSource(classes, seed=0, instances_3d=2, views=2, points=2000,
                                        image_size=32, roll=True, search={})
    batch = src.render(1, 4)
    assert len(batch.items) == 0 and batch.images.shape == (0, 32, 32)
    assert [(f["variant"], f["items"]) for f in batch.failures] == [(0, [1, 1]), (1, [2, 3])]
    assert all("diverges" in f["reason"] for f in batch.failures)


def _expanding_in_x_class() -> exfractaldb.ClassParams:
    """Two maps contracting y, z by 0.5 and x by 0.98: parameter a x 1.1 (variant 2) makes x grow by
    1.078 per step, which overflows to inf within 20000 points; a x 0.9 and b x 0.9 stay finite."""
    params = np.zeros((1, 7, 12))
    params[0, :2, [0, 4, 8]] = [[0.98, 0.98], [0.5, 0.5], [0.5, 0.5]]
    params[0, 1, 9:] = [1.0, 0.7, 0.3]
    return exfractaldb.ClassParams(params, np.array([[0.5, 0.5, 0, 0, 0, 0, 0]]), np.array([2]), np.array([-1]))


def test_diverging_variant_slot_takes_the_next_unused_variant():
    classes = _expanding_in_x_class()
    finite = [ex_source.variant_cloud(classes, 0, v, 0, 20_000) is not None for v in range(5)]
    assert finite == [True, True, False, True, True]
    # the released instance.py writes no model for that variant (NaN in y), so its class has fewer
    weights = tables.instance_table("paper25")
    written = [ref.instance_cloud(classes.params[0, :2], classes.probs[0, :2], weights[v],
                                  np.random.default_rng([0, 2, 0, v]), 20_000) is not None for v in range(4)]
    assert written == [True, True, False, True]
    src = exfractaldb.ExFractalDBSource(classes, seed=0, instances_3d=3, views=2, points=20_000,
                                        image_size=32, roll=True, search={})
    whole = src.render(0, 6)
    assert not whole.failures and whole.items.tolist() == list(range(6))
    assert whole.metadata["variant"].tolist() == [0, 0, 1, 1, 3, 3]  # slot 2 draws variant 3
    assert (whole.images == 255).any(axis=(1, 2)).all()
    # the substitute does not depend on the split, nor on a fresh source
    fresh = exfractaldb.ExFractalDBSource(classes, seed=0, instances_3d=3, views=2, points=20_000,
                                          image_size=32, roll=True, search={})
    part = fresh.render(5, 6)
    np.testing.assert_array_equal(part.images[0], whole.images[5])
    assert part.metadata["variant"].tolist() == [3]
    # with more slots, the slot takes the first variant after the table's used ones
    wider = exfractaldb.ExFractalDBSource(classes, seed=0, instances_3d=4, views=2, points=20_000,
                                          image_size=32, roll=True, search={})
    assert wider.render(4, 6).metadata["variant"].tolist() == [4, 4]


def _shard_arrays(folder: Path) -> dict[str, np.ndarray]:
    with h5py.File(folder / "shard-00000.h5") as f:
        return {"images": f["images"][:], "labels": f["labels"][:],
                **{k: f["metadata"][k][:] for k in f["metadata"]}}


@pytest.mark.slow
def test_generate_bytes_independent_of_workers_and_params_from(tmp_path):
    common = dict(classes=2, seed=5, image_size=64, points=3000, instances_3d=2, views=3,
                  search_points_3d=2000, shard_size=4)
    assert_same_bytes_for_1_and_2_workers(generate, "exfractaldb", tmp_path, **common)
    common.pop("search_points_3d")  # refused with --params-from: nothing is searched
    generate("exfractaldb", tmp_path / "p", workers=1, params_from=tmp_path / "w1" / "classes.npz", **common)
    np.testing.assert_array_equal(_shard_arrays(tmp_path / "p")["images"], _shard_arrays(tmp_path / "w1")["images"])
    manifest = (tmp_path / "p" / "manifest.json").read_text()
    assert "params_sha256" in manifest
    with zipfile.ZipFile(tmp_path / "w1" / "classes.npz") as archive:  # no wall-clock time inside
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert inspect_cli.main([str(tmp_path / "w1"), "--grid", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_png_layout(tmp_path):
    generate("exfractaldb", tmp_path / "png", workers=1, fmt="png", **SMALL)
    names = sorted(p.relative_to(tmp_path / "png").as_posix() for p in (tmp_path / "png").rglob("*.png"))
    assert names[:4] == ["000000/000000_00000_000.png", "000000/000000_00000_001.png",
                         "000000/000000_00000_002.png", "000000/000000_00001_000.png"]
    assert len(names) == 12  # 2 classes x 2 models x 3 views


def test_instances_must_be_models_times_views_and_the_manifest_says_what_was_made(tmp_path, capsys):
    generate("exfractaldb", tmp_path / "ok", workers=1, instances=6, **SMALL)  # 2 x 3: accepted
    config = json.loads((tmp_path / "ok" / "manifest.json").read_text())["config"]
    assert (config["instances"], config["instances_3d"], config["views"]) == (6, 2, 3)
    argv = ["--db", "exfractaldb", "--classes", "1", "--instances", "4", "--instances-3d", "2", "--views", "3",
            "--out", str(tmp_path / "no")]
    assert_refused_in_one_line(capsys, cli.main, argv, "--instances 4 does not fit --db exfractaldb, whose "
                               "classes have --instances-3d x --views = 2 x 3 = 6 images; set --instances-3d")
    assert not (tmp_path / "no").exists()
    with pytest.raises(FdslError, match=r"= 25 x 40 = 1000 images"):
        exfractaldb.prepare_source(classes=1, instances=10, seed=0, image_size=None, points=None,
                                   params_from=None, workers=1)


@pytest.mark.parametrize("flag", [["--variance-threshold", "0.1"], ["--search-points-3d", "5000"]])
def test_search_flags_are_refused_with_params_from(tmp_path, capsys, flag):
    saved = tmp_path / "classes.npz"
    saved.write_bytes(_expanding_in_x_class().to_npz())
    argv = ["--db", "exfractaldb", "--classes", "1", "--out", str(tmp_path / "o"), "--instances-3d", "1",
            "--views", "1", "--image-size", "16", "--points", "500", "--params-from", str(saved), *flag]
    assert_refused_in_one_line(capsys, cli.main, argv, "do not apply with --params-from")
    assert not (tmp_path / "o").exists()
