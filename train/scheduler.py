"""Learning-rate schedules built from ``torch.optim.lr_scheduler``.

Per optimiser step: an optional linear warm-up (LinearLR), then ``step`` (MultiStepLR at fractions
of the run), ``cosine`` (CosineAnnealingLR down to ``min_lr``) or ``constant``, chained with
SequentialLR. ``plateau`` is ReduceLROnPlateau, stepped once per epoch with the held-out loss
after the warm-up. Resume is exact: the optimiser's and the schedulers' state_dicts hold all.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch.optim import lr_scheduler as sched

from fdsl.train.recipes import TrainConfig


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
