"""``run-study stats``: data-set statistics in a trained model's feature space.

``fdsl.datasets.inspect.stats`` computes the intra-class std and class-mean distances of a shard folder
for any feature function; this module supplies one that the data layer may not import: the
penultimate layer (the pooled features before the classification head) of an fdsl checkpoint,
with the run's own evaluation preprocessing (resize, centre crop, normalisation).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from fdsl.errors import FdslError


def checkpoint_features(checkpoint: str | Path, *, device: str = "cpu", native_side: int | None = None) -> Any:
    """A feature function (uint8 images [n, H, W(, C)] -> float32 [n, D]) from the penultimate
    layer of the fdsl run checkpoint ``checkpoint``; ``.describe`` says what it is."""
    import torch
    from torch import nn

    from fdsl.train.augment import DeviceAugment, base_side
    from fdsl.train.loop import load_checkpoint
    from fdsl.train.models import build_model
    from fdsl.train.recipes import TrainConfig

    saved = load_checkpoint(checkpoint)
    if "config" not in saved:
        raise FdslError(f"{checkpoint} is a bare state_dict; --checkpoint needs an fdsl run's checkpoint.pt")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in saved["config"].items() if k in names})
    state = saved["model"]
    head = state.get("fc.weight", state.get("head.weight"))
    if head is None:
        raise FdslError(f"{checkpoint}: no fc or head weights; cannot tell the number of classes")
    net = build_model(saved.get("model_name", config.model), int(head.shape[0]), config.image_size)
    net.load_state_dict(state)
    for attr in ("fc", "head"):
        if hasattr(net, attr):
            setattr(net, attr, nn.Identity())
    dev = torch.device(device)
    net.to(dev).eval()
    cache: dict[int, DeviceAugment] = {}

    @torch.no_grad()
    def features(images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(images))
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
        side = native_side or min(x.shape[-2:])
        if side not in cache:
            cache[side] = DeviceAugment(config, int(head.shape[0]), base_side(config, side), dev)
        augment = cache[side]
        return net(augment.plain(augment.prepare(x.to(dev)))).float().cpu().numpy()

    features.describe = (f"penultimate layer of {config.model} from {checkpoint} "  # type: ignore[attr-defined]
                         f"({config.image_size} px, the run's evaluation preprocessing)")
    return features


def checkpoint_stats(folder: str | Path, out: str | Path, checkpoint: str | Path | None = None, *,
                     max_per_class: int | None = 200, seed: int = 0, device: str = "cpu",
                     progress: bool = True) -> dict[str, Any]:
    """``fdsl.datasets.inspect.stats.dataset_stats`` in the feature space of ``checkpoint`` (None:
    pixels); ``progress`` reports the images read (``fdsl.progress``; False for ``--quiet``)."""
    from fdsl.datasets.inspect.stats import dataset_stats

    features = None if checkpoint is None else checkpoint_features(checkpoint, device=device)
    return dataset_stats(folder, out, features=features, max_per_class=max_per_class, seed=seed,
                         progress=progress)
