"""The training loop behind ``train-classifier``: pre-training, fine-tuning, resume, DDP.

``train_classifier`` opens the data (shards or ImageFolder), builds the model, optionally loads a
backbone from a checkpoint with a fresh head, trains with device-side augmentation (optionally
self-paced) and writes a run folder:

- ``config.yaml`` / ``config.json``: the resolved configuration;
- ``checkpoint.pt``: model, optimiser, schedule, epoch, RNG states, config (after every epoch);
- ``metrics.jsonl``: one record per epoch; ``curves.png``: loss/accuracy curves;
- ``summary.json``: the final top-1 accuracy and run facts (also returned).

Multi-GPU: launch with ``torchrun --nproc_per_node N train-classifier ...``; RANK, WORLD_SIZE and
LOCAL_RANK are read from the environment (nccl on CUDA, gloo on CPU). ``batch_size`` is global.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from fdsl.errors import FdslError
from fdsl.train import data as data_mod
from fdsl.train.augment import DeviceAugment, base_side, one_hot, soft_cross_entropy
from fdsl.train.models import build_model, canonical_name, load_backbone
from fdsl.train.plots import plot_curves, read_metrics
from fdsl.train.recipes import TrainConfig, resolve_config, save_config

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
# Fields a resumed run may change: they do not alter what is computed.
RUNTIME_FIELDS = {"workers", "compile", "save_every"}


# ---------------------------------------------------------------- distributed / device


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_flag: str) -> tuple[Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    ctx = Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = _pick_device(device_flag, ctx.local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ctx, device


def _pick_device(flag: str, local_rank: int) -> torch.device:
    if flag not in ("auto", "cpu", "cuda"):
        raise FdslError(f"unknown device {flag!r}; choose auto, cpu or cuda")
    if flag == "cuda" and not torch.cuda.is_available():
        raise FdslError("--device cuda asked for, but torch sees no CUDA device")
    if flag == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def _seed_everything(seed: int, *parts: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) from (seed, *parts)."""
    value = int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def rng_states() -> dict[str, Any]:
    """The RNG states of python, numpy and torch (and CUDA when present)."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(),
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# ---------------------------------------------------------------- learning-rate schedule


class LRSchedule:
    """Per-iteration learning rate: linear warm-up, then step / cosine / plateau / constant.

    ``step_iteration`` after every optimiser step; ``end_epoch(val_loss)`` after evaluation
    (drives the plateau schedule).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> None:
        self.optimizer, self.config = optimizer, config
        self.steps_per_epoch = max(steps_per_epoch, 1)
        self.iteration, self.plateau_factor, self.best, self.bad_epochs = 0, 1.0, math.inf, 0
        self._apply()

    def factor(self) -> float:
        cfg, epoch_pos = self.config, self.iteration / self.steps_per_epoch
        if cfg.warmup_epochs > 0 and epoch_pos < cfg.warmup_epochs:
            return (self.iteration + 1) / (cfg.warmup_epochs * self.steps_per_epoch)
        if cfg.schedule == "step":
            epoch = self.iteration // self.steps_per_epoch
            return cfg.gamma ** sum(epoch >= round(f * cfg.epochs) for f in cfg.step_at)
        if cfg.schedule == "cosine":
            span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
            progress = min(max(epoch_pos - cfg.warmup_epochs, 0.0) / span, 1.0)
            floor = cfg.min_lr / cfg.lr
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        if cfg.schedule == "plateau":
            return self.plateau_factor
        return 1.0

    def _apply(self) -> None:
        lr = self.config.lr * self.factor()
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def step_iteration(self) -> None:
        self.iteration += 1
        self._apply()

    def end_epoch(self, val_loss: float | None) -> None:
        if self.config.schedule != "plateau" or val_loss is None:
            return
        if val_loss < self.best - 1e-4:
            self.best, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs > self.config.plateau_patience:
                self.plateau_factor *= self.config.gamma
                self.bad_epochs = 0
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "plateau_factor": self.plateau_factor,
                "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.iteration, self.plateau_factor = state["iteration"], state["plateau_factor"]
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]
        self._apply()


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (weight decay on every weight, as the FractalDB paper) or AdamW (no decay on biases,
    norms, position embeddings and class token, as DeiT)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        skip = param.ndim <= 1 or name.endswith(("pos_embed", "cls_token"))
        (no_decay if skip else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr)


