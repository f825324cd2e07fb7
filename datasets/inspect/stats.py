"""Data-set statistics of the FractalDB evaluation study: how spread out each class is, and how far
apart the classes are, in a stated feature space.

- intra-class std of class ``c``: the root-mean-square over feature dimensions of the per-dimension
  standard deviation, ``sqrt(mean_i ||x_i - mu_c||^2 / D)``;
- class-mean distance: the Euclidean distance ``||mu_a - mu_b||`` between every pair of class means.

The feature space is passed in as a function of a uint8 image batch; the default is the pixels at
a fixed size (``pixel_features``). A checkpoint's penultimate layer lives in ``fdsl.studies.stats``
(the data layer imports no training code). Images are read through ``open_dataset`` (any
storage), at most ``max_per_class`` per class (a seeded sample), and accumulated in float64 sums,
so memory stays at (classes x D) whatever the data set size.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.atomic import check_output_folder, write_bytes_atomic
from fdsl.datasets.format import open_dataset
from fdsl.errors import FdslError
from fdsl.progress import Progress

log = logging.getLogger(__name__)

Features = Callable[[np.ndarray], np.ndarray]  # uint8 [n, H, W(, C)] -> float [n, D]
DEFAULT_SIDE = 32


def pixel_features(side: int = DEFAULT_SIDE) -> Features:
    """Pixels in [0, 1] after a bilinear resize to ``side`` x ``side`` (channels kept), flattened."""
    from PIL import Image

    def features(images: np.ndarray) -> np.ndarray:
        out = [np.asarray(Image.fromarray(img).resize((side, side), Image.Resampling.BILINEAR), np.float32)
               for img in images]
        return np.stack(out).reshape(len(images), -1) / 255.0

    features.describe = f"pixels resized to {side}x{side} (bilinear), values in [0, 1]"  # type: ignore[attr-defined]
    return features


def _sample(labels: np.ndarray, classes: int, max_per_class: int | None, seed: int) -> np.ndarray:
    rows = []
    for c in range(classes):
        members = np.flatnonzero(labels == c)
        if max_per_class is not None and len(members) > max_per_class:
            members = np.sort(np.random.default_rng([seed, c]).choice(members, max_per_class, replace=False))
        rows.append(members)
    return np.sort(np.concatenate(rows)) if rows else np.zeros(0, np.int64)


def class_statistics(folder: str | Path, features: Features, *, max_per_class: int | None = 200,
                     seed: int = 0, batch: int = 256, progress: bool = False) -> dict[str, Any]:
    """Per-class counts, intra-class std and the class-mean distance matrix of ``folder`` (a
    complete data set of any storage); ``progress`` reports the images read (``fdsl.progress``)."""
    folder = Path(folder)
    with open_dataset(folder) as reader:
        classes = list(reader.classes)
        labels = reader.labels
        chosen = _sample(labels, len(classes), max_per_class, seed)
        if len(chosen) == 0:
            raise FdslError(f"{folder}: the data set holds no images")
        # Sums are taken around each class's first feature vector (a shifted-data variance), so
        # large features do not lose the spread to cancellation and identical images give exactly 0.
        ref: np.ndarray | None = None
        sums = np.zeros(0)
        sq = np.zeros(len(classes))
        counts = np.zeros(len(classes), np.int64)
        with Progress(total=len(chosen), unit="img", desc="stats", disable=not progress) as bar:
            for k in range(0, len(chosen), batch):
                rows = chosen[k:k + batch]
                x = np.asarray(features(reader.read_images(rows)), np.float64)
                y = labels[rows]
                if ref is None:
                    ref, sums = np.zeros((len(classes), x.shape[1])), np.zeros((len(classes), x.shape[1]))
                first = np.unique(y[counts[y] == 0], return_index=True)
                ref[first[0]] = x[np.flatnonzero(counts[y] == 0)[first[1]]]
                counts += np.bincount(y, minlength=len(classes))
                x = x - ref[y]
                np.add.at(sums, y, x)
                np.add.at(sq, y, (x * x).sum(1))
                bar.update(len(rows))
    assert ref is not None
    seen = np.maximum(counts, 1)
    shift = sums / seen[:, None]
    means = ref + shift
    dim = sums.shape[1]
    variance = np.maximum(sq / seen - (shift * shift).sum(1), 0.0) / dim
    centred = means - means[counts > 0].mean(0)  # distances are shift-free; centring limits cancellation
    sq_norm = (centred * centred).sum(1)
    distance = np.sqrt(np.maximum(sq_norm[:, None] + sq_norm[None, :] - 2 * centred @ centred.T, 0.0))
    np.fill_diagonal(distance, 0.0)
    empty = counts == 0
    intra = np.where(empty, np.nan, np.sqrt(variance))
    distance[empty, :] = np.nan
    distance[:, empty] = np.nan
    off = distance[~np.eye(len(classes), dtype=bool)]
    return {"folder": str(folder), "classes": classes, "counts": counts.tolist(), "dimensions": dim,
            "intra_class_std": _finite(intra), "class_mean_distance": [_finite(r) for r in distance],
            "mean_intra_class_std": float(np.nanmean(intra)),
            "mean_class_mean_distance": float(np.nanmean(off)) if np.isfinite(off).any() else None}


def _finite(values: np.ndarray) -> list[float | None]:
    """JSON-safe numbers: None for a class without images."""
    return [float(v) if np.isfinite(v) else None for v in values]


def _save_png(fig: Any, path: Path) -> None:
    """A figure written atomically (fdsl.atomic); the figure is closed."""
    import matplotlib.pyplot as plt

    png = io.BytesIO()
    fig.savefig(png, dpi=100, format="png")
    plt.close(fig)
    write_bytes_atomic(path, png.getvalue())


def _plots(stats: dict[str, Any], out: Path, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes, n = stats["classes"], len(stats["classes"])
    labelled = n <= 40  # tick labels for up to 40 classes; beyond that they are unreadable
    fig, ax = plt.subplots(figsize=(max(6, min(0.3 * n, 20)), 3.5))
    ax.bar(range(n), np.asarray(stats["intra_class_std"], float), color="tab:blue")
    ax.set_xticks(range(n) if labelled else [])
    if labelled:
        ax.set_xticklabels(classes, rotation=90, fontsize=7)
    ax.set_ylabel("intra-class std")
    ax.set_title(f"intra-class std per class: {title}")
    fig.tight_layout()
    bar = out / "intra_class_std.png"
    _save_png(fig, bar)
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(np.asarray(stats["class_mean_distance"], float), cmap="viridis")
    fig.colorbar(image, ax=ax, label="distance between class means")
    if labelled:
        ax.set_xticks(range(n), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(n), classes, fontsize=7)
    ax.set_title(f"class-mean distances: {title}")
    fig.tight_layout()
    heat = out / "class_mean_distance.png"
    _save_png(fig, heat)
    return [bar, heat]


def check_out_folder(out: str | Path, flag: str = "--stats") -> Path:
    """The stats output folder: new or a folder, never a file; FdslError (one line) otherwise.
    Nothing is created (callers check every argument before any work)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FdslError(f"{flag} {out} is a file; give a folder for stats.json and its two plots")
    check_output_folder(out, "the stats folder")  # writable, not held by another run
    return out


