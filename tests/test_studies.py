"""Studies: the pruning study on a tiny render-like set (protocol, outputs, resume, refusal, bad
input), the transfer study with the built-in digits, the digits importer and the statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")
pytest.importorskip("sklearn")

from fdsl.datasets.build import build_dataset  # noqa: E402
from fdsl.errors import FdslError  # noqa: E402
from fdsl.sources import RenderedBatch  # noqa: E402
from fdsl.studies import cli, common  # noqa: E402
from fdsl.studies.digits import import_digits  # noqa: E402
from fdsl.studies.pruning import hold_out, run_pruning_study, split_pool  # noqa: E402
from fdsl.train.loop import train_classifier  # noqa: E402

torch.set_num_threads(1)
FAST = ["--preset", "tiny", "--threads", "1"]
STUDY = dict(preset="tiny", sizes=[10], splits=2, test_per_class=10, threads=1, overrides={"epochs": 2})


class ToyViews:
    """A render-like set: per class ``models`` models x ``views`` views; a bright square whose
    side grows with the view index, so ``area`` is known; ``model_id`` names the model."""

    name, version = "toyviews", "1"

    def __init__(self, classes: int = 3, models: int = 4, views: int = 10, size: int = 16,
                 with_area: bool = True) -> None:
        self.classes, self.models, self.views, self.size, self.with_area = classes, models, views, size, with_area

    def config(self) -> dict:
        return {"classes": self.classes, "models": self.models, "views": self.views, "size": self.size,
                "area": self.with_area}

    def class_names(self) -> list[str]:
        return [f"class{c}" for c in range(self.classes)]

    def num_items(self) -> int:
        return self.classes * self.models * self.views

    def item(self, i: int) -> tuple[np.ndarray, int, bytes, float]:
        per_class = self.models * self.views
        c, m, v = i // per_class, (i % per_class) // self.views, i % self.views
        side = 3 + v % (self.size - 4)
        img = np.full((self.size, self.size), 20 + 60 * c, np.uint8)
        img[:side, :side] = 250
        return img, c, f"m{c}-{m}".encode(), side * side / self.size ** 2

    def render(self, start: int, stop: int) -> RenderedBatch:
        items = [self.item(i) for i in range(start, stop)]
        meta = {"model_id": np.array([it[2] for it in items], "S8")}
        if self.with_area:
            meta["area"] = np.array([it[3] for it in items], np.float32)
        return RenderedBatch(np.stack([it[0] for it in items]), np.array([it[1] for it in items], np.int64),
                             meta, np.arange(start, stop), [])

    def extra_files(self) -> dict:  # HDF5 only: no png_path
        return {}


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(build_dataset(ToyViews(), tmp_path_factory.mktemp("views"), shard_size=50, backend="inline",
                              workers=1).out)


@pytest.fixture(scope="module")
def study(views: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pruning") / "study"
    result = run_pruning_study(views, out, **STUDY)
    return out, result


def _main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Exit status and stderr of run-study (argparse errors leave through SystemExit)."""
    try:
        return cli.main(argv), capsys.readouterr().err
    except SystemExit as exc:
        return exc.code, capsys.readouterr().err


def _column(folder: Path, name: str) -> np.ndarray:
    from fdsl.datasets import ShardDataset

    ds = ShardDataset(folder)
    return np.asarray(ds.labels) if name == "labels" else np.asarray(ds.metadata[name])


# ---------------------------------------------------------------- pruning study


