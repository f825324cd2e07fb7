"""``train_classifier``: the orchestration behind ``train-classifier``.

A run is prepared in one pass, each stage once, in this order; nothing is created or changed
before every input has been checked, so a refused run leaves no trace:

1. config (``fdsl.train.runconfig``, ``fdsl.train.recipes``): recipe < a saved run's or
   ``--config`` fields < flags < ``--set``; the data paths of a saved run;
2. run folder (``fdsl.train.rundir``): checked, not yet created;
3. data and splits (``fdsl.train.splits``, ``fdsl.train.data``): rows of each side, pruning, loaders;
4. resume state (``fdsl.train.resume``): the checkpoint a resumed run continues from;
5. model, optimiser and schedule (``fdsl.train.trainer``);
6. train: claim the run folder (create, lock, clean), then the epochs.

The run folder receives:

- ``config.yaml`` / ``config.json``: the resolved configuration (``--config`` reruns it);
- ``checkpoint.pt``: model, optimiser, schedule, epoch, RNG states of every rank, config (after
  every epoch; loads with ``torch.load(weights_only=True)``);
- ``model.safetensors``: the weights alone, torchvision/timm keys;
- ``metrics.jsonl``: one record per epoch; ``curves.png``; ``summary.json`` (also returned);
- ``predictions.csv``: per held-out image label, prediction, probability of the true class and
  metadata (``fdsl.train.predictions``), when the run has a held-out set;
- ``confusion.json`` / ``.png``, ``misclassified.png``, ``attention_maps.png``: the error
  analysis of the held-out set (``fdsl.train.analysis``), unless ``analysis`` is off.

Multi-GPU: ``torchrun --nproc_per_node N train-classifier ...`` (see ``fdsl.train.distributed``);
``batch_size`` is global. Rank 0 alone writes files and logs epoch lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fdsl.errors import FdslError
from fdsl.train import checkpoint as ckpt
from fdsl.train import metrics, seeding
from fdsl.train.checkpoint import CHECKPOINT, load_checkpoint
from fdsl.train.distributed import (
    Dist,
    broadcast_buffers,
    broadcast_object,
    gather_objects,
    setup_distributed,
)
from fdsl.train.figures import curves_png
from fdsl.train.outputs import DiskFullError, write_file
from fdsl.train.recipes import TrainConfig, save_config
from fdsl.train.resume import ResumeState, load_resume_state
from fdsl.train.runconfig import resolve_run, resolve_run_config
from fdsl.train.rundir import CURVES, claim_run_folder, plan_run_folder
from fdsl.train.splits import Splits, make_loaders, open_splits
from fdsl.train.symmetry import without_flips_if_asymmetric

log = logging.getLogger(__name__)

# What callers (run-study) import from here besides train_classifier.
__all__ = ["CHECKPOINT", "load_checkpoint", "resolve_run_config", "train_classifier"]


def train_classifier(
    data: str | Path | None = None,
    out: str | Path | None = None,
    *,
    recipe: str | None = None,
    model: str | None = None,
    finetune_from: str | Path | None = None,
    val_data: str | Path | None = None,
    device: str = "auto",
    resume: bool | str | Path = False,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    stop_after_epochs: int | None = None,
    overwrite: bool = False,
    log_interval: int = 50,
    progress: bool = True,
    **fields: Any,
) -> dict[str, Any]:
    """Train (or fine-tune) a classifier on a shard folder or ImageFolder tree; return the summary.

    Args:
        data: training data folder (fdsl shards with manifest.json, or root/<class>/<image>);
            default: the data of the run named by ``resume`` or ``config_file``.
        out: run folder (created and locked for the run; a second run on it is refused);
            default: the run ``resume`` names, or a fresh folder beside the run whose
            ``config.yaml`` is ``config_file`` (``RUN-rerun``, ``RUN-rerun-2``, ...).
        recipe: preset name (``fractaldb-resnet``, ``fdsl-vit``, ``finetune``); default: the saved
            run's, else ``fractaldb-resnet``.
        model: architecture (resnet18/34/50, vit_tiny, timm:NAME); default: the recipe's.
        finetune_from: ``.pt``/``.pth`` (read with weights_only=True) or ``.safetensors`` file
            whose backbone initialises the model (a fresh head is used).
        val_data: held-out folder with the same classes; else ``val_indices`` or ``val_fraction``
            of ``data`` (stratified, seeded) is held out.
        device: ``auto`` (CUDA if available), ``cuda`` or ``cpu``.
        resume: continue a run from its checkpoint with the settings of its ``config.yaml``: a run
            folder (or its ``checkpoint.pt``), or True for ``out``. Given fields must agree with
            the run, except a larger ``epochs``, which extends it (schedule recomputed, as timm).
        config_file: YAML/JSON mapping of config fields, or a run's ``config.yaml`` (which also
            holds the run's data paths and recipe: it reruns the run alone).
        overrides: ``--set`` values (highest precedence).
        stop_after_epochs: stop after this many epochs of this call (for preemptible jobs);
            ``resume`` continues.
        overwrite: delete a previous run's outputs in ``out`` first (other files are kept).
        log_interval: training steps between progress lines in batch logs (timm's
            ``--log-interval``; 0: only every FDSL_PROGRESS_INTERVAL seconds).
        progress: False hides progress bars and lines (``--quiet``).
        **fields: any ``TrainConfig`` field (epochs=, lr=, train_indices=, ...); None means
            "not given".

    Returns:
        The summary (also ``out/summary.json``): top1 (final held-out accuracy, None without a
        held-out set; top5 too with more than 5 classes), best_top1, train_images (after
        subsetting and pruning), val_images, images_per_second, state_digest, and the analysis'
        entries (e.g. per_class_top1).

    Raises:
        FdslError: one-line problems (missing data, unknown model/recipe, unfit checkpoint,
            locked folder, full disk, ...); nothing is created or changed in ``out`` then, unless
            the problem arises during training (a full disk).
    """
    started = time.perf_counter()
    ctx, dev = setup_distributed(device)
    # 1. config
    spec = resolve_run(data, out, recipe=recipe, model=model, finetune_from=finetune_from,
                       val_data=val_data, resume=resume, config_file=config_file,
                       overrides=overrides, **fields)
    config = spec.config
    if spec.data is None:
        raise FdslError("required: --data (the training data), unless --resume RUN or --config "
                        "RUN/config.yaml names a run")
    if spec.out is None:
        raise FdslError("required: --out (the run folder), unless --resume RUN or --config "
                        "RUN/config.yaml names a run")
    config = without_flips_if_asymmetric(config, spec.data, announce=ctx.main)
    if config.batch_size % ctx.world_size:
        raise FdslError(f"batch size {config.batch_size} is not divisible by {ctx.world_size} processes")
    if config.tensorboard:
        metrics.require_tensorboard()
    # 2. run folder: checked, created only once every input has been checked
    folder = plan_run_folder(broadcast_object(spec.out), resume=spec.resume, overwrite=overwrite)
    # 3. data and splits
    splits = open_splits(spec.data, spec.val_data, config)
    train_loader, val_loader = make_loaders(splits, config, ctx, dev)
    # 4. resume state
    state = load_resume_state(folder, config, splits, ctx.world_size)
    # 5. model, optimiser and schedule
    trainer = _build_trainer(config, splits, dev, ctx, len(train_loader), spec.finetune_from, state)
    trainer.log_interval, trainer.show_progress = log_interval, progress
    # 6. train
    extra = {"recipe": spec.recipe, "data": str(spec.data), "data_resolved": str(spec.data),
             "train_images": len(splits.train_idx),
             "val_data": None if spec.val_data is None else str(spec.val_data),
             "finetune_from": None if spec.finetune_from is None else str(spec.finetune_from),
             "classes": splits.train_src.classes, "world_size": ctx.world_size,
             "ddp": ctx.launched}
    with claim_run_folder(folder, ctx):
        return _run_epochs(folder.path, config, trainer, splits, (train_loader, val_loader), extra,
                           state, stop_after_epochs, started)


def _build_trainer(config: TrainConfig, splits: Splits, dev: Any, ctx: Dist, steps_per_epoch: int,
                   finetune_from: str | Path | None, state: ResumeState | None) -> Any:
    from fdsl.train.augment import base_side
    from fdsl.train.trainer import build_trainer

    src = splits.train_src
    base = base_side(config, src.native_side) if src.kind == "shards" else src.native_side
    return build_trainer(config, len(src.classes), base, dev, ctx, steps_per_epoch,
                         finetune_from=None if state is not None else finetune_from,
                         saved=None if state is None else state.saved)


def _run_epochs(out: Path, config: TrainConfig, trainer: Any, splits: Splits, loaders: tuple[Any, Any],
                extra: dict[str, Any], state: ResumeState | None, stop_after_epochs: int | None,
                started: float) -> dict[str, Any]:
    ctx = trainer.ctx
    train_loader, val_loader = loaders
    seeding.start_training_rng(config.seed, ctx.rank, None if state is None else state.saved["rng"])
    done = 0 if state is None else state.epochs_done  # epochs count from 1 everywhere
    history = [m for m in metrics.read_metrics(out / metrics.METRICS) if m["epoch"] <= done]
    board = None
    if ctx.main:
        board = metrics.TensorBoardLog(out) if config.tensorboard else None
        save_config(config, extra, out)
        metrics.write_metrics(out, history)
    last_epoch = (config.epochs if stop_after_epochs is None
                  else min(config.epochs, done + stop_after_epochs))
    try:
        for epoch in range(done + 1, last_epoch + 1):
            train_loader.set_epoch(epoch - 1)  # the sampler's seeded order counts from 0
            record = {"epoch": epoch, "lr": trainer.schedule.lr, **trainer.train_epoch(train_loader, epoch)}
            broadcast_buffers(trainer.raw)
            if val_loader is not None:
                record.update(trainer.evaluate(val_loader))
            trainer.schedule.end_epoch(record.get("val_loss"))
            history.append(record)
            rngs = gather_objects(seeding.rng_states())
            if ctx.main:
                _end_epoch(out, trainer, record, history, rngs, epoch, config, extra, board)
    finally:
        if board is not None:
            board.close()
    src = splits.train_src
    facts = {"epochs_done": last_epoch, "epochs": config.epochs, "model": config.model,
             "recipe": extra["recipe"], "data": extra["data"], "num_classes": len(src.classes),
             "train_images": len(splits.train_idx), "val_images": len(splits.val_idx),
             "seconds": round(time.perf_counter() - started, 2), "device": str(trainer.device),
             "world_size": ctx.world_size, "ddp": extra["ddp"],
             "state_digest": ckpt.state_digest(trainer.raw), "run_dir": str(out), "checkpoint": str(out / CHECKPOINT),
             "weights": str(out / ckpt.WEIGHTS)}
    summary = metrics.make_summary(history, facts)
    if ctx.main:
        ckpt.save_weights(trainer.raw, out / ckpt.WEIGHTS)
        summary.update(_analysis(out, trainer, splits, config))
        from fdsl.train.predictions import write_run_predictions

        predictions = write_run_predictions(out, trainer, splits, config)
        summary["predictions"] = None if predictions is None else str(predictions)
        metrics.write_summary(out, summary)
    return summary


def _end_epoch(out: Path, trainer: Any, record: dict[str, Any], history: list[dict[str, Any]],
               rngs: list[Any], epoch: int, config: TrainConfig, extra: Mapping[str, Any],
               board: metrics.TensorBoardLog | None) -> None:
    metrics.write_metrics(out, history)
    state = {"model": trainer.raw.state_dict(), "optimizer": trainer.optimizer.state_dict(),
             "schedule": trainer.schedule.state_dict(), "epoch": epoch, "rng": rngs,
             "config": config.to_dict(), "model_name": config.model, **extra}
    ckpt.save_checkpoint(state, out / CHECKPOINT)
    if config.save_every and epoch % config.save_every == 0:
        ckpt.save_checkpoint(state, out / f"checkpoint-epoch{epoch:03d}.pt")
    write_file(out / CURVES, curves_png(history, title=f"{config.model} on {Path(extra['data']).name}"))
    if board is not None:
        board.log(record)
    log.info("epoch %d/%d: %s", epoch, config.epochs,
             ", ".join(f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float)))


def _analysis(out: Path, trainer: Any, splits: Splits, config: TrainConfig) -> dict[str, Any]:
    """Rank 0's error analysis of the whole held-out set (``fdsl.train.analysis``)."""
    if not config.analysis or not len(splits.val_idx):
        return {}
    from fdsl.train.analysis import write_run_analysis

    # loader: every held-out row once, in order, as (uint8 [B,C,H,W], int64 [B]) CPU batches;
    # prepare: uint8 batch already on `device` -> the normalised, centre-cropped float input
    # (channels_last when on) that evaluation feeds the model; model: the plain module, eval mode.
    loader = splits.val_src.loader(splits.val_idx, batch_size=config.batch_size // trainer.ctx.world_size,
                                   shuffle=False, workers=config.workers, seed=config.seed)
    try:
        return write_run_analysis(out, trainer.raw.eval(), loader, splits.train_src.classes,
                                  prepare=trainer.eval_inputs, device=trainer.device,
                                  model_name=config.model)
    except DiskFullError:
        raise
    except Exception as exc:  # noqa: BLE001 - the trained model and summary matter more
        log.warning("analysis of the held-out set failed: %s", exc)
        return {"analysis_error": f"{type(exc).__name__}: {exc}"}
