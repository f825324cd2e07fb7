"""The run folder's files: metrics.jsonl, summary.json, curves.png, and how each is written.

Every file goes through ``write_file``: a temporary name, fsync, rename (``fdsl.atomic``), so a
crash or a full disk never leaves a half-written file; a full disk is one line naming the folder.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fdsl import atomic
from fdsl.errors import FdslError

log = logging.getLogger(__name__)

METRICS, SUMMARY, CURVES = "metrics.jsonl", "summary.json", "curves.png"
RUN_OUTPUTS = ("checkpoint.pt", "model.safetensors", METRICS, SUMMARY, CURVES, "config.yaml",
               "config.json", "predictions.csv")


class DiskFullError(FdslError):
    """The run folder's disk is full or failing."""


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` atomically and durably; on ENOSPC/EIO remove the temporary file and raise
    DiskFullError naming the folder and the space needed."""
    try:
        atomic.write_bytes_atomic(path, data)
    except OSError as exc:
        if not atomic.is_disk_full(exc):
            raise
        try:
            free = f"{atomic.free_bytes(path.parent) / 2**20:.1f} MiB free"
        except OSError:
            free = "free space unknown"
        raise DiskFullError(f"disk full while writing {path.name} into {path.parent} ({exc.strerror}; "
                            f"{len(data) / 2**20:.1f} MiB needed, {free}); free space and rerun "
                            "with --resume") from None


def write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite ``metrics.jsonl`` whole (one record per epoch): a crash keeps the old version."""
    write_file(out / METRICS, "".join(json.dumps(m) + "\n" for m in history).encode())


def write_summary(out: Path, summary: Mapping[str, Any]) -> None:
    write_file(out / SUMMARY, (json.dumps(summary, indent=1) + "\n").encode())


def write_curves(out: Path, history: list[dict[str, Any]], title: str) -> None:
    from fdsl.train.plots import plot_curves

    buffer = io.BytesIO()
    plot_curves(history, buffer, title=title)
    write_file(out / CURVES, buffer.getvalue())


def remove_run_outputs(out: Path) -> None:
    """Delete a previous run's files (``--overwrite``); other files in ``out`` are kept."""
    for name in RUN_OUTPUTS:
        (out / name).unlink(missing_ok=True)
    for old in out.glob("checkpoint-epoch*.pt"):
        old.unlink()


def make_summary(history: list[dict[str, Any]], facts: Mapping[str, Any]) -> dict[str, Any]:
    """summary.json: the final held-out top-1 (``top1``, None without a held-out set), the best
    epoch, the last training figures, then ``facts`` (model, data, sizes, timing, digest...)."""
    tops = [m["val_top1"] for m in history if m.get("val_top1") is not None]
    last = history[-1] if history else {}
    return {
        "top1": tops[-1] if tops else None,
        "best_top1": max(tops) if tops else None,
        "best_epoch": 1 + tops.index(max(tops)) if tops else None,
        "final_train_loss": last.get("train_loss"),
        "final_train_top1": last.get("train_top1"),
        "images_per_second": last.get("images_per_second"),
        **facts,
    }


class TensorBoardLog:
    """Optional TensorBoard scalars of each epoch under ``RUN/tensorboard`` (``--tensorboard``)."""

    def __init__(self, out: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception as exc:  # noqa: BLE001 - a broken install is as good as none
            raise FdslError(f"--tensorboard needs the tensorboard package (pip install tensorboard): "
                            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"))

    def log(self, record: Mapping[str, Any]) -> None:
        for key, value in record.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and key != "epoch":
                self.writer.add_scalar(key, value, record["epoch"] + 1)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
