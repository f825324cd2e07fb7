"""Stage 2 of a run: the run folder. Where it is, what it holds, and claiming it for the run.

``plan_run_folder`` only looks: it refuses a path that is a file, a folder another fdsl run holds,
a finished run without ``--resume``/``--overwrite`` and ``--resume`` without a checkpoint, and
creates nothing. ``claim_run_folder`` runs after every input of the run has been checked: rank 0
creates the folder, locks it for the whole run, removes temporary files of killed runs and, with
``--overwrite``, the previous run's outputs. So a refused run leaves no folder, no lock file and
no change behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fdsl import atomic
from fdsl.errors import FdslError
from fdsl.train.checkpoint import CHECKPOINT, WEIGHTS
from fdsl.train.distributed import Dist, barrier
from fdsl.train.metrics import METRICS, SUMMARY

CURVES = "curves.png"
RUN_OUTPUTS = (CHECKPOINT, WEIGHTS, METRICS, SUMMARY, CURVES, "config.yaml", "config.json",
               "predictions.csv")


@dataclass
class RunFolder:
    """A checked run folder (maybe not created yet) and what this run does with it."""

    path: Path
    resume: bool = False
    overwrite: bool = False
    stamp: tuple[int, int, int] | None = None  # atomic.file_stamp of the checkpoint seen when checked

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT


def plan_run_folder(out: str | Path, *, resume: bool = False, overwrite: bool = False) -> RunFolder:
    """Check ``out`` for this run without creating or changing anything (FdslError, one line)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise FdslError(f"cannot write to the run folder {path}: it is a file, not a folder")
    if path.is_dir() and atomic.folder_busy(path):
        raise atomic.locked_error(path)
    checkpoint = path / CHECKPOINT
    if resume and not checkpoint.is_file():
        raise FdslError(f"--resume: no {CHECKPOINT} in {path}")
    if not resume and not overwrite and checkpoint.is_file():
        raise FdslError(f"{path} already holds a run; pass --resume to continue it, --overwrite to "
                        "replace it, or choose another --out")
    return RunFolder(path, resume=resume, overwrite=overwrite and not resume, stamp=atomic.file_stamp(checkpoint))


def remove_run_outputs(out: Path) -> None:
    """Delete a previous run's files (``--overwrite``); other files in ``out`` are kept."""
    for name in RUN_OUTPUTS:
        (out / name).unlink(missing_ok=True)
    for old in out.glob("checkpoint-epoch*.pt"):
        old.unlink()


@contextlib.contextmanager
def claim_run_folder(folder: RunFolder, ctx: Dist) -> Iterator[None]:
    """Hold the run folder for the ``with`` body: rank 0 creates and locks it, then clears what a
    killed run left (and the old outputs under ``--overwrite``); every rank waits for that."""
    if not ctx.main:
        barrier()
        yield
        return
    atomic.ensure_writable(folder.path, "the run folder")
    with atomic.folder_lock(folder.path):
        if atomic.file_stamp(folder.checkpoint) != folder.stamp:  # another run came and went since the check
            raise FdslError(f"{folder.checkpoint} changed while this run was starting; run again")
        # Temporary files of a killed run; the lock says no other process is writing them.
        for stale in folder.path.glob(f".*{atomic.TMP_MARK}*"):
            atomic.remove_quietly(stale)
        if folder.overwrite:
            remove_run_outputs(folder.path)
        barrier()
        yield