# ---------------------------------------------------------------- self-paced augmentation


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Inside: BatchNorm layers normalise with the batch's statistics (as in training) but do not
    update their running statistics or batch counters. The official self-paced code updates them
    during the loss pass, which counts every batch twice; this avoids it."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.track_running_stats for m in norms]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m, flag in zip(norms, saved, strict=True):
            m.track_running_stats = flag


def per_sample_loss(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                    num_classes: int, autocast: Any = contextlib.nullcontext) -> torch.Tensor:
    """Loss of each sample of an un-augmented batch: float32 [B]; no gradients, no BN update."""
    with torch.no_grad(), frozen_bn_stats(model), autocast():
        logits = model(inputs)
    return soft_cross_entropy(logits, one_hot(labels, num_classes), reduction="none")


def self_paced_flags(losses: torch.Tensor, threshold: float) -> torch.Tensor:
    """Which samples to augment: loss >= threshold (bool [B]; a threshold <= 0 flags all)."""
    return losses >= threshold


# ---------------------------------------------------------------- one epoch


@dataclass
class Trainer:
    config: TrainConfig
    model: nn.Module  # possibly DDP-wrapped / compiled
    raw: nn.Module  # the plain module (state_dict, self-paced loss pass)
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    augment: DeviceAugment
    device: torch.device
    num_classes: int
    ctx: Dist

    def autocast(self) -> Any:
        if self.device.type == "cuda" and self.config.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda" and self.config.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One optimiser step; returns (loss sum, correct, augmented count) as device tensors."""
        cfg = self.config
        x = self.augment.prepare(images)
        if cfg.self_paced_threshold > 0:
            losses = per_sample_loss(self.raw, self._layout(self.augment.plain(x)), labels,
                                     self.num_classes, self.autocast)
            flagged = self_paced_flags(losses, cfg.self_paced_threshold)
            inputs, target = self.augment.self_paced(x, labels, flagged)
        else:
            flagged = torch.ones_like(labels, dtype=torch.bool)
            inputs, target = self.augment.augment(x, labels)
        with self.autocast():
            logits = self.model(self._layout(inputs))
        loss = soft_cross_entropy(logits, target, cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.schedule.step_iteration()
        correct = (logits.detach().argmax(1) == labels).sum()
        return loss.detach() * len(labels), correct, flagged.sum()

    def train_epoch(self, loader: Any, epoch: int) -> dict[str, float]:
        self.model.train()
        # Sums stay on the device until the epoch ends: no per-step host sync.
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)
        count = 0
        start = time.perf_counter()
        bar = tqdm(_on_device(loader, self.device), total=len(loader), desc=f"epoch {epoch + 1}",
                   disable=None if self.ctx.main else True, leave=False)
        for images, labels in bar:
            loss_sum, correct, augmented = self.train_step(images, labels)
            totals += torch.stack([loss_sum.double(), correct.double(), augmented.double()])
            count += len(labels)
        totals = _all_reduce(torch.cat([totals, totals.new_tensor([count])]))
        seconds = time.perf_counter() - start
        n = max(float(totals[3]), 1.0)
        return {"train_loss": float(totals[0]) / n, "train_top1": float(totals[1]) / n,
                "augmented_fraction": float(totals[2]) / n, "train_images": int(totals[3]),
                "train_seconds": seconds, "images_per_second": float(totals[3]) / max(seconds, 1e-9)}

    @torch.no_grad()
    def evaluate(self, loader: Any) -> dict[str, float]:
        self.model.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        count = 0
        for images, labels in _on_device(loader, self.device):
            inputs = self._layout(self.augment.plain(self.augment.prepare(images)))
            with self.autocast():
                logits = self.raw(inputs)
            loss = soft_cross_entropy(logits, one_hot(labels, self.num_classes), reduction="none")
            totals += torch.stack([loss.sum().double(), (logits.argmax(1) == labels).sum().double()])
            count += len(labels)
        totals = _all_reduce(torch.cat([totals, totals.new_tensor([count])]))
        n = max(float(totals[2]), 1.0)
        return {"val_loss": float(totals[0]) / n, "val_top1": float(totals[1]) / n,
                "val_images": int(totals[2])}


