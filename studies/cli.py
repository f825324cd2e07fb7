"""run-study: run a whole study (a folder of train-classifier runs) with one command.

Subcommands: ``pruning`` (data pruning by a recorded field), ``transfer`` (pre-training against
from scratch), ``augment`` (augmentation search and self-paced arms, from
``fdsl.studies.augment``) and ``stats`` (data-set statistics, optionally in a checkpoint's
feature space). Re-running a study resumes it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from fdsl.cli import (
    Folder,
    OneLineParser,
    add_folders,
    add_quiet,
    add_threads,
    add_version,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_int,
    run_cli,
    setup_logging,
    use_threads,
)
from fdsl.errors import FdslError

PROG = "run-study"


def _list_of(kind: Callable[[str], Any], allow_all: bool = False) -> Callable[[str], list[Any]]:
    """argparse type: a comma-separated list of ``kind`` values (``all`` -> None when allowed)."""
    def parse(text: str) -> list[Any]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return [None if allow_all and t == "all" else kind(t) for t in items]

    return parse


def _per_class(text: str) -> int | None:
    return None if text == "all" else positive_int(text)


def _open_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1, got {text!r}")
    return value


def parse_named(items: Sequence[str] | None, what: str) -> dict[str, str]:
    """``["fractaldb=data/fdb", "digits"]`` -> ``{"fractaldb": "data/fdb", "digits": ""}`` (a bare
    name maps to "": a built-in data set)."""
    named: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not name or (sep and not value.strip()):
            raise FdslError(f"{what} expects NAME=DIR, got {item!r}")
        if name in named:
            raise FdslError(f"{what} {name!r} is given twice")
        named[name] = value.strip()
    return named


def _common(p: argparse.ArgumentParser, seeds: str) -> None:
    p.add_argument("--out", required=True, help="study folder (created; re-run the same command to resume)")
    p.add_argument("--seeds", type=_list_of(non_negative_int), default=_list_of(non_negative_int)(seeds),
                   help=f"training seeds, comma-separated (default {seeds})")
    p.add_argument("--jobs", type=positive_int, default=1, help="runs in parallel (default 1)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local processes, or Ray tasks on a cluster (RAY_ADDRESS) or a local Ray")
    add_threads(p, "the cores shared out among the --jobs runs")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto", help="training device")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a study made with other settings in --out (else it is an error)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_quiet(p)
    add_version(p)


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0],
                           epilog="Each study writes study.json, runs/<cell>/ (train-classifier run folders), "
                                  "table.md and results.csv into --out.")
    sub = parser.add_subparsers(dest="study", required=True, parser_class=OneLineParser)

    p = sub.add_parser("pruning", help="prune each class by a recorded field (min/max) vs at random",
                       description="Viewpoint-pruning study: a test set of whole models, disjoint per-class "
                                   "training subsets per size, 10% removed per class by random / min-FIELD / "
                                   "max-FIELD, one run each. Writes table.md, results.csv, results.png.")
    p.add_argument("--data", required=True, help="shard folder with a numeric field (render-shapenet, import-cub)")
    p.add_argument("--preset", default="mini", choices=("paper", "mini", "demo", "cub"),
                   help="training settings and defaults: paper (ResNet-18, SGD 0.001, batch 4, 30 epochs), "
                        "mini (4 sizes x 10 splits, about 30 minutes on a 2-core CPU), demo, cub (ResNet-50, "
                        "95 epochs)")
    p.add_argument("--sizes", type=_list_of(positive_int, allow_all=True),
                   help="training images per class, comma-separated, 'all' = the whole pool "
                        "(default: the preset's; paper 250,500,1000,2000)")
    p.add_argument("--splits", type=positive_int, help="at most K disjoint subsets per size (default: the preset's; "
                                                       "paper: as many as fit)")
    p.add_argument("--fraction", type=_open_fraction, default=0.1, help="share of each class removed (default 0.1)")
    p.add_argument("--field", help="numeric metadata field ranking the images (default: area; cub: visible_parts)")
    p.add_argument("--test-per-class", type=positive_int, help="test views per class, whole models (paper: 1000)")
    p.add_argument("--test-data", help="separate test folder (e.g. import-cub --split test); all of --data is the pool")
    p.add_argument("--group-by", default="model_id",
                   help="field whose groups stay on one side of the test split (default model_id; 'none')")
    p.add_argument("--finetune-from", help="weights every run starts from: an fdsl checkpoint, or a torchvision/timm "
                                           "ResNet weight file (.pth or .safetensors, e.g. ImageNet-21k ResNet-50)")
    p.add_argument("--study-seed", type=non_negative_int, default=0,
                   help="fixes the test set, the splits, tie-breaking of --field and the random arm's draws "
                        "(default 0)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="train-classifier config field for every run")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep each finished run's checkpoint.pt and model.safetensors (default: only its summary, "
                        "metrics, predictions and curves; a paper-size study has hundreds of runs)")
    _common(p, "0")

    t = sub.add_parser("transfer", help="formula-driven pre-training vs from scratch on downstream sets",
                       description="Pre-train every --pretrain set once per --pretrain-seeds seed, fine-tune "
                                   "on each --downstream set, against from scratch with the same settings, "
                                   "over --seeds; the contour-study ablations are further --pretrain arms.")
    t.add_argument("--pretrain", action="append", default=[], metavar="NAME=DIR",
                   help="pre-training data set folder, or NAME=gen:DIR: a generated set made on the fly "
                        "(repeat: fractaldb=..., linedb-shuffled=..., rcdb-broken=...)")
    t.add_argument("--downstream", action="append", default=[], metavar="NAME=DIR",
                   help="downstream shard folder or ImageFolder tree; 'digits' = scikit-learn's digits (built in)")
    t.add_argument("--preset", default="mini", choices=("paper", "mini"), help="training settings")
    t.add_argument("--pretrain-seeds", type=_list_of(non_negative_int), default=[0, 1],
                   help="pre-train every --pretrain set once per seed, comma-separated (default 0,1, so the "
                        "table's spread covers pre-training as well as fine-tuning variation; 0 alone leaves "
                        "pre-training variation out, and the table says so)")
    t.add_argument("--not-mirror-symmetric", action="append", default=[], metavar="NAME",
                   help="downstream set NAME is not mirror-symmetric (text, digits): no horizontal flips "
                        "(sets whose manifest says \"mirror_symmetric\": false, such as digits, need no flag)")
    t.add_argument("--train-per-class", type=_per_class, default=-1,
                   help="training images per class of each downstream set, or 'all' (mini: 20)")
    t.add_argument("--test-fraction", type=_open_fraction, help="share of each downstream class tested (mini: 0.1)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="config field of the downstream runs")
    t.add_argument("--pretrain-set", action="append", metavar="KEY=VALUE", help="config field of the pre-training runs")
    _common(t, "0,1,2")

    a = sub.add_parser("augment", help="augmentation search by affinity and diversity; self-paced arms")
    a.add_argument("--data", required=True, help="shard folder or ImageFolder tree")
    a.add_argument("--candidates", type=_list_of(str), default=None,
                   help="augmentations, e.g. flip,erasing:0.5,flip+crop (default: 8 candidates, "
                        "flip,crop,jitter,erasing,rotation,mixup,cutmix,flip+crop)")
    a.add_argument("--top", type=positive_int,
                   help="train only the K best candidates by the short-run affinity x diversity score")
    a.add_argument("--self-paced", action="store_true", help="compare none / all / threshold / ratio instead")
    a.add_argument("--threshold", type=non_negative_float, default=1.0,
                   help="loss threshold of the self-paced threshold arm (default 1.0)")
    a.add_argument("--ratio", type=fraction, default=0.5,
                   help="share of each batch augmented in the self-paced ratio arm (default 0.5)")
    a.add_argument("--preset", default="mini", help="training settings (default mini)")
    a.add_argument("--short-epochs", type=positive_int,
                   help="epochs of the short runs the cheap metrics come from (default: the preset's; mini: 4)")
    a.add_argument("--set", action="append", metavar="KEY=VALUE", help="train-classifier config field for every run")
    _common(a, "0")

    s = sub.add_parser("stats", help="intra-class std and class-mean distances in a checkpoint's feature space")
    add_folders(s, Folder("--data", "DIR", "the data set folder", "data set folder"))
    s.add_argument("--out", required=True, help="folder for stats.json and the two plots")
    s.add_argument("--checkpoint", help="fdsl checkpoint.pt: features = its penultimate layer (default: pixels)")
    s.add_argument("--max-per-class", type=positive_int, default=200, help="images per class, sampled (default 200)")
    s.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device of the feature model")
    add_threads(s, "one per core")
    s.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_quiet(s)
    add_version(s)
    return add_version(parser)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    from fdsl.train.recipes import parse_set

    shared = dict(jobs=args.jobs, backend=args.backend, threads=args.threads, device=args.device,
                  overwrite=args.overwrite, progress=not args.quiet)
    if args.study == "pruning":
        from fdsl.studies.pruning import run_pruning_study

        return run_pruning_study(args.data, args.out, preset=args.preset, sizes=args.sizes, splits=args.splits,
                                 fraction=args.fraction, field=args.field, test_per_class=args.test_per_class,
                                 test_data=args.test_data, group_by=None if args.group_by == "none" else args.group_by,
                                 seeds=args.seeds, study_seed=args.study_seed, overrides=parse_set(args.set),
                                 finetune_from=args.finetune_from, keep_checkpoints=args.keep_checkpoints,
                                 **shared)
    from fdsl.studies.transfer import run_transfer_study

    return run_transfer_study(args.out, pretrain=parse_named(args.pretrain, "--pretrain"),
                              downstream=parse_named(args.downstream, "--downstream"), seeds=args.seeds,
                              pretrain_seeds=args.pretrain_seeds, not_mirror_symmetric=args.not_mirror_symmetric,
                              preset=args.preset, train_per_class=args.train_per_class,
                              test_fraction=args.test_fraction, finetune_overrides=parse_set(args.set),
                              pretrain_overrides=parse_set(args.pretrain_set), **shared)


def _augment(args: argparse.Namespace) -> dict[str, Any]:
    from fdsl.studies.augment import run_augment_study
    from fdsl.train.recipes import parse_set

    chosen = {} if args.candidates is None else {"candidates": args.candidates}  # None: the study's 8
    return run_augment_study(args.data, args.out, **chosen, top=args.top,
                             self_paced=args.self_paced, seeds=tuple(args.seeds), preset=args.preset,
                             overrides=parse_set(args.set), jobs=args.jobs, overwrite=args.overwrite,
                             threshold=args.threshold, ratio=args.ratio, device=args.device,
                             backend=args.backend, threads=args.threads, short_epochs=args.short_epochs,
                             progress=not args.quiet)


def _g(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    if args.study == "stats":
        from fdsl.studies.stats import checkpoint_stats

        use_threads(args.threads)
        stats = checkpoint_stats(args.data, args.out, args.checkpoint, max_per_class=args.max_per_class,
                                 device=args.device, progress=not args.quiet)
        print(f"feature space: {stats['feature_space']}; mean intra-class std {stats['mean_intra_class_std']:.4g}, "
              f"mean class-mean distance {_g(stats['mean_class_mean_distance'])}")
        print("\n".join(f"wrote {p}" for p in stats["written"]))
        return 0
    result = _augment(args) if args.study == "augment" else _run(args)
    if result.get("table"):
        print(result["table"])
    print(f"study folder {args.out}" + (f"; {result['seconds']} s" if "seconds" in result else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``run-study``."""
    return run_cli(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
