"""``render-shapenet``: render ShapeNetCore models (or the built-in procedural set) into shards.

A thin wrapper over ``fdsl.render.build.render_shapenet``: this module parses the flags and
prints the summary.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fdsl.cli import (
    OneLineParser,
    non_negative_int,
    number,
    positive_int,
    run_cli,
)
from fdsl.datasets.builder.cli import add_build_arguments, parse_options
from fdsl.render.build import render_shapenet
from fdsl.render.procedural import DEFAULT_MODELS_PER_CLASS
from fdsl.render.source import DEFAULT_FOV_DEG, DEFAULT_MAX_FACES, IMAGE_SIZES, MSAA_CHOICES
from fdsl.render.viewpoints import VIEWPOINTS

__all__ = ["build_parser", "main", "render_shapenet"]

image_side = number(int, low=IMAGE_SIZES[0], high=IMAGE_SIZES[1])


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
