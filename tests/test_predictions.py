"""predictions.csv: the format fixed between train and studies, the probabilities of a hand-set
model, and the file a run writes for shards (metadata columns) and ImageFolder trees (file)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

from helpers import SmallSource  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

from fdsl.datasets.builder.build import RenderedBatch, build_dataset  # noqa: E402
from fdsl.train.data import split_indices  # noqa: E402
from fdsl.train.loop import train_classifier  # noqa: E402
from fdsl.train.predictions import predict, predictions_csv  # noqa: E402

torch.set_num_threads(1)
SMALL = dict(model="resnet18", image_size=32, batch_size=16, workers=0, resize_ratio=1.0, epochs=1,
             lr=0.05)


def test_csv_layout_by_hand() -> None:
    data = predictions_csv(np.array([4, 9]), np.array([1, 0]), np.array([1, 2]), np.array([0.75, 0.125]),
                           {"area": np.array([0.5, 2.0], np.float32), "label": np.array([7, 8]),
                            "model_id": np.array(["a1", "b2"]), "box": np.array([[1, 2], [3, 4]])})
    assert data.decode() == ("index,label,prediction,prob_true,area,meta_label,model_id,box\n"
                             "4,1,1,0.75,0.5,7,a1,\"[1, 2]\"\n"
                             "9,0,2,0.125,2.0,8,b2,\"[3, 4]\"\n")


class _Fixed(nn.Module):
    """Softmax (0.7, 0.2, 0.1) for images whose first pixel is 0, (0.1, 0.3, 0.6) otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = (x[:, 0, 0, 0] > 0).view(-1, 1)
        return torch.where(first, torch.tensor([0.1, 0.3, 0.6]).log(), torch.tensor([0.7, 0.2, 0.1]).log())


def test_probabilities_of_a_hand_set_model() -> None:
    images = torch.zeros(5, 1, 2, 2, dtype=torch.uint8)
    images[[1, 3], 0, 0, 0] = 200
    labels = torch.tensor([0, 2, 1, 1, 2])
    batches = [(images[:3], labels[:3]), (images[3:], labels[3:])]
    model = _Fixed().train()
    got_labels, preds, probs = predict(model, batches, prepare=lambda x: x.float(),
                                       device=torch.device("cpu"))
    assert model.training  # mode restored
    assert got_labels.tolist() == [0, 2, 1, 1, 2] and preds.tolist() == [0, 2, 0, 2, 0]
    assert probs == pytest.approx([0.7, 0.6, 0.2, 0.3, 0.1])


class Tagged(SmallSource):
    """3 classes told apart by brightness; each image records ``area`` and ``model_id``."""

    name, CLASSES = "tagged", ("low", "mid", "high")

    def render(self, start: int, stop: int) -> RenderedBatch:
        items = np.arange(start, stop)
        rng = np.random.default_rng(start)
        images = (rng.integers(0, 40, (len(items), self.size, self.size)) + 90 * (items % 3)[:, None, None])
        metadata = {"area": (items * 0.5).astype(np.float32), "model_id": (items // 2).astype(np.int64)}
        return RenderedBatch(images.astype(np.uint8), items % 3, metadata, items, [])


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tagged") / "data"
    build_dataset(Tagged(20, 32), out, shard_size=100, backend="inline", workers=1)
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_run_writes_predictions_of_its_held_out_rows(tagged: Path, tmp_path: Path) -> None:
    summary = train_classifier(tagged, tmp_path / "run", val_fraction=0.25, **SMALL)
    path = tmp_path / "run" / "predictions.csv"
    assert summary["predictions"] == str(path)
    header = path.read_text().splitlines()[0]
    assert header == "index,label,prediction,prob_true,area,item,model_id"  # item: the builder's
    rows = _rows(path)
    labels = np.arange(60) % 3
    _, held_out = split_indices(labels, 0.25, 0)
    assert [int(r["index"]) for r in rows] == held_out.tolist() and len(rows) == summary["val_images"] == 15
    for r in rows:
        i = int(r["index"])
        assert int(r["label"]) == i % 3 and float(r["area"]) == i * 0.5 and int(r["model_id"]) == i // 2
        assert int(r["item"]) == i
        assert 0.0 <= float(r["prob_true"]) <= 1.0
    top1 = np.mean([r["prediction"] == r["label"] for r in rows])
    assert top1 == pytest.approx(summary["top1"])  # the same model and inputs as the last evaluation
    # a run without a held-out set writes none; --overwrite removes the old one
    again = train_classifier(tagged, tmp_path / "run", val_fraction=0.0, overwrite=True, **SMALL)
    assert again["predictions"] is None and not path.exists()
    assert not list((tmp_path / "run").glob(".*tmp*"))


def test_imagefolder_predictions_name_the_file(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    rng = np.random.default_rng(0)
    for c, level in (("dark", 20), ("light", 220)):
        (root / c).mkdir(parents=True)
        for k in range(6):
            pixels = np.clip(rng.normal(level, 10, (36, 36)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).convert("RGB").save(root / c / f"{k}.png")
    summary = train_classifier(root, tmp_path / "run", val_data=root, **SMALL)
    rows = _rows(tmp_path / "run" / "predictions.csv")
    assert [r["index"] for r in rows] == [str(i) for i in range(12)]
    assert [r["file"] for r in rows] == [f"{c}/{k}.png" for c in ("dark", "light") for k in range(6)]
    assert [r["label"] for r in rows] == ["0"] * 6 + ["1"] * 6
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["predictions"] == summary["predictions"]
