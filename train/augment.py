"""Device-side augmentation: uint8 batches in, normalised float batches and soft targets out.

Everything runs on the training device (kornia for random-resized crop, colour jitter and random
erasing; plain tensor ops for integer crops, flips, mixup and cutmix), so loader workers only read
bytes. Random numbers come from torch's global generators, whose states the checkpoints save.

Pipeline: ``prepare`` (to float in [0, 1], grey -> 3 channels, resize the short side to the base
size) -> ``plain`` (centre crop + normalise: the un-augmented view, also used for evaluation) or
``augment`` (crop, flip, jitter, normalise, erase, mixup/cutmix).
"""

from __future__ import annotations

import math

import kornia.augmentation as K
import torch
import torch.nn.functional as F

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


def random_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """An independent integer-offset ``size`` x ``size`` crop per sample: [B,C,H,W] -> [B,C,s,s]."""
    b, c, h, w = x.shape
    if h == size and w == size:
        return x
    # drawn on the device: no host-to-device copy (and no stream sync) per batch
    top = torch.randint(0, h - size + 1, (b,), device=x.device)
    left = torch.randint(0, w - size + 1, (b,), device=x.device)
    steps = torch.arange(size, device=x.device)
    rows = (top[:, None] + steps)[:, None, :, None].expand(b, c, size, w)
    x = torch.gather(x, 2, rows)
    cols = (left[:, None] + steps)[:, None, None, :].expand(b, c, size, size)
    return torch.gather(x, 3, cols)


def random_hflip(x: torch.Tensor, p: float) -> torch.Tensor:
    flip = (torch.rand(x.shape[0], device=x.device) < p)[:, None, None, None]
    return torch.where(flip, x.flip(-1), x)


def mix_batch(x: torch.Tensor, target: torch.Tensor, mixup: float, cutmix: float,
              prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """timm-style batch mixing with the reversed batch: mixup or cutmix (chosen 50/50 when both).

    Returns the mixed images and soft targets ``lam * t + (1 - lam) * t[::-1]``; ``lam`` of cutmix is
    the exact kept-area fraction of the clipped box.
    """
    if (mixup <= 0 and cutmix <= 0) or float(torch.rand(())) >= prob:
        return x, target
    use_cutmix = cutmix > 0 and (mixup <= 0 or float(torch.rand(())) < 0.5)
    alpha = cutmix if use_cutmix else mixup
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    partner = x.flip(0)
    if use_cutmix:
        h, w = x.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(torch.randint(0, h, ())), int(torch.randint(0, w, ()))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        x = x * lam + partner * (1.0 - lam)
    return x, target * lam + target.flip(0) * (1.0 - lam)


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
        self.rrc = K.RandomResizedCrop((self.size, self.size), scale=tuple(config.rrc_scale))
        jitter = config.color_jitter
        self.jitter = K.ColorJitter(jitter, jitter, jitter, 0.0, p=1.0) if jitter > 0 else None
        self.erase = (K.RandomErasing(scale=(0.02, 1 / 3), p=config.random_erasing)
                      if config.random_erasing > 0 else None)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B,C,H,W] (C = 1 or 3) on the device -> float [B,3,base,base'] in [0, 1]."""
        x = images.float().div_(255.0)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        if min(h, w) != self.base:
            scale = self.base / min(h, w)
            size = (max(self.size, round(h * scale)), max(self.size, round(w * scale)))
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        return x.contiguous()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def plain(self, x: torch.Tensor) -> torch.Tensor:
        """The un-augmented view: centre crop and normalise (evaluation transform)."""
        return self.normalize(center_crop(x, self.size))

    def augment(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Random crop/flip/jitter/erase/mix of a prepared batch -> (images, soft targets [B, K])."""
        cfg = self.config
        if cfg.train_crop == "random_resized":
            x = self.rrc(x)
        elif cfg.train_crop == "random":
            x = random_crop(x, self.size)
        else:
            x = center_crop(x, self.size)
        if cfg.hflip > 0:
            x = random_hflip(x, cfg.hflip)
        if self.jitter is not None:
            x = self.jitter(x)
        x = self.normalize(x)
        if self.erase is not None:
            x = self.erase(x)
        return mix_batch(x, one_hot(labels, self.num_classes), cfg.mixup, cfg.cutmix, cfg.mix_prob)

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
