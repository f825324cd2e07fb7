"""``render-shapenet``: render ShapeNetCore models (or the built-in procedural set) into shards.

A thin wrapper: ``fdsl.render.source.make_source`` picks the models (``shapenet.shapenet_models``
or ``procedural.procedural_models``) and ``fdsl.datasets.builder.cli.build_from_options`` runs the
builder with the shared flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fdsl.cli import (
    OneLineParser,
    non_negative_int,
    number,
    positive_int,
    run_cli,
)
from fdsl.datasets.builder.build import BuildResult
from fdsl.datasets.builder.cli import add_build_arguments, build_from_options, parse_options
from fdsl.datasets.builder.jobs import default_workers
from fdsl.render.procedural import DEFAULT_MODELS_PER_CLASS
from fdsl.render.source import (
    DEFAULT_FOV_DEG,
    DEFAULT_MAX_FACES,
    IMAGE_SIZES,
    MSAA_CHOICES,
    RenderSource,  # noqa: F401  (re-exported)
    make_source,
)
from fdsl.render.viewpoints import VIEWPOINTS

log = logging.getLogger(__name__)

__all__ = ["build_parser", "main", "make_source", "render_shapenet"]

image_side = number(int, low=IMAGE_SIZES[0], high=IMAGE_SIZES[1])


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


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="render-shapenet",
        description="Render ShapeNetCore models (or the built-in procedural set of the nine study "
                    "classes) from many viewpoints into resumable, checksummed HDF5 shards, with "
                    "each view's silhouette area and camera pose.")
    add = parser.add_argument
    add("--out", required=True, type=Path, help="output folder (created; re-run to resume)")
    add("--shapenet-root", type=Path, default=None,
        help="ShapeNetCore v1 or v2 folder (<synset>/<model_id>/...); default: the built-in procedural set")
    add("--classes", default=None,
        help="comma-separated class names or synset ids (default: bench,bicycle,camera,car,chair,hat,"
             "helmet,laptop,sofa; hat renders ShapeNet's cap)")
    add("--models-per-class", type=positive_int, default=None,
        help=f"models per class, sampled by --seed (default: all ShapeNet models; {DEFAULT_MODELS_PER_CLASS} procedural)")
    add("--views", type=positive_int, default=100, help="viewpoints per model (default 100)")
    add("--viewpoints", choices=VIEWPOINTS, default="fibonacci",
        help="fibonacci: even sphere coverage, randomly rotated per model (default); "
             "grid: fixed azimuth x elevation rings")
    add("--image-size", type=image_side, default=224,
        help=f"image side in pixels, {IMAGE_SIZES[0]} to {IMAGE_SIZES[1]} (default 224)")
    add("--max-faces", type=positive_int, default=DEFAULT_MAX_FACES,
        help=f"skip (and record) models with more faces (default {DEFAULT_MAX_FACES})")
    add("--msaa", type=int, choices=MSAA_CHOICES, default=0,
        help="multisample anti-aliasing samples (default 0: about 3x faster on a CPU rasteriser)")
    add("--fov", dest="fov_deg", type=number(float, low=1, high=120), default=DEFAULT_FOV_DEG,
        help=f"vertical field of view in degrees; the camera distance keeps the unit sphere in view (default {DEFAULT_FOV_DEG:g})")
    add("--seed", type=non_negative_int, default=0, help="seed that fixes the model sample, viewpoints and every pixel (default 0)")
    add_build_arguments(parser, shard_size=None, workers_help="worker processes, one renderer each",
                        shard_size_help="default: whole models, about 2000 images",
                        png_help="PNG files as <label>.<class>/<model_id>/<view>.png with metadata.csv")
    return parser


def _main(argv: Sequence[str] | None) -> int:
    options = parse_options(build_parser(), argv)
    out = options.pop("out")
    result = render_shapenet(out, **options)
    print(result.summary(), file=sys.stderr)
    failed = result.failures
    models = result.images // options["views"] + failed  # whole models: every view or none
    print(f"models: {models - failed} rendered, {failed} failed"
          + (f" (reasons in {Path(out) / 'failures.jsonl'})" if failed else ""), file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("render-shapenet", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
