"""``gen-fractal``: generate FractalDB, ExFractalDB or RCDB into HDF5 shards (or official PNGs)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fdsl.atomic import ensure_writable
from fdsl.cli import OneLineParser, positive_int, run_cli, setup_logging
from fdsl.datasets.build import BuildResult, build_dataset
from fdsl.datasets.buildcli import add_build_arguments
from fdsl.datasets.jobs import default_workers
from fdsl.errors import FdslError
from fdsl.generators.registry import GENERATORS, available, get_generator


def check_writable(out: Path) -> list[Path]:
    """Create ``out`` and write a probe file in it, so an unusable folder fails before a long
    category search; returns the folders it created (deepest first). FdslError (one line)."""
    created = [p for p in (out, *out.parents) if not p.exists()]
    ensure_writable(out)
    return created


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def generate(
    db: str,
    out: str | Path,
    *,
    classes: int,
    instances: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    image_size: int | None = None,
    points: int | None = None,
    shard_size: int = 10_000,
    compression: str = "lz4",
    fmt: str = "hdf5",
    overwrite: bool = False,
    params_from: str | Path | None = None,
    backend: str = "local",
    **options: Any,
) -> BuildResult:
    """Generate data set ``db`` into ``out`` and return the build summary.

    ``classes`` and ``instances`` (images per class) size the data set; ``None`` settings take
    the data set's official defaults. Re-running the same call resumes; different settings into
    the same folder raise ConfigMismatchError unless ``overwrite``.
    """
    if classes <= 0:
        raise FdslError(f"--classes must be positive, got {classes}")
    module = get_generator(db)
    unknown = set(options) - set(module.OPTION_NAMES)
    if unknown:
        raise FdslError(f"option(s) {', '.join(sorted(unknown))} do not apply to --db {db}")
    workers = workers or default_workers()
    created = check_writable(Path(out))
    try:
        source = module.make_source(classes=classes, instances=instances, seed=seed, image_size=image_size,
                                    points=points, params_from=Path(params_from) if params_from else None,
                                    workers=workers, backend=backend, **options)
    except BaseException:
        _remove_empty(created)  # a bad setting or an interrupted search leaves no empty folder behind
        raise
    return build_dataset(source, out, shard_size=shard_size, workers=workers, backend=backend,
                         compression=compression, storage=fmt, overwrite=overwrite)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="gen-fractal",
        description="Generate a formula-driven data set (FractalDB, ExFractalDB, RCDB) into resumable, "
                    "checksummed HDF5 shards. Every image is fixed by the seed and its index alone.",
    )
    parser.add_argument("--db", required=True, choices=list(GENERATORS),
                        help="which data set: " + "; ".join(f"{n}: {m.DESCRIPTION}" for n, m in available().items()))
    parser.add_argument("--classes", type=positive_int, required=True, help="number of classes (categories)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created; re-run to resume)")
    parser.add_argument("--instances", type=positive_int, default=None,
                        help="images per class (default: the data set's official 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed that fixes every image bit for bit (default 0)")
    parser.add_argument("--image-size", type=positive_int, default=None,
                        help="image side in pixels (default: fractaldb 362, exfractaldb 224, rcdb 512)")
    parser.add_argument("--points", type=positive_int, default=None,
                        help="points per fractal (default: fractaldb 200000, exfractaldb 100000)")
    parser.add_argument("--params-from", type=Path, default=None,
                        help="regenerate from saved class parameters instead of searching: the classes.npz of an earlier run, "
                             "or (fractaldb) a folder of the official code's per-class CSV files")
    add_build_arguments(parser, shard_size=10_000, shard_size_help="default 10000",
                        png_help="PNG files in the official folder layout")
    for name, module in available().items():
        module.add_arguments(parser.add_argument_group(f"{name} options"))
    return parser


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    module = get_generator(args.db)
    given = {k: v for k, v in vars(args).items() if any(k in m.OPTION_NAMES for m in available().values())}
    wrong = [k for k, v in given.items() if v is not None and k not in module.OPTION_NAMES]
    if wrong:
        flags = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise FdslError(f"{flags} do(es) not apply to --db {args.db}")
    options = {k: v for k, v in given.items() if k in module.OPTION_NAMES and v is not None}
    result = generate(args.db, args.out, classes=args.classes, instances=args.instances, seed=args.seed,
                      workers=args.workers, image_size=args.image_size, points=args.points,
                      shard_size=args.shard_size, compression=args.compression, fmt=args.fmt,
                      overwrite=args.overwrite, params_from=args.params_from, backend=args.backend, **options)
    print(result.summary(), file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("gen-fractal", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
