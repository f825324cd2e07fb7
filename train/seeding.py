"""Seeds and RNG states: how a run starts its random streams and how a resumed run restores them.

A run draws from python's, NumPy's and torch's global generators (kornia's augmentation uses
torch's). ``seed_everything(seed, *parts)`` seeds all three from one ``SeedSequence``; the model
is initialised under ``(seed, 0)`` and training runs under ``(seed, 1, rank)``. Checkpoints save
``rng_states()`` of every rank and ``set_rng_states`` restores them, so a resumed run draws the
same numbers as an uninterrupted one.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

MODEL_INIT = 0  # seed part of the model's initialisation
TRAINING = 1  # seed part of training (crops, flips, mixing, dropout), then the rank


def seed_everything(seed: int, *parts: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) from (seed, *parts)."""
    value = int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def start_training_rng(seed: int, rank: int, saved: Mapping[str, Any] | None = None) -> None:
    """The random streams training starts from: the ``saved`` states of this rank when resuming
    (``saved`` = a checkpoint's ``rng``: one entry per rank), else fresh ones from (seed, rank)."""
    if saved is not None:
        set_rng_states(saved[rank])
    else:
        seed_everything(seed, TRAINING, rank)


def rng_states() -> dict[str, Any]:
    """The RNG states of python, numpy and torch (and CUDA when present), as plain lists and
    tensors so that ``torch.load(weights_only=True)`` reads them."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": [version, list(words), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what ``rng_states`` returned."""
    version, words, gauss = states["python"]
    random.setstate((version, tuple(words), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
