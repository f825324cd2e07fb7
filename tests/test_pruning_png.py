"""The pruning study reads any storage: a PNG tree gives the same held-out, subset and pruned
rows as HDF5 shards of the same items (it once refused PNG sets)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import SmallSource

pytest.importorskip("torch")
pytest.importorskip("kornia")

from fdsl.datasets.builder.build import build_dataset  # noqa: E402
from fdsl.sources import RenderedBatch  # noqa: E402
from fdsl.studies.pruning import run_pruning_study  # noqa: E402


class Views(SmallSource):
    """3 classes x 4 models x 5 views; a bright square whose side grows with the view, so ``area``
    (float32) is known, and ``model_id`` names the model."""

    name, CLASSES = "views", ("c0", "c1", "c2")

    def __init__(self) -> None:
        super().__init__(per_class=20, size=12)

    def render(self, start: int, stop: int) -> RenderedBatch:
        items = np.arange(start, stop)
        labels, model, view = items // 20, items // 5, items % 5
        images = np.full((len(items), 12, 12), 30, np.uint8) + (labels * 40)[:, None, None].astype(np.uint8)
        for k, side in enumerate(3 + view):
            images[k, :side, :side] = 250
        meta = {"model_id": np.array([f"m{m}".encode() for m in model], "S4"),
                "area": ((3 + view) ** 2 / 144).astype(np.float32)}
        return RenderedBatch(images, labels, meta, items, [])


@pytest.mark.slow
def test_pruning_study_selects_the_same_rows_from_png_and_hdf5(tmp_path: Path) -> None:
    chosen = {}
    for storage in ("hdf5", "png"):
        data = tmp_path / storage
        build_dataset(Views(), data, shard_size=25, backend="inline", workers=1, storage=storage)
        out = tmp_path / f"study-{storage}"
        result = run_pruning_study(data, out, preset="tiny", sizes=[8], splits=1, test_per_class=5,
                                   threads=1, overrides={"epochs": 1})
        assert [r["strategy"] for r in result["rows"]] == ["random", "min-area", "max-area"]
        chosen[storage] = {p.name: json.loads(p.read_text()) for p in sorted((out / "indices").glob("*.json"))}
    assert chosen["png"] == chosen["hdf5"]
    assert len(chosen["png"]["test.json"]) == 15  # one whole model of 5 views per class
    assert {"size8-split0-random.json", "size8-split0-min-area.json", "size8-split0-max-area.json"} <= set(chosen["png"])
