"""Data sets declared not mirror-symmetric train with hflip 0 whatever the recipe, say so once,
and resume with that setting."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

from helpers import SmallSource  # noqa: E402

from fdsl.datasets.builder.build import RenderedBatch, build_dataset  # noqa: E402
from fdsl.train.loop import train_classifier  # noqa: E402

torch.set_num_threads(1)
SMALL = dict(recipe="finetune", model="resnet18", image_size=32, batch_size=16, workers=0,
             resize_ratio=1.0, epochs=2, lr=0.05, analysis=False)


class Arrows(SmallSource):
    """Left- and right-pointing ramps: a flip turns one class into the other."""

    name, CLASSES = "arrows", ("left", "right")

    def __init__(self, symmetric: bool | None) -> None:
        super().__init__(12, 32)
        self.symmetric = symmetric

    def config(self) -> dict:
        extra = {} if self.symmetric is None else {"mirror_symmetric": self.symmetric}
        return super().config() | extra

    def render(self, start: int, stop: int) -> RenderedBatch:
        items = np.arange(start, stop)
        ramp = np.tile(np.linspace(0, 255, self.size), (self.size, 1)).astype(np.uint8)
        images = np.stack([ramp if i % 2 else ramp[:, ::-1] for i in items])
        return RenderedBatch(images, items % 2, {}, items, [])


def _build(tmp_path: Path, symmetric: bool | None) -> Path:
    out = tmp_path / f"arrows-{symmetric}"
    build_dataset(Arrows(symmetric), out, shard_size=100, backend="inline", workers=1)
    return out


def _saved_hflip(run: Path) -> float:
    return json.loads((run / "config.json").read_text())["recipe_fields"]["hflip"]


def test_not_mirror_symmetric_data_trains_without_flips(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    data = _build(tmp_path, False)
    with caplog.at_level(logging.INFO, logger="fdsl"):
        train_classifier(data, tmp_path / "run", stop_after_epochs=1, **SMALL)
    notes = [r.getMessage() for r in caplog.records if "mirror-symmetric" in r.getMessage()]
    assert len(notes) == 1 and "hflip 0.5 -> 0" in notes[0]
    assert _saved_hflip(tmp_path / "run") == 0.0  # the finetune recipe's 0.5 is overridden
    resumed = train_classifier(data, tmp_path / "run", resume=True, **SMALL)  # same resolved config
    assert resumed["epochs_done"] == 2
    again = train_classifier(data, tmp_path / "run-none", hflip=0.0, **dict(SMALL, epochs=1))
    assert again["epochs_done"] == 1 and _saved_hflip(tmp_path / "run-none") == 0.0


@pytest.mark.parametrize("symmetric", [None, True])
def test_other_data_keeps_the_recipes_flips(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                            symmetric: bool | None) -> None:
    data = _build(tmp_path, symmetric)
    with caplog.at_level(logging.INFO, logger="fdsl"):
        train_classifier(data, tmp_path / "run", **dict(SMALL, epochs=1))
    assert not [r for r in caplog.records if "mirror-symmetric" in r.getMessage()]
    assert _saved_hflip(tmp_path / "run") == 0.5
