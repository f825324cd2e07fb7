"""``train_classifier``: the orchestration behind ``train-classifier``.

It resolves the config, locks the run folder, opens the data and its splits
(``fdsl.train.splits``), builds the trainer (``fdsl.train.trainer``), runs the epochs and writes
the run folder (``fdsl.train.checkpoint``, ``fdsl.train.outputs``):

- ``config.yaml`` / ``config.json``: the resolved configuration (``--config`` reruns it);
- ``checkpoint.pt``: model, optimiser, schedule, epoch, RNG states of every rank, config (after
  every epoch; loads with ``torch.load(weights_only=True)``);
- ``model.safetensors``: the weights alone, torchvision/timm keys;
- ``metrics.jsonl``: one record per epoch; ``curves.png``; ``summary.json`` (also returned);
- ``predictions.csv``: per held-out image label, prediction, probability of the true class and
  metadata (``fdsl.train.predictions``), when the run has a held-out set.

Multi-GPU: ``torchrun --nproc_per_node N train-classifier ...`` (see ``fdsl.train.distributed``);
``batch_size`` is global. Rank 0 alone writes files and logs epoch lines.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fdsl import atomic
from fdsl.errors import FdslError
from fdsl.train import checkpoint as ckpt
from fdsl.train import outputs
from fdsl.train.checkpoint import CHECKPOINT, load_checkpoint
from fdsl.train.distributed import (
    Dist,
    barrier,
    broadcast_buffers,
    gather_objects,
    setup_distributed,
)
from fdsl.train.models import canonical_name
from fdsl.train.plots import read_metrics
from fdsl.train.recipes import TrainConfig, resolve_config, save_config
from fdsl.train.splits import Splits, open_splits, pruned
from fdsl.train.symmetry import without_flips_if_asymmetric

log = logging.getLogger(__name__)

# What callers (run-study) import from here besides train_classifier.
__all__ = ["CHECKPOINT", "load_checkpoint", "resolve_run_config", "train_classifier"]


def resolve_run_config(recipe: str = "fractaldb-resnet", *, model: str | None = None,
                       config_file: str | Path | None = None,
                       overrides: Mapping[str, Any] | None = None, **fields: Any) -> TrainConfig:
    """The config ``train_classifier`` would run with (``--print-config`` shows it)."""
    flags = dict(fields)
    if model is not None:
        flags["model"] = model
    config = resolve_config(recipe, config_file=config_file, flags=flags, sets=overrides)
    config.model = canonical_name(config.model)
    return config


@contextlib.contextmanager
def _run_folder(out: Path, ctx: Dist) -> Iterator[None]:
    """Rank 0 creates ``out`` (a bad --out fails at once) and holds its lock for the whole run."""
    if not ctx.main:
        yield
        return
    atomic.ensure_writable(out, "the run folder")
    with atomic.folder_lock(out):
        yield


def train_classifier(
    data: str | Path,
    out: str | Path,
    *,
    recipe: str = "fractaldb-resnet",
    model: str | None = None,
    finetune_from: str | Path | None = None,
    val_data: str | Path | None = None,
    device: str = "auto",
    resume: bool = False,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    stop_after_epochs: int | None = None,
    overwrite: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """Train (or fine-tune) a classifier on a shard folder or ImageFolder tree; return the summary.

    Args:
        data: training data folder (fdsl shards with manifest.json, or root/<class>/<image>).
        out: run folder (created and locked for the run; a second run on it is refused).
        recipe: preset name (``fractaldb-resnet``, ``fdsl-vit``, ``finetune``).
        model: architecture (resnet18/34/50, vit_tiny, timm:NAME); default: the recipe's.
        finetune_from: ``.pt``/``.pth`` (read with weights_only=True) or ``.safetensors`` file
            whose backbone initialises the model (a fresh head is used).
        val_data: held-out folder with the same classes; else ``val_indices`` or ``val_fraction``
            of ``data`` (stratified, seeded) is held out.
        device: ``auto`` (CUDA if available), ``cuda`` or ``cpu``.
        resume: continue the run in ``out`` from its checkpoint (same settings required).
        config_file: YAML/JSON mapping of config fields, or a run's ``config.yaml``.
        overrides: ``--set`` values (highest precedence).
        stop_after_epochs: stop after this many epochs of this call (for preemptible jobs);
            ``resume=True`` continues.
        overwrite: delete a previous run's outputs in ``out`` first (other files are kept).
        **fields: any ``TrainConfig`` field (epochs=, lr=, train_indices=, ...); None means
            "not given".

    Returns:
        The summary (also ``out/summary.json``): top1 (final held-out accuracy, None without a
        held-out set), best_top1, train_images (after subsetting and pruning), val_images,
        images_per_second, state_digest, and the analysis' entries (e.g. per_class_top1).

    Raises:
        FdslError: one-line problems (missing data, unknown model/recipe, unfit checkpoint,
            locked folder, full disk, ...).
    """
    started = time.perf_counter()
    config = resolve_run_config(recipe, model=model, config_file=config_file, overrides=overrides,
                                **fields)
    ctx, dev = setup_distributed(device)
    config = without_flips_if_asymmetric(config, data, announce=ctx.main)
    if config.batch_size % ctx.world_size:
        raise FdslError(f"batch size {config.batch_size} is not divisible by {ctx.world_size} processes")
    out = Path(out)
    for folder in (data, val_data):  # a typo in a data path creates no run folder
        if folder is not None and not Path(folder).is_dir():
            raise FdslError(f"data folder {folder} does not exist")
    with _run_folder(out, ctx):
        saved = _prepare_folder(out, config, ctx, resume=resume, overwrite=overwrite)
        splits = open_splits(data, val_data, config)
        splits.train_idx = pruned(splits.train_src, splits.train_idx, config)
        if len(splits.train_idx) == 0:
            raise FdslError(f"{data}: no training images left after holding out the validation split")
        extra = {"recipe": recipe, "data": str(data), "data_resolved": str(Path(data).resolve()),
                 "train_images": len(splits.train_idx),
                 "val_data": None if val_data is None else str(val_data),
                 "finetune_from": None if finetune_from is None else str(finetune_from),
                 "classes": splits.train_src.classes, "world_size": ctx.world_size}
        if saved is not None:
            ckpt.check_resume_data(saved, splits.train_src.classes, len(splits.train_idx), data, out)
            if saved.get("world_size", 1) != ctx.world_size:
                raise FdslError(f"--resume: the run in {out} used {saved.get('world_size', 1)} "
                                f"processes, this one has {ctx.world_size}")
        return _train(out, config, splits, extra, ctx, dev, saved, finetune_from,
                      stop_after_epochs, started)


def _prepare_folder(out: Path, config: TrainConfig, ctx: Dist, *, resume: bool,
                    overwrite: bool) -> dict[str, Any] | None:
    """Clear (``overwrite``) or read back (``resume``) the run folder; the saved checkpoint or None."""
    path = out / CHECKPOINT
    if ctx.main:
        # Temporary files of a killed run; the lock says no other process is writing them.
        for stale in out.glob(f".*{atomic.TMP_MARK}*"):
            atomic.remove_quietly(stale)
        if overwrite and not resume:
            outputs.remove_run_outputs(out)
    barrier()
    if resume:
        if not path.is_file():
            raise FdslError(f"--resume: no {CHECKPOINT} in {out}")
        saved = load_checkpoint(path)
        ckpt.check_resume(config.to_dict(), saved.get("config", {}), out)
        return saved
    if path.is_file():
        raise FdslError(f"{out} already holds a run; pass --resume to continue it, --overwrite to "
                        "replace it, or choose another --out")
    return None


def _train(out: Path, config: TrainConfig, splits: Splits, extra: dict[str, Any], ctx: Dist,
           dev: Any, saved: Mapping[str, Any] | None, finetune_from: str | Path | None,
           stop_after_epochs: int | None, started: float) -> dict[str, Any]:
    from fdsl.train.augment import base_side
    from fdsl.train.trainer import build_trainer

    src, train_idx, val_idx = splits.train_src, splits.train_idx, splits.val_idx
    per_rank_batch = config.batch_size // ctx.world_size
    if config.aug_repeats:
        from fdsl.train.repeat_sampler import repeated_loader

        train_loader = repeated_loader(src, train_idx, repeats=config.aug_repeats,
                                       batch_size=per_rank_batch, workers=config.workers,
                                       seed=config.seed, rank=ctx.rank, world_size=ctx.world_size)
    else:
        train_loader = src.loader(train_idx, batch_size=per_rank_batch, shuffle=True,
                                  workers=config.workers, seed=config.seed, rank=ctx.rank,
                                  world_size=ctx.world_size,
                                  drop_last=len(train_idx) > config.batch_size)
    # Evaluation: each rank reads its own disjoint slice (no padding), sums are all-reduced.
    val_loader = (splits.val_src.loader(val_idx[ctx.rank::ctx.world_size], batch_size=per_rank_batch,
                                        shuffle=False, workers=config.workers, seed=config.seed)
                  if len(val_idx) else None)
    base = base_side(config, src.native_side) if src.kind == "shards" else src.native_side
    trainer = build_trainer(config, len(src.classes), base, dev, ctx, len(train_loader),
                            finetune_from=None if saved is not None else finetune_from, saved=saved)
    if saved is not None:
        ckpt.set_rng_states(saved["rng"][ctx.rank])
        start_epoch = int(saved["epoch"]) + 1
    else:
        ckpt.seed_everything(config.seed, 1, ctx.rank)
        start_epoch = 0
    history = [m for m in read_metrics(out / outputs.METRICS) if m["epoch"] < start_epoch]
    board = None
    if ctx.main:
        board = outputs.TensorBoardLog(out) if config.tensorboard else None
        save_config(config, extra, out)
        outputs.write_metrics(out, history)
    last_epoch = (config.epochs if stop_after_epochs is None
                  else min(config.epochs, start_epoch + stop_after_epochs))
    try:
        for epoch in range(start_epoch, last_epoch):
            train_loader.set_epoch(epoch)
            record = {"epoch": epoch, "lr": trainer.schedule.lr, **trainer.train_epoch(train_loader, epoch)}
            broadcast_buffers(trainer.raw)
            if val_loader is not None:
                record.update(trainer.evaluate(val_loader))
            trainer.schedule.end_epoch(record.get("val_loss"))
            history.append(record)
            rngs = gather_objects(ckpt.rng_states())
            if ctx.main:
                _end_epoch(out, trainer, record, history, rngs, epoch, config, extra, board)
    finally:
        if board is not None:
            board.close()
    facts = {"epochs_done": last_epoch, "epochs": config.epochs, "model": config.model,
             "recipe": extra["recipe"], "data": extra["data"], "num_classes": len(src.classes),
             "train_images": len(train_idx), "val_images": len(val_idx),
             "seconds": round(time.perf_counter() - started, 2), "device": str(dev),
             "world_size": ctx.world_size, "state_digest": ckpt.state_digest(trainer.raw),
             "run_dir": str(out), "checkpoint": str(out / CHECKPOINT),
             "weights": str(out / ckpt.WEIGHTS)}
    summary = outputs.make_summary(history, facts)
    if ctx.main:
        ckpt.save_weights(trainer.raw, out / ckpt.WEIGHTS)
        summary.update(_analysis(out, trainer, splits, config))
        from fdsl.train.predictions import write_run_predictions

        predictions = write_run_predictions(out, trainer, splits, config)
        summary["predictions"] = None if predictions is None else str(predictions)
        outputs.write_summary(out, summary)
    return summary


def _end_epoch(out: Path, trainer: Any, record: dict[str, Any], history: list[dict[str, Any]],
               rngs: list[Any], epoch: int, config: TrainConfig, extra: Mapping[str, Any],
               board: outputs.TensorBoardLog | None) -> None:
    outputs.write_metrics(out, history)
    state = {"model": trainer.raw.state_dict(), "optimizer": trainer.optimizer.state_dict(),
             "schedule": trainer.schedule.state_dict(), "epoch": epoch, "rng": rngs,
             "config": config.to_dict(), "model_name": config.model, **extra}
    ckpt.save_checkpoint(state, out / CHECKPOINT)
    if config.save_every and (epoch + 1) % config.save_every == 0:
        ckpt.save_checkpoint(state, out / f"checkpoint-epoch{epoch + 1:03d}.pt")
    outputs.write_curves(out, history, title=f"{config.model} on {Path(extra['data']).name}")
    if board is not None:
        board.log(record)
    log.info("epoch %d/%d: %s", epoch + 1, config.epochs,
             ", ".join(f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float)))


def _analysis(out: Path, trainer: Any, splits: Splits, config: TrainConfig) -> dict[str, Any]:
    """Rank 0's error analysis of the whole held-out set (``fdsl.train.analysis``, when present)."""
    if not config.analysis or not len(splits.val_idx):
        return {}
    if importlib.util.find_spec("fdsl.train.analysis") is None:
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
    except outputs.DiskFullError:
        raise
    except Exception as exc:  # noqa: BLE001 - the trained model and summary matter more
        log.warning("analysis of the held-out set failed: %s", exc)
        return {"analysis_error": f"{type(exc).__name__}: {exc}"}
