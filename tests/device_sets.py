"""Tiny gen-fractal folders of every generator, made once per session, for the on-the-fly tests.

``SETS`` holds gen-fractal's settings for each generator (small: simulator-sized); ``make_set``
writes the full set (shards) and a ``--params-only`` twin beside it; ``stored_images`` reads the
shards' images back as gen-fractal wrote them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SETS: dict[str, dict[str, Any]] = {
    "fractaldb": dict(classes=2, instances=12, image_size=32, points=1200, search_points=3000,
                      fill_rate=0.005, seed=3),
    "exfractaldb": dict(classes=2, instances_3d=2, views=3, image_size=24, points=400,
                        search_points_3d=500, seed=4),
    "rcdb": dict(classes=2, instances=4, image_size=40, seed=5),
    "linedb": dict(classes=3, instances=3, image_size=32, seed=6),
}


def make_set(db: str, root: Path, params_only: bool = False, **extra: Any) -> Path:
    """gen-fractal ``db`` with ``SETS[db]`` into ``root/<db>`` (or ``root/<db>-params``)."""
    from fdsl.generators.generate import generate

    out = root / (f"{db}-params" if params_only else db)
    generate(db, out, workers=1, backend="inline", shard_size=5, params_only=params_only,
             **{**SETS[db], **extra})
    return out


def stored_images(folder: Path) -> np.ndarray:
    """Every image of the shards in ``folder``, uint8 [N, H, W] or [N, H, W, C], in index order."""
    from fdsl.datasets import ShardDataset

    ds = ShardDataset(folder, mode=None)  # the stored channels
    images = np.stack([ds[i][0].numpy() for i in range(len(ds))])  # [N, C, H, W]
    return images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)
