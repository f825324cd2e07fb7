"""Stage 4 of a run: what a resumed run continues from, and the changes it refuses.

A run continues only with the settings it started with (``RUNTIME_FIELDS`` excepted: they do not
change what is computed), on data with the same classes and size, and with as many processes.
One change is allowed: more ``epochs`` extend the run (a finished one too), and the learning-rate
schedule is recomputed for the new length from where the run stands, as timm does when resumed
with a larger ``--epochs`` (``fdsl.train.scheduler.replay_schedule``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fdsl.errors import FdslError
from fdsl.train.checkpoint import load_checkpoint
from fdsl.train.dataarg import absolute_data
from fdsl.train.recipes import TrainConfig
from fdsl.train.rundir import RunFolder
from fdsl.train.splits import Splits

log = logging.getLogger(__name__)

# Fields a resumed run may change: they do not alter what is computed.
RUNTIME_FIELDS = {"workers", "compile", "save_every", "tensorboard", "analysis"}


@dataclass
class ResumeState:
    """The checkpoint a run continues from."""

    saved: dict[str, Any]  # model, optimizer, schedule, epoch, rng (one per rank), config, ...
    extended_from: int | None = None  # the run's former ``epochs`` when this resume extends it

    @property
    def epochs_done(self) -> int:
        """Epochs the run has finished (the checkpoint's ``epoch``: epochs count from 1)."""
        return int(self.saved["epoch"])


def check_resume(config: Mapping[str, Any], saved: Mapping[str, Any], out: Path) -> None:
    """Refuse to continue a run with settings that change what is computed (more epochs extend it)."""
    for key, value in saved.items():
        if key == "epochs" and isinstance(value, int) and config.get(key, 0) >= value:
            continue
        if key == "epochs":
            raise FdslError(f"--resume: --epochs {config.get(key)} is fewer than the {value} of the run "
                            f"in {out}; a run can be extended, not shortened")
        if key not in RUNTIME_FIELDS and config.get(key) != value:
            raise FdslError(f"--resume: {key} is {config.get(key)!r} but the run in {out} used {value!r}; "
                            "resume with the same settings or use another --out")


def check_resume_data(saved: Mapping[str, Any], classes: list[str], train_images: int,
                      data: str | Path, out: Path) -> None:
    """Refuse to continue a run on other data; a moved data folder with the same content is fine."""
    if "classes" in saved and list(saved["classes"]) != list(classes):
        raise FdslError(f"--resume: {data} has other classes than the data the run in {out} was trained on "
                        f"({saved.get('data')})")
    if "train_images" in saved and saved["train_images"] != train_images:
        raise FdslError(f"--resume: {data} gives {train_images} training images, the run in {out} had "
                        f"{saved['train_images']} (from {saved.get('data')})")
    if saved.get("data_resolved") not in (None, str(absolute_data(data))):
        log.warning("--resume: data is now %s (the run started on %s); same classes and size, going on",
                    data, saved["data_resolved"])


def load_resume_state(folder: RunFolder, config: TrainConfig, splits: Splits,
                      world_size: int) -> ResumeState | None:
    """The checkpoint of ``folder`` checked against this run (None when not resuming)."""
    if not folder.resume:
        return None
    saved = load_checkpoint(folder.checkpoint)
    if not {"epoch", "optimizer", "schedule", "rng"} <= set(saved):
        raise FdslError(f"--resume: {folder.checkpoint} is not an fdsl run checkpoint (it holds weights only)")
    check_resume(config.to_dict(), saved.get("config", {}), folder.path)
    check_resume_data(saved, splits.train_src.classes, len(splits.train_idx), splits.train_src.path,
                      folder.path)
    if saved.get("world_size", 1) != world_size:
        raise FdslError(f"--resume: the run in {folder.path} used {saved.get('world_size', 1)} "
                        f"processes, this one has {world_size}")
    before = saved.get("config", {}).get("epochs", config.epochs)
    if before != config.epochs:
        log.info("extending the run in %s from %d to %d epochs (schedule recomputed)", folder.path,
                 before, config.epochs)
    return ResumeState(saved, extended_from=before if before != config.epochs else None)
