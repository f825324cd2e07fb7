"""``gen-fractal``: generate a registered formula-driven data set into HDF5 shards (or official PNGs).

A thin wrapper over ``fdsl.generators.generate.generate``: the data sets, their flags and their
defaults come from the generator registry (``fdsl.generators.registry``); this module only parses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fdsl import limits
from fdsl.cli import OneLineParser, positive_int, run_cli
from fdsl.generators.generate import generate
from fdsl.generators.registry import COMMON_SETTINGS, GeneratorSpec, generators

__all__ = ["build_parser", "generate", "main"]


def _default_help(setting: str, specs: dict[str, GeneratorSpec]) -> str:
    given = [f"{name} {spec.defaults[setting]}" for name, spec in specs.items() if spec.takes(setting)]
    return f"default: {', '.join(given)}" if given else "no generator takes it"


def build_parser() -> argparse.ArgumentParser:
    from fdsl.datasets.builder.cli import add_build_arguments

    specs = generators()
    parser = OneLineParser(
        prog="gen-fractal",
        description="Generate a formula-driven data set (" + ", ".join(specs) + ") into resumable, "
                    "checksummed HDF5 shards. Every image is fixed by the seed and its index alone.",
    )
    parser.add_argument("--db", required=True, choices=list(specs),
                        help="which data set: " + "; ".join(f"{n}: {s.description}" for n, s in specs.items()))
    parser.add_argument("--classes", type=positive_int, required=True,
                        help=f"number of classes (categories), at most {limits.MAX_CLASSES:,}")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created; re-run to resume)")
    parser.add_argument("--instances", type=positive_int, default=None,
                        help=f"images per class ({_default_help('instances', specs)})")
    parser.add_argument("--seed", type=int, default=0, help="seed that fixes every image bit for bit (default 0)")
    parser.add_argument("--image-size", type=positive_int, default=None,
                        help=f"image side in pixels ({_default_help('image_size', specs)})")
    parser.add_argument("--points", type=positive_int, default=None,
                        help=f"points per fractal ({_default_help('points', specs)})")
    parser.add_argument("--params-from", type=Path, default=None,
                        help="regenerate from saved class parameters instead of searching: the classes.npz of an earlier run, "
                             "or (fractaldb) a folder of the official code's per-class CSV files")
    parser.add_argument("--params-only", action="store_true",
                        help="write the manifest and the class parameters (classes.npz) but no shards: a folder to "
                             "train on with --data gen:FOLDER (images made as training reads them) or to render "
                             "later by running the same command without this flag")
    add_build_arguments(parser, shard_size=10_000, shard_size_help="default 10000",
                        png_help="PNG files in the official folder layout")
    for name, spec in specs.items():
        spec.add_arguments(parser.add_argument_group(f"{name} options"))
    return parser


def _main(argv: Sequence[str] | None) -> int:
    from fdsl.datasets.builder.cli import parse_options

    values = parse_options(build_parser(), argv)
    args = argparse.Namespace(**values)
    own = {k for spec in generators().values() for k in spec.option_names}
    options = {k: v for k, v in values.items() if k in own and v is not None}
    common = {k: values[k] for k in COMMON_SETTINGS}
    result = generate(args.db, args.out, classes=args.classes, seed=args.seed, workers=args.workers,
                      shard_size=args.shard_size, compression=args.compression, fmt=args.fmt,
                      overwrite=args.overwrite, params_from=args.params_from, backend=args.backend,
                      params_only=args.params_only, quiet=args.quiet, **common, **options)
    if args.params_only:
        print(f"{result.out}: manifest and class parameters of {result.classes} classes, no shards (train on "
              f"them with --data gen:{result.out}, or run again without --params-only to render the shards)",
              file=sys.stderr)
    else:
        print(result.summary(), file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("gen-fractal", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
