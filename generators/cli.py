"""``gen-fractal``: generate a registered formula-driven data set into HDF5 shards (or official PNGs).

The data sets, their flags and their defaults come from the generator registry
(``fdsl.generators.registry``); this module only parses, checks sizes and hands over to the builder.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fdsl.cli import OneLineParser, positive_int, run_cli, setup_logging
from fdsl.errors import FdslError
from fdsl.generators import limits
from fdsl.generators.registry import COMMON_SETTINGS, GeneratorSpec, generators, get_generator

if TYPE_CHECKING:
    from fdsl.datasets.build import BuildResult


def check_writable(out: Path) -> list[Path]:
    """Refuse an unusable or busy ``out`` before a long category search, creating nothing (a
    refused run leaves no trace); returns the folders it created: none. FdslError (one line)."""
    from fdsl.atomic import check_output_folder

    check_output_folder(out)
    return []


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _flag(setting: str) -> str:
    return "--" + setting.replace("_", "-")


def _settings(spec: GeneratorSpec, common: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``spec.make_source`` for these settings; FdslError for a setting
    or option that does not apply to the generator."""
    wrong = [k for k, v in common.items() if v is not None and not spec.takes(k)]
    wrong += sorted(set(options) - set(spec.option_names))
    if wrong:
        verb = "does" if len(wrong) == 1 else "do"
        raise FdslError(f"{', '.join(_flag(k) for k in wrong)} {verb} not apply to --db {spec.name}")
    return {k: v for k, v in common.items() if spec.takes(k)} | options


def _default(spec: GeneratorSpec, setting: str, value: Any) -> Any:
    """``value``, or the spec's numeric default for it (None when it has none)."""
    if value is not None:
        return value
    default = spec.defaults.get(setting)
    return default if isinstance(default, int) else None


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
    the data set's official defaults; ``options`` are the generator's own flags (dest names).
    Sizes are checked (``fdsl.generators.limits``) before any work or file. Re-running the same
    call resumes; different settings into the same folder raise ConfigMismatchError unless
    ``overwrite``.
    """
    if classes <= 0:
        raise FdslError(f"--classes must be positive, got {classes}")
    spec = get_generator(db)
    kwargs = _settings(spec, {"instances": instances, "image_size": image_size, "points": points}, options)
    from fdsl.datasets.build import build_dataset
    from fdsl.datasets.jobs import default_workers

    workers = workers or default_workers()
    limits.check_job(classes=classes, instances=_default(spec, "instances", instances),
                     image_size=_default(spec, "image_size", image_size), points=_default(spec, "points", points),
                     workers=workers, shard_size=shard_size, channels=3 if options.get("color") == "color" else 1)
    created = check_writable(Path(out))
    try:
        source = spec.make_source(classes=classes, seed=seed, params_from=Path(params_from) if params_from else None,
                                  workers=workers, backend=backend, **kwargs)
    except BaseException:
        _remove_empty(created)  # a bad setting or an interrupted search leaves no empty folder behind
        raise
    return build_dataset(source, out, shard_size=shard_size, workers=workers, backend=backend,
                         compression=compression, storage=fmt, overwrite=overwrite)


def _default_help(setting: str, specs: dict[str, GeneratorSpec]) -> str:
    given = [f"{name} {spec.defaults[setting]}" for name, spec in specs.items() if spec.takes(setting)]
    return f"default: {', '.join(given)}" if given else "no generator takes it"


def build_parser() -> argparse.ArgumentParser:
    from fdsl.datasets.buildcli import add_build_arguments

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
    add_build_arguments(parser, shard_size=10_000, shard_size_help="default 10000",
                        png_help="PNG files in the official folder layout")
    for name, spec in specs.items():
        spec.add_arguments(parser.add_argument_group(f"{name} options"))
    return parser


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    values = vars(args)
    own = {k for spec in generators().values() for k in spec.option_names}
    options = {k: v for k, v in values.items() if k in own and v is not None}
    common = {k: values[k] for k in COMMON_SETTINGS}
    result = generate(args.db, args.out, classes=args.classes, seed=args.seed, workers=args.workers,
                      shard_size=args.shard_size, compression=args.compression, fmt=args.fmt,
                      overwrite=args.overwrite, params_from=args.params_from, backend=args.backend,
                      **common, **options)
    print(result.summary(), file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("gen-fractal", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
