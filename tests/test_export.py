"""export-shards: each format read back with the library it is for (skipped where not installed)."""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fdsl.atomic import folder_lock
from fdsl.datasets import ShardDataset
from fdsl.datasets.builder.build import build_dataset
from fdsl.datasets.export import targets as export_mod
from fdsl.datasets.export.cli import main as export_main
from fdsl.datasets.export.export import export_shards
from fdsl.datasets.export.targets import RECORD_NAME, hf_datasets
from fdsl.errors import FdslError
from fdsl.sources import RenderedBatch

sys.path.insert(0, str(Path(__file__).parent))
from toy_source import ToySource  # noqa: E402


class MetaSource(ToySource):
    """RGB or grey images with int, float and text metadata, and class names out of sort order."""

    name = "toy-export"

    def __init__(self, rgb: bool, names: list[str], **kw) -> None:
        super().__init__(**kw)
        self.rgb, self.names = rgb, names

    def class_names(self) -> list[str]:
        return list(self.names)

    def image(self, item: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, item])
        shape = (self.size, self.size + 2, 3) if self.rgb else (self.size, self.size + 2)
        return rng.integers(0, 256, shape, dtype=np.uint8)

    def render(self, start: int, stop: int) -> RenderedBatch:
        batch = super().render(start, stop)
        batch.metadata["area"] = batch.items.astype(np.float32) / 7
        batch.metadata["model"] = np.array([f"m{i % 4}".encode() for i in batch.items], "S8")
        return batch


def make(tmp_path: Path, rgb: bool = False, names=("c0", "c1", "c2")) -> Path:
    source = MetaSource(rgb, list(names), classes=len(names), per_class=5, size=8, seed=2, fail_every=4)
    out = tmp_path / f"src-{rgb}-{names[0]}"
    build_dataset(source, out, shard_size=6, backend="inline")
    return out


def reference(folder: Path) -> tuple[ShardDataset, list[np.ndarray]]:
    """The data set and each image as the HWC / HW array a PNG decoder gives back."""
    ds = ShardDataset(folder, mode=None)
    images = []
    for i in range(len(ds)):
        chw = ds[i][0].numpy()
        images.append(chw[0] if chw.shape[0] == 1 else chw.transpose(1, 2, 0))
    return ds, images


def check_meta(ds: ShardDataset, i: int, got: dict) -> None:
    assert float(got["area"]) == pytest.approx(float(ds.metadata["area"][i]))
    assert got["model"] == ds.metadata["model"][i].decode()
    assert int(got["inst"]) == int(ds.metadata["inst"][i])


@pytest.mark.parametrize("rgb", [False, True], ids=["grey", "rgb"])
def test_webdataset_round_trip_in_a_seeded_shuffled_order(tmp_path, rgb):
    wds = pytest.importorskip("webdataset")
    src = make(tmp_path, rgb)
    ds, images = reference(src)
    out = tmp_path / "wds"
    result = export_shards(src, "webdataset", out, samples_per_tar=4)
    tars = sorted(str(p) for p in out.glob("shard-*.tar"))
    assert len(tars) == -(-len(ds) // 4) == len(result.files) - 1 and result.num_images == len(ds)
    assert "order.json" in result.files
    samples = list(wds.WebDataset(tars, shardshuffle=False).decode("rgb8" if rgb else "l8").to_tuple("__key__", "png", "cls", "json"))
    order = json.loads((out / "order.json").read_text())
    assert order["seed"] == 0 and sorted(order["indices"]) == list(range(len(ds)))
    assert order["indices"] != sorted(order["indices"])
    assert [int(key) for key, *_ in samples] == order["indices"]  # the recorded order is the written one
    for key, image, label, meta in samples:
        i = int(key)
        assert label == ds.labels[i] == meta["label"] and meta["class"] == ds.classes[label]
        np.testing.assert_array_equal(np.asarray(image), images[i])
        check_meta(ds, i, meta)
    # class-ordered data: in the data set's order every tar of 4 holds 1 or 2 classes; shuffled, more mix
    classes_per_tar = [len({s[2] for s in samples[k:k + 4]}) for k in range(0, len(samples), 4)]
    assert max(classes_per_tar) == 3
    record = json.loads((out / RECORD_NAME).read_text())
    assert record["complete"] and record["num_images"] == len(ds) and record["to"] == "webdataset"
    assert record["shuffle_seed"] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".tar", ".json") and p.name != RECORD_NAME}
    export_shards(src, "webdataset", out, samples_per_tar=4, overwrite=True)
    assert before == {p.name: p.read_bytes() for p in out.iterdir() if p.name in before}  # same seed, same bytes
    export_shards(src, "webdataset", out, samples_per_tar=4, overwrite=True, shuffle_seed=1)
    assert json.loads((out / "order.json").read_text())["indices"] != order["indices"]


