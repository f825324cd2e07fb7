"""Pictures of a data set (any storage): a contact sheet of thumbnails per class, and per-class
histograms of a metadata field."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.atomic import check_output_folder, write_bytes_atomic
from fdsl.datasets.format import open_dataset
from fdsl.datasets.format.manifest import require_field
from fdsl.errors import FdslError

log = logging.getLogger(__name__)


def check_image_path(path: str | Path, flag: str) -> Path:
    """An output image path: not a folder, ending in an image suffix, in a folder that can be
    made; FdslError (one line) otherwise. Nothing is created (``_save`` does), so callers check
    every argument before any work and a refused run leaves no folder."""
    path = Path(path)
    if path.is_dir():
        raise FdslError(f"{flag} {path} is a folder; give a file name such as {path / 'sheet.png'}")
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        raise FdslError(f"{flag} {path}: give an image file name ending in .png, .jpg or .webp")
    try:
        check_output_folder(path.parent, f"the folder of {flag}")
    except FdslError as exc:
        raise FdslError(f"{flag} {path}: {exc}") from None
    return path


def _pick(members: np.ndarray, values: np.ndarray | None, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Per-class picks: evenly spaced along ``values`` when given (smallest first), else random."""
    if len(members) <= per_class:
        chosen = members
    elif values is None:
        chosen = np.sort(rng.choice(members, per_class, replace=False))
    else:
        order = members[np.argsort(values[members], kind="stable")]
        chosen = order[np.linspace(0, len(order) - 1, per_class).round().astype(int)]
        return chosen
    if values is not None:
        chosen = chosen[np.argsort(values[chosen], kind="stable")]
    return chosen


def contact_sheet(folder: str | Path, out_png: str | Path, *, per_class: int = 10, max_classes: int = 20,
                  sort_by: str | None = None, thumb: int = 96, seed: int = 0) -> Path:
    """Write a PNG with a row per class (up to ``max_classes``) of ``per_class`` thumbnails.

    With ``sort_by`` (a metadata field such as ``area``) each row shows views spread evenly from the
    smallest to the largest value, left to right, and the value is printed under each thumbnail.
    """
    from PIL import Image, ImageDraw

    out_png = check_image_path(out_png, "--grid")
    with open_dataset(folder) as reader:
        if sort_by is not None:
            require_field(reader.manifest, sort_by, "--sort-by")
        labels = reader.labels
        values = reader.metadata([sort_by])[sort_by] if sort_by else None
        rng = np.random.default_rng(seed)
        classes = reader.classes[:max_classes]
        picks = [_pick(np.flatnonzero(labels == c), values, per_class, rng) for c in range(len(classes))]
        flat = [int(i) for p in picks for i in p]
        images = reader.read_images(flat) if flat else []
    label_w, text_h = 110, 12 if sort_by else 0
    sheet = Image.new("RGB", (label_w + per_class * (thumb + 2), len(classes) * (thumb + 2 + text_h) + 2), "white")
    draw = ImageDraw.Draw(sheet)
    k = 0
    for row, (name, members) in enumerate(zip(classes, picks, strict=True)):
        y = row * (thumb + 2 + text_h) + 2
        draw.text((4, y + thumb // 2 - 6), f"{row}: {name}"[:18], fill="black")
        for col, idx in enumerate(members):
            tile = Image.fromarray(images[k]).convert("RGB").resize((thumb, thumb), Image.Resampling.BILINEAR)
            sheet.paste(tile, (label_w + col * (thumb + 2), y))
            if sort_by:
                draw.text((label_w + col * (thumb + 2) + 2, y + thumb), f"{float(values[idx]):.3g}", fill="black")
            k += 1
    _save(lambda fh, fmt: sheet.save(fh, format=fmt), out_png, "--grid")
    log.debug("contact sheet of %d classes x %d images -> %s", len(classes), per_class, out_png)
    return out_png


def histogram(folder: str | Path, field: str, out_png: str | Path, *, max_classes: int = 20, bins: int = 30) -> Path:
    """Write a PNG with one histogram of metadata ``field`` per class (shared x axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    out_png = check_image_path(out_png, "--hist")
    with open_dataset(folder) as reader:
        require_field(reader.manifest, field, "--hist")
        classes = reader.classes[:max_classes]
        values = reader.metadata([field])[field].astype(float)
        labels = reader.labels
    edges = np.histogram_bin_edges(values, bins=bins) if len(values) else bins
    ncols = min(3, len(classes)) or 1
    nrows = (len(classes) + ncols - 1) // ncols or 1
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 2.6 * nrows), sharex=True, squeeze=False)
    for c, ax in enumerate(axes.flat):
        if c >= len(classes):
            ax.axis("off")
            continue
        v = values[labels == c]
        ax.hist(v, bins=edges, color="tab:blue")
        mean = f", mean {v.mean():.3g}" if len(v) else ""
        ax.set_title(f"{classes[c]} (n={len(v)}{mean})", fontsize=9)
    fig.supxlabel(field)
    fig.suptitle(f"{field} per class: {folder.name}")
    fig.tight_layout()
    try:
        _save(lambda fh, fmt: fig.savefig(fh, format=fmt, dpi=90), out_png, "--hist")
    finally:
        plt.close(fig)
    return out_png


def _save(save: Any, path: Path, flag: str) -> None:
    """Write an image through ``save(file object, format)`` atomically (fdsl.atomic); a write
    error becomes one line naming the flag."""
    buf = io.BytesIO()
    fmt = {".jpg": "jpeg"}.get(path.suffix.lower(), path.suffix.lower().lstrip("."))
    try:
        save(buf, fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, buf.getvalue())
    except (OSError, ValueError, KeyError) as exc:
        raise FdslError(f"{flag} {path}: cannot write ({getattr(exc, 'strerror', None) or exc})") from None
