"""fdsl.train: models, device-side augmentation, recipes and the training loop.

``train_classifier`` (``loop.py``) prepares a run in one pass, a module per stage: config
(``runconfig.py`` over ``recipes.py``), run folder (``rundir.py``), data and splits
(``splits.py`` over ``data.py``), resume state (``resume.py``), model, optimiser and schedule
(``trainer.py`` with ``models/``, ``optim.py``, ``scheduler.py``, ``augment.py``), then trains.
``from fdsl.train import train_classifier`` imports torch on first use only.
"""

from __future__ import annotations

from typing import Any

__all__ = ["train_classifier"]


def __getattr__(name: str) -> Any:
    if name == "train_classifier":
        from fdsl.train.loop import train_classifier

        return train_classifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
