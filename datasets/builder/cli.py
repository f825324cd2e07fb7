"""Command-line glue for the builder: the flags every data-set CLI shares and their hand-over.

Kept apart from ``build.py`` so that the library never imports CLI code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fdsl.cli import add_quiet, add_version, positive_int, setup_logging
from fdsl.datasets.builder.build import BuildResult, build_dataset
from fdsl.datasets.builder.jobs import BACKENDS, default_workers
from fdsl.datasets.format import COMPRESSIONS, STORAGES
from fdsl.sources import ShardSource

# Dest names of the shared flags, i.e. the keyword arguments of ``build_kwargs``.
BUILD_OPTIONS = ("workers", "backend", "shard_size", "compression", "fmt", "overwrite", "quiet",
                 "params_only")


def add_build_arguments(parser: argparse.ArgumentParser, *, shard_size: int | None, shard_size_help: str,
                        png_help: str, workers_help: str = "worker processes") -> None:
    """Add the flags every builder CLI shares; their names match ``build_dataset``'s parameters
    (``--format`` is ``fmt``, passed on as ``storage``; ``--quiet`` is ``progress=False``), plus
    ``--verbose`` and ``--version``."""
    group = parser.add_argument_group("output and execution")
    add = group.add_argument
    add("--workers", type=positive_int, default=None,
        help=f"{workers_help} (default: all cores, here {default_workers()})")
    add("--backend", choices=sorted(BACKENDS), default="local",
        help="where shards run: local processes (default), inline (this process), ray (a Ray cluster)")
    add("--shard-size", type=positive_int, default=shard_size, help=f"images per shard file ({shard_size_help})")
    add("--compression", choices=COMPRESSIONS, default="lz4",
        help="per-image chunk compression in the shards (default lz4)")
    add("--format", dest="fmt", choices=STORAGES, default="hdf5", help=f"hdf5 shards (default) or {png_help}")
    add("--overwrite", action="store_true", help="replace a data set made with other settings in --out")
    add("--verbose", action="store_true", help="debug logging")
    add_quiet(group)
    add_version(parser)


def parse_options(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> dict[str, Any]:
    """Parse a builder CLI's ``argv``, set up logging (``--verbose``, ``--quiet``) and return the
    options (``quiet`` among them, for ``build_kwargs``)."""
    options = vars(parser.parse_args(argv))
    setup_logging(options.pop("verbose", False), options.get("quiet", False))
    return options


def build_kwargs(args: argparse.Namespace | dict[str, Any]) -> dict[str, Any]:
    """The shared build settings of parsed options, as ``build_dataset`` keyword arguments."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    kwargs = {name: values[name] for name in BUILD_OPTIONS if name in values}
    if "fmt" in kwargs:
        kwargs["storage"] = kwargs.pop("fmt")
    if "quiet" in kwargs:
        kwargs["progress"] = not kwargs.pop("quiet")
    return kwargs


def build_from_options(source: ShardSource | Callable[[], ShardSource], out: str | Path, *, strict: bool = False,
                       **options: Any) -> BuildResult:
    """Run the builder on ``source`` (or a factory of it, called under the folder lock: see
    ``build_dataset``) with the shared settings among ``options``: others are ignored (parsed CLI
    options), or refused with ``strict`` (a library call's ``**build``)."""
    unknown = sorted(set(options) - set(BUILD_OPTIONS))
    if strict and unknown:
        raise TypeError(f"unexpected build option(s): {', '.join(unknown)}; known: {', '.join(BUILD_OPTIONS)}")
    return build_dataset(source, out, **build_kwargs(options))
