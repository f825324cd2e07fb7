"""The studies' statistics, pinned against numbers worked out by hand (the arithmetic is in the
comments; quantiles of Student's t come from printed tables, p-values from the closed forms of
its CDF for 1, 2 and 4 degrees of freedom). No torch: these run in a blink."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fdsl.studies import premise, pruning_report, statistics

T975_DF1, T975_DF2, T975_DF4 = 12.706205, 4.302653, 2.776445  # Student's t table, 97.5%


def test_t_interval_by_hand() -> None:
    # [1, 2, 3]: mean 2, sd 1, se 1/sqrt(3) = 0.577350; half = 4.302653 * 0.577350 = 2.484138
    # t = 2 / 0.577350 = 3.464102; df 2: p = 1 - t / sqrt(2 + t^2) = 1 - 3.464102 / 3.741657 = 0.074180
    est = statistics.t_interval([1.0, 2.0, 3.0])
    assert est["mean"] == pytest.approx(2.0) and est["df"] == 2
    assert est["half"] == pytest.approx(2.484138, abs=1e-5)
    assert (est["low"], est["high"]) == (pytest.approx(-0.484138, abs=1e-5), pytest.approx(4.484138, abs=1e-5))
    assert est["p"] == pytest.approx(0.074180, abs=1e-5)
    # pairs (0.6, 0.5), (0.7, 0.5), (0.8, 0.5): differences 0.1, 0.2, 0.3 -> mean 0.2, se 0.057735
    diff = statistics.paired_difference([0.6, 0.7, 0.8], [0.5, 0.5, 0.5])
    assert diff["mean"] == pytest.approx(0.2) and diff["half"] == pytest.approx(0.248414, abs=1e-5)
    assert diff["p"] == pytest.approx(0.074180, abs=1e-5)
    # identical differences: no spread, a zero-width interval; one pair: no interval at all
    same = statistics.paired_difference([0.6, 0.7], [0.5, 0.6])
    assert same["half"] == 0.0 and same["p"] == 0.0
    assert statistics.t_interval([0.3])["low"] is None


def test_holm_by_hand() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max
    # 0.02, 0.03, 0.06, 0.06; back in the given order:
    assert statistics.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # None stays None and does not count: m = 2
    out = statistics.holm([0.02, None, 0.5])
    assert out[1] is None and out[0] == pytest.approx(0.04) and out[2] == pytest.approx(0.5)
    assert statistics.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # 1.2 capped at 1, then monotone


def test_trend_slope_by_hand() -> None:
    # sizes 10, 20, 40: log2 centred -1, 0, +1 (two points each); Sxx = 2 * (1 + 0 + 1) = 4
    # Sxy = -1 * (0.04 + 0.06) + 0 + 1 * (-0.02 + 0.00) = -0.12 -> slope -0.03 per doubling
    # fitted 0.05, 0.02, -0.01: every residual +-0.01 -> SSE 6e-4, s^2 = 6e-4 / 4 = 1.5e-4
    # se = sqrt(1.5e-4 / 4) = 0.0061237; half = 2.776445 * 0.0061237 = 0.0170022
    # t = -4.898979; df 4: F(t) = 1/2 + 3/8 * u * (1 - u^2 / 12) with u = t / sqrt(1 + t^2 / 4)
    #   = t / sqrt(7) = 1.851640 -> F = 0.995975 -> p = 2 * (1 - F) = 0.008050
    est = statistics.trend([10, 10, 20, 20, 40, 40], [0.04, 0.06, 0.01, 0.03, -0.02, 0.0])
    assert est["mean"] == pytest.approx(-0.03) and est["df"] == 4
    assert est["se"] == pytest.approx(0.0061237, abs=1e-6)
    assert est["half"] == pytest.approx(T975_DF4 * 0.0061237, abs=1e-5)
    assert est["p"] == pytest.approx(0.008050, abs=1e-5)
    assert est["intercept"] == pytest.approx(0.02) and est["intercept_at"] == pytest.approx(20.0)
    assert statistics.trend([10, 10, 10], [0.1, 0.2, 0.3])["mean"] is None  # one size: no slope


def test_crossed_interval_by_hand() -> None:
    # [[0.1, 0.2], [0.3, 0.6]]: grand 0.3; row means 0.15, 0.45 -> MS_rows = 2 * 0.045 / 1 = 0.09
    # column means 0.2, 0.4 -> MS_cols = 2 * 0.02 / 1 = 0.04; residuals +-0.05 -> MS_resid = 0.01
    # var(mean) = (0.09 + 0.04 - 0.01) / 4 = 0.03 -> se 0.173205
    # Satterthwaite df = 0.12^2 / (0.09^2 + 0.04^2 + 0.01^2) = 0.0144 / 0.0098 = 1.469388
    est = statistics.crossed_mean_interval([[0.1, 0.2], [0.3, 0.6]])
    assert est["method"] == "two-way" and est["mean"] == pytest.approx(0.3)
    assert est["se"] == pytest.approx(0.173205, abs=1e-6) and est["df"] == pytest.approx(1.469388, abs=1e-6)
    # [[0.0, 0.4], [0.2, 0.2]]: rows agree (MS_rows 0), columns 0.1 / 0.3 (MS_cols 0.04), residuals
    # +-0.1 (MS_resid 0.04): 0 + 0.04 - 0.04 = 0 is below the one-way floor over columns (0.04, df 1)
    # se = sqrt(0.04 / 4) = 0.1; half = 12.706205 * 0.1; t = 2, df 1 (Cauchy):
    # p = 1 - 2 atan(2) / pi = 1 - 2 * 1.107149 / 3.141593 = 0.295167
    floor = statistics.crossed_mean_interval([[0.0, 0.4], [0.2, 0.2]])
    assert floor["method"] == "one-way floor" and floor["df"] == 1
    assert floor["se"] == pytest.approx(0.1) and floor["half"] == pytest.approx(T975_DF1 * 0.1, abs=1e-5)
    assert floor["p"] == pytest.approx(0.295167, abs=1e-5)
    # one pre-training seed: the one-way interval over fine-tuning seeds (as test_t_interval_by_hand)
    one = statistics.crossed_mean_interval([[0.1, 0.2, 0.3]])
    assert one["method"] == "one-way" and one["half"] == pytest.approx(0.248414, abs=1e-5)


def test_spearman_by_hand() -> None:
    # ranks [1,2,3,4] vs [1,3,2,4]: sum d^2 = 2 -> 1 - 6 * 2 / (4 * 15) = 0.8
    assert statistics.spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    # ties: ranks [1.5, 1.5, 3] vs [1, 2, 3]; centred [-.5, -.5, 1] . [-1, 0, 1] = 1.5,
    # norms sqrt(1.5), sqrt(2) -> 1.5 / sqrt(3) = 0.866025
    assert statistics.spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.866025, abs=1e-6)
    assert statistics.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert statistics.spearman([1, 2], [1, 2]) is None and statistics.spearman([1, 2, 3], [5, 5, 5]) is None


def test_bootstrap_with_a_fixed_seed_by_hand() -> None:
    # numpy.random.default_rng(0).integers(0, 4, 4), four times: [3,2,2,1] [1,0,0,0] [0,3,2,3] [2,2,3,2]
    # means of [1, 2, 4, 8] at those rows: 18/4 = 4.5, 5/4 = 1.25, 21/4 = 5.25, 20/4 = 5.0
    # sorted 1.25, 4.5, 5.0, 5.25; 25% at position 0.75: 1.25 + 0.75 * 3.25 = 3.6875;
    # 75% at position 2.25: 5.0 + 0.25 * 0.25 = 5.0625
    values = [1.0, 2.0, 4.0, 8.0]
    out = statistics.bootstrap_interval(4, lambda rows: sum(values[r] for r in rows) / 4, resamples=4, seed=0,
                                        level=0.5)
    assert (out["low"], out["high"], out["valid"]) == (pytest.approx(3.6875), pytest.approx(5.0625), 4)
    # 95%: positions 0.075 and 2.925 -> 1.25 + 0.075 * 3.25 = 1.49375; 5.0 + 0.925 * 0.25 = 5.23125
    out = statistics.bootstrap_interval(4, lambda rows: sum(values[r] for r in rows) / 4, resamples=4, seed=0)
    assert (out["low"], out["high"]) == (pytest.approx(1.49375), pytest.approx(5.23125))


def test_spearman_bootstrap_by_hand() -> None:
    # x = 1..5, y = [2,1,4,3,5]: sum d^2 = 4 -> rho = 1 - 24/120 = 0.8
    # default_rng(0).integers(0, 5, 5) five times and rho of each resample (average ranks):
    #   [4,3,2,1,1] x=[5,4,3,2,2] y=[5,3,4,1,1]: 8.5 / 9.5 = 0.894737
    #   [0,0,0,0,4] x=[1,1,1,1,5] y=[2,2,2,2,5]: 1.0
    #   [3,4,2,3,4] x=[4,5,3,4,5] y=[3,5,4,3,5]: 6 / 9 = 0.666667
    #   [3,3,2,2,4] x=[4,4,3,3,5] y=[3,3,4,4,5]: 1 / 9 = 0.111111
    #   [1,4,3,0,1] x=[2,5,4,1,2] y=[1,5,3,2,1]: 6.5 / 9.5 = 0.684211
    # sorted .111111 .666667 .684211 .894737 1.0: the 25% and 75% quantiles sit at positions 1 and 3
    out = statistics.spearman_bootstrap([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], resamples=5, seed=0, level=0.5)
    assert out["rho"] == pytest.approx(0.8) and out["valid"] == 5
    assert (out["low"], out["high"]) == (pytest.approx(0.666667, abs=1e-6), pytest.approx(0.894737, abs=1e-6))


def test_affinity_and_diversity_by_hand() -> None:
    # clean validation: 8 of 10 right; augmented: 6 of 10 -> affinity 0.6 - 0.8 = -0.2
    clean = statistics.accuracy_from_confusion([[4, 1], [1, 4]])
    augmented = statistics.accuracy_from_confusion([[3, 2], [2, 3]])
    assert (clean, augmented) == (pytest.approx(0.8), pytest.approx(0.6))
    assert statistics.affinity(clean, augmented) == pytest.approx(-0.2)
    # final-epoch losses 1.8 (augmented) over 1.5 (clean) = 1.2, whatever the order of the records
    aug_log = [{"epoch": 1, "train_loss": 1.8}, {"epoch": 0, "train_loss": 2.2}]
    clean_log = [{"epoch": 0, "train_loss": 2.0}, {"epoch": 1, "train_loss": 1.5}]
    assert statistics.final_epoch_loss(clean_log) == 1.5
    assert statistics.diversity(aug_log, clean_log) == pytest.approx(1.2)


# ---------------------------------------------------------------- the pruning study's tests and verdict


def _rows(gaps: dict[int, list[float]]) -> list[dict]:
    """Synthetic runs: per size and split, min = 0.5, max = 0.5 + gap, random = 0.5 + gap / 2 +
    0.01 * split; seed 0 and seed 1 sit 0.02 apart, so only seed-averaged values have the gaps."""
    rows = []
    for size, per_split in gaps.items():
        for k, gap in enumerate(per_split):
            for name, value in (("random", 0.5 + gap / 2 + 0.01 * k), ("min-area", 0.5), ("max-area", 0.5 + gap)):
                rows += [{"size": size, "split": k, "strategy": name, "seed": s, "top1": value + (0.01 if s else -0.01),
                          "run": f"/nonexistent/{size}-{k}-{name}-{s}"} for s in (0, 1)]
    return rows


NAMES = ["random", "min-area", "max-area"]


def test_pruning_comparisons_take_the_split_as_the_unit(tmp_path: Path) -> None:
    # max - min per split after averaging the two seeds: size 10: 0.11, 0.12, 0.13; size 40 the negatives.
    # Each: mean +-0.12, sd 0.01, se 0.0057735, t = 20.7846 on 2 df (not 5: seeds are not units):
    # p = 1 - 20.7846 / sqrt(2 + 432) = 1 - 20.7846 / 20.83267 = 0.002307; Holm over 7 comparisons:
    # only the trend's p is smaller, so the gaps take factors 6 and 5: 0.013843, 0.011536 -> the
    # running maximum makes both 0.013843 (min - random: p 0.01493 and 0.003314, larger)
    # trend: log2(40) - log2(10) = 2, so x centred is -1 (size 10) and +1 (size 40); Sxx = 6,
    # Sxy = -0.36 - 0.36 = -0.72 -> slope -0.12 per doubling; residuals +-0.01 and 0
    means = pruning_report.split_means(_rows({10: [0.11, 0.12, 0.13], 40: [-0.11, -0.12, -0.13]}))
    comparisons, trend = pruning_report.compare(means, NAMES, [10, 40])
    gap10, gap40 = (c for c in comparisons if c["comparison"] == "max-area - min-area")
    assert gap10["mean"] == pytest.approx(0.12) and gap10["df"] == 2 and gap10["n"] == 3
    assert gap10["half"] == pytest.approx(T975_DF2 * 0.0057735, abs=1e-5)
    assert gap10["p"] == pytest.approx(0.002307, abs=1e-5) and gap40["mean"] == pytest.approx(-0.12)
    assert trend["mean"] == pytest.approx(-0.12) and trend["df"] == 4
    assert sorted(c["p_holm"] for c in [gap10, gap40]) == pytest.approx([0.013843, 0.013843], abs=2e-5)
    word, reason = pruning_report.verdict(comparisons, trend, "max-area - min-area")
    assert word == "flip supported" and "size 10" in reason and "size 40" in reason


def test_pruning_verdicts_in_words(tmp_path: Path) -> None:
    consistent = pruning_report.split_means(_rows({10: [0.11, 0.12, 0.13], 40: [0.05, 0.06, 0.07]}))
    word, reason = pruning_report.verdict(*pruning_report.compare(consistent, NAMES, [10, 40]), "max-area - min-area")
    assert word == "direction consistent at all sizes" and "max-area is significantly better" in reason
    noisy = pruning_report.split_means(_rows({10: [0.05, -0.04, 0.02], 40: [-0.03, 0.04, 0.0]}))
    word, _ = pruning_report.verdict(*pruning_report.compare(noisy, NAMES, [10, 40]), "max-area - min-area")
    assert word == "no evidence of a flip"
    result = pruning_report.write_outputs(
        tmp_path, _rows({10: [0.11, 0.12, 0.13], 40: [-0.11, -0.12, -0.13]}), NAMES,
        {"sizes": [4, 10, 40], "field": "area"}, "30 images", ["a", "b"],
        ["size 4: removing 0.1 per class removes nothing"], seeds=[0, 1], fraction=0.1, study_seed=0)
    table = (tmp_path / "table.md").read_text()
    assert result["verdict"] == "flip supported" and "## Verdict: flip supported" in table
    assert "Holm-adjusted over all 7 comparisons" in table and "**Precision**" in table
    assert "size 10: ±0.0248" in table  # 4.302653 * 0.0057735 = 0.024842
    assert "**Left out**" in table and "| 4 |" not in table and "Premise check" in table
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 1 + 36


# ---------------------------------------------------------------- the premise check


def _write_predictions(path: Path, rows: list[tuple[int, int, int, float]]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    lines = ["index,label,prediction,prob_true,area,model_id"]
    lines += [f"{i},{y},{p},{0.9 if y == p else 0.1},{a},m{i}" for i, y, p, a in rows]
    (path / "predictions.csv").write_text("\n".join(lines) + "\n")


def test_premise_deciles_by_hand(tmp_path: Path) -> None:
    # two classes of 10 test images; area rank r within a class is decile r (one image each).
    # class 0: areas 0.5 0.1 0.9 0.3 0.7 0.2 1.0 0.4 0.8 0.6 with right/wrong 1 0 1 0 1 0 1 1 1 1
    #   by area: 0.1 w, 0.2 w, 0.3 w, 0.4 r, 0.5 r, 0.6 r, 0.7 r, 0.8 r, 0.9 r, 1.0 r
    # class 1: areas 1..10 (index 10..19), wrong for the two smallest only
    # pooled top-1 per decile: 1: 0/2, 2: 0/2, 3: 1/2, then 2/2 -> 0, 0, .5, 1, 1, 1, 1, 1, 1, 1
    area0 = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 1.0, 0.4, 0.8, 0.6]
    right0 = [1, 0, 1, 0, 1, 0, 1, 1, 1, 1]
    rows = [(i, 0, 0 if r else 1, a) for i, (a, r) in enumerate(zip(area0, right0, strict=True))]
    rows += [(10 + k, 1, 1 if k >= 2 else 0, float(k + 1)) for k in range(10)]
    _write_predictions(tmp_path / "run-a", rows)
    # a second subset whose model is right everywhere: lowest - highest decile = 0 there, -1 above
    _write_predictions(tmp_path / "run-b", [(i, y, y, a) for i, y, _, a in rows])
    table = premise.read_predictions(tmp_path / "run-a" / "predictions.csv")
    assert table["index"].dtype.kind == "i" and table["area"][1] == 0.1 and table["model_id"][0] == "m0"
    runs = [{"run": str(tmp_path / "run-a"), "size": 10, "split": 0},
            {"run": str(tmp_path / "run-b"), "size": 10, "split": 1},
            {"run": str(tmp_path / "missing"), "size": 10, "split": 1}]
    checked = premise.premise_check(runs, "area", seed=0)
    assert checked["runs"] == 2 and checked["missing"] == 1 and checked["units"] == 2
    # pooled over both runs: decile 1 = (0 + 2) / 4, decile 3 = (1 + 2) / 4, decile 10 = 4 / 4
    assert checked["top1"] == pytest.approx([0.5, 0.5, 0.75, 1, 1, 1, 1, 1, 1, 1])
    assert checked["per_class"][0][:4] == pytest.approx([0.5, 0.5, 0.5, 1.0])
    # units: -1 and 0 -> mean -0.5, sd 0.707107, se 0.5, half = 12.706205 * 0.5 = 6.353103
    assert checked["difference"]["mean"] == pytest.approx(-0.5)
    assert checked["difference"]["half"] == pytest.approx(6.353103, abs=1e-5)
    text = premise.write_premise(tmp_path, checked, "area", ["a", "b"])
    assert "no evidence that area predicts difficulty" in text and (tmp_path / "premise.png").is_file()
    assert len((tmp_path / "premise.csv").read_text().splitlines()) == 1 + 2 * 10


def test_premise_ties_spread_evenly_over_deciles() -> None:
    import numpy as np

    labels = np.zeros(40, np.int64)
    values = np.repeat([1.0, 2.0], 20)  # an integer-like field: two tied blocks
    dec = premise.deciles(labels, values, np.arange(40), seed=3)
    assert np.bincount(dec).tolist() == [4] * 10
    assert set(dec[values == 1.0]) == set(range(5))  # the smaller values fill the lower half
    again = premise.deciles(labels, values, np.arange(40), seed=3)
    assert (dec == again).all() and not (dec == premise.deciles(labels, values, np.arange(40), seed=4)).all()


def test_premise_without_predictions_says_so(tmp_path: Path) -> None:
    checked = premise.premise_check([{"run": str(tmp_path / "none"), "size": 4, "split": 0}], "area", 0)
    assert checked["runs"] == 0
    assert "Not available: no run wrote predictions.csv" in premise.write_premise(tmp_path, checked, "area", ["a"])
    assert json.loads(json.dumps(checked)) == checked  # results.json can hold it


def test_pruning_without_a_trend_test_still_has_a_verdict() -> None:
    # one split per size: no interval anywhere, and two points make no slope with an error
    means = pruning_report.split_means(_rows({10: [0.1], 40: [-0.1]}))
    comparisons, trend = pruning_report.compare(means, NAMES, [10, 40])
    assert trend is None and all(c["p_holm"] is None for c in comparisons)
    word, reason = pruning_report.verdict(comparisons, trend, "max-area - min-area")
    assert word == "no evidence of a flip" and "no trend test" in reason


def test_short_run_at_chance_by_hand() -> None:
    """10 classes, 200 validation images: chance 0.1, one standard error sqrt(0.1 * 0.9 / 200) =
    0.0212132, so a short run must pass 0.1424264 to count as having learned."""
    from fdsl.studies.affinity import above_chance, chance_warning

    assert not above_chance(0.12, 10, 200) and not above_chance(0.1424, 10, 200)
    assert above_chance(0.1425, 10, 200) and above_chance(0.62, 10, 200)
    # 3 classes, 12 images: chance 1/3, SE sqrt(2/9 / 12) = 0.1360828, bound 0.6055
    assert not above_chance(0.60, 3, 12) and above_chance(0.61, 3, 12)
    text = chance_warning(0.12, 10, 200, 2)
    assert text is not None and "(0.1200; chance 0.1000, two standard errors above it 0.1424 over 200 images)" in text
    assert "after 2 short epoch(s)" in text and "--short-epochs" in text
    assert chance_warning(0.62, 10, 200, 2) is None
