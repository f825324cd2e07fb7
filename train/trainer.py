"""One run's model, optimiser, schedule and augmentation, and the train/evaluate passes.

Batches arrive as uint8 [B, C, H, W]; everything else (augmentation, self-paced selection, bf16
autocast, channels_last) happens on the device. Sums stay on the device until the epoch ends.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fdsl.progress import Progress
from fdsl.train.augment import DeviceAugment, one_hot, select_for_augmentation, soft_cross_entropy
from fdsl.train.distributed import Dist, all_reduce
from fdsl.train.models import build_model
from fdsl.train.optim import build_optimizer
from fdsl.train.recipes import TrainConfig
from fdsl.train.scheduler import LRSchedule, replay_schedule
from fdsl.train.seeding import MODEL_INIT, seed_everything
from fdsl.train.weights_import import load_starting_weights

log = logging.getLogger(__name__)


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


def wanted(flag: bool | None, device: torch.device) -> bool:
    """A device feature's setting: None = on CUDA only, True/False = everywhere / nowhere."""
    return device.type == "cuda" if flag is None else flag


def on_device(loader: Any, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
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


@dataclass
class Trainer:
    config: TrainConfig
    model: nn.Module  # possibly DDP-wrapped / compiled
    raw: nn.Module  # the plain module (state_dict, self-paced loss pass, evaluation)
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    augment: DeviceAugment
    device: torch.device
    num_classes: int
    ctx: Dist
    log_interval: int = 50  # training steps between progress lines in batch logs (0: time only)
    show_progress: bool = True  # False: no bar and no progress lines (--quiet)

    @property
    def self_paced(self) -> bool:
        return self.config.self_paced_threshold > 0 or self.config.self_paced_ratio > 0

    def autocast(self) -> Any:
        """bf16 autocast where ``config.amp`` asks for it (CUDA by default, CPU when true)."""
        if wanted(self.config.amp, self.device):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        if wanted(self.config.channels_last, self.device):
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def eval_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B,C,H,W] on the device -> the normalised, centre-cropped model input."""
        return self.layout(self.augment.plain(self.augment.prepare(images)))

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One optimiser step. Returns float64 device sums [loss, correct, augmented, un-augmented
        loss of augmented samples, of the others] (the last two 0 without self-paced selection)."""
        cfg = self.config
        x = self.augment.prepare(images)
        if self.self_paced:
            losses = per_sample_loss(self.raw, self.layout(self.augment.plain(x)), labels,
                                     self.num_classes, self.autocast)
            flagged = select_for_augmentation(losses, threshold=cfg.self_paced_threshold,
                                              ratio=cfg.self_paced_ratio)
            inputs, target = self.augment.self_paced(x, labels, flagged)
            aug_loss, clean_loss = (losses * flagged).sum(), (losses * ~flagged).sum()
        else:
            flagged = torch.ones_like(labels, dtype=torch.bool)
            inputs, target = self.augment.augment(x, labels)
            aug_loss = clean_loss = torch.zeros((), device=labels.device)
        with self.autocast():
            logits = self.model(self.layout(inputs))
        loss = soft_cross_entropy(logits, target, cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.schedule.step_iteration()
        correct = (logits.detach().argmax(1) == labels).sum()
        return torch.stack([t.double() for t in (loss.detach() * len(labels), correct, flagged.sum(),
                                                 aug_loss, clean_loss)])

    def train_epoch(self, loader: Any, epoch: int) -> dict[str, Any]:
        """One pass over ``loader`` (``epoch`` counts from 1). Rank 0 shows progress: a bar on a
        terminal, a plain line every ``log_interval`` steps (and every FDSL_PROGRESS_INTERVAL
        seconds) in a batch log, with the running loss and the learning rate."""
        self.model.train()
        totals = torch.zeros(5, dtype=torch.float64, device=self.device)
        count = 0
        start = time.perf_counter()
        bar = Progress(total=len(loader), desc=f"epoch {epoch}/{self.config.epochs}", unit="step",
                       disable=not (self.show_progress and self.ctx.main), leave=False)
        with bar:
            for step, (images, labels) in enumerate(on_device(loader, self.device), 1):
                totals += self.train_step(images, labels)
                count += len(labels)
                bar.update(1)
                if not bar.disable and (step % self.log_interval == 0 if self.log_interval else False):
                    # one device sync per log line, as timm's --log-interval
                    bar.set_postfix_str(f"loss {float(totals[0]) / count:.4f}, lr {self.schedule.lr:.4g}")
                    bar.write_line()
        loss, correct, augmented, aug_loss, clean_loss, n = all_reduce(
            torch.cat([totals, totals.new_tensor([count])])).tolist()
        seconds = time.perf_counter() - start
        record: dict[str, Any] = {
            "train_loss": loss / max(n, 1), "train_top1": correct / max(n, 1),
            "aug_fraction": augmented / max(n, 1)}
        if self.self_paced:
            record["aug_loss"] = aug_loss / augmented if augmented else None
            record["clean_loss"] = clean_loss / (n - augmented) if n > augmented else None
        record.update(train_images=int(n), train_seconds=seconds,
                      images_per_second=n / max(seconds, 1e-9))
        return record

    @torch.no_grad()
    def evaluate(self, loader: Any) -> dict[str, Any]:
        """Held-out loss and top-1 (and top-5 with more than 5 classes), summed over the ranks."""
        self.model.eval()
        top5 = self.num_classes > 5
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)
        count = 0
        bar = Progress(total=len(loader), desc="held-out evaluation", unit="step",
                       disable=not (self.show_progress and self.ctx.main), leave=False)
        with bar:
            for images, labels in on_device(loader, self.device):
                with self.autocast():
                    logits = self.raw(self.eval_inputs(images))
                loss = soft_cross_entropy(logits, one_hot(labels, self.num_classes), reduction="none")
                hit5 = ((logits.topk(5, dim=1).indices == labels[:, None]).any(1).sum() if top5
                        else torch.zeros((), device=self.device))
                totals += torch.stack([loss.sum().double(), (logits.argmax(1) == labels).sum().double(),
                                       hit5.double()])
                count += len(labels)
                bar.update(1)
        loss, correct, correct5, n = all_reduce(torch.cat([totals, totals.new_tensor([count])])).tolist()
        record = {"val_loss": loss / max(n, 1), "val_top1": correct / max(n, 1)}
        if top5:
            record["val_top5"] = correct5 / max(n, 1)
        return record | {"val_images": int(n)}


