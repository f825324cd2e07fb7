"""The statistics every study reports, each a small pure function over plain numbers.

- ``t_interval`` / ``paired_difference``: a mean with its t-based interval and two-sided p-value
  (the unit of replication is whatever the caller passes one value per: a split, a seed);
- ``holm``: Holm's step-down adjustment of a family of p-values;
- ``trend``: the least-squares slope of a difference against log2(size), with its interval;
- ``crossed_mean_interval``: the mean of a pre-training-seed x fine-tuning-seed table with an
  interval that covers both sources of variation;
- ``spearman`` and ``bootstrap_interval`` / ``spearman_bootstrap``: rank correlation with a
  percentile bootstrap interval over the items (candidates);
- ``accuracy_from_confusion``, ``affinity``, ``final_epoch_loss``, ``diversity``: the
  Affinity and Diversity definitions of Gontijo-Lopes et al. (2020).

scipy supplies the t and Student distributions; the tests pin every function against numbers
worked out by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

LEVEL = 0.95


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _t_quantile(level: float, df: float) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def _two_sided_p(t_value: float, df: float) -> float:
    from scipy.stats import t

    return float(2.0 * t.sf(abs(t_value), df))


def _estimate(mean: float, se: float, df: float, level: float, n: int) -> dict[str, Any]:
    """mean, interval, half-width and the p-value of "mean = 0" for an estimate with standard
    error ``se`` on ``df`` degrees of freedom."""
    if se == 0.0:  # every replicate agrees: no spread to test against
        return {"n": n, "df": df, "mean": mean, "se": 0.0, "low": mean, "high": mean, "half": 0.0,
                "p": 1.0 if mean == 0.0 else 0.0}
    half = _t_quantile(level, df) * se
    return {"n": n, "df": df, "mean": mean, "se": se, "low": mean - half, "high": mean + half, "half": half,
            "p": _two_sided_p(mean / se, df)}


def t_interval(values: Sequence[float], level: float = LEVEL) -> dict[str, Any]:
    """The mean of ``values`` (one per unit of replication) with its t-interval on n - 1 degrees
    of freedom and the two-sided p-value of a zero mean; below two values only ``mean`` is set."""
    d = np.asarray(values, float)
    n = len(d)
    if n < 2:
        return {"n": n, "df": 0, "mean": float(d.mean()) if n else None, "se": None, "low": None,
                "high": None, "half": None, "p": None}
    return _estimate(float(d.mean()), float(d.std(ddof=1)) / math.sqrt(n), n - 1, level, n)


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> dict[str, Any]:
    """``t_interval`` of ``a - b`` over pairs (one pair per unit of replication)."""
    return t_interval(np.asarray(a, float) - np.asarray(b, float), level)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values, in the order given (None entries are skipped and stay
    None): the k-th smallest of m is multiplied by m - k + 1, then made non-decreasing, capped at 1."""
    known = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(known)):
        running = max(running, min(1.0, (len(known) - rank) * p))
        out[i] = running
    return out


def trend(sizes: Sequence[float], values: Sequence[float], level: float = LEVEL) -> dict[str, Any]:
    """The least-squares slope of ``values`` against log2(``sizes``) (one point per replicate,
    e.g. per split of each size: the change per doubling of the size), with its t-interval on
    n - 2 degrees of freedom and the two-sided p-value of a zero slope. None fields when there
    are fewer than two distinct sizes or three points."""
    x = np.log2(np.asarray(sizes, float))
    y = np.asarray(values, float)
    n = len(y)
    if n < 3 or len(np.unique(x)) < 2:
        return {"n": n, "df": 0, "mean": None, "se": None, "low": None, "high": None, "half": None, "p": None}
    sxx = float(np.sum((x - x.mean()) ** 2))
    slope = float(np.sum((x - x.mean()) * (y - y.mean())) / sxx)
    residuals = y - (y.mean() + slope * (x - x.mean()))
    df = n - 2
    se = math.sqrt(float(np.sum(residuals ** 2)) / df / sxx)
    return {**_estimate(slope, se, df, level, n), "intercept_at": float(2 ** x.mean()),
            "intercept": float(y.mean())}


