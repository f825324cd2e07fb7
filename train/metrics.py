"""A run's numbers: ``metrics.jsonl`` (one record per epoch), ``summary.json`` and TensorBoard.

Epochs are counted from 1 everywhere: the log's ``epoch 1/90``, a record's ``epoch``, the
summary's ``best_epoch``, TensorBoard's step, ``curves.png`` and a checkpoint's ``epoch`` (the
last finished one).

The one place that reads and writes them; files go through ``fdsl.train.outputs.write_file``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fdsl.errors import FdslError
from fdsl.train.outputs import write_file, write_json

METRICS, SUMMARY = "metrics.jsonl", "summary.json"


def read_metrics(path: str | Path) -> list[dict]:
    """The per-epoch records of a ``metrics.jsonl`` file (empty list if it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite ``metrics.jsonl`` whole (one record per epoch): a crash keeps the old version."""
    write_file(out / METRICS, "".join(json.dumps(m) + "\n" for m in history).encode())


def write_summary(out: Path, summary: Mapping[str, Any]) -> None:
    write_json(out / SUMMARY, dict(summary))


def make_summary(history: list[dict[str, Any]], facts: Mapping[str, Any]) -> dict[str, Any]:
    """summary.json: the final held-out top-1 (``top1``, None without a held-out set; ``top5``
    too with more than 5 classes), the best epoch (counted from 1), the last training figures,
    then ``facts`` (model, data, sizes, timing, digest...)."""
    held_out = [m for m in history if m.get("val_top1") is not None]
    best = max(held_out, key=lambda m: m["val_top1"]) if held_out else None  # first of equals
    last = history[-1] if history else {}
    top5 = {"top5": held_out[-1]["val_top5"]} if held_out and "val_top5" in held_out[-1] else {}
    return {
        "top1": held_out[-1]["val_top1"] if held_out else None,
        **top5,
        "best_top1": None if best is None else best["val_top1"],
        "best_epoch": None if best is None else best["epoch"],
        "final_train_loss": last.get("train_loss"),
        "final_train_top1": last.get("train_top1"),
        "images_per_second": last.get("images_per_second"),
        **facts,
    }


def require_tensorboard() -> Any:
    """TensorBoard's ``SummaryWriter`` class; FdslError (one line) when it cannot be imported."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as exc:  # noqa: BLE001 - a broken install is as good as none
        raise FdslError(f"--tensorboard needs the tensorboard package (pip install tensorboard): "
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return SummaryWriter


class TensorBoardLog:
    """Optional TensorBoard scalars of each epoch under ``RUN/tensorboard`` (``--tensorboard``).

    TensorBoard writes its event files itself (appended while the run lasts, not atomically)."""

    def __init__(self, out: Path) -> None:
        self.writer = require_tensorboard()(log_dir=str(out / "tensorboard"))

    def log(self, record: Mapping[str, Any]) -> None:
        for key, value in record.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and key != "epoch":
                self.writer.add_scalar(key, value, record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
