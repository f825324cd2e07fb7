"""Data-set statistics: intra-class std and class-mean distances, by pixels and by a checkpoint's
penultimate layer; ``inspect-shards --stats`` and ``run-study stats``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import SmallSource

from fdsl.datasets.builder.build import build_dataset
from fdsl.datasets.inspect import cli as inspect_cli
from fdsl.datasets.inspect.stats import class_statistics, dataset_stats, pixel_features
from fdsl.sources import RenderedBatch


class Levels(SmallSource):
    """Class 0: all black; class 1: all white; class 2: half the images black, half white."""

    name, CLASSES = "levels", ("black", "white", "mixed")

    def __init__(self, per_class: int = 6, size: int = 12) -> None:
        super().__init__(per_class, size)

    def render(self, start: int, stop: int) -> RenderedBatch:
        items = np.arange(start, stop)
        labels = items // self.per_class
        white = (labels == 1) | ((labels == 2) & (items % 2 == 1))
        images = np.where(white[:, None, None], 255, 0).astype(np.uint8) * np.ones((1, self.size, self.size), np.uint8)
        return RenderedBatch(images, labels, {}, items, [])


@pytest.fixture(scope="module")
def levels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("levels")
    build_dataset(Levels(), out, shard_size=5, backend="inline", workers=1)  # classes span shards
    return out


def test_pixel_statistics_have_known_values(levels: Path) -> None:
    stats = class_statistics(levels, pixel_features(8))
    assert stats["counts"] == [6, 6, 6] and stats["dimensions"] == 64
    # one pixel dimension per 8x8 position: black/white classes do not vary, the mixed one has std 0.5
    assert stats["intra_class_std"] == pytest.approx([0.0, 0.0, 0.5])
    # means 0, 1 and 0.5 in every one of 64 dimensions: distances 8, 4 and 4
    assert np.asarray(stats["class_mean_distance"]) == pytest.approx(np.array([[0, 8, 4], [8, 0, 4], [4, 4, 0]]))


def test_sampling_caps_each_class(levels: Path) -> None:
    stats = class_statistics(levels, pixel_features(4), max_per_class=2)
    assert stats["counts"] == [2, 2, 2]


def test_inspect_shards_stats_writes_json_and_plots(levels: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    assert inspect_cli.main([str(levels), "--stats", str(tmp_path / "stats")]) == 0
    out = capsys.readouterr().out
    for name in ("stats.json", "intra_class_std.png", "class_mean_distance.png"):
        assert (tmp_path / "stats" / name).stat().st_size > 100 and name in out
    data = json.loads((tmp_path / "stats" / "stats.json").read_text())
    assert data["feature_space"].startswith("pixels resized to 32x32")
    assert data["classes"] == ["black", "white", "mixed"] and data["mean_intra_class_std"] == pytest.approx(0.5 / 3)


def test_png_data_sets_give_the_same_statistics(levels: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    png = tmp_path / "png"
    build_dataset(Levels(), png, shard_size=5, backend="inline", workers=1, storage="png")
    stats = class_statistics(png, pixel_features(8))
    assert stats["counts"] == [6, 6, 6] and stats["intra_class_std"] == pytest.approx([0.0, 0.0, 0.5])
    assert np.asarray(stats["class_mean_distance"]) == pytest.approx(np.array([[0, 8, 4], [8, 0, 4], [4, 4, 0]]))
    hdf5 = class_statistics(levels, pixel_features(8), max_per_class=4, seed=3)
    assert class_statistics(png, pixel_features(8), max_per_class=4, seed=3) == {**hdf5, "folder": str(png)}
    assert inspect_cli.main([str(png), "--stats", str(tmp_path / "s")]) == 0
    assert json.loads((tmp_path / "s" / "stats.json").read_text())["counts"] == [6, 6, 6]


def test_checkpoint_features_use_the_penultimate_layer(levels: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("kornia")
    from fdsl.studies import cli
    from fdsl.train.loop import train_classifier

    torch.set_num_threads(1)
    run = tmp_path / "run"
    train_classifier(levels, run, recipe="fractaldb-resnet", model="resnet18", epochs=1, batch_size=8,
                     image_size=16, resize_ratio=1.0, workers=0, val_fraction=0.0, device="cpu")
    assert cli.main(["stats", str(levels), "--checkpoint", str(run / "checkpoint.pt"),
                     "--out", str(tmp_path / "feat")]) == 0
    data = json.loads((tmp_path / "feat" / "stats.json").read_text())
    assert "penultimate layer of resnet18" in data["feature_space"] and data["dimensions"] == 512
    # identical images give identical features: the black and white classes have no spread
    assert data["intra_class_std"][:2] == pytest.approx([0.0, 0.0], abs=1e-5)
    assert data["intra_class_std"][2] > 0.0
    assert "wrote" in capsys.readouterr().out
    dataset_stats(levels, tmp_path / "again", features=pixel_features(4), feature_space="custom")
    assert json.loads((tmp_path / "again" / "stats.json").read_text())["feature_space"] == "custom"