def build_trainer(config: TrainConfig, num_classes: int, base: int, device: torch.device,
                  ctx: Dist | None = None, steps_per_epoch: int = 1,
                  finetune_from: str | Path | None = None,
                  saved: Mapping[str, Any] | None = None) -> Trainer:
    """Model (seeded init, optional backbone from ``finetune_from``, or the ``saved`` checkpoint's
    state), optimiser, schedule and device augmentation, wrapped for DDP / torch.compile."""
    ctx = ctx or Dist()
    _seed_everything(config.seed, 0)
    net = build_model(config.model, num_classes, config.image_size, config.drop_path)
    if finetune_from is not None:
        load_backbone(net, load_checkpoint(finetune_from)["model"], str(finetune_from))
        log.info("loaded the backbone of %s; new %d-way head", finetune_from, num_classes)
    net.to(device)
    if device.type == "cuda" and config.channels_last:
        net.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(net, config)
    schedule = LRSchedule(optimizer, config, steps_per_epoch)
    if saved is not None:
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
    model: nn.Module = net
    if ctx.world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        model = torch.compile(model)
    return Trainer(config, model, net, optimizer, schedule,
                   DeviceAugment(config, num_classes, base, device), device, num_classes, ctx)


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(t)
    return t


def _on_device(loader: Any, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches moved to ``device``; on CUDA the next batch is copied on a side stream meanwhile."""
    if device.type != "cuda":
        yield from loader
        return
    stream = torch.cuda.Stream()

    def upload(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.cuda.stream(stream):
            return batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)

    def handed_over(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        # memory allocated on the side stream must not be reused while compute still reads it
        for tensor in batch:
            tensor.record_stream(torch.cuda.current_stream())
        return batch

    pending = None
    for batch in loader:
        ready, pending = pending, upload(batch)
        if ready is not None:
            yield handed_over(ready)
        torch.cuda.current_stream().wait_stream(stream)
    if pending is not None:
        yield handed_over(pending)


# ---------------------------------------------------------------- checkpoints


def state_digest(model: nn.Module) -> str:
    """sha256 over every tensor of the state dict (keys sorted): equal digests = equal weights."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file: fdsl's format, or a bare state_dict (torchvision/timm weights)."""
    path = Path(path)
    if not path.is_file():
        raise FdslError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle, zip and torch errors all mean an unreadable file
        raise FdslError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"model": obj}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return {"model": obj["state_dict"]}
    raise FdslError(f"checkpoint {path} holds no model weights")


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------- the public function


