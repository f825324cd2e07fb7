"""``import-cub``: the command-line face of ``fdsl.datasets.importers.cub.import_cub``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fdsl import cli
from fdsl.datasets.builder.cli import add_build_arguments, parse_options
from fdsl.datasets.importers.cub import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_SHARD_SIZE,
    MAX_IMAGE_SIZE,
    SPLITS,
    import_cub,
)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.OneLineParser(
        prog="import-cub",
        description="Import CUB-200-2011 into resumable, checksummed HDF5 shards (or an ImageFolder "
                    "PNG tree): square RGB images with image_id, is_train, visible_parts (of 15 "
                    "annotated parts), original size and bounding box per image, ready for "
                    "train-classifier --prune ... --prune-field visible_parts.")
    add = parser.add_argument
    add("--root", required=True, type=Path,
        help="the CUB_200_2011 folder (with images.txt, classes.txt, parts/part_locs.txt, ...) or its parent")
    add("--out", required=True, type=Path, help="output folder (created; re-run to resume)")
    add("--split", choices=SPLITS, default="train",
        help="which images: the official train or test split, or all (default train)")
    add("--image-size", type=cli.number(int, low=1, high=MAX_IMAGE_SIZE), default=DEFAULT_IMAGE_SIZE,
        help=f"image side in pixels; short side resized, centre crop (default {DEFAULT_IMAGE_SIZE})")
    add("--classes", type=cli.positive_int, default=None,
        help="keep only the first N classes of classes.txt (default: all 200)")
    add_build_arguments(parser, shard_size=DEFAULT_SHARD_SIZE, shard_size_help=f"default {DEFAULT_SHARD_SIZE}",
                        png_help="PNG files as <class>/<image stem>.png (an ImageFolder tree) with metadata.csv")
    return parser


def _main(argv: Sequence[str] | None) -> int:
    options = parse_options(build_parser(), argv)
    result = import_cub(options.pop("root"), options.pop("out"), **options)
    print(result.summary(), file=sys.stderr)
    if result.failures:
        print(f"{result.failures} unreadable images skipped (reasons in {result.out / 'failures.jsonl'})",
              file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_cli("import-cub", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
