"""Training recipes: named presets of every training setting, overridable field by field.

Resolution order (later wins): recipe preset < ``--config file.yaml`` < explicit flags <
``--set key=value``. The resolved config is saved in the run folder.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fdsl.errors import FdslError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "cosine_iter", "plateau", "constant")
INTERPOLATIONS = ("bilinear", "bicubic")
ERASING_MODES = ("const", "pixel")
CROPS = ("random", "random_resized", "center")
PRUNE_MODES = ("none", "random", "drop-smallest", "drop-largest")
SAVED_FIELDS = "recipe_fields"  # key of the resolved fields in a run's config.yaml


@dataclass
class TrainConfig:
    """Every setting of a training run. Sizes in pixels, epochs counted from 1."""

    model: str = "resnet18"
    epochs: int = 90
    batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"
    step_at: list[float] = field(default_factory=lambda: [1 / 3, 2 / 3])  # fractions of the run
    gamma: float = 0.1  # lr factor at each step / plateau
    plateau_patience: int = 5
    warmup_epochs: float = 0.0
    min_lr: float = 0.0  # cosine floor
    warmup_lr: float = 0.0  # cosine_iter: learning rate of the first step, rising linearly to lr
    label_smoothing: float = 0.0
    image_size: int = 224
    # Images are first resized so the short side is round(image_size * resize_ratio), then cropped.
    # None keeps the paper's proportion for pre-training data: native_side * image_size / 224.
    resize_ratio: float | None = None
    train_crop: str = "random"
    rrc_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    hflip: float = 0.0
    color_jitter: float = 0.0
    random_erasing: float = 0.0
    erasing_mode: str = "const"  # erased box filled with 0 after normalising, or N(0, 1) "pixel" noise
    # RandAugment policy in timm's notation, e.g. "rand-m9-mstd0.5-inc1" (fdsl.train.randaugment); "" = off
    auto_augment: str = ""
    aug_repeats: int = 0  # repeated augmentation: each image this many times an epoch (0 = off)
    interpolation: str = "bilinear"  # resize, random-resized crop and RandAugment: bilinear or bicubic
    rotation: float = 0.0  # random rotation up to +- this many degrees; 0 = off
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup; 0 = off
    cutmix: float = 0.0  # Beta(alpha, alpha) of cutmix; 0 = off
    mix_prob: float = 1.0
    mean: list[float] = field(default_factory=lambda: [0.2, 0.2, 0.2])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    self_paced_threshold: float = 0.0  # augment only samples whose loss >= this; 0 = all
    self_paced_ratio: float = 0.0  # augment the share of each batch with the highest loss; 0 = off
    drop_path: float = 0.0
    grad_clip: float = 0.0
    val_fraction: float = 0.1
    split_by: str = ""  # metadata field whose groups (e.g. model_id) stay on one side of the split
    # Data pruning of the training split, per class (fdsl.datasets.read.pruning): "none", "random",
    # "drop-smallest" or "drop-largest" by the metadata field prune_field, keeping keep_fraction.
    prune: str = "none"
    prune_field: str = ""
    keep_fraction: float = 1.0
    # Row indices (.npy or .json list of ints): train_indices are the training rows of the data
    # (before pruning); val_indices the held-out rows (of val_data if given, else of the data).
    # Either one turns the automatic val_fraction split off.
    train_indices: str = ""
    val_indices: str = ""
    seed: int = 0
    workers: int = 2
    # gen:FOLDER data: new instances every epoch (epoch e drawn with the seed
    # fdsl.generators.onthefly.epoch_seed(seed of the set, e); epoch 0 is the set itself).
    fresh_instances: bool = False
    # None = on CUDA only; true = on every device (bf16 autocast on CPU too); false = never.
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    save_every: int = 0  # keep checkpoint-epochNNN.pt every N epochs (0: only the latest)
    tensorboard: bool = False  # also log each epoch to RUN/tensorboard (needs tensorboard)
    analysis: bool = True  # per-class accuracy and error analysis of the held-out set at the end

    def validate(self) -> None:
        """Raise FdslError (one line) for an inconsistent value."""
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (self.train_crop in CROPS, f"train_crop must be one of {CROPS}"),
            (self.epochs > 0 and self.batch_size > 0 and self.image_size > 0,
             "epochs, batch_size and image_size must be positive"),
            (self.lr > 0, "lr must be positive"),
            (0.0 <= self.val_fraction < 1.0, "val_fraction must be in [0, 1)"),
            (0.0 <= self.label_smoothing < 1.0, "label_smoothing must be in [0, 1)"),
            (len(self.mean) in (1, 3) and len(self.std) == len(self.mean), "mean/std need 1 or 3 values"),
            (self.resize_ratio is None or self.resize_ratio >= 1.0, "resize_ratio must be >= 1"),
            (len(self.rrc_scale) == 2 and 0 < self.rrc_scale[0] <= self.rrc_scale[1] <= 1,
             "rrc_scale must be [min, max] in (0, 1]"),
            (self.workers >= 0, "workers must be >= 0"),
            (all(v >= 0 for v in (self.momentum, self.weight_decay, self.warmup_epochs, self.min_lr,
                                  self.mixup, self.cutmix, self.grad_clip, self.self_paced_threshold,
                                  self.plateau_patience, self.save_every)),
             "momentum, weight_decay, warmup_epochs, min_lr, mixup, cutmix, grad_clip, "
             "self_paced_threshold, plateau_patience and save_every must be >= 0"),
            (self.gamma > 0, "gamma must be positive"),
            (self.warmup_lr >= 0, "warmup_lr must be >= 0"),
            (self.interpolation in INTERPOLATIONS, f"interpolation must be one of {INTERPOLATIONS}"),
            (self.erasing_mode in ERASING_MODES, f"erasing_mode must be one of {ERASING_MODES}"),
            (self.aug_repeats == 0 or self.aug_repeats >= 2, "aug_repeats must be 0 (off) or >= 2"),
            (all(0.0 <= v <= 1.0 for v in (self.hflip, self.color_jitter, self.random_erasing, self.mix_prob)),
             "hflip, color_jitter, random_erasing and mix_prob must be in [0, 1]"),
            (0.0 <= self.drop_path < 1.0, "drop_path must be in [0, 1)"),
            (0.0 <= self.rotation <= 180.0, "rotation must be in [0, 180] degrees"),
            (all(0.0 < v <= 1.0 for v in self.step_at), "step_at holds fractions of the run in (0, 1]"),
            (self.prune in PRUNE_MODES, f"prune must be one of {PRUNE_MODES}"),
            (0.0 < self.keep_fraction <= 1.0, "keep_fraction must be in (0, 1]"),
            (self.prune in ("none", "random") or bool(self.prune_field),
             f"prune={self.prune} needs prune_field (a metadata field such as area)"),
            (0.0 <= self.self_paced_ratio <= 1.0, "self_paced_ratio must be in [0, 1]"),
            (self.self_paced_ratio == 0 or self.self_paced_threshold == 0,
             "self_paced_ratio and self_paced_threshold exclude each other; set one of them"),
        ]
        for ok, message in checks:
            if not ok:
                raise FdslError(f"bad training config: {message}")
        if self.auto_augment:
            from fdsl.train.randaugment import parse_policy

            try:
                parse_policy(self.auto_augment)
            except FdslError as exc:
                raise FdslError(f"bad training config: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


VIT_PRETRAIN: dict[str, Any] = dict(
    model="vit_tiny_patch16_224", optimizer="adamw", lr=1e-3, weight_decay=0.05, batch_size=256,
    epochs=300, schedule="cosine_iter", warmup_epochs=5, warmup_lr=1e-4, min_lr=1e-5,
    label_smoothing=0.1, drop_path=0.1, auto_augment="rand-m9-mstd0.5-inc1", aug_repeats=3,
    mixup=0.8, cutmix=1.0, random_erasing=0.25, erasing_mode="pixel", interpolation="bicubic",
    hflip=0.0, train_crop="random_resized", rrc_scale=[0.08, 1.0], resize_ratio=None,
    color_jitter=0.0, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))

RECIPES: dict[str, dict[str, Any]] = {
    # Kataoka et al. 2020, FractalDB pre-training of ResNet-50.
    "fractaldb-resnet": dict(model="resnet50", optimizer="sgd", lr=0.01, momentum=0.9,
                             weight_decay=1e-4, batch_size=256, epochs=90, schedule="step",
                             step_at=[1 / 3, 2 / 3], gamma=0.1, train_crop="random",
                             resize_ratio=None, mean=[0.2, 0.2, 0.2], std=[0.5, 0.5, 0.5]),
    # FDSL pre-training of ViTs as the CVPR 2022 scripts run it (timm 0.4.12 train script, DeiT
    # recipe): exe_scripts/exe_*_1k.sh, 4 GPUs x 64 images, 300 epochs. Each setting's source line
    # is in docs/FIDELITY.md ("Recipes"); the scripts train deit_base, fdsl's default is ViT-Tiny.
    "fdsl-vit": VIT_PRETRAIN,
    # The 21k-class runs (scripts/pretrain.sh, exe_*_21k.sh): 128 GPUs x 64 images, 90 epochs.
    "fdsl-vit-21k": {**VIT_PRETRAIN, "epochs": 90, "batch_size": 8192},
    # Fine-tuning of the FractalDB paper: Resize 256 + RandomCrop 224, CenterCrop 224 for test.
    "finetune": dict(model="resnet50", optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4,
                     batch_size=256, epochs=90, schedule="step", step_at=[1 / 3, 2 / 3],
                     gamma=0.1, train_crop="random", resize_ratio=256 / 224, hflip=0.5,
                     mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), val_fraction=0.2),
}


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


# Fields whose default is None, and the type of their other values.
NULLABLE: dict[str, Any] = {"resize_ratio": 1.0, "amp": True, "channels_last": True}


def _coerce(name: str, value: Any) -> Any:
    """Check ``value`` against the field's default type (YAML/``--set`` give loose types)."""
    default = NULLABLE.get(name, TrainConfig().__dict__[name])
    if value is None:
        if name in NULLABLE:
            return None
        raise FdslError(f"config field {name} cannot be empty")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, list):
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, list) and all(isinstance(v, int | float) for v in value):
            return [float(v) for v in value]
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    raise FdslError(f"config field {name} expects {type(default).__name__}, got {value!r}")


