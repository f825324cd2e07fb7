"""Every figure training draws, as PNG bytes: the run's curves and the held-out error analysis.

Figures come back as bytes and the caller writes them through ``fdsl.train.outputs.write_file``
(atomic; one line on a full disk), so no figure is ever saved straight to a path. matplotlib runs
on its Agg backend: no display is needed.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch

ANNOTATE_UP_TO = 20  # classes up to which the confusion plot prints counts and names


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig: Any) -> bytes:
    """A figure as PNG bytes (for an atomic write); the figure is closed."""
    plt = pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


# ---------------------------------------------------------------- curves.png


def curves_png(metrics: list[dict], title: str = "") -> bytes:
    """Train/held-out loss and accuracy per epoch (``metrics.jsonl`` records) as a PNG."""
    return figure_png(curves_figure(metrics, title))


def curves_figure(metrics: list[dict], title: str = "") -> Any:
    """The figure of ``curves_png`` (open; tests read its axes)."""
    from matplotlib.ticker import MaxNLocator

    epochs = [m["epoch"] for m in metrics]  # counted from 1
    fig, (ax_loss, ax_acc) = pyplot().subplots(1, 2, figsize=(10, 4))
    for key, label, ax in (("train_loss", "train", ax_loss), ("val_loss", "held-out", ax_loss),
                           ("train_top1", "train", ax_acc), ("val_top1", "held-out", ax_acc)):
        points = [(e, m[key]) for e, m in zip(epochs, metrics, strict=True) if m.get(key) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy", title="accuracy", ylim=(0, 1))
    shown = sorted(set(epochs))
    for ax in (ax_loss, ax_acc):
        if len(shown) <= 10:  # a tick per epoch; MaxNLocator alone puts one point at 0.945-1.05
            ax.set_xticks(shown)
            if len(shown) == 1:
                ax.set_xlim(shown[0] - 0.5, shown[0] + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- error analysis


def _as_picture(image: np.ndarray) -> np.ndarray:
    """uint8 or float [C, H, W] -> [H, W] or [H, W, 3] for imshow."""
    picture = np.moveaxis(image, 0, -1)
    return picture[..., 0] if picture.shape[-1] == 1 else picture


def _grid(count: int, columns: int = 4) -> tuple[Any, np.ndarray]:
    rows = max(1, math.ceil(count / columns))
    fig, axes = pyplot().subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flatten()


def confusion_png(matrix: np.ndarray, classes: list[str], title: str) -> bytes:
    """The confusion matrix (rows: true class), each row scaled to 1; counts and names up to
    ``ANNOTATE_UP_TO`` classes."""
    k = len(classes)
    side = min(4 + 0.4 * k, 14)
    fig, ax = pyplot().subplots(figsize=(side, side))
    rows = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if k <= ANNOTATE_UP_TO:
        ax.set_xticks(range(k), classes, rotation=90)
        ax.set_yticks(range(k), classes)
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                        color="white" if rows[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    fig.tight_layout()
    return figure_png(fig)


def misclassified_png(wrong: list[tuple[float, np.ndarray, int, int]], classes: list[str]) -> bytes:
    """A contact sheet of (confidence, uint8 image [C, H, W], true, predicted) mistakes."""
    fig, axes = _grid(len(wrong))
    if not wrong:
        axes[0].text(0.5, 0.5, "no held-out image misclassified", ha="center", va="center")
    for ax, (conf, image, true, pred) in zip(axes, wrong, strict=False):
        ax.imshow(_as_picture(image), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{classes[true]} -> {classes[pred]}\np={conf:.2f}", fontsize=8)
    fig.suptitle("most confidently misclassified held-out images (true -> predicted)")
    fig.tight_layout()
    return figure_png(fig)


def maps_png(inputs: torch.Tensor, maps: torch.Tensor, labels: list[int], preds: list[int],
             classes: list[str], method: str, model_name: str) -> bytes:
    """Model inputs (top row) and the same with their [0, 1] maps overlaid (bottom row)."""
    fig, axes = _grid(2 * len(labels), columns=len(labels))
    shown = inputs.detach().float().cpu()
    low = shown.amin((2, 3), keepdim=True)
    shown = ((shown - low) / (shown.amax((2, 3), keepdim=True) - low).clamp_min(1e-12)).numpy()
    for i, (true, pred) in enumerate(zip(labels, preds, strict=True)):
        picture = _as_picture(shown[i])
        axes[i].imshow(picture, cmap="gray")
        axes[i].set_title(f"{classes[true]} (pred {classes[pred]})", fontsize=8)
        axes[len(labels) + i].imshow(picture, cmap="gray")
        axes[len(labels) + i].imshow(maps[i].cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    fig.suptitle(f"{model_name}: {method}")
    fig.tight_layout()
    return figure_png(fig)
