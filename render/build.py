"""Render a data set of models seen from many viewpoints: the body of ``render-shapenet``.

``render_shapenet`` picks the models through ``fdsl.render.source.make_source`` (ShapeNetCore or
the procedural set) and runs the builder with the shared build settings
(``fdsl.datasets.builder.cli.build_from_options``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fdsl.datasets.builder.build import BuildResult
from fdsl.datasets.builder.cli import build_from_options
from fdsl.datasets.builder.jobs import default_workers
from fdsl.render.source import DEFAULT_FOV_DEG, DEFAULT_MAX_FACES, make_source

__all__ = ["render_shapenet"]


def render_shapenet(
    out: str | Path,
    *,
    shapenet_root: str | Path | None = None,
    classes: str | Sequence[str] | None = None,
    models_per_class: int | None = None,
    views: int = 100,
    viewpoints: str = "fibonacci",
    image_size: int = 224,
    max_faces: int = DEFAULT_MAX_FACES,
    seed: int = 0,
    msaa: int = 0,
    fov_deg: float = DEFAULT_FOV_DEG,
    workers: int | None = None,
    shard_size: int | None = None,
    **build: Any,
) -> BuildResult:
    """Render every selected model from ``views`` viewpoints into shards at ``out``.

    Without ``shapenet_root`` the built-in procedural set is rendered. ``classes`` (names or
    synsets, a list or a comma-separated string) defaults to the viewpoint study's nine;
    ``models_per_class`` (None: every model of a ShapeNet class, 100 procedural ones) is sampled
    deterministically by ``seed``. Each image carries label, synset, model_id, view, azimuth,
    elevation, distance, silhouette ``area`` and the camera pose (pose_00..pose_15, row-major
    camera-to-world). Broken models are skipped and listed in ``out/failures.jsonl``. Re-running
    the same call resumes. ``build`` holds the other shared builder settings (``backend``,
    ``compression``, ``fmt``: ``png`` writes ``<label>.<class>/<model_id>/<view>.png`` plus
    ``metadata.csv``, ``overwrite``).
    """
    source = make_source(shapenet_root=shapenet_root, classes=classes, models_per_class=models_per_class,
                         views=views, viewpoints=viewpoints, image_size=image_size, max_faces=max_faces,
                         seed=seed, msaa=msaa, fov_deg=fov_deg)
    workers = workers or default_workers()
    # One single-threaded Mesa rasteriser per worker beats workers that fight over cores.
    source.rasterizer_threads = 0 if workers > 1 else None
    if shard_size is None:
        shard_size = views * max(1, 2_000 // views)  # whole models; ~300 MB of 224 px RGB per worker
    return build_from_options(source, out, strict=True, shard_size=shard_size, workers=workers, **build)
