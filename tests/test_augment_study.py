"""The augmentation study end to end on tiny data: affinity, diversity, full runs and their rank
correlation; resume, refusal of changed settings, --top; the self-paced arms over seeds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

from toy_source import ToySource  # noqa: E402

from fdsl.atomic import FolderLockedError, folder_lock  # noqa: E402
from fdsl.datasets.builder.build import build_dataset  # noqa: E402
from fdsl.errors import FdslError  # noqa: E402
from fdsl.studies.augment import measure_affinity, run_augment_study, spearman  # noqa: E402

torch.set_num_threads(1)
PNG = b"\x89PNG\r\n\x1a\n"
CANDIDATES = ["flip", "erasing:0.5", "crop:0.5"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("toy")
    build_dataset(ToySource(classes=3, per_class=16, size=16), out, shard_size=24, backend="inline",
                  workers=1)
    return out


@pytest.fixture(scope="module")
def study(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("study") / "augment"
    return out, run_augment_study(shards, out, candidates=CANDIDATES, preset="tiny")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _last_loss(run: Path) -> float:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["train_loss"]


def test_spearman_ranks() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.8660254)  # tied ranks averaged
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 2, 3], [5, 5, 5]) is None


@pytest.mark.slow
def test_affinity_diversity_study_writes_consistent_tables(study: tuple[Path, dict], shards: Path) -> None:
    out, result = study
    runs = out / "runs"
    rows = {r["candidate"]: r for r in result["rows"]}
    assert list(rows) == ["none", *CANDIDATES]
    # diversity: final training loss of each short run over the clean short run, from metrics.jsonl
    clean_loss = _last_loss(runs / "short" / "none")
    for name, slug in (("flip", "flip"), ("erasing:0.5", "erasing-0.5"), ("crop:0.5", "crop-0.5")):
        assert rows[name]["diversity"] == pytest.approx(_last_loss(runs / "short" / slug) / clean_loss)
        assert rows[name]["affinity"] == pytest.approx(rows[name]["augmented_accuracy"] / rows[name]["clean_accuracy"])
        summary = json.loads((runs / "full" / slug / "seed0" / "summary.json").read_text())
        assert rows[name]["top1"] == summary["top1"] and summary["epochs_done"] == 2
    assert rows["none"]["affinity"] == rows["none"]["diversity"] == 1.0
    # the clean model's accuracy is recomputed by measure_affinity; a flip keeps nothing unchanged
    val = np.array(json.loads((out / "split" / "val.json").read_text()))
    assert len(val) == 12  # 25% of 16 per class, 3 classes
    clean, augmented = measure_affinity(runs / "full" / "none" / "seed0", shards, val,
                                        {"identity": {}}, device="cpu")
    assert clean == pytest.approx(rows["none"]["clean_accuracy"])
    assert augmented["identity"] == pytest.approx(clean)  # the clean fields are the plain view
    summary = json.loads((runs / "full" / "none" / "seed0" / "summary.json").read_text())
    assert summary["top1"] == pytest.approx(clean)  # same rows, same model
    # every run used the study's split
    config = json.loads((runs / "full" / "flip" / "seed0" / "config.json").read_text())["recipe_fields"]
    assert config["val_indices"].endswith("split/val.json") and config["hflip"] == 0.5
    assert config["random_erasing"] == 0.0 and config["train_crop"] == "center"
    scored = [r for r in result["rows"]]
    assert result["spearman"] == spearman([r["score"] for r in scored], [r["top1"] for r in scored])
    table = _read_csv(out / "results.csv")
    assert [r["candidate"] for r in table] == ["none", *CANDIDATES]
    for r in table:
        assert float(r["affinity"]) == pytest.approx(rows[r["candidate"]]["affinity"])
        assert float(r["diversity"]) == pytest.approx(rows[r["candidate"]]["diversity"])
        assert float(r["top1"]) == pytest.approx(rows[r["candidate"]]["top1"])
    text = (out / "table.md").read_text()
    assert "| erasing:0.5 |" in text and "Spearman" in text
    assert (out / "scatter.png").read_bytes()[:8] == PNG


@pytest.mark.slow
def test_study_resumes_refuses_changes_and_trains_only_the_top(study: tuple[Path, dict], shards: Path) -> None:
    out, first = study
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("checkpoint.pt")}
    again = run_augment_study(shards, out, candidates=CANDIDATES, preset="tiny")
    assert again["rows"] == first["rows"]
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("checkpoint.pt")} == stamps
    with pytest.raises(FdslError, match="other settings.*top"):
        run_augment_study(shards, out, candidates=CANDIDATES, preset="tiny", top=1)
    with folder_lock(out), pytest.raises(FolderLockedError):
        run_augment_study(shards, out, candidates=CANDIDATES, preset="tiny")
    result = run_augment_study(shards, out, candidates=CANDIDATES, preset="tiny", top=1, overwrite=True)
    trained = [r for r in result["rows"] if r["top1"] is not None]
    assert len(trained) == 2 and trained[0]["candidate"] == "none"
    best = max(result["rows"][1:], key=lambda r: r["score"])
    assert trained[1]["candidate"] == best["candidate"]
    assert sorted(p.name for p in (out / "runs" / "full").iterdir()) == sorted(
        ["none", best["candidate"].replace(":", "-")])
    assert result["spearman"] is None  # two trained rows do not make a correlation
    assert "not trained" in (out / "table.md").read_text()


@pytest.mark.slow
def test_self_paced_arms_over_seeds(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "sp"
    result = run_augment_study(shards, out, candidates=["flip", "erasing:0.5"], self_paced=True,
                               seeds=(0, 1), preset="tiny", threshold=1.0, ratio=0.5)
    rows = result["rows"]
    assert sorted({(r["arm"], r["seed"]) for r in rows}) == sorted(
        (a, s) for a in ("none", "all", "threshold", "ratio") for s in (0, 1))
    share = {r["arm"]: r["aug_fraction"] for r in rows if r["seed"] == 0}
    assert share["none"] == 0.0 and share["all"] == 1.0
    assert share["ratio"] == pytest.approx(0.5, abs=0.05)  # half of each batch (16 of 36 per epoch)
    config = json.loads((out / "runs" / "ratio" / "seed1" / "config.json").read_text())["recipe_fields"]
    assert config["self_paced_ratio"] == 0.5 and config["hflip"] == 0.5 and config["seed"] == 1
    text = (out / "table.md").read_text()
    for label in ("| none |", "| all |", "| threshold 1 |", "| ratio 0.5 |"):
        assert label in text
    mean_ratio = np.mean([r["top1"] for r in rows if r["arm"] == "ratio"])
    assert f"{mean_ratio:.4f}" in text
    assert len(_read_csv(out / "results.csv")) == 8


def test_bad_input_is_one_line(shards: Path, tmp_path: Path) -> None:
    with pytest.raises(FdslError, match="unknown augmentation 'blur'"):
        run_augment_study(shards, tmp_path / "a", candidates=["blur"], preset="tiny")
    with pytest.raises(FdslError, match="unknown preset"):
        run_augment_study(shards, tmp_path / "a", candidates=["flip"], preset="huge")
    with pytest.raises(FdslError, match="distinct"):
        run_augment_study(shards, tmp_path / "a", candidates=["flip", "flip"], preset="tiny")
    with pytest.raises(FdslError, match="unknown config field 'bogus'"):
        run_augment_study(shards, tmp_path / "b", candidates=["flip"], preset="tiny", overrides={"bogus": 1})
    assert not (tmp_path / "b" / "runs").exists()  # refused before any training