def _config_for_run(recipe: str, model: str | None, config_file: str | Path | None,
                    overrides: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> TrainConfig:
    flags = dict(fields)
    if model is not None:
        flags["model"] = model
    config = resolve_config(recipe, config_file=config_file, flags=flags, sets=overrides)
    config.model = canonical_name(config.model)
    return config


def _make_run_folder(out: Path) -> None:
    """Create the run folder before the heavy work, so a bad --out fails at once in one line."""
    from fdsl.atomic import ensure_writable

    ensure_writable(out, "the run folder")


def _check_resume_data(saved: Mapping[str, Any], classes: list[str], train_images: int,
                       data: str | Path, out: Path) -> None:
    """Refuse to continue a run on other data; a moved data folder with the same content is fine."""
    if "classes" in saved and list(saved["classes"]) != list(classes):
        raise FdslError(f"--resume: {data} has other classes than the data the run in {out} was trained on "
                        f"({saved.get('data')})")
    if "train_images" in saved and saved["train_images"] != train_images:
        raise FdslError(f"--resume: {data} gives {train_images} training images, the run in {out} had "
                        f"{saved['train_images']} (from {saved.get('data')})")
    if saved.get("data_resolved") not in (None, str(Path(data).resolve())):
        log.warning("--resume: data is now %s (the run started on %s); same classes and size, going on",
                    data, saved["data_resolved"])


def _check_resume(config: TrainConfig, saved: Mapping[str, Any], out: Path) -> None:
    mine = config.to_dict()
    for key, value in saved.items():
        if key not in RUNTIME_FIELDS and mine.get(key) != value:
            raise FdslError(f"--resume: {key} is {mine.get(key)!r} but the run in {out} used {value!r}; "
                            "resume with the same settings or use another --out")


def _read_indices(path: str, size: int) -> np.ndarray:
    """Row positions from a .npy file or a .json list (or {"indices": [...]}), each in [0, size)."""
    try:
        if path.endswith(".npy"):
            rows = np.load(path, allow_pickle=False)
        else:
            raw = json.loads(Path(path).read_text())
            rows = np.asarray(raw["indices"] if isinstance(raw, dict) else raw)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FdslError(f"cannot read index file {path}: {exc}") from None
    if rows.ndim != 1 or (rows.size and (rows.dtype.kind not in "iu" or rows.min() < 0 or rows.max() >= size)):
        raise FdslError(f"index file {path} must hold integer rows in [0, {size})")
    return rows.astype(np.int64)


def _open_splits(data: str | Path, val_data: str | Path | None, config: TrainConfig) -> tuple[Any, np.ndarray, Any, np.ndarray]:
    train_src = data_mod.open_data(data, config.image_size, config.resize_ratio)
    val_src = train_src
    if val_data is not None:
        val_src = data_mod.open_data(val_data, config.image_size, config.resize_ratio)
        if val_src.classes != train_src.classes:
            raise FdslError(f"--val-data {val_data} has other classes than {data}")
    if config.train_indices or config.val_indices:
        val_idx = (_read_indices(config.val_indices, len(val_src.labels)) if config.val_indices
                   else np.arange(len(val_src.labels) if val_data is not None else 0))
        train_idx = (_read_indices(config.train_indices, len(train_src.labels)) if config.train_indices
                     else np.setdiff1d(np.arange(len(train_src.labels)), val_idx if val_data is None else []).astype(np.int64))
        return train_src, train_idx, val_src, val_idx
    if val_data is not None:
        return train_src, np.arange(len(train_src.labels)), val_src, np.arange(len(val_src.labels))
    groups = None
    if config.split_by:
        metadata = getattr(train_src.dataset, "metadata", {})
        if config.split_by not in metadata:
            raise FdslError(f"--split-by {config.split_by!r}: {train_src.path} records "
                            f"{', '.join(sorted(metadata)) or 'no metadata'}")
        groups = metadata[config.split_by]
    train_idx, val_idx = data_mod.split_indices(train_src.labels, config.val_fraction, config.seed, groups)
    return train_src, train_idx, train_src, val_idx


def _pruned(source: Any, train_idx: np.ndarray, config: TrainConfig) -> np.ndarray:
    """The training positions kept by ``config.prune`` (per class, ranked by ``prune_field``)."""
    if config.prune == "none":
        return train_idx
    from fdsl.datasets.pruning import select_per_class

    values = None
    if config.prune != "random":
        metadata = getattr(source.dataset, "metadata", {})
        if config.prune_field not in metadata:
            raise FdslError(f"--prune-field {config.prune_field!r}: {source.path} records "
                            f"{', '.join(sorted(metadata)) or 'no metadata'}")
        values = metadata[config.prune_field][train_idx]
    kept = select_per_class(source.labels[train_idx], values, mode=config.prune,
                            keep_fraction=config.keep_fraction, seed=config.seed)
    log.info("pruning (%s%s): kept %d of %d training images", config.prune,
             f" by {config.prune_field}" if values is not None else "", len(kept), len(train_idx))
    return train_idx[kept]


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
        out: run folder (created); holds config, checkpoint.pt, metrics.jsonl, curves.png,
            summary.json.
        recipe: preset name (``fractaldb-resnet``, ``fdsl-vit``, ``finetune``).
        model: architecture (resnet18/34/50, vit_tiny, timm:NAME); default: the recipe's.
        finetune_from: checkpoint whose backbone initialises the model (a fresh head is used).
        val_data: held-out folder with the same classes; else ``val_fraction`` of ``data``
            (stratified, seeded) is held out.
        device: ``auto`` (CUDA if available), ``cuda`` or ``cpu``.
        resume: continue the run in ``out`` from its checkpoint (same settings required).
        config_file: YAML/JSON mapping of config fields.
        overrides: ``--set`` values (highest precedence).
        stop_after_epochs: stop after this many epochs of this call (for preemptible jobs);
            ``--resume`` continues.
        overwrite: delete a previous run's outputs in ``out`` first (other files are kept).
        **fields: any ``TrainConfig`` field (epochs=, lr=, batch_size=, image_size=, ...); None
            means "not given".

    Returns:
        The summary dict (also written to ``out/summary.json``): top1 (final held-out accuracy,
        None without a held-out set), best_top1, epochs, images/s, state_digest, ...

    Raises:
        FdslError: one-line problems (missing data, unknown model/recipe, unfit checkpoint, ...).
    """
    started = time.perf_counter()
    config = _config_for_run(recipe, model, config_file, overrides, fields)
    ctx, dev = _setup_distributed(device)
    if config.batch_size % ctx.world_size:
        raise FdslError(f"batch size {config.batch_size} is not divisible by {ctx.world_size} processes")
    out = Path(out)
    checkpoint_path = out / CHECKPOINT
    saved = None
    if overwrite and not resume and ctx.main:
        _remove_run_outputs(out)
    if ctx.world_size > 1:
        dist.barrier()
    if resume:
        if not checkpoint_path.is_file():
            raise FdslError(f"--resume: no {CHECKPOINT} in {out}")
        saved = load_checkpoint(checkpoint_path)
        _check_resume(config, saved.get("config", {}), out)
    elif checkpoint_path.is_file():
        raise FdslError(f"{out} already holds a run; pass --resume to continue it, --overwrite to "
                        "replace it, or choose another --out")

    if ctx.main:
        _make_run_folder(out)
    train_src, train_idx, val_src, val_idx = _open_splits(data, val_data, config)
    train_idx = _pruned(train_src, train_idx, config)
    num_classes = len(train_src.classes)
    if len(train_idx) == 0:
        raise FdslError(f"{data}: no training images left after holding out the validation split")
    if saved is not None:
        _check_resume_data(saved, train_src.classes, len(train_idx), data, out)

    per_rank_batch = config.batch_size // ctx.world_size
    train_loader = train_src.loader(train_idx, batch_size=per_rank_batch, shuffle=True,
                                    workers=config.workers, seed=config.seed, rank=ctx.rank,
                                    world_size=ctx.world_size, drop_last=len(train_idx) > config.batch_size)
    # Evaluation: each rank reads its own disjoint slice (no padding), sums are all-reduced.
    val_loader = (val_src.loader(val_idx[ctx.rank::ctx.world_size], batch_size=per_rank_batch,
                                 shuffle=False, workers=config.workers, seed=config.seed)
                  if len(val_idx) else None)
    base = (base_side(config, train_src.native_side) if train_src.kind == "shards"
            else train_src.native_side)
    trainer = build_trainer(config, num_classes, base, dev, ctx, len(train_loader),
                            finetune_from=None if saved is not None else finetune_from, saved=saved)
    net, optimizer, schedule = trainer.raw, trainer.optimizer, trainer.schedule
    start_epoch = 0 if saved is None else int(saved["epoch"]) + 1

    extra = {"recipe": recipe, "data": str(data), "data_resolved": str(Path(data).resolve()),
             "train_images": len(train_idx), "val_data": None if val_data is None else str(val_data),
             "finetune_from": None if finetune_from is None else str(finetune_from),
             "classes": train_src.classes, "world_size": ctx.world_size}
    metrics_path = out / "metrics.jsonl"
    history = [m for m in read_metrics(metrics_path) if m["epoch"] < start_epoch]
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, extra, out)
        metrics_path.write_text("".join(json.dumps(m) + "\n" for m in history))
    last_epoch = config.epochs if stop_after_epochs is None else min(config.epochs, start_epoch + stop_after_epochs)
    for epoch in range(start_epoch, last_epoch):
        _seed_everything(config.seed, 1, epoch, ctx.rank)
        train_loader.set_epoch(epoch)
        record = {"epoch": epoch, "lr": schedule.lr, **trainer.train_epoch(train_loader, epoch)}
        if ctx.world_size > 1:
            for buffer in net.buffers():  # BN statistics: every rank continues from rank 0's
                dist.broadcast(buffer, 0)
        if val_loader is not None:
            record.update(trainer.evaluate(val_loader))
        schedule.end_epoch(record.get("val_loss"))
        history.append(record)
        if ctx.main:
            _end_epoch_outputs(out, record, history, net, optimizer, schedule, epoch, config, extra)
        log.info("epoch %d/%d: %s", epoch + 1, config.epochs,
                 ", ".join(f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float)))
    summary = _summary(out, config, extra, net, history,
                       len(train_idx), len(val_idx), time.perf_counter() - started, dev, last_epoch)
    if ctx.main:
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


RUN_OUTPUTS = (CHECKPOINT, "metrics.jsonl", "summary.json", "curves.png", "config.yaml", "config.json")


def _remove_run_outputs(out: Path) -> None:
    for name in RUN_OUTPUTS:
        (out / name).unlink(missing_ok=True)
    for old in out.glob("checkpoint-epoch*.pt"):
        old.unlink()


def _end_epoch_outputs(out: Path, record: dict[str, Any], history: list[dict[str, Any]],
                       net: nn.Module, optimizer: torch.optim.Optimizer,
                       schedule: LRSchedule, epoch: int, config: TrainConfig, extra: Mapping[str, Any]) -> None:
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    state = {"model": net.state_dict(), "optimizer": optimizer.state_dict(),
             "schedule": schedule.state_dict(), "epoch": epoch, "rng": rng_states(),
             "config": config.to_dict(), "model_name": config.model, **extra}
    _save_atomic(state, out / CHECKPOINT)
    if config.save_every and (epoch + 1) % config.save_every == 0:
        _save_atomic(state, out / f"checkpoint-epoch{epoch + 1:03d}.pt")
    plot_curves(history, out / "curves.png",
                title=f"{config.model} on {Path(extra['data']).name}")


def _summary(out: Path, config: TrainConfig, extra: Mapping[str, Any], net: nn.Module,
             metrics: list[dict], train_images: int, val_images: int, seconds: float,
             device: torch.device, epochs_done: int) -> dict[str, Any]:
    tops = [m["val_top1"] for m in metrics if m.get("val_top1") is not None]
    last = metrics[-1] if metrics else {}
    return {
        "top1": tops[-1] if tops else None,
        "best_top1": max(tops) if tops else None,
        "best_epoch": int(np.argmax(tops)) + 1 if tops else None,
        "final_train_loss": last.get("train_loss"),
        "final_train_top1": last.get("train_top1"),
        "epochs_done": epochs_done, "epochs": config.epochs,
        "model": config.model, "recipe": extra["recipe"], "data": extra["data"],
        "num_classes": len(extra["classes"]), "train_images": train_images, "val_images": val_images,
        "images_per_second": last.get("images_per_second"),
        "seconds": round(seconds, 2), "device": str(device), "world_size": extra["world_size"],
        "state_digest": state_digest(net),
        "run_dir": str(out), "checkpoint": str(out / CHECKPOINT),
    }