def build_trainer(config: TrainConfig, num_classes: int, base: int, device: torch.device,
                  ctx: Dist | None = None, steps_per_epoch: int = 1,
                  finetune_from: str | Path | None = None,
                  saved: Mapping[str, Any] | None = None) -> Trainer:
    """Model (seeded init, optional backbone from ``finetune_from``, or the ``saved`` checkpoint's
    state), optimiser, schedule and device augmentation, wrapped for DDP / torch.compile."""
    ctx = ctx or Dist()
    seed_everything(config.seed, MODEL_INIT)
    net = build_model(config.model, num_classes, config.image_size, config.drop_path)
    if finetune_from is not None:
        load_starting_weights(net, finetune_from)
        log.info("loaded the backbone of %s; new %d-way head", finetune_from, num_classes)
    net.to(device)
    if wanted(config.channels_last, device):
        net.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(net, config)
    schedule = LRSchedule(optimizer, config, steps_per_epoch)
    if saved is not None:
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if saved.get("config", {}).get("epochs", config.epochs) != config.epochs:  # extended
            schedule = replay_schedule(optimizer, config, steps_per_epoch, saved["schedule"])
        else:
            schedule.load_state_dict(saved["schedule"])
    model: nn.Module = net
    if ctx.world_size > 1 or ctx.launched:
        model = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        model = torch.compile(model)
    return Trainer(config, model, net, optimizer, schedule,
                   DeviceAugment(config, num_classes, base, device), device, num_classes, ctx)
