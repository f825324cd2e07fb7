"""FractalDB: Numba kernels vs the plain-Python port of the official algorithm, the filling-rate
search, determinism through generate(), --params-from, flips, PNG names and CLI errors."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from fdsl.atomic import FolderLockedError, folder_lock
from fdsl.datasets.format import read_manifest, verify_dataset
from fdsl.errors import FdslError
from fdsl.generators import cli, fractaldb, search
from fdsl.generators.fractaldb import params as fdb_params
from fdsl.generators.fractaldb import source as fdb_source
from fdsl.generators.generate import generate
from fdsl.generators.kernels import ifs2d

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.reference import fractaldb_official as ref  # noqa: E402

SMALL = {"image_size": 64, "points": 20_000}


@pytest.fixture(scope="module")
def two_classes() -> fractaldb.ClassParams:
    return fractaldb.search_classes(2, seed=0)


def small_source(params, color="gray", seed=0, instances=1000, **kw) -> fractaldb.FractalDBSource:
    return fractaldb.FractalDBSource(params, instances=instances, seed=seed, color=color, search={},
                                     params_sha256=None, **{**SMALL, **kw})


def read_images(folder: Path) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """All images, labels and metadata of a data set folder, in item order."""
    manifest = read_manifest(folder)
    images, labels, meta = [], [], {}
    for entry in manifest["shards"]:
        with h5py.File(folder / entry["file"], "r") as f:
            images.append(f["images"][:])
            labels.append(f["labels"][:])
            for name in f["metadata"]:
                meta.setdefault(name, []).append(f["metadata"][name][:])
    return np.concatenate(images), np.concatenate(labels), {k: np.concatenate(v) for k, v in meta.items()}


def digest(images: np.ndarray) -> list[str]:
    return [hashlib.sha256(im.tobytes()).hexdigest() for im in images]


# --------------------------------------------------------------------------- kernels vs reference


def test_streams_and_candidates_match_reference():
    assert ifs2d.stream_key(7, 3, 11, 2) == ref.stream_key(7, 3, 11, 2)
    assert ifs2d.stream_key(-1, 4, 0) == ref.stream_key(-1, 4, 0)
    key = ref.stream_key(1, 2, 3)
    for i in (0, 1, 99, 12345):
        assert int(ifs2d.counter_hash(np.uint64(key), i)) == ref.draw(key, i)
    for k in range(30):
        ours, theirs = fdb_params.sample_candidate(3, k), ref.sample_candidate(3, k)
        assert len(ours) == 1 and ours.candidate.tolist() == [k]
        assert np.array_equal(ours.maps, theirs[0]) and np.array_equal(ours.probs, theirs[1])
        assert 2 <= len(ours.maps) <= 7 and abs(ours.probs.sum() - 1) < 1e-12


def test_chaos_game_draws_the_reference_points(two_classes):
    class_maps, probs = two_classes.system(1)
    ifs = ref._maps_to_ifs(class_maps, probs, ref.WEIGHTS[7])
    key = ref.stream_key(0, ref.TAG_POINTS, 1)
    ifs.calculate(5000, key)
    xs, ys = np.empty(5000), np.empty(5000)
    cum = two_classes.cumulative(1)
    maps = class_maps * fdb_source.WEIGHTS[7]
    box = np.empty(4)
    assert ifs2d.orbit(maps, cum, ifs2d.selection_table(cum), np.uint64(key), xs, ys, box) == 5000
    assert np.array_equal(xs, ifs.xs) and np.array_equal(ys, ifs.ys)
    assert list(box) == [min(xs), max(xs), min(ys), max(ys)]  # the origin counts


@pytest.mark.parametrize("variant", [0, 2, 13, 24])
def test_gray_render_is_pixel_identical_to_reference(two_classes, variant):
    source = small_source(two_classes)
    label, render = 1, 3
    first = label * 1000 + variant * 40 + render * 4
    ours = source.render(first, first + 4)
    theirs = ref.render(*two_classes.system(label), seed=0, label=label,
                        variant=variant, render_index=render, **{"size": 64, "points": 20_000})
    for flip in range(4):
        assert np.all(theirs[flip][..., 0] == theirs[flip][..., 2])
        assert np.array_equal(ours.images[flip], theirs[flip][..., 0])
    assert set(np.unique(ours.images)) <= {0, 127}
    assert list(ours.metadata["flip"]) == [0, 1, 2, 3]
    assert set(ours.metadata["variant"]) == {variant} and set(ours.metadata["render"]) == {render}


def test_color_render_is_pixel_identical_to_reference(two_classes):
    source = small_source(two_classes, color="color")
    ours = source.render(5 * 40, 5 * 40 + 4)
    theirs = ref.render(*two_classes.system(0), seed=0, label=0, variant=5,
                        render_index=0, size=64, points=20_000, color=True)
    assert ours.images.shape == (4, 64, 64, 3)
    for flip in range(4):
        assert np.array_equal(ours.images[flip], theirs[flip])
    assert len({tuple(c) for c in fdb_source.hue_palette()}) > 20


def test_renders_differ_only_in_patches_and_flips_are_exact(two_classes):
    images = small_source(two_classes).render(0, 8).images  # variant 0, renders 0 and 1
    base = images[0]
    assert np.array_equal(images[1], base[::-1])
    assert np.array_equal(images[2], base[:, ::-1])
    assert np.array_equal(images[3], base[::-1, ::-1])
    assert not np.array_equal(images[4], base)  # another render: other patches
    # same points, so the same box: a patch edge moves at most 2 px with its mask
    def box(image):
        rows, cols = np.nonzero(image)
        return np.array([rows.min(), rows.max(), cols.min(), cols.max()])
    assert np.abs(box(images[4]) - box(base)).max() <= 2


# --------------------------------------------------------------------------- search


def one_class(maps, probs, candidate: int = -1) -> fractaldb.ClassParams:
    return fractaldb.ClassParams.from_systems([(np.asarray(maps, float), np.asarray(probs, float))], [candidate])


def square_ifs() -> fractaldb.ClassParams:
    """Four half-size copies tiling the unit square: the attractor fills the square."""
    maps = np.array([[0.5, 0, 0, 0.5, e, f] for e in (0.0, 0.5) for f in (0.0, 0.5)])
    return one_class(maps, np.full(4, 0.25), candidate=0)


def test_fill_rate_accepts_a_space_filling_ifs_and_rejects_degenerate_ones():
    need = fdb_params.fill_needed(0.2)
    assert need == 52429 and need / 512**2 >= 0.2 > (need - 1) / 512**2
    count = fdb_params.candidate_fill(square_ifs(), 0, 100_000, need)
    theirs = ref.search_fill_rate(*square_ifs().system(0), 0, 0)
    assert count / 512**2 == theirs and theirs > 0.25  # about 1 - exp(-100k / 512^2)
    assert fdb_params.candidate_fill(square_ifs(), 0, 100_000, fdb_params.fill_needed(0.5)) == -1
    zero = one_class(np.zeros((3, 6)), np.full(3, 1 / 3), candidate=1)
    assert fdb_params.candidate_fill(zero, 0, 100_000, need) == -1
    assert ref.search_fill_rate(*zero.system(0), 0, 1) < 0.2
    with pytest.raises(FdslError, match="cannot reach"):
        fractaldb.search_classes(1, search_points=50_000)
    diverging = one_class([[3.0, 0, 0, 3.0, 1, 1], [-2.5, 0, 0, 2.5, 0, 1]], [0.5, 0.5], candidate=2)
    assert fdb_params.candidate_fill(diverging, 0, 100_000, need) == -1


def test_search_matches_reference_fill_rates_and_threshold_flag():
    # 20k points can fill at most 7.6% of 512^2, so small thresholds keep this test fast
    found = fractaldb.search_classes(3, seed=5, fill_rate=0.04, search_points=20_000)
    assert len(found) == 3
    for label, k in enumerate(found.candidate.tolist()):
        theirs = ref.search_fill_rate(*found.system(label), 5, k, 20_000)
        assert found.fill_rate[label] == theirs >= 0.04
    for k in range(int(found.candidate[0])):  # every earlier candidate is rejected by the reference too
        cand = ref.sample_candidate(5, k)
        assert cand is None or ref.search_fill_rate(*cand, 5, k, 20_000) < 0.04
    strict = fractaldb.search_classes(2, seed=5, fill_rate=0.05, search_points=20_000)
    assert np.all(strict.fill_rate >= 0.05)
    loose = fractaldb.search_classes(40, seed=5, fill_rate=0.04, search_points=20_000)
    # a stricter threshold keeps a subsequence of the looser one's candidates
    assert set(strict.candidate.tolist()) <= set(loose.candidate.tolist())
    assert strict.candidate[0] == loose.candidate[np.argmax(loose.fill_rate >= 0.05)]


@pytest.mark.slow
def test_search_is_identical_whatever_the_chunks_and_workers(monkeypatch):
    settings = {"seed": 2, "fill_rate": 0.04, "search_points": 20_000}
    inline = fractaldb.search_classes(4, workers=1, **settings)
    monkeypatch.setattr(search, "CHUNK", 16)
    pooled = fractaldb.search_classes(4, workers=2, backend="local", **settings)
    assert inline.candidate.tolist() == pooled.candidate.tolist()
    assert np.array_equal(inline.maps, pooled.maps) and np.array_equal(inline.fill_rate, pooled.fill_rate)


def test_diverging_variant_renders_black_without_error():
    params = one_class([[1.5, 0, 0, 1.5, 1, 1], [0.9, 0, 0, 0.9, 0, 0]], [0.9, 0.1])
    batch = small_source(params, points=2000).render(4 * 40, 4 * 40 + 1)  # a x 1.8
    assert 0 < batch.metadata["points_drawn"][0] < 2000 - 100  # cut 100 before the first NaN
    assert batch.images.dtype == np.uint8


# --------------------------------------------------------------------------- data sets


def test_generate_is_identical_across_workers_and_shard_sizes(tmp_path):
    common = dict(classes=2, instances=12, seed=3, **SMALL)
    one = generate("fractaldb", tmp_path / "one", workers=1, shard_size=24, **common)
    two = generate("fractaldb", tmp_path / "two", workers=2, shard_size=5, **common)
    assert one.images == two.images == 24
    a_images, a_labels, a_meta = read_images(tmp_path / "one")
    b_images, b_labels, _ = read_images(tmp_path / "two")
    assert digest(a_images) == digest(b_images) and np.array_equal(a_labels, b_labels)
    assert a_images.shape == (24, 64, 64)
    assert list(a_meta["variant"][:12]) == [0] * 4 + [1] * 4 + [2] * 4 and list(a_meta["render"][:12]) == [0] * 12
    assert set(a_meta) >= {"item", "variant", "render", "flip", "n_maps", "points_drawn"}
    assert (tmp_path / "one" / "classes.npz").read_bytes() == (tmp_path / "two" / "classes.npz").read_bytes()
    manifest = read_manifest(tmp_path / "one")
    assert manifest["classes"] == ["00000", "00001"]
    assert not verify_dataset(tmp_path / "two")


def test_params_from_round_trip_gives_identical_images(tmp_path):
    common = dict(classes=2, instances=8, seed=4, workers=1, **SMALL)
    generate("fractaldb", tmp_path / "a", **common)
    saved = tmp_path / "a" / "classes.npz"
    loaded = fractaldb.load_class_params(saved)
    assert len(loaded) == 2 and np.all(loaded.candidate >= 0) and np.all(loaded.num_maps >= 2)
    assert loaded.to_npz({"seed": 4}) != saved.read_bytes()  # the file also records the search settings
    generate("fractaldb", tmp_path / "b", params_from=saved, **common)
    assert digest(read_images(tmp_path / "a")[0]) == digest(read_images(tmp_path / "b")[0])
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["config"]["params_sha256"] == hashlib.sha256(saved.read_bytes()).hexdigest()
    # the loader path: a source from the file, rendering one item at a time
    source = fractaldb.make_source(classes=2, instances=8, seed=4, params_from=saved, workers=1,
                                   backend="inline", **SMALL)
    images = read_images(tmp_path / "a")[0]
    for item in (9, 3, 4, 15):
        assert np.array_equal(source.render(item, item + 1).images[0], images[item])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(FdslError, match="not a FractalDB classes.npz"):
        fractaldb.make_source(classes=1, params_from=garbage)
    with pytest.raises(FdslError, match="holds 2 classes, fewer than --classes 3"):
        fractaldb.make_source(classes=3, params_from=saved)
    with pytest.raises(FdslError, match="do not apply"):
        fractaldb.make_source(classes=2, params_from=saved, fill_rate=0.3)


def test_png_format_uses_the_official_file_names(tmp_path):
    generate("fractaldb", tmp_path / "png", classes=1, instances=6, workers=1, fmt="png", **SMALL)
    names = sorted(p.relative_to(tmp_path / "png").as_posix() for p in (tmp_path / "png").rglob("*.png"))
    assert names == ["00000/00000_00_count_0_flip0.png", "00000/00000_00_count_0_flip1.png",
                     "00000/00000_00_count_0_flip2.png", "00000/00000_00_count_0_flip3.png",
                     "00000/00000_01_count_0_flip0.png", "00000/00000_01_count_0_flip1.png"]


def test_item_layout_follows_the_official_loops():
    assert fdb_source.item_layout(0) == (0, 0, 0)
    assert fdb_source.item_layout(45) == (1, 1, 1)
    assert fdb_source.item_layout(999) == (24, 9, 3)
    assert fdb_source.item_layout(1999, renders=20) == (24, 19, 3)  # the official --instance 20
    assert np.array_equal(fdb_source.WEIGHTS[2], np.ones(6))
    assert list(fdb_source.WEIGHTS[:, 0][:5]) == [0.2, 0.6, 1.0, 1.4, 1.8]
    assert np.array_equal(fdb_source.WEIGHTS, np.array(ref.WEIGHTS))
    # the module docstring's reading of the table: variant v >= 5 scales parameter 1 + (v - 5) // 4
    # by (0.2, 0.6, 1.4, 1.8)[(v - 5) % 4]
    for v in range(5, 25):
        expected = np.ones(6)
        expected[1 + (v - 5) // 4] = (0.2, 0.6, 1.4, 1.8)[(v - 5) % 4]
        assert np.array_equal(fdb_source.WEIGHTS[v], expected)
    more = small_source(square_ifs(), instances=1100, points=1000)  # 11 renders per variant
    assert more.config()["renders_per_variant"] == 11 and more.num_items() == 1100
    batch = more.render(1096, 1100)
    assert [int(batch.metadata["variant"][0]), int(batch.metadata["render"][0])] == [24, 10]
    assert small_source(square_ifs(), instances=1000).config()["renders_per_variant"] == 10


@pytest.mark.parametrize("instances,renders", [(100, 1), (400, 4)])
def test_fewer_instances_use_fewer_renders_of_all_25_variants(instances, renders):
    source = small_source(square_ifs(), instances=instances, points=300, image_size=16)
    assert source.config()["renders_per_variant"] == renders and source.num_items() == instances
    meta = source.render(0, instances).metadata
    assert sorted(set(meta["variant"].tolist())) == list(range(25))
    assert np.bincount(meta["variant"]).tolist() == [4 * renders] * 25
    assert set(meta["render"].tolist()) == set(range(renders))
    assert [fdb_source.item_layout(i, renders) for i in (3, 4, instances - 1)] == [
        (0, 0, 3), (0, 1, 0) if renders > 1 else (1, 0, 0), (24, renders - 1, 3)]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs,message", [
    ({"image_size": 8}, "--image-size"), ({"points": 150}, "--points"),
    ({"instances": 10**6}, "--instances"), ({"fill_rate": 0.0}, "--fill-rate"),
    ({"fill_rate": 1.5}, "--fill-rate"), ({"search_points": 10}, "--search-points"),
    ({"color": "pink"}, "--color"), ({"seed": -1}, "--seed must be >= 0"),
])
def test_bad_values_raise_one_line(kwargs, message):
    with pytest.raises(FdslError, match=message) as info:
        fractaldb.make_source(classes=1, **kwargs)
    assert "\n" not in str(info.value)


def run_main(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse errors
        return int(exc.code)


@pytest.mark.parametrize("extra", [["--classes", "0"], ["--classes", "1", "--fill-rate", "2"],
                                   ["--classes", "1", "--image-size", "4"]])
def test_cli_bad_flags_exit_2_with_one_line(tmp_path, capsys, extra):
    assert run_main(["--db", "fractaldb", "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gen-fractal: error:") and "\n" not in err


def test_cli_unknown_db_and_unwritable_out(tmp_path, capsys):
    assert run_main(["--db", "fractaldbx", "--classes", "1", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["--db", "fractaldb", "--classes", "1", "--instances", "1", "--image-size", "32",
            "--points", "500", "--out", str(blocker / "sub")]
    assert run_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0]


def test_cli_checks_every_input_before_the_lock_and_searches_holding_it(tmp_path, capsys, monkeypatch):
    real_search = fractaldb.search_classes
    searched = []

    def search_holding_the_lock(*args, **kwargs):
        # the lock is held (by this process): a second lock on the folder is refused
        with pytest.raises(FolderLockedError), folder_lock(tmp_path / "ok"):
            pass
        searched.append(args)
        return real_search(*args, **kwargs)

    def no_search(*args, **kwargs):
        raise AssertionError("searched before every input was checked")

    small = ["--instances", "4", "--image-size", "32", "--points", "500", "--search-points", "20000",
             "--fill-rate", "0.04", "--workers", "1"]
    monkeypatch.setattr(fractaldb, "search_classes", search_holding_the_lock)
    assert run_main(["--db", "fractaldb", "--classes", "2", "--out", str(tmp_path / "ok"), *small]) == 0
    assert len(searched) == 1 and read_manifest(tmp_path / "ok")["complete"]
    capsys.readouterr()

    monkeypatch.setattr(fractaldb, "search_classes", no_search)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    busy, foreign = tmp_path / "busy", tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refusals = [
        ([str(blocker / "sub")], "cannot write"),
        ([str(foreign)], "is not empty and holds no fdsl manifest"),
        ([str(busy)], "is in use by another fdsl run"),
        ([str(tmp_path / "a" / "b"), "--seed", "-1"], "--seed must be >= 0"),
        ([str(tmp_path / "a" / "b"), "--compression", "nope"], "invalid choice"),
    ]
    with folder_lock(busy):
        before = {p.name for p in busy.iterdir()}
        for out, message in refusals:
            argv = ["--db", "fractaldb", "--classes", "5", *small, "--out", *out]
            assert run_main(argv) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and message in err[0]
        assert {p.name for p in busy.iterdir()} == before
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]  # no lock file left behind
    assert not (tmp_path / "a").exists() and not (blocker.parent / "sub").exists()


def test_a_search_that_fails_under_the_lock_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    def too_few(classes, **kwargs):  # what the search raises when too few candidates pass
        raise FdslError(f"only 0 of {classes} classes reach fill rate 0.9 in 10000 candidates; lower --fill-rate")

    monkeypatch.setattr(fractaldb, "search_classes", too_few)
    argv = ["--db", "fractaldb", "--classes", "1", "--instances", "4", "--image-size", "32", "--points", "500",
            "--workers", "1", "--out"]
    assert run_main([*argv, str(tmp_path / "a" / "b")]) == 2
    assert "only 0 of 1 classes reach" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    (tmp_path / "empty").mkdir()
    assert run_main([*argv, str(tmp_path / "empty")]) == 2
    assert list((tmp_path / "empty").iterdir()) == []
    # a fill rate that the search points cannot reach is an input error, refused before the lock
    monkeypatch.setattr(fractaldb, "search_classes", None)
    assert run_main([*argv, str(tmp_path / "c"), "--search-points", "20000", "--fill-rate", "0.2"]) == 2
    assert "cannot reach fill rate 0.2" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_params_from_a_folder_of_official_csvs(tmp_path):
    rows = [np.array([[0.5, 0, 0, 0.5, 0, 0, 0.5], [0.5, 0.1, 0, 0.5, 0.5, 0.2, 0.5]]),
            np.array([[0.4, -0.3, 0.3, 0.4, 0, 0, 0.3], [0.6, 0, 0, -0.6, 0.4, 0, 0.7]])]
    for i, table in enumerate(rows):
        (tmp_path / "csv" / f"csv{i}").mkdir(parents=True)
        np.savetxt(tmp_path / "csv" / f"csv{i}" / f"{i:05d}.csv", table, delimiter=",")
    source = fractaldb.make_source(classes=2, instances=4, params_from=tmp_path / "csv", **SMALL)
    assert np.array_equal(source.params.system(1)[0], rows[1][:, :6])
    assert len(source.config()["params_sha256"]) == 64
    npz = tmp_path / "classes.npz"
    npz.write_bytes(source.extra_files()["classes.npz"])
    again = fractaldb.make_source(classes=2, instances=4, params_from=npz, **SMALL)
    assert np.array_equal(source.render(0, 8).images, again.render(0, 8).images)
    (tmp_path / "csv" / "csv0" / "00000.csv").write_text("1,2\n")
    with pytest.raises(FdslError, match="a,b,c,d,e,f,p"):
        fractaldb.make_source(classes=1, params_from=tmp_path / "csv")


def test_cli_help_lists_the_fractaldb_flags(capsys):
    assert run_main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "--fill-rate" in text and "--search-points " in text and "--color" in text


def test_cli_writes_a_small_data_set(tmp_path, capsys):
    argv = ["--db", "fractaldb", "--classes", "2", "--instances", "4", "--image-size", "48",
            "--points", "3000", "--color", "color", "--workers", "1", "--out", str(tmp_path / "d")]
    assert run_main(argv) == 0
    images, labels, meta = read_images(tmp_path / "d")
    assert images.shape == (8, 48, 48, 3) and list(labels) == [0] * 4 + [1] * 4
    assert (images > 0).any(axis=(1, 2, 3)).all()
    assert read_manifest(tmp_path / "d")["config"]["color"] == "color"
