"""Device-side augmentation: uint8 batches in, normalised float batches and soft targets out.

Every random transform is applied to the whole batch on the training device: kornia modules
(random crop, random-resized crop, flip, rotation, colour jitter, and ``RandomMixUpV2`` /
``RandomCutMixV2`` for batch mixing) and fdsl's timm-equivalent RandAugment and random erasing,
so loader workers only read bytes. Random
numbers come from torch's global generators, whose states the checkpoints save.

Pipeline: ``prepare`` (to float in [0, 1], grey -> 3 channels, resize the short side to the base
size with ``interpolation``) -> ``plain`` (centre crop + normalise: the un-augmented view, also
used for evaluation) or ``augment`` (crop, flip, rotate, jitter, RandAugment
(``fdsl.train.randaugment``), normalise, erase (``fdsl.train.erasing``), mixup/cutmix), timm's
order.

``select_for_augmentation`` picks the samples self-paced augmentation augments (Takase et al.);
``build_candidate`` turns a name such as ``"erasing:0.5"`` or ``"flip+erasing"`` into config
fields, for augmentation studies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kornia.augmentation as K
import torch
import torch.nn.functional as F

from fdsl.errors import FdslError
from fdsl.train.erasing import RandomErasing
from fdsl.train.randaugment import DeviceRandAugment
from fdsl.train.recipes import TrainConfig


def base_side(config: TrainConfig, native_side: int) -> int:
    """Short side images are resized to before cropping (see ``TrainConfig.resize_ratio``)."""
    if config.resize_ratio is None:
        return max(config.image_size, round(native_side * config.image_size / 224))
    return max(config.image_size, round(config.image_size * config.resize_ratio))


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 [B] -> float32 [B, num_classes]."""
    return F.one_hot(labels, num_classes).float()


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0,
                       reduction: str = "mean") -> torch.Tensor:
    """Cross entropy against soft targets [B, K], with label smoothing; per-sample if 'none'."""
    if smoothing:
        target = target * (1.0 - smoothing) + smoothing / target.shape[1]
    loss = -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1)
    return loss if reduction == "none" else loss.mean()


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


# ---------------------------------------------------------------- self-paced selection