def test_webdataset_in_the_data_sets_order(tmp_path, capsys):
    wds = pytest.importorskip("webdataset")
    src = make(tmp_path)
    out = tmp_path / "wds"
    assert export_main([str(src), "--to", "webdataset", str(out), "--samples-per-tar", "5", "--no-shuffle"]) == 0
    keys = [key for (key,) in wds.WebDataset(sorted(str(p) for p in out.glob("*.tar")), shardshuffle=False)
            .to_tuple("__key__")]
    assert keys == [f"{i:08d}" for i in range(len(ShardDataset(src)))]
    assert json.loads((out / "order.json").read_text()) == {"seed": None, "indices": list(range(len(keys)))}
    assert json.loads((out / RECORD_NAME).read_text())["shuffle_seed"] is None


@pytest.mark.parametrize("names", [("c0", "c1", "c2"), ("zebra", "apple", "a/b")], ids=["sorted", "unsorted"])
def test_imagefolder_round_trip(tmp_path, names):
    src = make(tmp_path, True, names)
    ds, images = reference(src)
    out = tmp_path / "folder"
    export_shards(src, "imagefolder", out)
    # what an ImageFolder reader does: sorted class folders, sorted files
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(folders) == len(ds.classes)
    if names[0] == "c0":
        assert folders == list(ds.classes)
    files = [(p, label) for label, name in enumerate(folders) for p in sorted((out / name).iterdir())]
    assert [label for _, label in files] == ds.targets
    for i, (path, _label) in enumerate(files):
        with Image.open(path) as img:
            np.testing.assert_array_equal(np.asarray(img), images[i])
    with open(out / "metadata.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["file_name"] for r in rows] == [str(p.relative_to(out)) for p, _ in files]
    for i, row in enumerate(rows):
        assert int(row["label"]) == ds.labels[i] and row["class"] == ds.classes[ds.labels[i]]
        check_meta(ds, i, row)
    try:
        from torchvision.datasets import ImageFolder
    except Exception:  # noqa: BLE001  (torchvision is optional here)
        return
    tv = ImageFolder(str(out))
    assert tv.targets == ds.targets


def test_hf_round_trip(tmp_path, monkeypatch):
    try:
        hf = hf_datasets()
    except FdslError:
        pytest.skip("the Hugging Face datasets library is not installed")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    src = make(tmp_path, False)
    ds, images = reference(src)
    out = tmp_path / "hf"
    export_shards(src, "hf", out)
    table = hf.load_from_disk(str(out))
    assert len(table) == len(ds)
    assert table.features["label"].names == list(ds.classes)
    assert set(table.column_names) == {"image", "label", "area", "model", "inst", "item"}
    for i, row in enumerate(table):
        np.testing.assert_array_equal(np.asarray(row["image"]), images[i])
        assert row["label"] == ds.labels[i]
        check_meta(ds, i, row)
    assert not list(out.glob(".*tmp-*"))


def test_interrupted_export_is_unfinished_and_the_rerun_replaces_it(tmp_path, monkeypatch):
    src = make(tmp_path)
    out = tmp_path / "folder"
    calls = {"n": 0}
    real = export_mod.png_bytes

    def failing(image):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(image)

    monkeypatch.setattr(export_mod, "png_bytes", failing)
    with pytest.raises(KeyboardInterrupt):
        export_shards(src, "imagefolder", out)
    record = json.loads((out / RECORD_NAME).read_text())
    assert not record["complete"] and len(list(out.rglob("*.png"))) == 4
    monkeypatch.setattr(export_mod, "png_bytes", real)
    export_shards(src, "imagefolder", out)  # no --overwrite needed for an unfinished export
    assert json.loads((out / RECORD_NAME).read_text())["complete"]
    assert len(list(out.rglob("*.png"))) == len(ShardDataset(src))
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_hf_no_progress_or_a_log_silences_the_libraries_bars_too(tmp_path, monkeypatch, capfd, caplog):
    try:
        hf = hf_datasets()
    except FdslError:
        pytest.skip("the Hugging Face datasets library is not installed")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("FDSL_PROGRESS_INTERVAL", "0")  # our progress lines at every update
    caplog.set_level(logging.INFO, logger="fdsl.progress")
    src = make(tmp_path, False)
    capfd.readouterr()
    assert export_main([str(src), "--to", "hf", str(tmp_path / "log")]) == 0
    log = capfd.readouterr()  # stderr is no terminal here: a batch log
    assert "Saving the dataset" not in log.err and "Generating" not in log.err  # no bars drawn into it
    assert "export hf: 12/12 img (100.0%)" in caplog.text  # ...but our plain lines
    caplog.clear()
    with monkeypatch.context() as m:
        m.setattr("fdsl.datasets.export.export.is_terminal", lambda: True)
        assert export_main([str(src), "--to", "hf", str(tmp_path / "loud")]) == 0
    assert "Saving the dataset" in capfd.readouterr().err  # the control: on a terminal the library reports
    caplog.clear()
    assert export_main([str(src), "--to", "hf", str(tmp_path / "quiet"), "--no-progress"]) == 0
    quiet = capfd.readouterr()
    assert "Saving the dataset" not in quiet.err and "Generating" not in quiet.err
    assert "export hf:" not in caplog.text and "exported 12 images" in quiet.out
    assert hf.is_progress_bar_enabled()  # the library's setting is given back


def test_cli_errors_are_one_line(tmp_path, capsys):
    src = make(tmp_path)
    out = tmp_path / "out"

    def run(*argv: str) -> tuple[int, str]:
        try:
            code = export_main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
        err = capsys.readouterr().err.strip()
        return code, err

    with pytest.raises(SystemExit) as exc:
        export_main(["--version"])
    assert exc.value.code == 0 and "fdsl" in capsys.readouterr().out
    code, err = run(src, "--to", "tiff", out)
    assert code == 2 and "invalid choice" in err and "\n" not in err
    code, err = run(tmp_path / "missing", "--to", "webdataset", out)
    assert code == 2 and "\n" not in err and "missing" in err
    assert run(src, "--to", "webdataset", out)[0] == 0
    code, err = run(src, "--to", "webdataset", out)
    assert code == 2 and "--overwrite" in err and "\n" not in err
    assert run(src, "--to", "imagefolder", out, "--overwrite")[0] == 0
    assert not list(out.glob("*.tar")) and (out / "metadata.csv").is_file()
    (out / "notes.txt").write_text("mine")
    code, err = run(src, "--to", "webdataset", out, "--overwrite")
    assert code == 2 and "no fdsl export wrote" in err and (out / "notes.txt").read_text() == "mine"
    code, err = run(src, "--to", "webdataset", src / "inside")
    assert code == 2 and "outside the data set" in err
    locked = tmp_path / "locked"
    with folder_lock(locked):
        code, err = run(src, "--to", "webdataset", locked)
    assert code == 2 and "in use" in err and "\n" not in err


def test_png_sets_export_like_shards(tmp_path):
    wds = pytest.importorskip("webdataset")
    source = MetaSource(True, ["c0", "c1", "c2"], classes=3, per_class=5, size=8, seed=2, fail_every=4)
    png_src = tmp_path / "png"
    build_dataset(source, png_src, shard_size=6, backend="inline", storage="png")
    ds, images = reference(make(tmp_path, True))  # the same items stored as HDF5 shards
    export_shards(png_src, "webdataset", tmp_path / "wds")
    samples = list(wds.WebDataset(sorted(str(p) for p in (tmp_path / "wds").glob("*.tar")),
                                  shardshuffle=False).decode("rgb8").to_tuple("__key__", "png", "json"))
    assert len(samples) == len(ds)
    for key, image, meta in samples:
        i = int(key)
        np.testing.assert_array_equal(image, images[i])
        assert meta["label"] == ds.labels[i]
        check_meta(ds, i, meta)


def test_class_folders_sort_in_label_order_and_avoid_reserved_names():
    from fdsl.datasets.export.targets import class_folders

    assert class_folders(["a", "b"]) == ["a", "b"]
    for classes in (["b", "a"], ["a", "metadata.csv"], ["a", "a"], ["x/../y", "z"], [".hidden", "z"]):
        folders = class_folders(classes)
        assert sorted(folders) == folders and len(set(folders)) == len(folders)
        assert all("/" not in f and not f.startswith(".") and f not in ("metadata.csv", RECORD_NAME)
                   for f in folders)
