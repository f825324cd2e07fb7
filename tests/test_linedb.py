"""LineDB: line counts per class, the shuffled control, determinism and the pipeline (shards, PNG, resume)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import assert_same_bytes_for_1_and_2_workers, counter_below, counter_draw

from fdsl.datasets.inspect import cli as inspect_cli
from fdsl.errors import FdslError
from fdsl.generators import cli, linedb
from fdsl.generators.generate import generate
from fdsl.generators.kernels import raster
from fdsl.generators.seeding import stream_key


def _source(**kw) -> linedb.LineDBSource:
    return linedb.make_source(**{"classes": 3, "instances": 4, "seed": 0, "image_size": 48, **kw})


def test_default_counts_step_16_and_images_draw_that_many_lines():
    src = _source()
    assert src.line_counts.tolist() == [16, 32, 48]
    batch = src.render(0, 12)
    assert batch.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert batch.metadata["lines"].tolist() == [16] * 4 + [32] * 4 + [48] * 4
    # More lines ink more pixels: the class means are ordered by the line count.
    inked = (batch.images < 255).mean(axis=(1, 2)).reshape(3, 4).mean(axis=1)
    assert inked[0] < inked[1] < inked[2]
    assert len({im.tobytes() for im in batch.images}) == 12


def test_image_is_the_lines_drawn_by_the_rasteriser():
    """Line k's ends and grey are draws 5k..5k+4 of the image's counter-based stream (seed, 1,
    class, instance), worked out here in plain Python from seeding's splitmix64."""
    src = _source(classes=1, line_counts=[5], image_size=32)
    image = src.render(2, 3).images[0]
    key = stream_key(0, 1, 0, 2)
    expected = np.full((32, 32), 255, np.uint8)
    for k in range(5):
        x0, y0, x1, y1 = (counter_below(key, 5 * k + j, 32) for j in range(4))
        raster.draw_line(expected, x0, y0, x1, y1, counter_draw(key, 5 * k + 4) >> 56)
    np.testing.assert_array_equal(image, expected)
    assert src.version == "2"


def test_given_counts_and_shuffled_control():
    tied = _source(line_counts=[3, 40, 7], instances=30)
    assert tied.render(0, 90).metadata["lines"].reshape(3, 30)[:, 0].tolist() == [3, 40, 7]
    shuffled = _source(line_counts=[3, 40, 7], instances=30, shuffle_counts=True)
    batch = shuffled.render(0, 90)
    lines = batch.metadata["lines"].reshape(3, 30)
    assert set(lines.ravel().tolist()) == {3, 40, 7}
    for row in lines:  # every class shows several counts: the count does not give the label
        assert len(set(row.tolist())) >= 2
    assert batch.labels.tolist() == [0] * 30 + [1] * 30 + [2] * 30
    again = shuffled.render(45, 50)
    np.testing.assert_array_equal(again.images, batch.images[45:50])
    assert shuffled.config()["shuffle_counts"] is True and tied.config()["shuffle_counts"] is False


@pytest.mark.parametrize("kw, message", [
    (dict(line_counts=[16, 32]), "one per class"),
    (dict(line_counts=[16, 16, 32]), "must differ"),
    (dict(line_counts=[0, 16, 32]), ">= 1"),
    (dict(line_counts=[1, 2, 10**9]), "exceeds the limit"),
    (dict(image_size=4), "at least 8"),
    (dict(seed=-1), "--seed must be >= 0"),
    (dict(line_counts="paper"), "--line-counts paper gives the paper's 7 classes"),
])
def test_bad_settings_are_one_line(kw, message):
    with pytest.raises(FdslError, match=message) as info:
        _source(**kw)
    assert "\n" not in str(info.value)


def test_cli_flags(tmp_path):
    out = tmp_path / "o"
    argv = ["--db", "linedb", "--classes", "2", "--instances", "3", "--image-size", "24", "--workers", "1",
            "--out", str(out), "--line-counts", "5,9", "--shuffle-counts"]
    assert cli.main(argv) == 0
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert config["line_counts"] == [5, 9] and config["shuffle_counts"] is True


def test_paper_preset_gives_the_papers_counts(tmp_path, capsys):
    out = tmp_path / "paper"
    argv = ["--db", "linedb", "--classes", "7", "--instances", "1", "--image-size", "16", "--workers", "1",
            "--out", str(out), "--line-counts", "paper"]
    assert cli.main(argv) == 0
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert config["line_counts"] == [16, 32, 64, 128, 256, 512, 1000]
    assert _source(classes=7).line_counts.tolist() == [16, 32, 48, 64, 80, 96, 112]  # the default: 16 x class
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "16, 32, 64, 128, 256, 512, 1000" in " ".join(capsys.readouterr().out.split())


def test_bytes_independent_of_workers_resume_params_from_and_png(tmp_path, hashes):
    common = dict(classes=3, instances=5, seed=2, image_size=32, shard_size=4)
    assert_same_bytes_for_1_and_2_workers(generate, "linedb", tmp_path, **common)
    result = generate("linedb", tmp_path / "w1", workers=1, **common)  # complete: nothing to redo
    assert result.shards_skipped == result.shards == 4
    generate("linedb", tmp_path / "p", workers=1, params_from=tmp_path / "w1" / "classes.npz", **common)
    shards = {k: v for k, v in hashes(tmp_path / "w1").items() if k.endswith(".h5")}
    assert shards == {k: v for k, v in hashes(tmp_path / "p").items() if k.endswith(".h5")}
    assert inspect_cli.main([str(tmp_path / "w1"), "--grid", str(tmp_path / "grid.png")]) == 0
    generate("linedb", tmp_path / "png", classes=2, instances=2, image_size=16, workers=1, fmt="png")
    names = sorted(p.relative_to(tmp_path / "png").as_posix() for p in (tmp_path / "png").rglob("*.png"))
    assert names == ["00000/00000_0000.png", "00000/00000_0001.png", "00001/00001_0000.png", "00001/00001_0001.png"]
