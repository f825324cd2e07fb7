"""``export-shards DIR --to webdataset|imagefolder|hf OUT`` (or ``--data DIR ... --out OUT``): the
command-line face of ``fdsl.datasets.export.export.export_shards``."""

from __future__ import annotations

from collections.abc import Sequence

from fdsl.cli import (
    Folder,
    OneLineParser,
    add_folders,
    add_quiet,
    add_version,
    non_negative_int,
    positive_int,
    run_cli,
    setup_logging,
)
from fdsl.datasets.export.export import export_shards
from fdsl.datasets.export.targets import TARGETS


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="export-shards",
        description="Export an fdsl data set (HDF5 shards or a PNG tree) as WebDataset tar "
                    "shards, an ImageFolder tree with metadata.csv, or a Hugging Face datasets "
                    "folder (save_to_disk). export.json, written last, lists what was written.")
    add_folders(parser, Folder("--data", "DIR", "the data set folder", "the fdsl data set folder (with manifest.json)"),
                Folder("--out", "OUT", "the export folder",
                       "the export folder (new, empty, or an earlier export with --overwrite)"))
    parser.add_argument("--to", required=True, choices=TARGETS, help="the export format")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier export in OUT (only files it wrote are removed)")
    parser.add_argument("--samples-per-tar", type=positive_int, default=10_000,
                        help="WebDataset samples per tar shard (default %(default)s)")
    order = parser.add_mutually_exclusive_group()
    order.add_argument("--shuffle-seed", type=non_negative_int, default=0,
                       help="WebDataset: write the samples in the order this seed shuffles them to, "
                            "across the tars (default %(default)s; order.json records it)")
    order.add_argument("--no-shuffle", action="store_true",
                       help="WebDataset: keep the data set's order (class by class)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar or progress lines (also none from the datasets library)")
    add_quiet(parser)
    return add_version(parser)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)
    result = export_shards(args.data, args.to, args.out, overwrite=args.overwrite,
                           samples_per_tar=args.samples_per_tar,
                           shuffle_seed=None if args.no_shuffle else args.shuffle_seed,
                           progress=not (args.no_progress or args.quiet))
    print(f"exported {result.num_images} images to {result.out} ({result.to}, "
          f"{len(result.files)} files)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("export-shards", _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
