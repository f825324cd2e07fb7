"""``inspect-shards``: the command-line face of ``fdsl.datasets.inspect.report.inspect_shards``."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from fdsl.cli import (
    Folder,
    OneLineParser,
    add_folders,
    add_quiet,
    add_version,
    positive_int,
    run_cli,
    setup_logging,
)
from fdsl.datasets.inspect.report import inspect_shards
from fdsl.datasets.inspect.summary import format_summary


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="inspect-shards",
                           description="Summarise, verify and look at an fdsl data set (HDF5 shards or a PNG tree).")
    add_folders(parser, Folder("--data", "DIR", "the data set folder", "data set folder (holds manifest.json)"))
    parser.add_argument("--verify", action="store_true",
                        help="check the manifest, and the size, sha256 and content of every listed file; exit 1 and name each bad file")
    parser.add_argument("--grid", type=Path, metavar="OUT.png", help="write a contact sheet, a row per class")
    parser.add_argument("--per-class", type=positive_int, default=10, help="thumbnails per row (default 10)")
    parser.add_argument("--max-classes", type=positive_int, default=20, help="rows at most (default 20)")
    parser.add_argument("--sort-by", metavar="FIELD",
                        help="order each row by a metadata field (e.g. area), smallest to largest")
    parser.add_argument("--hist", nargs=2, metavar=("FIELD", "OUT.png"),
                        help="write a histogram of a metadata field per class")
    parser.add_argument("--stats", type=Path, metavar="OUT_FOLDER",
                        help="write stats.json, a bar chart of intra-class std and a heat map of "
                             "class-mean distances (pixels at 32x32) into OUT_FOLDER")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_quiet(parser)
    return add_version(parser)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)
    report = inspect_shards(Path(args.data), verify=args.verify, grid=args.grid, per_class=args.per_class,
                            max_classes=args.max_classes, sort_by=args.sort_by,
                            hist=tuple(args.hist) if args.hist else None, stats=args.stats,
                            progress=not args.quiet)
    if report.summary:
        print(json.dumps(report.summary, indent=1) if args.json else format_summary(report.summary))
    for path in report.written:
        print(f"wrote {path}")
    if report.verified:
        for problem in report.problems:
            print(f"BAD {problem}", file=sys.stderr)
        if report.problems:
            print(f"verify: {len(report.problems)} problem(s) found", file=sys.stderr)
            return 1
        print(f"verify: all {report.summary['shards']} shards and their checksums OK")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("inspect-shards", _main, argv)


if __name__ == "__main__":
    sys.exit(main())
