"""fdsl.generators.device.generate: a generated set's images made on demand, equal to its shards;
gen-fractal --params-only writes what it needs and nothing else."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from device_sets import SETS, make_set, stored_images

from fdsl.errors import FdslError
from fdsl.generators import cli
from fdsl.generators.device import ImageMaker, generate
from fdsl.generators.rebuild import source_from_folder


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    return {db: (make_set(db, root), make_set(db, root, params_only=True)) for db in SETS}


@pytest.mark.parametrize("db", sorted(SETS))
def test_cpu_images_equal_the_shards_from_either_folder(sets, db):
    full, params_only = sets[db]
    stored = stored_images(full)
    order = np.random.default_rng(1).permutation(len(stored))
    for folder in (full, params_only):
        made = generate(folder, order, "cpu")
        assert made.dtype == torch.uint8 and made.device.type == "cpu"
        np.testing.assert_array_equal(made.numpy(), stored[order])
    np.testing.assert_array_equal(generate(full, [2, 2, 0], "cpu").numpy(), stored[[2, 2, 0]])
    assert generate(full, [], "cpu").shape == (0, *stored.shape[1:])


def test_fractaldb_colour_images_equal_the_shards(tmp_path):
    full = make_set("fractaldb", tmp_path, color="color")
    stored = stored_images(full)
    assert stored.shape == (24, 32, 32, 3)
    np.testing.assert_array_equal(generate(full, np.arange(24)[::-1], "cpu").numpy(), stored[::-1])


def test_params_only_folder_holds_the_manifest_and_classes_and_renders_on_request(sets, tmp_path, capsys):
    full, params_only = sets["rcdb"]
    assert sorted(p.name for p in params_only.iterdir() if not p.name.startswith(".")) == ["classes.npz", "manifest.json"]
    manifest = json.loads((params_only / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["shards"] == [] and manifest["num_items"] == 8
    assert (params_only / "classes.npz").read_bytes() == (full / "classes.npz").read_bytes()
    # the same command without --params-only renders the shards into it
    argv = ["--db", "rcdb", "--classes", "2", "--instances", "4", "--image-size", "40", "--seed", "5",
            "--workers", "1", "--backend", "inline", "--shard-size", "5", "--out", str(tmp_path / "p")]
    assert cli.main([*argv, "--params-only"]) == 0
    assert "no shards" in capsys.readouterr().err and not list((tmp_path / "p").glob("*.h5"))
    assert cli.main(argv) == 0
    np.testing.assert_array_equal(stored_images(tmp_path / "p"), stored_images(full))


def test_a_seed_gives_the_set_drawn_with_that_seed(sets, tmp_path):
    full, _ = sets["linedb"]
    maker = ImageMaker(source_from_folder(full))
    other = make_set("linedb", tmp_path, seed=99)
    np.testing.assert_array_equal(maker.images(range(9), seed=99).numpy(), stored_images(other))
    np.testing.assert_array_equal(maker.images(range(9)).numpy(), stored_images(full))


def test_bad_requests_are_one_line(sets, tmp_path):
    full, _ = sets["linedb"]
    for indices, message in (([9], "index 9 is outside the data set's 9 images"), ([-1], "index -1"),
                             ([0.5], "indices must be integers")):
        with pytest.raises(FdslError, match=message):
            generate(full, indices, "cpu")
    with pytest.raises(FdslError, match="device must be"):
        generate(full, [0], "tpu")
    with pytest.raises(FdslError, match="missing manifest"):
        generate(tmp_path, [0], "cpu")
    manifest = json.loads((full / "manifest.json").read_text())
    manifest["generator"]["version"] = "1"
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "old" / "classes.npz").write_bytes((full / "classes.npz").read_bytes())
    with pytest.raises(FdslError, match="version 1"):
        generate(tmp_path / "old", [0], "cpu")


def test_cuda_without_a_device_is_one_line(sets):
    if not _no_cuda():
        pytest.skip("a CUDA device is present")
    with pytest.raises(FdslError, match="device 'cuda'"):
        generate(sets["linedb"][0], [0], "cuda")


def _no_cuda() -> bool:
    from fdsl.generators.device import cuda_problem

    return cuda_problem() is not None
