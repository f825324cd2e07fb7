"""CUB-200-2011 import: counts, labels, metadata, failures, splits, determinism, PNG trees,
pruning by visible parts, a short training run and one-line CLI errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fake_cub import CLASSES, FakeImage, make_fake_cub  # noqa: E402

from fdsl.datasets import ShardDataset  # noqa: E402
from fdsl.datasets.format import read_manifest  # noqa: E402
from fdsl.datasets.importers.cli import main  # noqa: E402
from fdsl.datasets.importers.cub import BBOX_FIELDS, import_cub, load_image  # noqa: E402
from fdsl.datasets.read.pruning import prune_dataset  # noqa: E402

SIZE = 32
FAST = dict(image_size=SIZE, workers=1, backend="inline", shard_size=5)


@pytest.fixture(scope="module")
def cub(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[FakeImage]]:
    return make_fake_cub(tmp_path_factory.mktemp("cub"))


@pytest.fixture(scope="module")
def imported(cub: tuple[Path, list[FakeImage]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root, _ = cub
    out = tmp_path_factory.mktemp("imported")
    for split in ("train", "test"):
        import_cub(root, out / split, split=split, **FAST)
    return {"train": out / "train", "test": out / "test"}


def _expected(images: list[FakeImage], is_train: int) -> list[FakeImage]:
    return [i for i in images if i.is_train == is_train and not i.corrupt]


def test_train_split_images_labels_and_metadata(cub: tuple[Path, list[FakeImage]], imported: dict[str, Path]) -> None:
    root, images = cub
    want = _expected(images, 1)
    ds = ShardDataset(imported["train"], verify=True)
    assert len(ds) == len(want) == 11 and ds.classes == CLASSES and ds.image_shape == (3, SIZE, SIZE)
    meta = ds.metadata
    assert meta["image_id"].tolist() == [i.image_id for i in want]
    assert ds.labels.tolist() == [i.label for i in want]
    assert meta["visible_parts"].tolist() == [i.visible for i in want]
    assert meta["is_train"].tolist() == [1] * len(want)
    assert meta["orig_width"].tolist() == [i.width for i in want]
    assert meta["orig_height"].tolist() == [i.height for i in want]
    boxes = np.stack([meta[name] for name in BBOX_FIELDS], axis=1)
    assert np.array_equal(boxes, np.array([i.bbox for i in want], np.float32))
    dtypes = {k: v.dtype for k, v in meta.items()}
    assert dtypes["image_id"] == np.int32 and dtypes["is_train"] == np.int8
    assert dtypes["visible_parts"] == np.int16 and dtypes["bbox_w"] == np.float32

    grey = next(k for k, i in enumerate(want) if i.grey)  # a single-channel JPEG becomes RGB
    image, label = ds[grey]
    expected, width, height = load_image(root / "images" / want[grey].path, SIZE)
    assert np.array_equal(image.permute(1, 2, 0).numpy(), expected) and expected.shape == (SIZE, SIZE, 3)
    assert (label, width, height) == (want[grey].label, want[grey].width, want[grey].height)

    manifest = read_manifest(imported["train"])
    assert manifest["failures"] == 1 and manifest["config"]["split"] == "train"
    (failure,) = [json.loads(x) for x in (imported["train"] / "failures.jsonl").read_text().splitlines()]
    bad = next(i for i in images if i.corrupt)
    assert failure["image_id"] == bad.image_id and failure["path"] == f"images/{bad.path}"
    assert failure["reason"].startswith("unreadable image")
    listing = (imported["train"] / "images.tsv").read_text().splitlines()  # every planned item
    assert len(listing) == 1 + len(want) + 1 and listing[5].startswith(f"4\t{bad.image_id}\t1\t")


def test_pixels_match_imagefolder_loading(cub: tuple[Path, list[FakeImage]]) -> None:
    from fdsl.train.data import ImageFolderDataset

    root, images = cub
    folder = ImageFolderDataset(root / "images", SIZE)
    k = next(n for n, f in enumerate(folder.files) if f.name == Path(images[2].path).name)
    assert np.array_equal(folder[k][0].permute(1, 2, 0).numpy(), load_image(folder.files[k], SIZE)[0])


def test_test_split_is_disjoint_and_all_covers_both(cub: tuple[Path, list[FakeImage]], imported: dict[str, Path],
                                                     tmp_path: Path) -> None:
    root, images = cub
    train, test = ShardDataset(imported["test"].parent / "train"), ShardDataset(imported["test"])
    assert test.metadata["image_id"].tolist() == [i.image_id for i in _expected(images, 0)]
    assert test.metadata["is_train"].tolist() == [0] * 6 and test.classes == train.classes
    assert not set(train.metadata["image_id"]) & set(test.metadata["image_id"])
    assert not (imported["test"] / "failures.jsonl").exists()
    result = import_cub(root.parent, tmp_path / "all", split="all", classes=2, **FAST)  # the parent folder works too
    both = ShardDataset(tmp_path / "all")
    assert both.classes == CLASSES[:2] and result.images == len(both) == 11 and result.failures == 1
    assert both.metadata["image_id"].tolist() == [i.image_id for i in images if i.label < 2 and not i.corrupt]


def test_import_is_deterministic_across_workers(cub: tuple[Path, list[FakeImage]], imported: dict[str, Path],
                                                tmp_path: Path, hashes) -> None:
    root, _ = cub
    import_cub(root, tmp_path / "again", **dict(FAST, workers=2, backend="local"))
    first = hashes(imported["train"])
    assert hashes(tmp_path / "again") == first and any(name.endswith(".h5") for name in first)
    again = import_cub(root, tmp_path / "again", **FAST)  # same settings: resumes, nothing to do
    assert again.shards_skipped == again.shards == 3


def test_png_format_gives_an_imagefolder_tree(cub: tuple[Path, list[FakeImage]], tmp_path: Path) -> None:
    from fdsl.train.data import ImageFolderDataset

    root, images = cub
    import_cub(root, tmp_path / "png", fmt="png", **FAST)
    want = _expected(images, 1)
    files = sorted(str(p.relative_to(tmp_path / "png")) for p in (tmp_path / "png").rglob("*.png"))
    assert files == sorted(str(Path(i.path).with_suffix(".png")) for i in want)
    tree = ImageFolderDataset(tmp_path / "png", SIZE)
    assert tree.classes == CLASSES and len(tree) == len(want)


@pytest.mark.parametrize("mode", ["drop-largest", "drop-smallest"])
def test_pruning_by_visible_parts(cub: tuple[Path, list[FakeImage]], imported: dict[str, Path], mode: str) -> None:
    _, images = cub
    want = _expected(images, 1)
    ds = ShardDataset(imported["train"])
    kept = prune_dataset(ds, mode=mode, field="visible_parts", keep_fraction=0.5)
    expected = []
    for label in range(len(CLASSES)):
        members = sorted((i.visible, n) for n, i in enumerate(want) if i.label == label)
        budget = int(np.round(0.5 * len(members)))
        chosen = members[:budget] if mode == "drop-largest" else members[len(members) - budget:]
        expected += [n for _, n in chosen]
    assert kept.tolist() == sorted(expected)
    picked = ds.subset(kept).metadata["visible_parts"]
    hard = mode == "drop-largest"  # keeps the few-visible-parts (hard) images
    assert (picked.max() <= 9) if hard else (picked.min() >= 7)


def test_short_training_run_with_test_split_as_val(imported: dict[str, Path], tmp_path: Path) -> None:
    from fdsl.train.loop import train_classifier

    torch.set_num_threads(1)
    summary = train_classifier(imported["train"], tmp_path / "run", val_data=imported["test"], model="resnet18",
                               epochs=1, batch_size=4, image_size=SIZE, resize_ratio=1.0, workers=0,
                               device="cpu", prune="drop-largest", prune_field="visible_parts",
                               keep_fraction=0.5)
    assert summary["val_images"] == 6 and summary["train_images"] == 6 and summary["top1"] is not None
    assert summary["num_classes"] == 3


def _run_main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors exit through SystemExit
        code = exc.code
    return code, capsys.readouterr().err


def test_cli_imports_and_prints_summary(cub: tuple[Path, list[FakeImage]], tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    root, _ = cub
    code, err = _run_main(["--root", str(root), "--out", str(tmp_path / "out"), "--split", "test",
                           "--image-size", "24", "--classes", "1", "--workers", "1", "--backend", "inline"], capsys)
    assert code == 0 and "2 images in 1 classes" in err
    assert ShardDataset(tmp_path / "out").image_shape == (3, 24, 24)


def test_cli_bad_input_exits_2_with_one_line(cub: tuple[Path, list[FakeImage]], tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    root, _ = cub
    out = ["--out", str(tmp_path / "out")]
    code, err = _run_main(["--root", str(tmp_path / "nowhere"), *out], capsys)
    assert code == 2 and err.count("\n") == 1 and "nowhere: no such folder" in err

    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    (broken / "parts" / "part_locs.txt").unlink()
    code, err = _run_main(["--root", str(broken), *out], capsys)
    assert code == 2 and err.count("\n") == 1 and "part_locs.txt: missing" in err

    code, err = _run_main(["--root", str(root), "--split", "val", *out], capsys)
    assert code == 2 and err.count("\n") == 1 and "--split" in err

    code, err = _run_main(["--root", str(root), "--classes", "7", *out], capsys)
    assert code == 2 and err.count("\n") == 1 and "lists only 3 classes" in err

    (broken / "parts" / "part_locs.txt").write_text("1 1 0.0 0.0 yes\n")
    code, err = _run_main(["--root", str(broken), *out], capsys)
    assert code == 2 and err.count("\n") == 1 and "part_locs.txt:1: expected an integer" in err
    assert not (tmp_path / "out").exists()
