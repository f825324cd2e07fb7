"""Loss/accuracy curves of a run (``curves.png``) from its ``metrics.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO


def read_metrics(path: str | Path) -> list[dict]:
    """The per-epoch records of a ``metrics.jsonl`` file (empty list if it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(metrics: list[dict], out: str | Path | BinaryIO, title: str = "") -> None:
    """Draw train/val loss and accuracy per epoch into a PNG file or binary stream (matplotlib's
    Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [m["epoch"] + 1 for m in metrics]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label, ax in (("train_loss", "train", ax_loss), ("val_loss", "held-out", ax_loss),
                           ("train_top1", "train", ax_acc), ("val_top1", "held-out", ax_acc)):
        points = [(e, m[key]) for e, m in zip(epochs, metrics, strict=True) if m.get(key) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy", title="accuracy", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100, format="png")
    plt.close(fig)