def test_pruning_study_follows_the_protocol(views: Path, study: tuple[Path, dict]) -> None:
    out, result = study
    rows = result["rows"]
    assert [(r["split"], r["strategy"]) for r in rows] == [
        (k, s) for k in (0, 1) for s in ("random", "min-area", "max-area")]
    assert all(r["size"] == 10 and r["train_images"] == 27 and r["val_images"] == 30 for r in rows)
    labels, models, area = _column(views, "labels"), _column(views, "model_id"), _column(views, "area")
    test = np.asarray(json.loads((out / "indices/test.json").read_text()))
    assert np.bincount(labels[test]).tolist() == [10, 10, 10]  # one whole model per class
    subsets = {}
    for k in (0, 1):
        for name in ("random", "min-area", "max-area"):
            rows_k = np.asarray(json.loads((out / f"indices/size10-split{k}-{name}.json").read_text()))
            assert not set(models[rows_k]) & set(models[test])  # no model on both sides
            assert np.bincount(labels[rows_k]).tolist() == [9, 9, 9]
            subsets[k, name] = rows_k
        # min-area drops the smallest-area view of each class: what it keeps is all >= what it drops
        union = np.union1d(subsets[k, "min-area"], subsets[k, "max-area"])
        for c in range(3):
            whole, kept_min, kept_max = (s[labels[s] == c] for s in
                                             (union, subsets[k, "min-area"], subsets[k, "max-area"]))
            assert area[np.setdiff1d(whole, kept_min)].max() <= area[kept_min].min()
            assert area[np.setdiff1d(whole, kept_max)].min() >= area[kept_max].max()
    assert not set(np.union1d(subsets[0, "random"], subsets[0, "min-area"])) & \
        set(np.union1d(subsets[1, "random"], subsets[1, "min-area"]))  # splits are disjoint
    table = (out / "table.md").read_text()
    assert "| min-area |" in table and "±" in table and "min-area vs random" in table
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("size,split,strategy,seed,top1") and len(csv_lines) == 7
    assert (out / "results.png").stat().st_size > 1000
    assert not list(out.glob("runs/*/checkpoint.pt"))  # finished cells drop their checkpoints


