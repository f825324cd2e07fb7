"""The augmentation study end to end on tiny data: three fixed sets (grouped by model_id where the
data has it), affinity and diversity as defined and as short-run estimates, full runs, how each
metric predicts final test top-1; resume, refusal of changed settings, --top; the self-paced arms
over seeds. The formulas themselves are pinned by hand in test_study_statistics.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

import study_presets  # noqa: E402
from toy_source import ToySource  # noqa: E402

from fdsl.atomic import FolderLockedError, folder_lock  # noqa: E402
from fdsl.datasets.builder.build import build_dataset  # noqa: E402
from fdsl.errors import FdslError  # noqa: E402
from fdsl.studies.affinity import above_chance, measure_affinity  # noqa: E402
from fdsl.studies.augment import DEFAULT_CANDIDATES, run_augment_study, three_sets  # noqa: E402

torch.set_num_threads(1)
PNG = b"\x89PNG\r\n\x1a\n"
CANDIDATES = ["flip", "erasing:0.5", "crop:0.5"]
TINY = study_presets.AUGMENT


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("toy")
    build_dataset(ToySource(classes=3, per_class=16, size=16), out, shard_size=24, backend="inline",
                  workers=1)
    return out


@pytest.fixture(scope="module")
def study(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("study") / "augment"
    return out, run_augment_study(shards, out, candidates=CANDIDATES, preset=TINY)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _last_loss(run: Path) -> float:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["train_loss"]


def _indices(path: Path) -> list[int]:
    return json.loads(path.read_text())


def test_three_sets_are_disjoint_and_keep_groups_whole() -> None:
    labels = np.repeat([0, 1], 20)
    groups = np.array([f"{c}-{i // 4}" for c, i in zip(labels, range(40), strict=True)])  # 5 models a class
    sets = three_sets(labels, groups, 0.2, 0.2)
    # 5 models per class: round(0.2 * 5) = 1 model to test; then round(0.25 * 4) = 1 model to validation
    assert [len(sets[k]) for k in ("train", "val", "test")] == [24, 8, 8]
    assert sorted(np.concatenate(list(sets.values())).tolist()) == list(range(40))
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(groups[sets[a]]) & set(groups[sets[b]])
    plain = three_sets(labels, None, 0.25, 0.25)  # per class of 20: 5 test, then round(5/15 * 15) = 5 val
    assert [len(plain[k]) for k in ("train", "val", "test")] == [20, 10, 10]


def test_default_candidates() -> None:
    from fdsl.train.augment import build_candidate

    assert len(DEFAULT_CANDIDATES) >= 8 and len({build_candidate(c).name for c in DEFAULT_CANDIDATES}) == 8


@pytest.mark.slow
def test_affinity_diversity_study_writes_consistent_tables(study: tuple[Path, dict], shards: Path) -> None:
    out, result = study
    runs = out / "runs"
    rows = {r["candidate"]: r for r in result["rows"]}
    assert list(rows) == ["none", *CANDIDATES]
    sets = {k: _indices(out / "split" / f"{k}.json") for k in ("train", "val", "test")}
    assert [len(sets[k]) for k in ("train", "val", "test")] == [24, 12, 12]  # 8 / 4 / 4 of 16 per class
    assert not (set(sets["val"]) & set(sets["test"])) and not (set(sets["train"]) & set(sets["test"]))
    # short runs are validated on the validation set, full runs tested on the test set
    short = json.loads((runs / "short" / "flip" / "config.json").read_text())["recipe_fields"]
    full = json.loads((runs / "full" / "flip" / "seed0" / "config.json").read_text())["recipe_fields"]
    assert short["val_indices"].endswith("split/val.json") and full["val_indices"].endswith("split/test.json")
    assert short["epochs"] == 1 and full["epochs"] == 2 and full["hflip"] == 0.5
    assert full["random_erasing"] == 0.0 and full["train_crop"] == "center"
    clean_short = _last_loss(runs / "short" / "none")
    for name, slug in (("flip", "flip"), ("erasing:0.5", "erasing-0.5"), ("crop:0.5", "crop-0.5")):
        row = rows[name]
        # diversity: final-epoch training losses, short runs and full runs, each over its clean run
        assert row["diversity_short"] == pytest.approx(_last_loss(runs / "short" / slug) / clean_short)
        assert row["diversity"] == pytest.approx(_last_loss(runs / "full" / slug / "seed0")
                                                 / _last_loss(runs / "full" / "none" / "seed0"))
        # affinity: augmented minus clean validation accuracy of the fully trained clean model
        assert row["affinity"] == pytest.approx(row["augmented_val_accuracy"] - row["clean_val_accuracy"])
        summary = json.loads((runs / "full" / slug / "seed0" / "summary.json").read_text())
        assert row["test_top1"] == summary["top1"] and summary["epochs_done"] == 2
        short_summary = json.loads((runs / "short" / slug / "summary.json").read_text())
        assert row["val_top1_short"] == short_summary["top1"]
        assert row["short_steps"] == 1 * (24 // 16)  # one epoch of 24 images in batches of 16, last dropped
    assert rows["none"]["affinity"] == rows["none"]["affinity_short"] == 0.0
    assert rows["none"]["diversity_short"] == 1.0
    clean, augmented = measure_affinity(runs / "full" / "none" / "seed0", shards, np.array(sets["val"]),
                                        {"identity": {}}, device="cpu")
    assert clean == pytest.approx(rows["none"]["clean_val_accuracy"])
    assert augmented["identity"] == pytest.approx(clean)  # the clean fields are the plain view
    # the correlations leave `none` out: three trained candidates
    corr = result["correlations"]
    assert set(corr) == {"affinity_short", "diversity_short", "score_short", "val_top1_short", "affinity",
                         "diversity"}
    assert all(c["n"] == 3 for c in corr.values()) and result["spearman"] == corr["score_short"]["rho"]
    table = _read_csv(out / "candidates.csv")
    assert [r["candidate"] for r in table] == ["none", *CANDIDATES]
    for r in table:
        assert float(r["affinity"]) == pytest.approx(rows[r["candidate"]]["affinity"])
        assert float(r["test_top1"]) == pytest.approx(rows[r["candidate"]]["test_top1"])
    # results.csv: every run, the four short runs (validated) and the four full runs (tested)
    runs = _read_csv(out / "results.csv")
    assert sorted((r["phase"], r["candidate"], r["evaluated_on"]) for r in runs) == sorted(
        [("short", n, "val") for n in ["none", *CANDIDATES]] + [("full", n, "test") for n in ["none", *CANDIDATES]])
    assert all(Path(r["run"]).is_dir() and int(r["steps"]) >= 1 for r in runs)
    text = (out / "table.md").read_text()
    for part in ("**Claim**", "**Test**", "## Verdict", "| erasing:0.5 |", "Spearman rho [95% CI]",
                 "validation top-1 after the short run (baseline)", "fdsl's own, not Gontijo-Lopes'",
                 "training steps", "image by image"):
        assert part in text, part
    assert (out / "scatter.png").read_bytes()[:8] == PNG
    # only the clean models, which affinity reloads, keep their weights
    kept = sorted(str(p.parent.relative_to(out / "runs")) for p in (out / "runs").rglob("checkpoint.pt"))
    assert kept == ["full/none/seed0", "short/none"]
    assert sorted(str(p.parent.relative_to(out / "runs")) for p in (out / "runs").rglob("model.safetensors")) == kept
    # the warning stands in the table exactly when the clean short run ended at chance
    clean_short_acc, _ = measure_affinity(runs_dir := out / "runs" / "short" / "none", shards,
                                          np.array(sets["val"]), {}, device="cpu")
    at_chance = not above_chance(clean_short_acc, 3, len(sets["val"]))
    assert json.loads((runs_dir / "summary.json").read_text())["num_classes"] == 3
    assert result["short_run_at_chance"] is at_chance
    assert ("**Warning**: the clean short run is at chance" in text) is at_chance


@pytest.mark.slow
def test_study_resumes_refuses_changes_and_trains_only_the_top(study: tuple[Path, dict], shards: Path) -> None:
    out, first = study
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("summary.json")}
    again = run_augment_study(shards, out, candidates=CANDIDATES, preset=TINY)
    assert again["rows"] == first["rows"]
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("summary.json")} == stamps
    with pytest.raises(FdslError, match="other settings.*top"):
        run_augment_study(shards, out, candidates=CANDIDATES, preset=TINY, top=1)
    with folder_lock(out), pytest.raises(FolderLockedError):
        run_augment_study(shards, out, candidates=CANDIDATES, preset=TINY)
    result = run_augment_study(shards, out, candidates=CANDIDATES, preset=TINY, top=1, overwrite=True)
    trained = [r for r in result["rows"] if r["test_top1"] is not None]
    assert len(trained) == 2 and trained[0]["candidate"] == "none"
    best = max(result["rows"][1:], key=lambda r: r["score_short"])
    assert trained[1]["candidate"] == best["candidate"]
    assert sorted(p.name for p in (out / "runs" / "full").iterdir()) == sorted(
        ["none", best["candidate"].replace(":", "-")])
    assert result["spearman"] is None  # one trained candidate makes no correlation
    assert "not trained" in (out / "table.md").read_text()


@pytest.mark.slow
def test_self_paced_arms_over_seeds(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "sp"
    result = run_augment_study(shards, out, candidates=["flip", "erasing:0.5"], self_paced=True,
                               seeds=(0, 1), preset=TINY, threshold=1.0, ratio=0.5)
    rows = result["rows"]
    assert sorted({(r["arm"], r["seed"]) for r in rows}) == sorted(
        (a, s) for a in ("none", "all", "threshold", "ratio") for s in (0, 1))
    share = {r["arm"]: r["aug_fraction"] for r in rows if r["seed"] == 0}
    assert share["none"] == 0.0 and share["all"] == 1.0
    assert share["ratio"] == pytest.approx(0.5, abs=0.05)  # half of each batch
    config = json.loads((out / "runs" / "ratio" / "seed1" / "config.json").read_text())["recipe_fields"]
    assert config["self_paced_ratio"] == 0.5 and config["hflip"] == 0.5 and config["seed"] == 1
    assert config["val_indices"].endswith("split/test.json")
    text = (out / "table.md").read_text()
    for label in ("| none |", "| all |", "| threshold 1 |", "| ratio 0.5 |", "**Claim**", "p (Holm)",
                  "| threshold 1 - all |"):
        assert label in text
    mean_ratio = np.mean([r["top1"] for r in rows if r["arm"] == "ratio"])
    assert f"{mean_ratio:.4f}" in text
    assert [t["n"] for t in result["comparisons"]] == [2, 2, 2]
    assert len(_read_csv(out / "results.csv")) == 8


def test_bad_input_is_one_line(shards: Path, tmp_path: Path) -> None:
    with pytest.raises(FdslError, match="unknown augmentation 'blur'"):
        run_augment_study(shards, tmp_path / "a", candidates=["blur"], preset=TINY)
    with pytest.raises(FdslError, match="unknown preset"):
        run_augment_study(shards, tmp_path / "a", candidates=["flip"], preset="huge")
    with pytest.raises(FdslError, match="exactly the keys"):
        run_augment_study(shards, tmp_path / "a", candidates=["flip"], preset={"recipe": "x"})
    with pytest.raises(FdslError, match="distinct"):
        run_augment_study(shards, tmp_path / "a", candidates=["flip", "flip"], preset=TINY)
    with pytest.raises(FdslError, match="unknown config field 'bogus'"):
        run_augment_study(shards, tmp_path / "b", candidates=["flip"], preset=TINY, overrides={"bogus": 1})
    assert not (tmp_path / "b" / "runs").exists()  # refused before any training
    with pytest.raises(FdslError, match="--short-epochs must be at least 1, got 0"):
        run_augment_study(shards, tmp_path / "c", candidates=["flip"], preset=TINY, short_epochs=0)
    assert not (tmp_path / "c").exists()
