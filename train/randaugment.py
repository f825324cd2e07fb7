"""RandAugment on the training device, with timm's policy strings and magnitude rule.

The FDSL ViT scripts (CVPR 2022) pass ``--aa rand-m9-mstd0.5-inc1`` to timm 0.4.12, whose
``rand_augment_transform`` reads it as: ``m9`` magnitude 9 on a 0-10 scale; ``mstd0.5`` each op
draws its magnitude from N(9, 0.5), clipped to [0, 10]; ``inc1`` the "increasing" op set, where a
higher magnitude always means a stronger change (posterize keeps fewer bits, solarize a lower
threshold, colour/contrast/brightness/sharpness factors 1 +- 0.9 m/10). Two ops per image
(``n2``), each picked uniformly with replacement from 15 and applied with probability 0.5.

``DeviceRandAugment`` does the same to a whole float batch on the device (each image its own ops,
magnitudes and signs, from torch's generator, whose state checkpoints save). Values are rounded
to 0..255 at the start and after each op, as PIL's uint8 images are, and the colour ops follow
PIL's integer arithmetic (tests compare them with PIL). Differences from timm, by design:

- geometric ops (rotate, shear, translate) resample with ``interpolation`` (the run's setting)
  where timm picks bilinear or bicubic at random per op; ``bilinear`` follows PIL's sampling
  (border pixels replicated, points mapped outside the image take the fill colour), ``bicubic``
  uses torch's kernel (a = -0.75; PIL's differs), so pixels differ by a few levels;
- the fill colour of geometric ops is round(255 * mean), as timm's ``img_mean`` hparam.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fdsl.errors import FdslError

LEVEL_DENOM = 10.0  # timm's _LEVEL_DENOM: magnitudes are on a 0..10 scale
OP_PROB = 0.5  # timm's rand_augment_ops: each chosen op applies with this probability
TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
              "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
              "TranslateYRel")
INCREASING = {"Posterize": "PosterizeIncreasing", "Solarize": "SolarizeIncreasing",
              "Color": "ColorIncreasing", "Contrast": "ContrastIncreasing",
              "Brightness": "BrightnessIncreasing", "Sharpness": "SharpnessIncreasing"}
INTERPOLATIONS = ("bilinear", "bicubic")


@dataclass(frozen=True)
class RandAugmentPolicy:
    """A parsed ``rand-...`` string (timm's defaults: m10, n2, mstd 0, mmax 10, inc0)."""

    magnitude: float = LEVEL_DENOM
    num_layers: int = 2
    magnitude_std: float = 0.0
    magnitude_max: float = LEVEL_DENOM
    increasing: bool = False

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(INCREASING.get(n, n) for n in TRANSFORMS) if self.increasing else TRANSFORMS


def parse_policy(text: str) -> RandAugmentPolicy:
    """timm's grammar: ``rand`` then dash-separated ``m<int>``, ``n<int>``, ``mstd<float>`` (> 100
    means uniform in [0, m]), ``mmax<int>``, ``inc<int>``. FdslError (one line) otherwise; the
    choice weights ``w`` are refused (no FDSL script uses them)."""
    parts = text.split("-")
    if parts[0] != "rand":
        raise FdslError(f"auto_augment {text!r}: only RandAugment policies ('rand-m9-mstd0.5-inc1') "
                        "are supported")
    values: dict[str, float | bool | int] = {}
    for part in parts[1:]:
        found = re.fullmatch(r"(mstd|mmax|inc|m|n)(\d+(?:\.\d+)?)", part)
        if found is None:
            raise FdslError(f"auto_augment {text!r}: unknown section {part!r} (expected m, n, mstd, "
                            "mmax or inc followed by a number)")
        key, number = found.groups()
        if key == "mstd":
            std = float(number)
            values["magnitude_std"] = math.inf if std > 100 else std
        elif key == "inc":
            values["increasing"] = bool(number)  # timm: bool of the text, so "inc0" is on too
        elif key in ("m", "n", "mmax") and "." in number:
            raise FdslError(f"auto_augment {text!r}: {key} takes an integer")
        else:
            values[{"m": "magnitude", "n": "num_layers", "mmax": "magnitude_max"}[key]] = int(number)
    return RandAugmentPolicy(**values)  # type: ignore[arg-type]


# ---------------------------------------------------------------- magnitude -> op argument


def level_argument(name: str, magnitude: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """timm's ``LEVEL_TO_ARG[name]`` for a batch: magnitudes float64 [s] in [0, mmax], signs +-1
    (timm's ``_randomly_negate``) -> the op's argument [s] (degrees, factor, bits, ...)."""
    level = magnitude.double() / LEVEL_DENOM
    sign = sign.double()
    if name == "Rotate":
        return level * 30.0 * sign
    if name in ("ShearX", "ShearY"):
        return level * 0.3 * sign
    if name in ("TranslateXRel", "TranslateYRel"):
        return level * 0.45 * sign
    if name == "Posterize":
        return torch.floor(level * 4)
    if name == "PosterizeIncreasing":
        return 4 - torch.floor(level * 4)
    if name == "Solarize":
        return torch.floor(level * 256)
    if name == "SolarizeIncreasing":
        return 256 - torch.floor(level * 256)
    if name == "SolarizeAdd":
        return torch.floor(level * 110)
    if name.endswith("Increasing"):  # colour, contrast, brightness, sharpness
        return torch.clamp(1.0 + level * 0.9 * sign, min=0.1)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return level * 1.8 + 0.1
    return torch.zeros_like(level)  # AutoContrast, Equalize, Invert take no argument


# ---------------------------------------------------------------- ops on uint8-valued floats


def _blend(degenerate: torch.Tensor, image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ``Image.blend(degenerate, image, factor)``: float32 arithmetic, truncated, clipped."""
    alpha = factor.float().view(-1, 1, 1, 1)
    return torch.floor(torch.clamp(degenerate + alpha * (image - degenerate), 0, 255))


def _grey(x: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L conversion (ITU-R 601-2 luma in 16-bit fixed point): [s, 1, H, W]."""
    r, g, b = (x[:, i:i + 1].long() for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).float()


def _lut(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Per sample and channel look-up: ``table`` [s, C, 256] applied to ``x`` [s, C, H, W]."""
    s, c, h, w = x.shape
    return table.gather(2, x.long().view(s, c, -1)).view(s, c, h, w).float()


def auto_contrast(x: torch.Tensor, _arg: torch.Tensor) -> torch.Tensor:
    lo, hi = x.amin((2, 3), keepdim=True).double(), x.amax((2, 3), keepdim=True).double()
    scale = 255.0 / (hi - lo).clamp_min(1)
    out = torch.floor(torch.clamp(x.double() * scale - lo * scale, 0, 255))
    return torch.where(hi > lo, out, x.double()).float()


def equalize(x: torch.Tensor, _arg: torch.Tensor) -> torch.Tensor:
    s, c = x.shape[:2]
    values = x.long().view(s, c, -1)
    hist = torch.zeros(s, c, 256, dtype=torch.long, device=x.device).scatter_add_(
        2, values, torch.ones_like(values))
    used = hist > 0
    last = 255 - used.flip(2).long().argmax(2, keepdim=True)
    step = (hist.sum(2, keepdim=True) - hist.gather(2, last)) // 255
    before = hist.cumsum(2) - hist
    table = torch.clamp((step // 2 + before) // step.clamp_min(1), max=255)
    identity = torch.arange(256, device=x.device).expand(s, c, 256)
    keep = (used.sum(2, keepdim=True) <= 1) | (step == 0)
    return _lut(x, torch.where(keep, identity, table))


def invert(x: torch.Tensor, _arg: torch.Tensor) -> torch.Tensor:
    return 255.0 - x


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    quantum = torch.pow(2.0, 8 - bits.clamp(max=8)).float().view(-1, 1, 1, 1)
    return torch.floor(x / quantum) * quantum


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.where(x < threshold.float().view(-1, 1, 1, 1), x, 255.0 - x)


def solarize_add(x: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    return torch.where(x < 128, torch.clamp(x + add.float().view(-1, 1, 1, 1), max=255), x)


def color(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(_grey(x).expand_as(x), x, factor)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = torch.floor(_grey(x).double().mean((1, 2, 3)) + 0.5).float().view(-1, 1, 1, 1)
    return _blend(mean.expand_as(x), x, factor)


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(torch.zeros_like(x), x, factor)


def sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    # PIL's SMOOTH filter (3 x 3, centre 5, scale 13, rounded); border pixels stay as they are
    kernel = torch.ones(3, 3, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(x.shape[1], 1, 3, 3)
    smooth = torch.floor(torch.clamp(F.conv2d(x, kernel, groups=x.shape[1]) + 0.5, 0, 255))
    degenerate = x.clone()
    degenerate[:, :, 1:-1, 1:-1] = smooth
    return _blend(degenerate, x, factor)


# ---------------------------------------------------------------- geometric ops


def pil_affine(x: torch.Tensor, matrix: torch.Tensor, fill: torch.Tensor, mode: str) -> torch.Tensor:
    """PIL's ``Image.transform(size, AFFINE, (a, b, c, d, e, f), fillcolor=fill)`` for a batch.

    ``matrix`` [s, 6] maps each output pixel centre (x + 0.5, y + 0.5) to an input point in pixel
    units; points outside [0, W) x [0, H) take ``fill`` ([C] in 0..255), others are sampled with
    border pixels replicated, as PIL's filters do, then truncated to integers.
    """
    s, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=torch.float64) + 0.5,
                            torch.arange(w, device=x.device, dtype=torch.float64) + 0.5, indexing="ij")
    m = matrix.double().view(s, 6, 1, 1)
    src_x = m[:, 0] * xs + m[:, 1] * ys + m[:, 2]
    src_y = m[:, 3] * xs + m[:, 4] * ys + m[:, 5]
    grid = torch.stack([2 * src_x / w - 1, 2 * src_y / h - 1], dim=-1).to(x.dtype)
    sampled = F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
    outside = ((src_x < 0) | (src_x >= w) | (src_y < 0) | (src_y >= h)).unsqueeze(1)
    sampled = torch.floor(torch.clamp(sampled, 0, 255))
    return torch.where(outside, fill.view(1, -1, 1, 1).to(x.dtype), sampled)


def affine_matrix(name: str, arg: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The PIL affine coefficients [s, 6] timm's geometric op ``name`` uses for ``arg``."""
    h, w = size
    arg = arg.double()
    one, zero = torch.ones_like(arg), torch.zeros_like(arg)
    if name == "ShearX":
        return torch.stack([one, arg, zero, zero, one, zero], 1)
    if name == "ShearY":
        return torch.stack([one, zero, zero, arg, one, zero], 1)
    if name == "TranslateXRel":
        return torch.stack([one, zero, arg * w, zero, one, zero], 1)
    if name == "TranslateYRel":
        return torch.stack([one, zero, zero, zero, one, arg * h], 1)
    # Rotate: PIL's Image.rotate(degrees) about the centre (w / 2, h / 2), counter-clockwise
    angle = -torch.deg2rad(arg)
    a, b, d, e = torch.cos(angle), torch.sin(angle), -torch.sin(angle), torch.cos(angle)
    cx, cy = w / 2, h / 2
    return torch.stack([a, b, a * -cx + b * -cy + cx, d, e, d * -cx + e * -cy + cy], 1)


OpFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PIXEL_OPS: dict[str, OpFn] = {
    "AutoContrast": auto_contrast, "Equalize": equalize, "Invert": invert,
    "Posterize": posterize, "PosterizeIncreasing": posterize,
    "Solarize": solarize, "SolarizeIncreasing": solarize, "SolarizeAdd": solarize_add,
    "Color": color, "ColorIncreasing": color, "Contrast": contrast, "ContrastIncreasing": contrast,
    "Brightness": brightness, "BrightnessIncreasing": brightness,
    "Sharpness": sharpness, "SharpnessIncreasing": sharpness,
}
GEOMETRIC_OPS = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


class DeviceRandAugment:
    """``policy`` applied to float batches [B, 3, H, W] in [0, 1] on their device."""

    def __init__(self, policy: str | RandAugmentPolicy, mean: list[float] | tuple[float, ...],
                 interpolation: str = "bilinear") -> None:
        self.policy = parse_policy(policy) if isinstance(policy, str) else policy
        if interpolation not in INTERPOLATIONS:
            raise FdslError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        self.mode = interpolation
        means = list(mean) * 3 if len(mean) == 1 else list(mean)
        self.fill = torch.tensor([min(255, round(255 * v)) for v in means], dtype=torch.float32)

    def sample_magnitudes(self, count: int, device: torch.device) -> torch.Tensor:
        """Each op's magnitude: N(m, mstd) (uniform [0, m] for mstd inf), clipped to [0, mmax]."""
        p = self.policy
        m = torch.full((count,), float(p.magnitude), dtype=torch.float64, device=device)
        if p.magnitude_std == math.inf:
            m = torch.rand(count, dtype=torch.float64, device=device) * p.magnitude
        elif p.magnitude_std > 0:
            m = m + p.magnitude_std * torch.randn(count, dtype=torch.float64, device=device)
        return m.clamp(0.0, float(p.magnitude_max))

    def apply_op(self, name: str, images: torch.Tensor, arg: torch.Tensor) -> torch.Tensor:
        """One op on uint8-valued float images [s, C, H, W] with arguments [s]."""
        if name in GEOMETRIC_OPS:
            matrix = affine_matrix(name, arg, tuple(images.shape[-2:]))
            return pil_affine(images, matrix, self.fill.to(images.device), self.mode)
        return PIXEL_OPS[name](images, arg)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        ops = self.policy.ops
        b, device = x.shape[0], x.device
        images = torch.round(torch.clamp(x * 255.0, 0, 255))
        for _ in range(self.policy.num_layers):
            choice = torch.randint(len(ops), (b,), device=device)
            applied = torch.rand(b, device=device) <= OP_PROB
            magnitude = self.sample_magnitudes(b, device)
            sign = torch.where(torch.rand(b, device=device) > 0.5, -1.0, 1.0)
            for k, name in enumerate(ops):
                picked = torch.nonzero((choice == k) & applied).squeeze(1)
                if picked.numel() == 0:
                    continue
                arg = level_argument(name, magnitude[picked], sign[picked])
                images[picked] = self.apply_op(name, images[picked], arg)
        return images / 255.0