def select_for_augmentation(losses: torch.Tensor, *, threshold: float, ratio: float) -> torch.Tensor:
    """Which samples of a batch self-paced augmentation augments: bool [B] on ``losses``' device.

    ``losses`` are the per-sample losses of the un-augmented batch. With ``ratio`` R in (0, 1] the
    round(R * B) samples of highest loss are flagged (at least one; equal losses: the earlier sample
    first, so the choice is deterministic); ratio 0 leaves the choice to ``threshold``: samples
    with loss >= threshold, every sample when threshold <= 0. A ratio follows the model as losses
    shrink during training, where a fixed threshold ends up augmenting nothing.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"self-paced ratio must be in [0, 1], got {ratio}")
    if ratio > 0 and threshold > 0:
        raise ValueError("self-paced augmentation takes a threshold or a ratio, not both")
    n = losses.shape[0]
    if ratio > 0:
        k = min(n, max(1, math.floor(ratio * n + 0.5)))
        order = torch.sort(losses.detach(), descending=True, stable=True).indices
        flags = torch.zeros(n, dtype=torch.bool, device=losses.device)
        flags[order[:k]] = True
        return flags
    if threshold <= 0:
        return torch.ones(n, dtype=torch.bool, device=losses.device)
    return losses >= threshold


# ---------------------------------------------------------------- batch mixing (kornia)


class BatchMix:
    """Mixup or cutmix of a batch with a random permutation of itself (kornia's modules).

    ``mixup`` and ``cutmix`` are the alpha of Beta(alpha, alpha) as in timm and the recipes (0 =
    off); with both on, each batch uses one of them, 50/50; ``prob`` is the chance a batch is mixed.
    kornia draws mixup's weight uniformly, so its weights are drawn from the Beta distribution here
    and handed to kornia as parameters.
    """

    def __init__(self, mixup: float, cutmix: float, prob: float) -> None:
        self.alpha, self.prob = mixup, prob
        keys = ["input", "class"]
        self.mixup = K.RandomMixUpV2(data_keys=keys) if mixup > 0 else None
        self.cutmix = (K.RandomCutMixV2(beta=cutmix, use_correct_lambda=True, data_keys=keys)
                       if cutmix > 0 else None)

    def __call__(self, x: torch.Tensor, labels: torch.Tensor,
                 num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, int64 labels [B]) -> (mixed images, soft targets [B, num_classes])."""
        target = one_hot(labels, num_classes)
        if (self.mixup is None and self.cutmix is None) or float(torch.rand(())) >= self.prob:
            return x, target
        use_cutmix = self.cutmix is not None and (self.mixup is None or float(torch.rand(())) < 0.5)
        if use_cutmix:
            x, mixed = self.cutmix(x, labels)
            # [num_mix=1, B, 3]: label, partner label, kept share of the image (1 - cut area)
            partner, keep = mixed[0, :, 1].long(), mixed[0, :, 2]
        else:
            params = self.mixup.forward_parameters(x.shape)
            params["mixup_lambdas"] = torch.distributions.Beta(self.alpha, self.alpha).sample(
                (x.shape[0],)).to(params["mixup_lambdas"])
            x, mixed = self.mixup(x, labels, params=params)
            # [B, 3]: label, partner label, partner weight
            partner, keep = mixed[:, 1].long(), 1.0 - mixed[:, 2]
        keep = keep.to(target).view(-1, 1)
        return x, target * keep + one_hot(partner.to(labels.device), num_classes) * (1.0 - keep)


# ---------------------------------------------------------------- the transforms of a run


class DeviceAugment:
    """The train/eval transforms of one run; call ``prepare`` then ``plain`` or ``augment``."""

    def __init__(self, config: TrainConfig, num_classes: int, base: int,
                 device: torch.device) -> None:
        self.config, self.num_classes = config, num_classes
        self.size = config.image_size
        self.base = max(base, config.image_size)
        channels = 3
        self.mean = torch.tensor(config.mean, device=device).expand(channels).view(1, -1, 1, 1)
        self.std = torch.tensor(config.std, device=device).expand(channels).view(1, -1, 1, 1)
        size = (self.size, self.size)
        crops = {"random_resized": K.RandomResizedCrop(size, scale=tuple(config.rrc_scale),
                                                       resample=config.interpolation.upper()),
                 "random": K.RandomCrop(size, cropping_mode="slice")}
        self.crop = crops.get(config.train_crop)
        jitter, rotation = config.color_jitter, config.rotation
        # Applied in this order on [0, 1] images, before normalisation.
        self.geometric = [m for m, on in (
            (K.RandomHorizontalFlip(p=config.hflip), config.hflip > 0),
            (K.RandomRotation(rotation, p=1.0), rotation > 0),
            (K.ColorJitter(jitter, jitter, jitter, 0.0, p=1.0), jitter > 0)) if on]
        self.randaugment = (DeviceRandAugment(config.auto_augment, config.mean, config.interpolation)
                            if config.auto_augment else None)
        self.erase = (RandomErasing(config.random_erasing, config.erasing_mode)
                      if config.random_erasing > 0 else None)
        self.mix = BatchMix(config.mixup, config.cutmix, config.mix_prob)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B,C,H,W] (C = 1 or 3) on the device -> float [B,3,base,base'] in [0, 1]."""
        x = images.float().div_(255.0)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        if min(h, w) != self.base:
            scale = self.base / min(h, w)
            size = (max(self.size, round(h * scale)), max(self.size, round(w * scale)))
            x = F.interpolate(x, size=size, mode=self.config.interpolation, antialias=True,
                              align_corners=False)
            if self.config.interpolation == "bicubic":  # the cubic kernel overshoots
                x = x.clamp_(0.0, 1.0)
        return x.contiguous()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def plain(self, x: torch.Tensor) -> torch.Tensor:
        """The un-augmented view: centre crop and normalise (evaluation transform)."""
        return self.normalize(center_crop(x, self.size))

    def augment(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Random crop/flip/rotate/jitter/erase/mix of a prepared batch -> (images, soft targets [B, K])."""
        x = center_crop(x, self.size) if self.crop is None else self.crop(x)
        for module in self.geometric:
            x = module(x)
        if self.randaugment is not None:
            x = self.randaugment(x)
        x = self.normalize(x)
        if self.erase is not None:
            x = self.erase(x)
        return self.mix(x, labels, self.num_classes)

    def self_paced(self, x: torch.Tensor, labels: torch.Tensor,
                   flagged: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented samples where ``flagged`` (bool [B]), the plain view and one-hot targets elsewhere.

        Mixup/cutmix partners are drawn from the whole batch; the soft targets follow the chosen
        image per sample, as in Takase et al.
        """
        augmented, aug_target = self.augment(x, labels)
        plain, plain_target = self.plain(x), one_hot(labels, self.num_classes)
        pick = flagged.view(-1, 1, 1, 1)
        return (torch.where(pick, augmented, plain),
                torch.where(flagged.view(-1, 1), aug_target, plain_target))


# ---------------------------------------------------------------- named candidates


@dataclass(frozen=True)
class AugmentKind:
    """One augmentation a study can name: its default strength and the config fields it sets."""

    default: float
    low: float
    high: float
    meaning: str

    def fields(self, name: str, strength: float) -> dict[str, Any]:
        if name == "crop":
            return {"train_crop": "random_resized", "rrc_scale": [strength, 1.0]}
        return {FIELD_OF[name]: strength}


FIELD_OF = {"flip": "hflip", "jitter": "color_jitter", "erasing": "random_erasing",
            "mixup": "mixup", "cutmix": "cutmix", "rotation": "rotation"}
KINDS: dict[str, AugmentKind] = {
    "crop": AugmentKind(0.25, 0.01, 1.0, "random-resized crop keeping at least this share of the area"),
    "flip": AugmentKind(0.5, 0.0, 1.0, "horizontal flip probability"),
    "jitter": AugmentKind(0.4, 0.0, 1.0, "colour jitter of brightness, contrast and saturation"),
    "erasing": AugmentKind(0.25, 0.0, 1.0, "random erasing probability"),
    "mixup": AugmentKind(0.8, 0.01, 10.0, "mixup Beta(alpha, alpha)"),
    "cutmix": AugmentKind(1.0, 0.01, 10.0, "cutmix Beta(alpha, alpha)"),
    "rotation": AugmentKind(15.0, 0.0, 180.0, "random rotation up to this many degrees"),
}
# Every augmentation off: the clean baseline the candidates are added to.
CLEAN_FIELDS: dict[str, Any] = {"train_crop": "center", "hflip": 0.0, "color_jitter": 0.0,
                                "random_erasing": 0.0, "mixup": 0.0, "cutmix": 0.0, "rotation": 0.0}


@dataclass(frozen=True)
class Candidate:
    """A named augmentation policy: ``name`` as given and the config fields it sets."""

    name: str
    fields: Mapping[str, Any]


def build_candidate(spec: str) -> Candidate:
    """``"erasing:0.5"``, ``"flip"`` (default strength) or ``"flip+erasing:0.5"`` -> Candidate.

    Known kinds: crop (min area share), flip (probability), jitter (strength), erasing
    (probability), mixup and cutmix (Beta alpha), rotation (degrees). ``"none"`` is the clean
    baseline. Raises FdslError (one line) for an unknown name or a strength out of range.
    """
    spec = spec.strip()
    if spec == "none":
        return Candidate("none", {})
    fields: dict[str, Any] = {}
    for part in spec.split("+"):
        kind_name, sep, value = part.strip().partition(":")
        kind = KINDS.get(kind_name)
        if kind is None:
            raise FdslError(f"unknown augmentation {kind_name!r} in {spec!r}; choose from "
                            f"{', '.join(KINDS)} (optionally NAME:STRENGTH, joined with +)")
        try:
            strength = float(value) if sep else kind.default
        except ValueError:
            raise FdslError(f"augmentation {part!r}: strength {value!r} is not a number") from None
        if not (kind.low <= strength <= kind.high) or strength <= 0:
            raise FdslError(f"augmentation {part!r}: {kind.meaning} must be above 0, in "
                            f"[{kind.low}, {kind.high}]")
        fields.update(kind.fields(kind_name, strength))
    return Candidate(spec, fields)