def test_killed_study_resumes_and_changed_settings_are_refused(views: Path, study: tuple[Path, dict]) -> None:
    out, result = study
    victim = out / "runs/size10-split1-max-area-seed0"
    others = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/summary.json") if p.parent != victim}
    original = json.loads((victim / "summary.json").read_text())
    # What a kill in the second epoch leaves: a checkpoint after epoch 1 and no summary.
    fields = json.loads((victim / "config.json").read_text())["recipe_fields"]
    train_classifier(views, victim, recipe="finetune", overrides=fields, stop_after_epochs=1, overwrite=True,
                     device="cpu")
    (victim / "summary.json").unlink()
    again = run_pruning_study(views, out, **STUDY)
    resumed = json.loads((victim / "summary.json").read_text())
    assert [json.loads(m)["epoch"] for m in (victim / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert resumed["state_digest"] == original["state_digest"]  # resumed exactly where it stopped
    assert [r["top1"] for r in again["rows"]] == [r["top1"] for r in result["rows"]]
    assert others == {p: p.stat().st_mtime_ns for p in others}  # finished cells were only read
    with pytest.raises(FdslError, match="other settings"):
        run_pruning_study(views, out, **{**STUDY, "fraction": 0.2})


def test_study_folder_overwrite_removes_only_the_study(tmp_path: Path) -> None:
    with common.study_folder(tmp_path, "pruning", {"a": 1}):
        (tmp_path / "runs" / "x").mkdir(parents=True)
        (tmp_path / "digits-32px").mkdir()
    with pytest.raises(FdslError, match=r"other settings \(settings.a: 1 then, 2 now\)"):
        with common.study_folder(tmp_path, "pruning", {"a": 2}):
            pass
    with common.study_folder(tmp_path, "pruning", {"a": 2}, overwrite=True):
        assert not (tmp_path / "runs").exists() and (tmp_path / "digits-32px").is_dir()


def test_test_set_takes_whole_groups_and_splits_are_disjoint() -> None:
    labels = np.repeat([0, 1], 50)
    groups = np.array([f"{c}-{i // 7}" for c, i in zip(labels, range(100), strict=True)])
    test = hold_out(labels, groups, 10, 0, ["a", "b"])
    assert not set(groups[test]) & set(np.delete(groups, test))
    assert all(np.sum(labels[test] == c) >= 10 for c in (0, 1))
    pool = np.setdiff1d(np.arange(100), test)
    subsets = split_pool(labels, pool, 12, None, 0, ["a", "b"])
    assert len(subsets) == min(np.sum(labels[pool] == c) for c in (0, 1)) // 12
    joined = np.concatenate(subsets)
    assert len(np.unique(joined)) == len(joined) and set(joined) <= set(pool)
    with pytest.raises(FdslError, match="larger than the training pool"):
        split_pool(labels, pool, 60, None, 0, ["a", "b"])


def test_paired_difference_uses_the_t_quantile() -> None:
    diff = common.paired_difference([0.6, 0.7, 0.8], [-0.4, -0.3, -0.2])  # differences 1.0 each
    assert diff["mean"] == pytest.approx(1.0) and diff["low"] == pytest.approx(1.0)
    diff = common.paired_difference([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    half = 4.302652729911275 * 1.0 / np.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert (diff["low"], diff["high"]) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert "within the noise" in common.describe_difference("a", "b", diff)
    assert common.format_mean_std([0.65, 0.66, 0.64]) == "0.6500 ± 0.0100"


@pytest.mark.parametrize("extra, message", [
    (["--field", "colour"], "unknown field 'colour'"),
    (["--sizes", "100"], "--sizes 100 is larger than the training pool"),
    (["--test-per-class", "40"], "no whole model would be left"),
    (["--set", "train_indices=x.json"], "the study sets the training and test rows itself"),
])
def test_pruning_bad_input_one_line(extra: list[str], message: str, views: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    code, err = _main(["pruning", "--data", str(views), "--out", str(tmp_path / "s"), *FAST, *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s" / "study.json").exists()  # a corrected re-run is not refused


def test_pruning_without_area_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "noarea"
    build_dataset(ToyViews(with_area=False), data, shard_size=200, backend="inline", workers=1)
    code, err = _main(["pruning", "--data", str(data), "--out", str(tmp_path / "s"), *FAST], capsys)
    assert code == 2 and "no area in the data" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- transfer study and digits


def test_digits_import_matches_scikit_learn(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    from fdsl.datasets import ShardDataset

    ds = ShardDataset(import_digits(tmp_path / "digits", image_size=16))
    target = load_digits().target
    assert len(ds) == 1797 and ds.classes == [str(d) for d in range(10)]
    assert np.array_equal(np.asarray(ds.labels), target)
    image, label = ds[5]
    assert image.shape == (1, 16, 16) and label == target[5] and int(image.max()) > 150


def test_transfer_study_with_digits(views: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "transfer"
    code, err = _main(["transfer", "--pretrain", f"toy={views}", "--downstream", "digits", "--seeds", "0,1",
                       "--out", str(out), *FAST], capsys)
    assert code == 0, err
    rows = list(json.loads((out / "results.json").read_text())["rows"])
    assert [(r["arm"], r["seed"]) for r in rows] == [("scratch", 0), ("toy", 0), ("scratch", 1), ("toy", 1)]
    assert all(r["train_images"] == 30 and 0.0 <= r["top1"] <= 1.0 for r in rows)
    test = set(json.loads((out / "indices/digits-test.json").read_text()))
    for seed in (0, 1):
        assert not test & set(json.loads((out / f"indices/digits-train-seed{seed}.json").read_text()))
    config = json.loads((out / "runs/digits/toy-seed1/config.json").read_text())
    assert config["finetune_from"].endswith("runs/pretrain-toy/checkpoint.pt")
    assert json.loads((out / "runs/digits/scratch-seed1/config.json").read_text())["finetune_from"] is None
    table = (out / "table.md").read_text()
    assert "| scratch |" in table and "| toy |" in table and "toy vs scratch" in table
    code, err = _main(["transfer", "--downstream", "mnist", "--out", str(tmp_path / "t2"), *FAST], capsys)
    assert code == 2 and "give NAME=DIR" in err
    code, err = _main(["transfer", "--downstream", "digits", "--train-per-class", "500", "--out",
                       str(tmp_path / "t3"), *FAST], capsys)
    assert code == 2 and "has only" in err and not (tmp_path / "t3").exists()


def test_augment_subcommand_refuses_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["augment", "--candidates", "flip", "--out", str(tmp_path / "a")]
    for argv, message in [
        (base + ["--data", str(tmp_path / "missing")], "missing"),
        (base + ["--data", str(tmp_path), "--preset", "huge"], "unknown preset 'huge'"),
        (base + ["--data", str(tmp_path), "--ratio", "1.5"], "--ratio"),
    ]:
        code, err = _main(argv, capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_parallel_jobs_give_the_same_results(views: Path, study: tuple[Path, dict], tmp_path: Path) -> None:
    rows = run_pruning_study(views, tmp_path / "p", preset="tiny", sizes=[10], splits=1, test_per_class=10,
                             threads=1, jobs=2)["rows"]
    serial = run_pruning_study(views, tmp_path / "s", preset="tiny", sizes=[10], splits=1, test_per_class=10,
                               threads=1)["rows"]
    assert [r["top1"] for r in rows] == [r["top1"] for r in serial]


def test_separate_test_data_and_the_whole_pool(views: Path, tmp_path: Path) -> None:
    """The CUB layout: a test folder of its own, every image of --data in the pool (sizes 'all')."""
    rows = run_pruning_study(views, tmp_path / "cub", preset="tiny", sizes=[None], test_data=views,
                             field="area", threads=1)["rows"]
    assert [(r["size"], r["strategy"]) for r in rows] == [("all", "random"), ("all", "min-area"), ("all", "max-area")]
    assert all(r["train_images"] == 108 and r["val_images"] == 120 for r in rows)
    assert "test set: all of" in (tmp_path / "cub" / "table.md").read_text()


@pytest.mark.slow
def test_ray_backend_runs_cells(views: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    rows = run_pruning_study(views, tmp_path / "ray", preset="tiny", sizes=[10], splits=1, test_per_class=10,
                             threads=1, backend="ray", jobs=2)["rows"]
    assert len(rows) == 3 and all(0.0 <= r["top1"] <= 1.0 for r in rows)


def test_data_without_groups_falls_back_to_images(views: Path, caplog: pytest.LogCaptureFixture) -> None:
    from fdsl.studies.pruning import _check_fields

    assert _check_fields(views, "area", "model_id") == "model_id"
    assert _check_fields(views, "area", "camera_rig") is None and "image by image" in caplog.text
    labels = np.repeat([0, 1], 20)
    test = hold_out(labels, None, 5, 0, ["a", "b"])
    assert np.bincount(labels[test]).tolist() == [5, 5]
    with pytest.raises(FdslError, match="none would be left for training"):
        hold_out(labels, None, 20, 0, ["a", "b"])


def test_train_and_val_index_files(views: Path, tmp_path: Path) -> None:
    """train_indices / val_indices (.npy or .json) replace the automatic held-out split."""
    np.save(tmp_path / "train.npy", np.arange(0, 120, 2))
    (tmp_path / "val.json").write_text(json.dumps([1, 3, 5, 7]))
    fields = dict(model="resnet18", epochs=1, batch_size=16, image_size=16, resize_ratio=1.0, workers=0)
    summary = train_classifier(views, tmp_path / "run", recipe="finetune", device="cpu", overrides={
        **fields, "train_indices": str(tmp_path / "train.npy"), "val_indices": str(tmp_path / "val.json")})
    assert (summary["train_images"], summary["val_images"]) == (60, 4)
    (tmp_path / "bad.json").write_text("[0, 999]")
    with pytest.raises(FdslError, match=r"index 999 is out of range for 120 images"):
        train_classifier(views, tmp_path / "bad", recipe="finetune", device="cpu",
                         overrides={**fields, "train_indices": str(tmp_path / "bad.json")})
