"""Random erasing (Zhong et al. 2020) of a normalised batch on its device, as timm's
``RandomErasing`` does it (``--reprob P --remode const|pixel``, one region, the FDSL scripts'
setting).

Per image, with probability ``prob``: up to 10 attempts draw an area share U(0.02, 1/3) and a
log-uniform aspect ratio in [0.3, 1/0.3]; h = round(sqrt(area * ratio)), w = round(sqrt(area /
ratio)); the first attempt that fits (h < H and w < W) places the box uniformly (top in
0..H - h, left in 0..W - w) and fills it: ``const`` with 0 (the mean colour after
normalisation), ``pixel`` with N(0, 1) noise per pixel and channel. All attempts are drawn at
once from torch's generator on the batch's device.
"""

from __future__ import annotations

import math

import torch

ERASING_MODES = ("const", "pixel")
ATTEMPTS = 10
MIN_AREA, MAX_AREA = 0.02, 1 / 3
LOG_RATIO = (math.log(0.3), math.log(1 / 0.3))


def erase_boxes(batch: int, height: int, width: int, prob: float,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(erased bool [B], boxes int64 [B, 4] as top, left, h, w) for one batch (timm's draw)."""
    area = height * width
    target = (MIN_AREA + (MAX_AREA - MIN_AREA) * torch.rand(batch, ATTEMPTS, device=device,
                                                            dtype=torch.float64)) * area
    ratio = torch.exp(LOG_RATIO[0] + (LOG_RATIO[1] - LOG_RATIO[0]) * torch.rand(
        batch, ATTEMPTS, device=device, dtype=torch.float64))
    h = torch.round(torch.sqrt(target * ratio)).long()
    w = torch.round(torch.sqrt(target / ratio)).long()
    fits = (w < width) & (h < height)
    first = fits.long().argmax(1, keepdim=True)  # the first attempt that fits
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)
    top = torch.floor(torch.rand(batch, device=device, dtype=torch.float64) * (height - h + 1)).long()
    left = torch.floor(torch.rand(batch, device=device, dtype=torch.float64) * (width - w + 1)).long()
    erased = (torch.rand(batch, device=device) <= prob) & fits.any(1)
    return erased, torch.stack([top, left, h, w], 1)


class RandomErasing:
    """``x`` [B, C, H, W] (normalised) -> x with one box per chosen image filled."""

    def __init__(self, prob: float, mode: str = "const") -> None:
        if mode not in ERASING_MODES:
            raise ValueError(f"erasing mode must be one of {ERASING_MODES}, got {mode!r}")
        self.prob, self.mode = prob, mode

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, _, height, width = x.shape
        erased, boxes = erase_boxes(b, height, width, self.prob, x.device)
        top, left, h, w = (boxes[:, i].view(-1, 1, 1) for i in range(4))
        rows = torch.arange(height, device=x.device).view(1, -1, 1)
        cols = torch.arange(width, device=x.device).view(1, 1, -1)
        inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
        mask = (inside & erased.view(-1, 1, 1)).unsqueeze(1)
        fill = torch.randn_like(x) if self.mode == "pixel" else torch.zeros_like(x)
        return torch.where(mask, fill, x)
