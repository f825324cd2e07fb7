"""Tests of fdsl.render: geometry, the silhouette area, ShapeNet reading, the builder pipeline.

Rendering in this process goes through ``get_renderer`` (one pyrender renderer per process, as
pyrender requires); the builder runs inline (workers=1) except in the spawn-worker test.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

sys.path.insert(0, str(Path(__file__).parent))
from fake_shapenet import BROKEN, CHAIR, GOOD, LAPTOP, make_tree  # noqa: E402

from fdsl.datasets.format import read_manifest  # noqa: E402
from fdsl.datasets.format.hdf5.shardfile import open_shard  # noqa: E402
from fdsl.errors import FdslError  # noqa: E402
from fdsl.render import procedural, shapenet  # noqa: E402
from fdsl.render import source as render_source  # noqa: E402
from fdsl.render.build import render_shapenet  # noqa: E402
from fdsl.render.cli import main  # noqa: E402
from fdsl.render.renderer import MeshPart, get_renderer  # noqa: E402
from fdsl.render.source import POSE_FIELDS, make_source, normalise_parts  # noqa: E402
from fdsl.render.viewpoints import camera_distance, look_at, look_at_origin, make_views  # noqa: E402

SIZE = 64
FOV = math.radians(40.0)


def _render(parts, eyes, size=SIZE):
    poses = np.stack([look_at(np.asarray(e, np.float64)) for e in eyes])
    return get_renderer(size, FOV).render(parts, poses)


def _part(mesh: trimesh.Trimesh, color=(0.7, 0.7, 0.7, 1.0)) -> MeshPart:
    return MeshPart(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces), color)


# --------------------------------------------------------------------------- geometry and area


@pytest.mark.parametrize("distance", [3.0, 5.0])
def test_sphere_area_matches_pinhole_projection(distance):
    sphere = _part(trimesh.creation.icosphere(subdivisions=5, radius=1.0))
    _, areas = _render([sphere], [[0.0, 0.0, -distance]], size=96)
    # A sphere seen from distance d subtends a cone of half-angle asin(r/d); on the image plane
    # its outline is a disk of radius tan(asin(r/d)) / tan(fov/2) in half-image units.
    radius = math.tan(math.asin(1.0 / distance)) / math.tan(FOV / 2)
    expected = math.pi * radius**2 / 4
    assert areas[0] == pytest.approx(expected, rel=0.008)  # measured error <= 0.33% at 96 px


def test_one_sided_quad_has_same_area_from_front_and_back():
    quad = MeshPart(np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]], np.float32),
                    np.array([[0, 1, 2], [0, 2, 3]]))  # faces +Z only
    eyes = [[0.3, 0.2, 3.0], [-0.3, 0.2, -3.0]]
    images, areas = _render([quad], eyes)
    assert areas[0] > 0.05
    assert areas[1] == pytest.approx(areas[0], abs=2 / SIZE**2 * 40)
    assert (images[1] < 250).any()  # the back side is drawn, not only counted


def test_orientation_plus_y_up_minus_z_front():
    body = trimesh.creation.box(extents=[0.6, 0.6, 0.6])
    top = trimesh.creation.icosphere(radius=0.25).apply_translation([0, 0.7, 0])  # marker at +Y
    side = trimesh.creation.box(extents=[0.2, 0.2, 0.2]).apply_translation([0.6, 0, 0])  # at +X
    red, green = (1.0, 0.0, 0.0, 1.0), (0.0, 1.0, 0.0, 1.0)
    parts = normalise_parts([_part(body), _part(top, red), _part(side, green)])
    front = make_views("grid", 1, camera_distance(FOV))  # azimuth 0 = camera on -Z
    assert front.azimuth[0] == pytest.approx(0.0)
    assert front.poses[0][2, 3] < 0
    images, _ = get_renderer(SIZE, FOV).render(parts, front.poses)
    img = images[0].astype(int)
    redness = (img[..., 0] - img[..., 1] > 60)
    greenness = (img[..., 1] - img[..., 0] > 60)
    rows, cols = np.nonzero(redness)
    assert rows.size and rows.mean() < SIZE / 2  # +Y is up in the image
    # Seen from the front (-Z) the object's +X side is on the viewer's left.
    gcols = np.nonzero(greenness)[1]
    assert gcols.size and gcols.mean() < SIZE / 2


def test_texture_is_sampled():
    checker = (np.indices((8, 8)).sum(axis=0) % 2 * 255).astype(np.uint8)
    texture = np.stack([checker] * 3, -1)
    quad = MeshPart(np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32),
                    np.array([[0, 1, 2], [0, 2, 3]]), (1.0, 1.0, 1.0, 1.0),
                    uv=np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32), texture=texture)
    images, _ = _render([quad], [[0.0, 0.0, 3.5]])
    centre = images[0][16:48, 16:48].astype(float).mean(axis=-1)
    assert centre.min() < 60 and centre.max() > 150  # dark and light squares


def test_viewpoints():
    rng = np.random.default_rng(0)
    views = make_views("fibonacci", 100, 3.0, rng)
    eyes = views.poses[:, :3, 3]
    assert np.allclose(np.linalg.norm(eyes, axis=1), 3.0)
    assert abs(eyes.mean(axis=0)).max() < 0.1  # evenly spread over the sphere
    for pose in views.poses[:5]:  # each camera looks at the origin
        assert np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-9)
        assert np.allclose(-pose[:3, 2] * 3.0, -pose[:3, 3], atol=1e-9)
    grid = make_views("grid", 100, 3.0)
    assert len(np.unique(np.round(grid.elevation, 3))) == 5
    assert len(np.unique(np.round(grid.azimuth, 3))) == 20


# --------------------------------------------------------------------------- procedural set


def test_procedural_families_are_seeded_and_varied():
    for name in procedural.CLASSES:
        a = procedural.build_model(name, 3, seed=0)
        b = procedural.build_model(name, 3, seed=0)
        c = procedural.build_model(name, 4, seed=0)
        assert all(np.array_equal(p.vertices, q.vertices) for p, q in zip(a, b, strict=True))
        va, vc = np.concatenate([p.vertices for p in a]), np.concatenate([p.vertices for p in c])
        assert va.shape != vc.shape or not np.allclose(va, vc), name
        parts = normalise_parts(a)
        radius = np.linalg.norm(np.concatenate([p.vertices for p in parts]), axis=1).max()
        assert radius == pytest.approx(1.0, abs=1e-5)
        assert all(np.isfinite(p.vertices).all() and len(p.faces) for p in parts)


# --------------------------------------------------------------------------- ShapeNet trees


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("shapenet")
    return {"v1": make_tree(base / "v1", "v1", "jstree"), "v2": make_tree(base / "v2", "v2", "flat"),
            "v2-notax": make_tree(base / "v2n", "v2", None)}


def test_layout_taxonomy_and_classes(trees):
    assert shapenet.detect_layout(trees["v1"]) == "v1"
    assert shapenet.detect_layout(trees["v2"]) == "v2"
    for key in ("v1", "v2"):
        tax = shapenet.read_taxonomy(trees[key])
        assert tax[CHAIR] == "chair" and tax[LAPTOP].startswith("laptop")
        assert shapenet.resolve_class("laptop computer", tax) == ("laptop computer", LAPTOP)
    assert shapenet.read_taxonomy(trees["v2-notax"]) == {}
    assert shapenet.resolve_class("chair", {}) == ("chair", CHAIR)
    assert shapenet.resolve_class(LAPTOP, {}) == ("laptop", LAPTOP)
    assert shapenet.resolve_class("hat", {})[1] == "02954340"
    with pytest.raises(FdslError, match="unknown class 'spaceship'"):
        shapenet.resolve_class("spaceship", {})


def test_nested_taxonomy_text_loses_its_model_count(tmp_path):
    tree = [{"id": "03001627", "text": "chair (6778)", "children": [
        {"id": "02738535", "text": "armchair (100)", "children": [
            {"id": "04331277", "text": "lawn chair,garden chair(5) ", "children": []}]}]}]
    (tmp_path / "taxonomy.json").write_text(json.dumps(tree))
    assert shapenet.read_taxonomy(tmp_path) == {
        "03001627": "chair", "02738535": "armchair", "04331277": "lawn chair,garden chair"}
    assert shapenet.resolve_class("armchair", shapenet.read_taxonomy(tmp_path)) == ("armchair", "02738535")


def test_count_faces_accepts_any_blank_after_f():
    obj = b"f 1 2 3\nv 0 0 0\nf\t1 2 3\nf  1 2 3\nvt 0 0\nfoo\n# f 1 2 3\n"
    assert shapenet.count_faces(obj) == 3
    assert shapenet.count_faces(b"f\t1\t2\t3") == 1


def test_cap_synset_is_always_named_hat(tmp_path, trees):
    root = make_tree(tmp_path / "t", "v2", "flat")
    hat = shapenet.SYNSETS["hat"]
    shutil.copytree(root / CHAIR / "chair_a", root / hat / "cap_a")
    for given in ("cap", hat, "hat", " Hat "):
        source = make_source(shapenet_root=root, classes=f"{given},laptop")
        assert source.class_names() == ["hat", "laptop"], given
        assert [m.model_id for m in source.models if m.label == 0] == ["cap_a"]
        assert any(n.startswith("hat: rendered from ShapeNet's cap synset") for n in source.notes)
        assert not any("dropped" in n for n in source.notes)
    with pytest.raises(FdslError, match="given twice"):
        make_source(shapenet_root=root, classes="hat,cap")
    # A tree without caps: only the "dropped" note, not the "rendered from cap" one.
    notes = make_source(shapenet_root=trees["v2"]).notes
    assert f"hat ({hat}): not in this ShapeNetCore tree, dropped" in notes
    assert not any(n.startswith("hat: rendered") for n in notes)
    assert make_source(classes="cap,chair", models_per_class=1).class_names() == ["hat", "chair"]


def test_model_sample_is_deterministic(trees):
    models = shapenet.list_models(trees["v2"], CHAIR, "v2")
    a = shapenet.select_models(models, 3, seed=1, synset=CHAIR)
    assert a == shapenet.select_models(models, 3, seed=1, synset=CHAIR)
    assert len(a) == 3 and a == sorted(a)
    assert {tuple(shapenet.select_models(models, 3, seed=s, synset=CHAIR)) for s in range(6)} != {tuple(a)}


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_broken_models_are_recognised(trees, version):
    rel = shapenet.LAYOUT_FILES[version]
    for model_id, reason in BROKEN.items():
        with pytest.raises(shapenet.BrokenModel, match=reason):
            shapenet.load_model(trees[version] / CHAIR / model_id / rel, 10_000)
    good = shapenet.load_model(trees[version] / CHAIR / "chair_tex" / rel, 10_000)
    assert good[0].texture is not None and good[0].uv is not None
    with pytest.raises(shapenet.BrokenModel, match="max-faces"):
        shapenet.load_model(trees[version] / CHAIR / "chair_a" / rel, 5)


def _build(out, **kwargs):
    settings = {"views": 3, "image_size": 32, "workers": 1, "seed": 5}
    settings.update(kwargs)
    return render_shapenet(out, **settings)


def _hashes(out):
    return [s["sha256"] for s in read_manifest(out)["shards"]]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_shapenet_build_with_failures(trees, tmp_path, version):
    out = tmp_path / "ds"
    result = _build(out, shapenet_root=trees[version], classes="chair,laptop", shard_size=6)
    good = sum(len(v) for v in GOOD.values())
    assert result.images == good * 3
    assert result.failures == len(BROKEN)
    records = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert {r["model_id"]: r["synset"] for r in records} == dict.fromkeys(BROKEN, CHAIR)
    for record in records:
        assert BROKEN[record["model_id"]] in record["reason"] and record["path"]
    manifest = read_manifest(out)
    assert manifest["complete"] and manifest["classes"] == ["chair", "laptop"]
    assert set(POSE_FIELDS) | {"area", "azimuth", "elevation", "distance", "view", "model_id", "synset"} <= set(manifest["metadata_fields"])
    with open_shard(out / manifest["shards"][0]["file"]) as f:
        area = f["metadata"]["area"][:]
        assert f["images"].shape[1:] == (32, 32, 3)
        assert ((area > 0.01) & (area < 1)).all()


def test_unexpected_model_error_is_recorded_and_the_job_goes_on(trees, tmp_path, monkeypatch):
    real_load = render_source.load_model

    def load(path, max_faces):
        if "chair_b" in str(path):
            raise RuntimeError("boom")
        return real_load(path, max_faces)

    monkeypatch.setattr(render_source, "load_model", load)
    out = tmp_path / "ds"
    result = _build(out, shapenet_root=trees["v2"], classes="chair,laptop", shard_size=6)
    good = sum(len(v) for v in GOOD.values())
    assert result.images == (good - 1) * 3 and result.failures == len(BROKEN) + 1
    lines = (out / "failures.jsonl").read_text().splitlines()
    records = {r["model_id"]: r["reason"] for r in map(json.loads, lines)}
    assert records["chair_b"] == "RuntimeError: boom"

    def out_of_memory(path, max_faces):
        raise MemoryError

    monkeypatch.setattr(render_source, "load_model", out_of_memory)
    source = make_source(shapenet_root=trees["v2"], classes="laptop", views=1, image_size=16)
    with pytest.raises(MemoryError):  # not the model's fault: the shard fails (and is retried)
        source.render(0, 1)


def test_view_index_does_not_wrap_past_int16():
    source = make_source(classes="camera", models_per_class=1, views=40_000, image_size=16)
    batch = source.render(39_998, 40_000)
    assert batch.metadata["view"].dtype == np.int32
    assert batch.metadata["view"].tolist() == [39_998, 39_999]
    assert batch.items.tolist() == [39_998, 39_999]
    assert source.render(0, 0).metadata["view"].dtype == np.int32


def test_missing_class_is_dropped_with_a_note(trees, tmp_path):
    source = make_source(shapenet_root=trees["v2"], classes="chair,bicycle,laptop", models_per_class=2)
    assert source.class_names() == ["chair", "laptop"]
    assert any("bicycle" in n and "motorbike" in n for n in source.notes)
    assert len(source.models) == 4


def test_procedural_build_is_deterministic_and_resumes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    first = _build(a, classes="chair,laptop,hat", models_per_class=2, shard_size=4)
    assert first.images == 3 * 2 * 3 and first.failures == 0
    _build(b, classes="chair,laptop,hat", models_per_class=2, shard_size=4)
    assert _hashes(a) == _hashes(b)
    again = _build(a, classes="chair,laptop,hat", models_per_class=2, shard_size=4)
    assert again.shards_skipped == again.shards == first.shards
    other_seed = _build(tmp_path / "c", classes="chair,laptop,hat", models_per_class=2, shard_size=4, seed=6)
    assert _hashes(tmp_path / "c") != _hashes(a) and other_seed.images == first.images


@pytest.mark.slow
def test_spawned_workers_give_the_same_bytes(tmp_path):
    settings = {"classes": "car,sofa", "models_per_class": 2, "shard_size": 3}
    _build(tmp_path / "one", **settings)
    _build(tmp_path / "two", workers=2, **settings)
    assert _hashes(tmp_path / "one") == _hashes(tmp_path / "two")


# --------------------------------------------------------------------------- command line


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "x"), "--shapenet-root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such folder" in err
    assert main(["--out", str(tmp_path / "x"), "--classes", "spaceship"]) == 2
    assert "unknown class 'spaceship'" in capsys.readouterr().err
    for flag, value, message in [("--views", "0", "expected a positive integer"),
                                 ("--seed", "-1", "expected an integer >= 0"),
                                 ("--image-size", "20000", "between 16 and 4096"),
                                 ("--image-size", "8", "between 16 and 4096")]:
        with pytest.raises(SystemExit) as exc:
            main(["--out", str(tmp_path / "x"), flag, value])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err and flag in err, err
    with pytest.raises(FdslError, match="--seed"):
        make_source(seed=-1)
    with pytest.raises(FdslError, match="--image-size"):
        make_source(image_size=20_000)


def test_cli_renders_and_reports(tmp_path, trees, capsys):
    out = tmp_path / "cli"
    assert main(["--out", str(out), "--shapenet-root", str(trees["v1"]), "--classes", f"{LAPTOP}",
                 "--views", "2", "--image-size", "32", "--workers", "1", "--viewpoints", "grid"]) == 0
    err = capsys.readouterr().err
    assert "models: 2 rendered, 0 failed" in err
    assert read_manifest(out)["num_images"] == 4


def test_png_layout(tmp_path):
    out = tmp_path / "png"
    result = _build(out, classes="camera", models_per_class=1, views=2, fmt="png")
    assert result.images == 2
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "000.camera/camera-0000/000.png", "000.camera/camera-0000/001.png"]


def test_batched_look_at_matches_single():
    eyes = np.random.default_rng(1).normal(size=(20, 3))
    eyes[0] = [0.0, 2.0, 0.0]  # straight above: the up vector falls back to -Z
    batched = look_at_origin(eyes)
    for eye, pose in zip(eyes, batched, strict=True):
        assert np.allclose(pose, look_at(eye))


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc")
def test_memory_stays_flat_over_many_models():
    """Each model's GL buffers are freed after its views: 600 models of 20k faces each would
    hold about 1 GiB of vertex data if they leaked."""
    renderer = get_renderer(SIZE, FOV)
    poses = look_at_origin(np.array([[0.0, 0.0, 4.0], [4.0, 0.0, 0.0]]))
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.8)  # 20,480 faces
    for model in range(600):
        part = MeshPart(np.asarray(sphere.vertices, np.float32) * (1 + model * 1e-4),
                        np.asarray(sphere.faces), (0.5, 0.5, 0.5, 1.0))
        renderer.render([part], poses)
        if model == 99:
            baseline = _rss_mib()
    assert _rss_mib() - baseline < 60, (baseline, _rss_mib())


def test_png_class_folders_sort_in_label_order(tmp_path):
    """Classes named out of alphabetical order still get ImageFolder's labels (sorted folders)."""
    out = tmp_path / "png"
    _build(out, classes="sofa,bench", models_per_class=1, views=1, fmt="png")
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == ["000.sofa", "001.bench"]
    from fdsl.datasets.format import open_dataset

    reader = open_dataset(out, verify=True)
    imagefolder_labels = [folders.index(path.relative_to(out).parts[0]) for path in reader.paths]
    assert imagefolder_labels == reader.labels.tolist() == [0, 1]
    assert reader.classes == ["sofa", "bench"]


@pytest.mark.parametrize("content", ['"chairs"', "[1, 2, 3]", '[{"synsetId": 5}]', '{"junk": 1}',
                                     '[{"id": "x", "children": "oops"}]', "42", "folder"])
def test_malformed_taxonomy_is_one_line(tmp_path, trees, content):
    root = tmp_path / "tree"
    shutil.copytree(trees["v2-notax"], root)
    if content == "folder":
        (root / "taxonomy.json").mkdir()
    else:
        (root / "taxonomy.json").write_text(content)
    with pytest.raises(FdslError, match="taxonomy.json") as exc:
        shapenet.read_taxonomy(root)
    assert "\n" not in str(exc.value)
    assert main(["--out", str(tmp_path / "out"), "--shapenet-root", str(root), "--classes", "chair"]) == 2