def dataset_stats(folder: str | Path, out: str | Path, *, features: Features | None = None,
                  feature_space: str | None = None, max_per_class: int | None = 200,
                  seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Write ``out/stats.json``, ``out/intra_class_std.png`` (bar chart) and
    ``out/class_mean_distance.png`` (heat map) for the shard folder ``folder``; return the stats.

    ``features`` maps a uint8 image batch to float vectors (default: ``pixel_features()``);
    ``feature_space`` describes it in stats.json. The returned dict lists the files in ``written``.
    """
    features = features or pixel_features()
    space = feature_space or getattr(features, "describe", "a caller-given feature function")
    out = check_out_folder(out)
    stats = class_statistics(folder, features, max_per_class=max_per_class, seed=seed, progress=progress)
    stats = {"feature_space": space, "max_per_class": max_per_class, "seed": seed,
             "definitions": {"intra_class_std": "sqrt(mean over images of ||x - class mean||^2 / D)",
                             "class_mean_distance": "Euclidean distance between class-mean vectors"},
             **stats}
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "stats.json", (json.dumps(stats, indent=1) + "\n").encode())
    written = [out / "stats.json", *_plots(stats, out, Path(folder).name)]
    log.debug("stats of %s (%s) -> %s", folder, space, out)  # the CLIs print what was written
    return {**stats, "written": [str(p) for p in written]}
