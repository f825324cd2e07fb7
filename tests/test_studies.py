"""Studies: the pruning study on a tiny render-like set (protocol, unit of replication, random arm
per split and seed, degenerate sizes, outputs, resume, refusal, bad input, PNG sets, CUB-style
ties, a disjoint test folder and starting weights in torchvision's layout), the transfer study
with the built-in digits, and the digits importer. The statistics themselves are pinned in
test_study_statistics.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")
pytest.importorskip("sklearn")

import study_presets  # noqa: E402

from fdsl.datasets.builder.build import build_dataset  # noqa: E402
from fdsl.errors import FdslError  # noqa: E402
from fdsl.sources import RenderedBatch  # noqa: E402
from fdsl.studies import cli, report, runner  # noqa: E402
from fdsl.studies import data as study_data  # noqa: E402
from fdsl.studies.digits import import_digits  # noqa: E402
from fdsl.studies.pruning import (  # noqa: E402
    hold_out,
    plan_cells,
    run_pruning_study,
    split_pool,
    tie_broken_ranks,
)
from fdsl.studies.transfer import _mirror_symmetric, run_transfer_study  # noqa: E402
from fdsl.train.loop import train_classifier  # noqa: E402

torch.set_num_threads(1)
TINY = study_presets.PRUNING
# The CLI's refusals come before any training, so they run with the user-facing mini preset.
FAST = ["--threads", "1", "--test-per-class", "10", "--sizes", "10"]
STUDY = dict(preset=TINY, sizes=[4, 10], splits=2, test_per_class=10, seeds=(0, 1), threads=1,
             overrides={"epochs": 2})
STRATEGIES = ("random", "min-area", "max-area")


class ToyViews:
    """A render-like set: per class ``models`` models x ``views`` views; a bright square whose
    side grows with the view index, so ``area`` is known; ``model_id`` names the model; ``parts``
    is an integer with many ties (like CUB's visible_parts). ``shade`` shifts every pixel, so two
    sets with different shades share no image."""

    name, version = "toyviews", "1"

    def __init__(self, classes: int = 3, models: int = 4, views: int = 10, size: int = 16,
                 with_area: bool = True, shade: int = 0) -> None:
        self.classes, self.models, self.views, self.size, self.with_area = classes, models, views, size, with_area
        self.shade = shade

    def config(self) -> dict:
        return {"classes": self.classes, "models": self.models, "views": self.views, "size": self.size,
                "area": self.with_area, "shade": self.shade}

    def class_names(self) -> list[str]:
        return [f"class{c}" for c in range(self.classes)]

    def num_items(self) -> int:
        return self.classes * self.models * self.views

    def item(self, i: int) -> tuple[np.ndarray, int, bytes, float]:
        per_class = self.models * self.views
        c, m, v = i // per_class, (i % per_class) // self.views, i % self.views
        side = 3 + v % (self.size - 4)
        img = np.full((self.size, self.size), 20 + 60 * c + self.shade, np.uint8)
        img[:side, :side] = 250 - m
        return img, c, f"m{c}-{m}".encode(), side * side / self.size ** 2

    def render(self, start: int, stop: int) -> RenderedBatch:
        items = [self.item(i) for i in range(start, stop)]
        meta = {"model_id": np.array([it[2] for it in items], "S8"),
                "parts": (np.arange(start, stop) % 3).astype(np.int16)}
        if self.with_area:
            meta["area"] = np.array([it[3] for it in items], np.float32)
        return RenderedBatch(np.stack([it[0] for it in items]), np.array([it[1] for it in items], np.int64),
                             meta, np.arange(start, stop), [])

    def png_path(self, label: int, metadata: dict, item: int) -> str:
        return f"{label}/{item:04d}.png"

    def extra_files(self) -> dict:
        return {}


def _build(source: ToyViews, out: Path, **kwargs) -> Path:
    return Path(build_dataset(source, out, shard_size=50, backend="inline", workers=1, **kwargs).out)


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(ToyViews(), tmp_path_factory.mktemp("views"))


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
    classes, cols = study_data.columns(folder, () if name == "labels" else (name,))
    return cols[name]


def _rows(path: Path) -> np.ndarray:
    return np.asarray(json.loads(path.read_text()))


# ---------------------------------------------------------------- pruning study


def test_pruning_study_follows_the_protocol(views: Path, study: tuple[Path, dict]) -> None:
    out, result = study
    rows = result["rows"]
    # size 4 loses nothing to 10% pruning (round(0.9 x 4) = 4): left out, never three equal arms
    assert [(r["split"], r["strategy"], r["seed"]) for r in rows] == [
        (k, s, seed) for k in (0, 1) for s in STRATEGIES for seed in (0, 1)]
    assert all(r["size"] == 10 and r["train_images"] == 27 and r["val_images"] == 30 for r in rows)
    assert len(result["left_out"]) == 1 and result["left_out"][0].startswith("size 4:")
    labels, models, area = _column(views, "labels"), _column(views, "model_id"), _column(views, "area")
    test = _rows(out / "indices/test.json")
    assert np.bincount(labels[test]).tolist() == [10, 10, 10]  # one whole model per class
    subsets = {}
    for k in (0, 1):
        for name in ("min-area", "max-area", "random-seed0", "random-seed1"):
            rows_k = _rows(out / f"indices/size10-split{k}-{name}.json")
            assert not set(models[rows_k]) & set(models[test])  # no model on both sides
            assert np.bincount(labels[rows_k]).tolist() == [9, 9, 9]
            subsets[k, name] = rows_k
        # the random arm draws afresh for every seed, from the same split
        assert not np.array_equal(subsets[k, "random-seed0"], subsets[k, "random-seed1"])
        union = np.union1d(subsets[k, "min-area"], subsets[k, "max-area"])
        assert set(subsets[k, "random-seed0"]) <= set(union) and set(subsets[k, "random-seed1"]) <= set(union)
        for c in range(3):  # min-area drops the smallest-area view: all it keeps is >= what it drops
            whole, kept_min, kept_max = (s[labels[s] == c] for s in
                                         (union, subsets[k, "min-area"], subsets[k, "max-area"]))
            assert area[np.setdiff1d(whole, kept_min)].max() <= area[kept_min].min()
            assert area[np.setdiff1d(whole, kept_max)].min() >= area[kept_max].max()
    assert not set(np.union1d(subsets[0, "min-area"], subsets[0, "max-area"])) & \
        set(np.union1d(subsets[1, "min-area"], subsets[1, "max-area"]))  # splits are disjoint
    table = (out / "table.md").read_text()
    for text in ("**Claim**", "**Test**", "## Verdict: ", "| max-area - min-area | 10 |", "p (Holm)",
                 "Holm-adjusted over all 3 comparisons", "**Precision**", "**Left out**", "Premise check"):
        assert text in table, text
    assert result["verdict"] in ("flip supported", "no evidence of a flip", "direction consistent at all sizes")
    # the premise check reads every run's predictions.csv: 3 classes x 10 test views, one per decile
    assert result["premise"]["runs"] == 12 and result["premise"]["images"] == [36] * 10
    assert "Lowest minus highest decile" in table and (out / "premise.png").is_file()
    gap = next(c for c in result["comparisons"] if c["comparison"] == "max-area - min-area")
    assert gap["n"] == 2 and gap["df"] == 1  # two splits: the seeds were averaged first
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("size,split,strategy,seed,top1") and len(csv_lines) == 1 + 12
    assert (out / "results.png").stat().st_size > 1000 and (out / "difference.png").is_file()
    assert not list(out.glob("runs/*/checkpoint.pt")) and not list(out.glob("runs/*/model.safetensors"))
    assert list(out.glob("runs/*/predictions.csv"))  # finished cells keep what the tables read, no weights


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
    with runner.study_folder(tmp_path, "pruning", {"a": 1}):
        (tmp_path / "runs" / "x").mkdir(parents=True)
        (tmp_path / "digits-32px").mkdir()
    with pytest.raises(FdslError, match=r"other settings \(settings.a: 1 then, 2 now\)"):
        with runner.study_folder(tmp_path, "pruning", {"a": 2}):
            pass
    with runner.study_folder(tmp_path, "pruning", {"a": 2}, overwrite=True):
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


def test_degenerate_sizes_are_left_out_or_refused() -> None:
    labels = np.repeat([0, 1], 40)
    ranks, pool = np.arange(80), np.arange(80)
    settings = {"sizes": [4, 5, 10], "splits": 2, "field": "area"}
    plan, left_out = plan_cells(labels, ranks, pool, settings, 0.1, 0, [0], ["a", "b"])
    # 10% of 4: round(3.6) = 4 kept, nothing removed; of 5: round(4.5) = 4 (half to even), 1 removed
    assert [line.split(":")[0] for line in left_out] == ["size 4"]
    assert {key[0] for key in plan} == {5, 10}
    with pytest.raises(FdslError, match="removes nothing at any size"):
        plan_cells(labels, ranks, pool, {**settings, "sizes": [2, 4]}, 0.1, 0, [0], ["a", "b"])


def test_ties_in_an_integer_field_are_broken_at_random_from_the_study_seed() -> None:
    values = np.array([1, 1, 1, 1, 2, 2, 2, 2], np.int16)
    orders = {tuple(tie_broken_ranks(values, seed)) for seed in range(8)}
    assert len(orders) > 1  # not file order every time
    for ranks in map(np.array, orders):
        assert sorted(ranks[values == 1]) == [0, 1, 2, 3]  # still ranked by the value first
    assert tuple(tie_broken_ranks(values, 5)) == tuple(tie_broken_ranks(values, 5))
    assert any(ranks[0] != 0 for ranks in map(np.array, orders))


@pytest.mark.parametrize("extra, message", [
    (["--field", "colour"], "unknown field 'colour'"),
    (["--sizes", "100"], "--sizes 100 is larger than the training pool"),
    (["--test-per-class", "40"], "no whole model would be left"),
    (["--set", "train_indices=x.json"], "the study sets the training and test rows itself"),
    (["--preset", "tiny"], "invalid choice: 'tiny'"),  # test settings are not a user preset
])
def test_pruning_bad_input_one_line(extra: list[str], message: str, views: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    code, err = _main(["pruning", "--data", str(views), "--out", str(tmp_path / "s"), *FAST, *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s" / "study.json").exists()  # a corrected re-run is not refused


def test_pruning_without_area_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = _build(ToyViews(with_area=False), tmp_path / "noarea")
    code, err = _main(["pruning", "--data", str(data), "--out", str(tmp_path / "s"), *FAST], capsys)
    assert code == 2 and "no area in the data" in err and len(err.strip().splitlines()) == 1


def test_png_data_sets_run_the_pruning_study(views: Path, tmp_path: Path) -> None:
    png = _build(ToyViews(), tmp_path / "png", storage="png")
    for name in ("labels", "area", "model_id"):
        a, b = _column(png, name), _column(views, name)
        assert [x.decode() if isinstance(x, bytes) else x for x in a.tolist()] == \
            [x.decode() if isinstance(x, bytes) else x for x in b.tolist()]
    result = run_pruning_study(png, tmp_path / "s", preset=TINY, sizes=[10], splits=1, test_per_class=10, threads=1)
    assert [r["strategy"] for r in result["rows"]] == list(STRATEGIES)
    assert all(r["train_images"] == 27 and r["val_images"] == 30 for r in result["rows"])


def test_separate_test_data_must_be_disjoint_and_starting_weights_load(views: Path, tmp_path: Path) -> None:
    """The CUB layout: a test folder of its own (refused when it shares an image with --data, by
    content, whatever the files), the whole pool (sizes 'all'), an integer field with ties, and
    starting weights from a torchvision-layout ResNet-50 file."""
    from safetensors.torch import load_file

    from fdsl.train.models import build_model

    copy = _build(ToyViews(), tmp_path / "copy", storage="png")  # the same pixels in other files
    settings = dict(preset={**TINY, "field": "parts", "sizes": (None,), "test_per_class": None}, threads=1)
    for overlapping in (views, copy):
        with pytest.raises(FdslError, match=r"shares 120 images with --data .*first: test image 0"):
            run_pruning_study(views, tmp_path / "refused", test_data=overlapping, **settings)
    assert not (tmp_path / "refused").exists()
    test = _build(ToyViews(models=2, shade=5), tmp_path / "test")
    torch.manual_seed(0)
    start = build_model("resnet50", 1000, 16)  # fdsl's ResNets keep torchvision's keys and layout
    torch.save(start.state_dict(), tmp_path / "resnet50_torchvision.pth")
    result = run_pruning_study(views, tmp_path / "cub", test_data=test, fraction=0.5,
                               finetune_from=tmp_path / "resnet50_torchvision.pth",
                               overrides={"model": "resnet50", "lr": 1e-9, "momentum": 0.0, "weight_decay": 0.0},
                               keep_checkpoints=True, **settings)
    rows = result["rows"]
    assert [(r["size"], r["strategy"]) for r in rows] == [("all", s) for s in ("random", "min-parts", "max-parts")]
    assert all(r["train_images"] == 60 and r["val_images"] == 60 for r in rows)
    assert "test set: all of" in (tmp_path / "cub" / "table.md").read_text()
    weights = load_file(str(Path(rows[0]["run"]) / "model.safetensors"))
    # lr 1e-9: the backbone is still the file's; the head is new (3 classes, not 1000)
    assert torch.allclose(weights["conv1.weight"], start.state_dict()["conv1.weight"], atol=1e-6)
    assert weights["fc.weight"].shape[0] == 3
    kept = _rows(tmp_path / "cub/indices/sizeall-split0-min-parts.json")
    parts = _column(views, "parts")
    assert np.bincount(parts[kept], minlength=3).tolist()[0] < np.bincount(parts, minlength=3).tolist()[0]


@pytest.mark.slow
def test_parallel_jobs_give_the_same_results(views: Path, tmp_path: Path) -> None:
    kwargs = dict(preset=TINY, sizes=[10], splits=1, test_per_class=10, threads=1)
    rows = run_pruning_study(views, tmp_path / "p", jobs=2, **kwargs)["rows"]
    serial = run_pruning_study(views, tmp_path / "s", **kwargs)["rows"]
    assert [r["top1"] for r in rows] == [r["top1"] for r in serial]


@pytest.mark.slow
def test_ray_backend_runs_cells(views: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    rows = run_pruning_study(views, tmp_path / "ray", preset=TINY, sizes=[10], splits=1, test_per_class=10,
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


def test_report_words() -> None:
    diff = {"n": 3, "mean": 2.0, "low": -0.484, "high": 4.484}
    assert "within the noise" in report.describe_difference("a", "b", diff)
    assert report.format_mean_std([0.65, 0.66, 0.64]) == "0.6500 ± 0.0100"
    assert report.format_estimate(diff) == "+2.0000 [-0.4840, +4.4840]"
    assert (report.fmt_p(0.0004), report.fmt_p(0.0312)) == ("<0.001", "0.031")


# ---------------------------------------------------------------- transfer study and digits


def test_digits_import_matches_scikit_learn(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    from fdsl.datasets import ShardDataset

    folder = import_digits(tmp_path / "digits", image_size=16)
    ds = ShardDataset(folder, mode="L")  # stored grey
    target = load_digits().target
    assert len(ds) == 1797 and ds.classes == [str(d) for d in range(10)]
    assert np.array_equal(np.asarray(ds.labels), target)
    image, label = ds[5]
    assert image.shape == (1, 16, 16) and label == target[5] and int(image.max()) > 150
    from fdsl.train.symmetry import declared_not_mirror_symmetric

    assert declared_not_mirror_symmetric(folder)  # declared in its manifest config


def test_transfer_study_with_digits(views: Path, tmp_path: Path) -> None:
    out = tmp_path / "transfer"
    result = run_transfer_study(out, pretrain={"toy": views}, downstream={"digits": ""}, seeds=(0, 1),
                                pretrain_seeds=(0, 1), preset=study_presets.TRANSFER, threads=1)
    rows = list(json.loads((out / "results.json").read_text())["rows"])
    assert [(r["arm"], r["pretrain_seed"], r["seed"]) for r in rows] == [
        ("scratch", "", 0), ("toy", 0, 0), ("toy", 1, 0), ("scratch", "", 1), ("toy", 0, 1), ("toy", 1, 1)]
    assert all(r["train_images"] == 30 and 0.0 <= r["top1"] <= 1.0 for r in rows)
    test = set(json.loads((out / "indices/digits-test.json").read_text()))
    for seed in (0, 1):
        assert not test & set(json.loads((out / f"indices/digits-train-seed{seed}.json").read_text()))
    config = json.loads((out / "runs/digits/toy-pre1-seed1/config.json").read_text())
    assert config["finetune_from"].endswith("runs/pretrain-toy-seed1/checkpoint.pt")
    scratch = json.loads((out / "runs/digits/scratch-seed1/config.json").read_text())
    assert scratch["finetune_from"] is None
    for fields in (config["recipe_fields"], scratch["recipe_fields"]):
        # digits are not mirror-symmetric; every arm sees the pre-training normalisation
        assert fields["hflip"] == 0.0 and fields["mean"] == [0.2, 0.2, 0.2] and fields["std"] == [0.5, 0.5, 0.5]
    stages = [line.split(",")[:3] for line in (out / "results.csv").read_text().splitlines()[1:]]
    assert stages[:2] == [["pretrain", "", "toy"]] * 2 and len(stages) == 2 + 6  # every run
    pre = json.loads((out / "runs/pretrain-toy-seed1/config.json").read_text())["recipe_fields"]
    assert pre["seed"] == 1
    (comparison,) = result["comparisons"]
    assert comparison["arm"] == "toy" and comparison["n"] == 4 and comparison["p_holm"] == comparison["p"]
    table = (out / "table.md").read_text()
    for text in ("**Claim**", "| scratch |", "| toy |", "covers both pre-training and fine-tuning variation",
                 "no horizontal flips on digits", "p (Holm)", "## Verdict"):
        assert text in table, text


def test_transfer_flags_and_refusals(views: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _mirror_symmetric("toy", str(views), set()) is True
    assert _mirror_symmetric("toy", str(views), {"toy"}) is False
    assert _mirror_symmetric("digits", "", set()) is False
    for argv, message in [
        (["--downstream", "mnist"], "give NAME=DIR"),
        (["--downstream", "digits", "--train-per-class", "500"], "has only"),
        (["--downstream", "digits", "--not-mirror-symmetric", "pets"], "no --downstream set of that name"),
        (["--downstream", "digits", "--preset", "tiny"], "invalid choice: 'tiny'"),
    ]:
        code, err = _main(["transfer", *argv, "--out", str(tmp_path / "t")], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert not (tmp_path / "t").exists()


def test_augment_subcommand_refuses_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["augment", "--candidates", "flip", "--out", str(tmp_path / "a")]
    for argv, message in [
        (base + ["--data", str(tmp_path / "missing")], "missing"),
        (base + ["--data", str(tmp_path), "--preset", "tiny"], "unknown preset 'tiny'"),
        (base + ["--data", str(tmp_path), "--ratio", "1.5"], "--ratio"),
    ]:
        code, err = _main(argv, capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (tmp_path / "a").exists()
