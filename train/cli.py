"""``train-classifier``: pre-train or fine-tune a classifier on shards or an ImageFolder tree."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from fdsl.cli import (
    OneLineParser,
    add_threads,
    add_version,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    run_cli,
    setup_logging,
    use_threads,
)

PROG = "train-classifier"


def build_parser() -> OneLineParser:
    from fdsl.train.recipes import OPTIMIZERS, PRUNE_MODES, RECIPES, SCHEDULES, field_names

    parser = OneLineParser(
        prog=PROG,
        description="Pre-train or fine-tune an image classifier (ResNet-18/34/50, ViT-Tiny, timm:NAME) "
                    "on an fdsl shard folder or an ImageFolder tree (root/<class>/<image>). Writes "
                    "config.yaml, checkpoint.pt, metrics.jsonl, curves.png and summary.json into --out. "
                    "timm's train.py spellings work beside ours (-b, -j, --opt, --sched, --smoothing, "
                    "--reprob, --output, --torchcompile, --log-interval, ...).",
        epilog="Precedence: recipe < --config (or the run's config.yaml) < explicit flags < --set. "
               "Rerun a run: --config RUN/config.yaml (into RUN-rerun unless --out). Extend a "
               "finished run: --resume RUN --epochs N. Multi-GPU: torchrun --nproc_per_node N "
               "$(which train-classifier) ... (--batch-size is global).")
    io = parser.add_argument_group("data and run folder")
    io.add_argument("--data", "--data-dir", help="training data: shard folder (manifest.json), "
                    "ImageFolder root, or gen:FOLDER, a gen-fractal folder (--params-only is enough) whose "
                    "images are made as training reads them, on the GPU when training there (default: the "
                    "data of the run --resume or --config names)")
    io.add_argument("--out", "--output", help="run folder for checkpoints, metrics, curves and summary "
                    "(locked while the run lasts; default: the run --resume names, or RUN-rerun beside "
                    "the run whose config.yaml --config names)")
    io.add_argument("--val-data", help="held-out folder with the same classes (default: hold out --val-fraction of --data)")
    io.add_argument("--val-fraction", type=fraction, help="stratified, seeded share of --data held out for testing "
                    "(recipe default: 0.1; 0.2 for finetune; 0 = no held-out test)")
    io.add_argument("--train-indices", metavar="FILE",
                    help="rows of --data to train on (.npy or .json list of ints), before pruning")
    io.add_argument("--val-indices", metavar="FILE",
                    help="held-out rows (.npy or .json list of ints) of --val-data, or of --data "
                         "instead of the --val-fraction split")
    io.add_argument("--finetune-from", help="checkpoint (fdsl checkpoint.pt or model.safetensors, or a "
                    "torchvision/timm state_dict, read with weights_only=True) whose backbone "
                    "initialises the model; the head is new")
    io.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN",
                    help="continue RUN (a run folder or its checkpoint.pt; bare --resume: --out) from its "
                         "checkpoint with the settings of its config.yaml; a larger --epochs extends a "
                         "finished run (schedule recomputed, as timm); other changes are refused")
    io.add_argument("--overwrite", action="store_true",
                    help="replace a previous run's outputs in --out (else an existing run is an error)")
    io.add_argument("--stop-after-epochs", type=positive_int,
                    help="stop after this many epochs of this invocation (continue later with --resume)")
    rec = parser.add_argument_group("recipe and overrides")
    rec.add_argument("--recipe", choices=sorted(RECIPES),
                     help="preset of all settings (default: the saved run's, else fractaldb-resnet)")
    rec.add_argument("--model", help="resnet18, resnet34, resnet50, vit_tiny (= deit_tiny) or timm:NAME "
                     "(needs timm); default: the recipe's")
    rec.add_argument("--config", help="YAML/JSON file of config fields overriding the recipe, or a "
                     "run's config.yaml: reruns that run alone (its data paths included)")
    rec.add_argument("--print-config", action="store_true",
                     help="print the resolved config as YAML (the form --config reads) and exit")
    rec.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override any config field, e.g. --set step_at=[0.5,0.75] (repeatable); "
                          f"fields: {', '.join(field_names())}")
    rec.add_argument("--epochs", type=positive_int, help="training epochs")
    rec.add_argument("--batch-size", "-b", type=positive_int, help="global batch size (split over DDP processes)")
    rec.add_argument("--lr", type=positive_float, help="peak learning rate")
    rec.add_argument("--momentum", type=non_negative_float, help="SGD momentum")
    rec.add_argument("--weight-decay", type=non_negative_float, help="weight decay")
    rec.add_argument("--optimizer", "--opt", choices=OPTIMIZERS, help="optimiser")
    rec.add_argument("--schedule", "--sched", choices=SCHEDULES, help="learning-rate schedule")
    rec.add_argument("--warmup-epochs", type=non_negative_float, help="linear warm-up epochs")
    rec.add_argument("--min-lr", type=non_negative_float, help="floor of the cosine schedule")
    rec.add_argument("--gamma", "--decay-rate", type=positive_float,
                     help="learning-rate factor at each step / plateau")
    rec.add_argument("--plateau-patience", "--patience-epochs", type=non_negative_int,
                     help="epochs without improvement before the plateau schedule decays")
    rec.add_argument("--label-smoothing", "--smoothing", type=fraction, help="label smoothing")
    rec.add_argument("--image-size", "--img-size", type=positive_int, help="crop size fed to the model (px)")
    rec.add_argument("--mixup", type=non_negative_float, help="mixup Beta alpha (0 = off)")
    rec.add_argument("--cutmix", type=non_negative_float, help="cutmix Beta alpha (0 = off)")
    rec.add_argument("--mix-prob", "--mixup-prob", type=fraction,
                     help="probability that a batch is mixed (mixup/cutmix)")
    rec.add_argument("--hflip", type=fraction, help="horizontal flip probability")
    rec.add_argument("--color-jitter", type=fraction, help="colour jitter strength")
    rec.add_argument("--random-erasing", "--reprob", type=fraction, help="random erasing probability")
    rec.add_argument("--drop-path", type=fraction, help="stochastic depth rate")
    rec.add_argument("--grad-clip", "--clip-grad", type=non_negative_float,
                     help="clip the gradient norm to this (0 = off)")
    rec.add_argument("--self-paced-threshold", type=non_negative_float,
                     help="self-paced augmentation: augment only samples whose un-augmented loss is >= "
                          "this (0 = augment all)")
    rec.add_argument("--self-paced-ratio", type=fraction,
                     help="self-paced augmentation: augment this share of each batch, the samples of "
                          "highest un-augmented loss (0 = off; excludes --self-paced-threshold)")
    rec.add_argument("--split-by", metavar="FIELD",
                     help="hold out whole groups of this metadata field, e.g. model_id for renders, so "
                          "views of one model never sit on both sides of the split")
    rec.add_argument("--prune", choices=PRUNE_MODES,
                     help="prune the training split per class: random, or drop-smallest / drop-largest "
                          "by --prune-field (default none)")
    rec.add_argument("--prune-field", help="metadata field that ranks the images, e.g. area (renders)")
    rec.add_argument("--keep-fraction", type=fraction, help="fraction of each class kept by --prune")
    rec.add_argument("--seed", type=non_negative_int, help="seed of the split, model init, order and augmentation")
    rec.add_argument("--workers", "-j", type=non_negative_int, help="data loader workers (0 = main process)")
    rec.add_argument("--fresh-instances", action="store_true", default=None,
                     help="with --data gen:FOLDER: new instances of the classes every epoch (epoch 0 is the "
                          "data set itself; held-out rows stay its images)")
    run = parser.add_argument_group("device and output")
    run.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"),
                     help="auto = CUDA when available (bf16 autocast + channels_last there)")
    add_threads(run, "one per core; 1 is faster on a busy machine", "--cpu-threads")
    run.add_argument("--compile", "--torchcompile", action="store_true", default=None,
                     help="torch.compile the model")
    run.add_argument("--amp", action=argparse.BooleanOptionalAction,
                     help="bf16 autocast (default: on CUDA only; --amp also on CPU)")
    run.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                     help="channels_last memory format (default: on CUDA only)")
    run.add_argument("--tensorboard", action="store_true", default=None,
                     help="also write TensorBoard scalars to RUN/tensorboard (needs tensorboard)")
    run.add_argument("--analysis", action=argparse.BooleanOptionalAction,
                     help="error analysis of the held-out set at the end (default on)")
    run.add_argument("--log-interval", type=non_negative_int, default=50, metavar="STEPS",
                     help="a progress line every STEPS training steps in batch logs, as timm (default 50; "
                          "also every FDSL_PROGRESS_INTERVAL seconds; a terminal shows a bar)")
    run.add_argument("-q", "--quiet", action="store_true",
                     help="no progress and no log lines: only warnings, errors and the result line")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return add_version(parser)


FIELD_FLAGS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "optimizer", "schedule",
               "warmup_epochs", "min_lr", "gamma", "plateau_patience", "label_smoothing", "image_size",
               "mixup", "cutmix", "mix_prob", "hflip", "color_jitter", "random_erasing", "drop_path",
               "grad_clip", "self_paced_threshold", "self_paced_ratio", "seed", "workers", "compile",
               "val_fraction", "split_by", "prune", "prune_field", "keep_fraction", "train_indices",
               "val_indices", "amp", "channels_last", "tensorboard", "analysis", "fresh_instances")


def _body(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    from fdsl.train.recipes import config_yaml, parse_set

    fields = {name: getattr(args, name) for name in FIELD_FLAGS}
    if args.print_config:
        from fdsl.train.runconfig import resolve_run

        spec = resolve_run(args.data, args.out, recipe=args.recipe, model=args.model,
                           resume=args.resume, config_file=args.config, overrides=parse_set(args.set),
                           **fields)
        print(config_yaml(spec.config), end="")
        return 0
    from fdsl.train.loop import train_classifier

    use_threads(args.threads)

    summary = train_classifier(
        args.data, args.out, recipe=args.recipe, model=args.model, finetune_from=args.finetune_from,
        val_data=args.val_data, device=args.device, resume=args.resume, config_file=args.config,
        overrides=parse_set(args.set), stop_after_epochs=args.stop_after_epochs, overwrite=args.overwrite,
        log_interval=args.log_interval, progress=not args.quiet, **fields)
    if os.environ.get("RANK", "0") == "0":
        print(result_line(summary))
    return 0


def result_line(summary: dict) -> str:
    """The one line a finished run prints: held-out accuracy, epochs, speed and the run folder."""
    top1 = summary["top1"]
    shown = "n/a (no held-out set)" if top1 is None else f"{top1:.4f}"
    top5 = f", top-5 {summary['top5']:.4f}" if summary.get("top5") is not None else ""
    speed = summary.get("images_per_second")
    rate = f", {speed:,.0f} img/s" if speed else ""
    return (f"top-1 {shown}{top5} after {summary['epochs_done']} epochs ({summary['model']}{rate}); "
            f"run folder {summary['run_dir']}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``train-classifier``."""
    return run_cli(PROG, _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
