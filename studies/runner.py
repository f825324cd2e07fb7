"""How a study runs: cells (one ``train_classifier`` run each), the study folder (its settings,
its lock, resume) and running cells in parallel. Statistics live in ``fdsl.studies.statistics``,
tables and plots in ``fdsl.studies.report``.

A cell is done when its run folder holds a readable ``summary.json``; a cell with a
``checkpoint.pt`` but no summary was killed mid-run and continues from that checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.atomic import check_output_folder, folder_lock, write_bytes_atomic
from fdsl.errors import FdslError

log = logging.getLogger(__name__)

STUDY_FILE = "study.json"
RUNS = "runs"
INDICES = "indices"
# Files and folders a study writes; --overwrite removes exactly these (imported data sets stay).
STUDY_OUTPUTS = (RUNS, INDICES, "split", "table.md", "results.csv", "results.png", "results.json",
                 "difference.png", "premise.csv", "premise.png", "scatter.png", "candidates.csv")
BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Cell:
    """One training run of a study: where it goes, what it trains on and the results.csv columns."""

    out: str
    data: str
    recipe: str
    row: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)
    val_data: str | None = None
    finetune_from: str | None = None
    threads: int | None = None  # torch CPU threads of the run (None: torch's default)
    device: str = "auto"
    # False: delete checkpoint.pt and model.safetensors once summary.json is written (a study of
    # hundreds of ResNet runs would otherwise leave tens of GB that nothing reads)
    keep_checkpoint: bool = True

    def __str__(self) -> str:
        return Path(self.out).name


def read_summary(run: str | Path) -> dict[str, Any] | None:
    """The run's summary.json, or None while the run is unfinished (missing or half-written)."""
    try:
        return json.loads((Path(run) / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def run_cell(cell: Cell, progress: bool = True) -> dict[str, Any]:
    """Train one cell (resuming it when it was interrupted) and return its results.csv row;
    ``progress`` False: no progress bar or lines from its training (``--quiet``)."""
    summary = read_summary(cell.out)
    if summary is None:
        import torch

        from fdsl.train.checkpoint import WEIGHTS
        from fdsl.train.loop import CHECKPOINT, train_classifier

        if cell.threads:
            torch.set_num_threads(cell.threads)
        resume = (Path(cell.out) / CHECKPOINT).is_file()
        log.info("%s %s", "resuming" if resume else "training", cell.out)
        summary = train_classifier(cell.data, cell.out, recipe=cell.recipe, val_data=cell.val_data,
                                   finetune_from=None if resume else cell.finetune_from,
                                   device=cell.device, resume=resume,
                                   overwrite=not resume, overrides=cell.overrides, progress=progress)
        if not cell.keep_checkpoint:
            for name in (CHECKPOINT, WEIGHTS):
                (Path(cell.out) / name).unlink(missing_ok=True)
    return {**cell.row, "top1": summary["top1"], "train_images": summary["train_images"],
            "val_images": summary["val_images"], "epochs": summary["epochs_done"],
            "final_train_loss": summary.get("final_train_loss"), "seconds": summary["seconds"],
            "run": str(cell.out)}


def run_cells(cells: Sequence[Cell], *, jobs: int = 1, backend: str = "local",
              desc: str = "runs", progress: bool = True) -> list[dict[str, Any]]:
    """Run every cell (finished ones are only read) with ``jobs`` local processes or Ray tasks;
    the rows come back in the order of ``cells``. ``progress`` False: no progress bars or lines,
    the study's nor its runs' (``--quiet``)."""
    from fdsl.datasets.builder.jobs import run_tasks

    if backend not in BACKENDS:
        raise FdslError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    done = {cell.out: read_summary(cell.out) is not None for cell in cells}
    log.info("%s: %d of %d runs already finished", desc, sum(done.values()), len(cells))
    rows: dict[str, dict[str, Any]] = {}

    def collect(cell: Cell, row: dict[str, Any]) -> int:
        rows[cell.out] = row
        return 1

    # Finished cells are read here; only the others go to workers (a spawned process costs seconds).
    for cell in cells:
        if done[cell.out]:
            collect(cell, run_cell(cell))
    todo = [cell for cell in cells if not done[cell.out]]
    if todo:
        run_tasks(functools.partial(run_cell, progress=progress), todo, collect, backend=backend,
                  workers=jobs, retries=1, total_items=len(todo), unit="run", desc=desc, progress=progress)
    return [rows[cell.out] for cell in cells]


def cell_threads(jobs: int, threads: int | None) -> int | None:
    """Torch threads per run: as asked, else the cores shared out among ``jobs`` parallel runs."""
    if threads or jobs <= 1:
        return threads
    from fdsl.datasets.builder.jobs import default_workers

    return max(1, default_workers() // jobs)


def resolve_preset(preset: str | Mapping[str, Any], presets: Mapping[str, Mapping[str, Any]]) -> tuple[str, dict]:
    """(name, settings) of a named preset, or ``("custom", preset)`` for a mapping with the same
    keys as the named ones (tests and scripts pass their own settings this way)."""
    if isinstance(preset, str):
        if preset not in presets:
            raise FdslError(f"unknown preset {preset!r}; choose one of {', '.join(presets)}")
        return preset, json.loads(json.dumps(presets[preset]))
    keys = set(next(iter(presets.values())))
    if set(preset) != keys:
        wrong = sorted(set(preset) ^ keys)
        raise FdslError(f"a preset mapping needs exactly the keys {', '.join(sorted(keys))} (not {wrong[0]!r})")
    return "custom", json.loads(json.dumps(preset))


def read_metrics(run: str | Path) -> list[dict[str, Any]]:
    """A run folder's per-epoch records (train-classifier's ``metrics.jsonl``, read by its reader)."""
    from fdsl.train.metrics import METRICS
    from fdsl.train.metrics import read_metrics as read_file

    return read_file(Path(run) / METRICS)


def training_steps(train_images: int, batch_size: int, epochs: int) -> int:
    """Optimiser steps of a single-process run: train-classifier drops the last short batch of an
    epoch when there is more than one batch."""
    return max(1, train_images // batch_size) * epochs


# ---------------------------------------------------------------- the study folder


def _first_difference(old: Any, new: Any, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
    return f"{path or 'settings'}: {old!r} then, {new!r} now"


def _old_study(out: Path, record: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """The study record in ``out`` (None: none); FdslError when it is another study's and not
    ``overwrite``."""
    path = out / STUDY_FILE
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text())
    except ValueError:
        old = {}
    if old != record and not overwrite:
        held = f"an earlier {old['study']} study" if old.get("study") else "a study"
        raise FdslError(f"{out} holds {held} made with other "
                        f"settings ({_first_difference(old, record)}); use --overwrite to "
                        "replace it, or another --out")
    return old


@contextlib.contextmanager
def study_folder(out: str | Path, kind: str, settings: Mapping[str, Any], *,
                 overwrite: bool = False) -> Iterator[Path]:
    """Hold ``out`` for one study: lock it, refuse a study made with other settings (unless
    ``overwrite``, which removes that study's runs and outputs), record ``settings``."""
    out = Path(out)
    record = json.loads(json.dumps({"study": kind, "settings": dict(settings)}))
    check_output_folder(out)  # the refusals before the folder is made and locked: it stays as it was
    _old_study(out, record, overwrite)
    with folder_lock(out):
        path = out / STUDY_FILE
        old = _old_study(out, record, overwrite)
        if old is not None and old != record:
            log.warning("--overwrite: removing the previous study's runs in %s", out)
            for name in STUDY_OUTPUTS:
                target = out / name
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
        write_json(path, record)
        yield out


def write_json(path: str | Path, data: Any) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, (json.dumps(data, indent=1) + "\n").encode())


def write_indices(path: str | Path, rows: np.ndarray) -> str:
    """Row positions as a JSON list (train-classifier's train_indices / val_indices file)."""
    write_json(path, [int(r) for r in rows])
    return str(path)
