"""Learning-rate schedules built from ``torch.optim.lr_scheduler``.

Per optimiser step: an optional linear warm-up (LinearLR), then ``step`` (MultiStepLR at fractions
of the run), ``cosine`` (CosineAnnealingLR down to ``min_lr``) or ``constant``, chained with
SequentialLR. ``cosine_iter`` is timm's ``CosineLRScheduler`` stepped per iteration, as the FDSL
ViT scripts run it (``TimmCosineLR``). ``plateau`` is ReduceLROnPlateau, stepped once per epoch with the held-out loss
after the warm-up. Resume is exact: the optimiser's and the schedulers' state_dicts hold all.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch.optim import lr_scheduler as sched

from fdsl.train.recipes import TrainConfig


class TimmCosineLR(sched.LRScheduler):
    """timm 0.4.12's ``CosineLRScheduler(t_in_epochs=False)`` with one cycle, as a torch scheduler.

    Update ``t`` (0-based, counted in optimiser steps) runs at ``warmup_lr + t (peak - warmup_lr) /
    warmup`` while t < warmup, else ``min_lr + (peak - min_lr) (1 + cos(pi t / total)) / 2``: the
    cosine spans the whole run from t = 0 (timm's ``warmup_prefix=False``), so it has already
    left the peak when the warm-up ends; after ``total`` steps the rate stays at ``min_lr``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, total: int, warmup: int,
                 warmup_lr: float, min_lr: float) -> None:
        self.total, self.warmup = max(total, 1), warmup
        self.warmup_lr, self.min_lr = warmup_lr, min_lr
        super().__init__(optimizer)

    def rate(self, t: int, peak: float) -> float:
        if t < self.warmup:
            return self.warmup_lr + t * (peak - self.warmup_lr) / self.warmup
        if t >= self.total:
            return self.min_lr
        return self.min_lr + 0.5 * (peak - self.min_lr) * (1 + math.cos(math.pi * t / self.total))

    def get_lr(self) -> list[float]:
        return [self.rate(self.last_epoch, peak) for peak in self.base_lrs]


class LRSchedule:
    """The schedule of one run: ``step_iteration`` after every optimiser step, ``end_epoch`` with
    the epoch's held-out loss (drives ``plateau``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig,
                 steps_per_epoch: int) -> None:
        self.optimizer, self.config = optimizer, config
        spe = max(steps_per_epoch, 1)
        warmup = round(config.warmup_epochs * spe)
        self.warmup_iters = warmup if warmup > 1 else 0
        main: sched.LRScheduler | None = None
        if config.schedule == "cosine_iter":
            # timm's warm-up is part of the schedule itself, not a LinearLR before it
            main = TimmCosineLR(optimizer, total=config.epochs * spe, warmup=warmup,
                                warmup_lr=config.warmup_lr, min_lr=config.min_lr)
            self.per_step, self.steps_after_warmup, self.plateau = main, True, None
            self.warmup_iters, self.iteration = warmup, 0
            return
        if config.schedule == "step":
            # Milestones count from the end of the warm-up inside SequentialLR.
            edges = [round(f * config.epochs) * spe - self.warmup_iters for f in config.step_at]
            main = sched.MultiStepLR(optimizer, [max(e, 0) for e in edges], gamma=config.gamma)
        elif config.schedule == "cosine":
            span = max(config.epochs * spe - self.warmup_iters, 1)
            main = sched.CosineAnnealingLR(optimizer, T_max=span, eta_min=config.min_lr)
        self.per_step: sched.LRScheduler | None = main
        self.steps_after_warmup = main is not None
        if self.warmup_iters:
            warm = sched.LinearLR(optimizer, start_factor=1.0 / self.warmup_iters, end_factor=1.0,
                                  total_iters=self.warmup_iters - 1)
            self.per_step = (warm if main is None else
                             sched.SequentialLR(optimizer, [warm, main], [self.warmup_iters]))
        self.plateau = (sched.ReduceLROnPlateau(optimizer, mode="min", factor=config.gamma,
                                                patience=config.plateau_patience, threshold=1e-4,
                                                threshold_mode="abs")
                        if config.schedule == "plateau" else None)
        self.iteration = 0

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def warming_up(self) -> bool:
        return self.iteration < self.warmup_iters

    def step_iteration(self) -> None:
        self.iteration += 1
        if self.per_step is not None and (self.steps_after_warmup or self.iteration <= self.warmup_iters):
            self.per_step.step()

    def end_epoch(self, val_loss: float | None) -> None:
        if self.plateau is not None and val_loss is not None and not self.warming_up:
            self.plateau.step(val_loss)

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration,
                "per_step": None if self.per_step is None else self.per_step.state_dict(),
                "plateau": None if self.plateau is None else self.plateau.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore after the optimiser's own state (which holds the current learning rate)."""
        self.iteration = int(state["iteration"])
        if self.per_step is not None:
            self.per_step.load_state_dict(state["per_step"])
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])


def replay_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int,
                    state: Mapping[str, Any]) -> LRSchedule:
    """The schedule of a run extended to ``config.epochs``, at the iteration ``state`` (the saved
    schedule) had reached: timm's ``lr_scheduler.step(start_epoch)`` after a resume with a larger
    ``--epochs``. ``step`` and ``cosine`` are rebuilt for the new length and stepped to that
    iteration from the base learning rate, so the rate equals a run planned that long from the
    start; ``plateau`` and ``constant`` do not depend on the length and are restored as saved.
    Call after the optimiser's state was loaded."""
    if config.schedule not in ("step", "cosine"):
        schedule = LRSchedule(optimizer, config, steps_per_epoch)
        schedule.load_state_dict(state)
        return schedule
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"]
    schedule = LRSchedule(optimizer, config, steps_per_epoch)
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": no training here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(int(state["iteration"])):
            schedule.step_iteration()
    return schedule
