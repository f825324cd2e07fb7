"""``predictions.csv``: the trained model's answer for every held-out image of a run.

Written by rank 0 at the end of every run that has a held-out set, atomically
(``fdsl.train.outputs.write_file``). One row per evaluated image, in the order of the held-out
rows; columns ``index,label,prediction,prob_true``, then every metadata field of the evaluation
data set (in the data set's order; ImageFolder trees have one, ``file``, the image's path under
the root). ``index`` is the image's index in the evaluation data set, ``prob_true`` the softmax
probability of the true class. A metadata field named like one of the first four columns is
written as ``meta_<name>``; a field with several values per image is written as a JSON list.
Studies read it to relate accuracy to per-image metadata (e.g. top-1 by area decile).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fdsl.train.outputs import write_file

PREDICTIONS = "predictions.csv"
COLUMNS = ("index", "label", "prediction", "prob_true")


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
            prepare: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
            autocast: Callable[[], Any] = contextlib.nullcontext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels int64 [N], predictions int64 [N], probability of the true class float64 [N]) of
    every batch of ``loader`` (uint8 images, int64 labels), in order; the model's mode is kept."""
    was_training = model.training
    model.eval()
    labels, preds, probs = [], [], []
    try:
        for images, target in loader:
            images, target = images.to(device), target.to(device)
            with autocast():
                logits = model(prepare(images))
            p = torch.softmax(logits.float(), dim=1)
            labels.append(target.cpu())
            preds.append(p.argmax(1).cpu())
            probs.append(p.gather(1, target.view(-1, 1)).squeeze(1).double().cpu())
    finally:
        model.train(was_training)
    if not labels:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    return (torch.cat(labels).numpy().astype(np.int64), torch.cat(preds).numpy().astype(np.int64),
            torch.cat(probs).numpy())


def metadata_columns(dataset: Any, root: Path, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Every metadata field of ``dataset`` at ``rows`` (ImageFolder: the file under ``root``)."""
    fields = getattr(dataset, "metadata", None)
    if isinstance(fields, dict):
        return {name: np.asarray(values)[rows] for name, values in fields.items()}
    files = getattr(dataset, "files", None)
    if files is not None:
        return {"file": np.asarray([Path(files[i]).relative_to(root).as_posix() for i in rows])}
    return {}


def _cell(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return json.dumps(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value) if isinstance(value, float) else value


def predictions_csv(indices: np.ndarray, labels: np.ndarray, preds: np.ndarray, prob_true: np.ndarray,
                    metadata: dict[str, np.ndarray]) -> bytes:
    """The file's bytes: header, then one row per image."""
    names = {name: (f"meta_{name}" if name in COLUMNS else name) for name in metadata}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*COLUMNS, *names.values()])
    for k in range(len(indices)):
        writer.writerow([int(indices[k]), int(labels[k]), int(preds[k]), repr(float(prob_true[k])),
                         *(_cell(values[k]) for values in metadata.values())])
    return buffer.getvalue().encode()


def write_predictions(out: Path, model: nn.Module, source: Any, indices: np.ndarray,
                      loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                      prepare: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                      autocast: Callable[[], Any] = contextlib.nullcontext) -> Path:
    """Predict ``loader`` (the held-out rows ``indices`` of ``source``, a ``DataSource``, in order)
    and write ``out/predictions.csv``; returns its path."""
    labels, preds, probs = predict(model, loader, prepare=prepare, device=device, autocast=autocast)
    indices = np.asarray(indices, np.int64)
    if len(labels) != len(indices) or not np.array_equal(labels, np.asarray(source.labels)[indices]):
        raise RuntimeError(f"held-out loader gave {len(labels)} images in another order than the "
                           f"{len(indices)} held-out rows")
    metadata = metadata_columns(source.dataset, Path(source.path), indices)
    path = Path(out) / PREDICTIONS
    write_file(path, predictions_csv(indices, labels, preds, probs, metadata))
    return path


def write_run_predictions(out: Path, trainer: Any, splits: Any, config: Any) -> Path | None:
    """``predictions.csv`` of a finished run (``fdsl.train.loop``): its trainer, splits and config;
    None when the run has no held-out set."""
    if not len(splits.val_idx):
        return None
    loader = splits.val_src.loader(splits.val_idx, batch_size=config.batch_size // trainer.ctx.world_size,
                                   shuffle=False, workers=config.workers, seed=config.seed)
    return write_predictions(out, trainer.raw, splits.val_src, splits.val_idx, loader,
                             prepare=trainer.eval_inputs, device=trainer.device,
                             autocast=trainer.autocast)