def apply_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """``base`` updated with ``overrides`` (unknown keys raise FdslError naming ``origin``)."""
    names = set(field_names())
    out = dict(base)
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key not in names:
            raise FdslError(f"unknown config field {key!r} in {origin}; known: {', '.join(sorted(names))}")
        out[key] = _coerce(key, value)
    return out


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``["lr=0.1", "step_at=[0.5]"]`` -> ``{"lr": 0.1, "step_at": [0.5]}`` (values read as YAML)."""
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise FdslError(f"--set expects key=value, got {item!r}")
        try:
            result[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise FdslError(f"--set {key}: cannot read value {text!r}") from None
    return result


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON mapping of config fields."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FdslError(f"config file {path} does not exist") from None
    except UnicodeDecodeError:
        raise FdslError(f"config file {path} is not a YAML or JSON text file (binary bytes)") from None
    except (OSError, yaml.YAMLError) as exc:
        raise FdslError(f"cannot read config file {path}: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FdslError(f"config file {path} must hold a mapping of field: value")
    if isinstance(data.get(SAVED_FIELDS), dict):
        # A run folder's config.yaml: its resolved fields rerun the run; the rest is a record.
        return data[SAVED_FIELDS]
    return data


def resolve_config(recipe: str, *, config_file: str | Path | None = None,
                   flags: Mapping[str, Any] | None = None,
                   sets: Mapping[str, Any] | None = None) -> TrainConfig:
    """The recipe preset with the file, explicit flags (None = not given) and ``--set`` applied."""
    if recipe not in RECIPES:
        raise FdslError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    values = apply_overrides(TrainConfig().to_dict(), RECIPES[recipe], f"recipe {recipe}")
    if config_file is not None:
        values = apply_overrides(values, load_config_file(config_file), str(config_file))
    values = apply_overrides(values, {k: v for k, v in (flags or {}).items() if v is not None}, "flags")
    values = apply_overrides(values, sets or {}, "--set")
    config = TrainConfig(**values)
    config.validate()
    return config


def config_yaml(config: TrainConfig) -> str:
    """The resolved fields as YAML, in the form ``--config`` reads (``--print-config``)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def save_config(config: TrainConfig, extra: Mapping[str, Any], folder: Path) -> None:
    """Write ``config.yaml`` and ``config.json`` (same content) into the run folder; ``--config
    folder/config.yaml`` reruns the run."""
    from fdsl.train.outputs import write_file

    data = {SAVED_FIELDS: config.to_dict(), **extra}
    write_file(folder / "config.yaml", yaml.safe_dump(data, sort_keys=False).encode())
    write_file(folder / "config.json", (json.dumps(data, indent=1) + "\n").encode())