def crossed_mean_interval(table: Sequence[Sequence[float]], level: float = LEVEL) -> dict[str, Any]:
    """The mean of a P x S table (rows: pre-training seeds, columns: fine-tuning seeds, fully
    crossed) with an interval covering both sources of variation.

    Two-way random-effects ANOVA without replication: the variance of the grand mean is
    estimated by (MS_rows + MS_cols - MS_resid) / (P S), on Satterthwaite's degrees of freedom;
    it is never narrower than either one-way interval (over row means, df P - 1, or column means,
    df S - 1). With one row or one column it is the one-way t-interval of the other.
    """
    y = np.asarray(table, float)
    p, s = y.shape
    if p == 1 or s == 1:
        return {**t_interval(y.ravel(), level), "method": "one-way"}
    grand = float(y.mean())
    rows, cols = y.mean(axis=1), y.mean(axis=0)
    ms_rows = s * float(np.sum((rows - grand) ** 2)) / (p - 1)
    ms_cols = p * float(np.sum((cols - grand) ** 2)) / (s - 1)
    resid = y - rows[:, None] - cols[None, :] + grand
    ms_resid = float(np.sum(resid ** 2)) / ((p - 1) * (s - 1))
    combined = ms_rows + ms_cols - ms_resid
    floor_ms, floor_df = max((ms_rows, p - 1), (ms_cols, s - 1))
    if combined > floor_ms:
        df = combined ** 2 / (ms_rows ** 2 / (p - 1) + ms_cols ** 2 / (s - 1)
                              + ms_resid ** 2 / ((p - 1) * (s - 1)))
        method = "two-way"
    else:
        combined, df, method = floor_ms, floor_df, "one-way floor"
    return {**_estimate(grand, math.sqrt(combined / (p * s)), df, level, p * s), "method": method}


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None below 3 points or when either
    side is constant."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def bootstrap_interval(n: int, statistic: Callable[[np.ndarray], float | None], *, resamples: int = 2000,
                       seed: int = 0, level: float = LEVEL) -> dict[str, Any]:
    """Percentile bootstrap over ``n`` items: ``statistic`` of each resample of item positions
    (``rng.integers(0, n, n)`` of ``numpy.random.default_rng(seed)``, ``resamples`` times), the
    interval's ends the (1 - level)/2 and (1 + level)/2 quantiles (linear interpolation) of the
    values that are not None; ``valid`` counts them."""
    rng = np.random.default_rng(seed)
    values = [v for v in (statistic(rng.integers(0, n, n)) for _ in range(resamples)) if v is not None]
    if not values:
        return {"low": None, "high": None, "valid": 0, "resamples": resamples}
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return {"low": float(low), "high": float(high), "valid": len(values), "resamples": resamples}


def spearman_bootstrap(x: Sequence[float], y: Sequence[float], *, resamples: int = 2000, seed: int = 0,
                       level: float = LEVEL) -> dict[str, Any]:
    """Spearman's rho of the pairs (x_i, y_i) with a percentile bootstrap interval that resamples
    the pairs (resamples with a constant side are left out and counted in ``valid``)."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    interval = bootstrap_interval(len(xs), lambda rows: spearman(list(xs[rows]), list(ys[rows])),
                                  resamples=resamples, seed=seed, level=level) if len(xs) >= 3 else \
        {"low": None, "high": None, "valid": 0, "resamples": 0}
    return {"rho": spearman(list(xs), list(ys)), "n": len(xs), **interval}


# ---------------------------------------------------------------- Affinity and Diversity


def accuracy_from_confusion(matrix: Sequence[Sequence[float]]) -> float:
    """Top-1 of a confusion matrix (rows: true class, columns: prediction): trace over total."""
    m = np.asarray(matrix, float)
    return float(np.trace(m) / m.sum()) if m.sum() else 0.0


def affinity(clean_accuracy: float, augmented_accuracy: float) -> float:
    """Gontijo-Lopes et al.'s Affinity: the clean-trained model's accuracy on the augmented
    validation set minus its accuracy on the clean validation set (0: the augmentation keeps the
    data where the model expects it; negative: it shifts the data away)."""
    return augmented_accuracy - clean_accuracy


def final_epoch_loss(records: Sequence[Mapping[str, Any]]) -> float:
    """The training loss of the last epoch in a run's per-epoch records (``metrics.jsonl``)."""
    last = max(records, key=lambda r: r["epoch"])
    return float(last["train_loss"])


def diversity(augmented: Sequence[Mapping[str, Any]], clean: Sequence[Mapping[str, Any]]) -> float | None:
    """Gontijo-Lopes et al.'s Diversity: the final-epoch training loss of the model trained with
    the augmentation over that of the model trained without it (None when the clean loss is 0)."""
    base = final_epoch_loss(clean)
    return final_epoch_loss(augmented) / base if base > 0 else None
