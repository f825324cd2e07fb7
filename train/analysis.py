"""Error analysis of a trained classifier on its held-out images, written into the run folder.

``write_run_analysis`` makes one pass over the held-out batches and writes:

- ``confusion.json`` / ``confusion.png``: the confusion matrix (rows: true class, columns:
  predicted class) and the top-1 accuracy of each class;
- ``misclassified.png``: a contact sheet of the held-out images misclassified with the highest
  confidence (true class, predicted class, probability);
- ``attention_maps.png``: where the model looks for a few held-out images, one per class first:
  Grad-CAM on the last ResNet stage at least ``MIN_CAM_SIDE`` pixels wide, attention rollout
  (Abnar & Zuidema 2020) through every block of a ViT; the title names the layers used. FDSL-trained
  ViTs are reported to attend to contours.

The models are read through hooks only; nothing in them changes.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fdsl.train.figures import confusion_png, maps_png, misclassified_png
from fdsl.train.outputs import write_file

log = logging.getLogger(__name__)

SHEET_SIZE = 16  # images on the misclassified contact sheet
MAP_IMAGES = 4  # images whose attention / Grad-CAM maps are drawn
MIN_CAM_SIDE = 4  # Grad-CAM uses the deepest stage at least this many pixels on a side


# ---------------------------------------------------------------- where the model looks


def _cam_layers(model: nn.Module) -> list[nn.Module]:
    """Grad-CAM candidates, deepest first: a ResNet's stages, else the last Conv2d module."""
    stages = [getattr(model, f"layer{i}", None) for i in (4, 3, 2, 1)]
    stages = [s for s in stages if isinstance(s, nn.Module)]
    return stages or [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1:]


def _normalise_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[B, h, w] -> [B, H, W] upsampled, each map scaled to [0, 1] (a flat map is all 0)."""
    maps = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    low = maps.flatten(1).min(1).values.view(-1, 1, 1)
    span = maps.flatten(1).max(1).values.view(-1, 1, 1) - low
    flat = span <= 1e-6 * (low.abs() + span) + 1e-12  # float noise, not a map
    return torch.where(flat, torch.zeros_like(maps), (maps - low) / span.clamp_min(1e-12))


def grad_cam(model: nn.Module, inputs: torch.Tensor,
             layers: nn.Module | list[nn.Module]) -> torch.Tensor | None:
    """Grad-CAM (Selvaraju et al. 2017) of the predicted class: [B, H, W] in [0, 1].

    Of ``layers`` (deepest first) the first whose activation is at least ``MIN_CAM_SIDE`` pixels
    on a side is used: a ResNet's last stage is 1 x 1 on small images and would show nothing. The
    gradient is taken with respect to that activation only, so no parameter's ``.grad`` is
    touched. The map is relu(sum_k alpha_k A_k), alpha_k the spatial mean of d score / d A_k,
    upsampled bilinearly and scaled to [0, 1]. None when the prediction goes through none of the
    layers.
    """
    found = grad_cam_layer(model, inputs, layers)
    return None if found is None else found[0]


def grad_cam_layer(model: nn.Module, inputs: torch.Tensor,
                   layers: nn.Module | list[nn.Module]) -> tuple[torch.Tensor, nn.Module] | None:
    """``grad_cam``'s maps and the layer they were taken from."""
    layers = [layers] if isinstance(layers, nn.Module) else list(layers)
    captured: dict[int, torch.Tensor] = {}
    handles = [layer.register_forward_hook(
        lambda _m, _i, output, k=k: captured.__setitem__(k, output)) for k, layer in enumerate(layers)]
    try:
        with torch.enable_grad():
            logits = model(inputs)
            found = [k for k in sorted(captured) if captured[k].requires_grad]
            if not found:
                return None
            wide = [k for k in found if min(captured[k].shape[-2:]) >= MIN_CAM_SIDE]
            pick = wide[0] if wide else max(found, key=lambda k: captured[k].shape[-1] * captured[k].shape[-2])
            score = logits.gather(1, logits.argmax(1, keepdim=True)).sum()
            (grad,) = torch.autograd.grad(score, captured[pick], allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    if grad is None:
        return None
    activation = captured[pick].detach()
    cam = F.relu((grad.mean((2, 3), keepdim=True) * activation).sum(1))
    return _normalise_maps(cam, tuple(inputs.shape[-2:])), layers[pick]


def _attention_weights(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Softmax attention [B, heads, N, N] of a timm-layout attention module (``qkv`` linear)."""
    heads = getattr(attn, "heads", None) or attn.num_heads
    b, n, d = x.shape
    q, k, _ = attn.qkv(x).reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    q, k = getattr(attn, "q_norm", nn.Identity())(q), getattr(attn, "k_norm", nn.Identity())(k)
    return torch.softmax(q @ k.transpose(-2, -1) * (d // heads) ** -0.5, dim=-1)


def rollout_matrix(weights: list[torch.Tensor]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020) of per-block attention ``weights`` (each
    [B, heads, N, N], rows summing to 1, first block first): [B, N, N].

    Each block's attention is averaged over its heads, the residual path is added as
    ``A = 0.5 * mean_heads + 0.5 * I`` (rows renormalised to 1), and the blocks are multiplied
    with the last on the left: ``R = A_L ... A_2 A_1``. Row i of R says how much of token i's
    final representation flows from each input token.
    """
    tokens = weights[0].shape[-1]
    eye = torch.eye(tokens, device=weights[0].device, dtype=weights[0].dtype)
    rollout = eye.expand(weights[0].shape[0], -1, -1)
    for attention in weights:
        a = 0.5 * attention.mean(1) + 0.5 * eye
        rollout = (a / a.sum(-1, keepdim=True)) @ rollout
    return rollout


def attention_rollout(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor | None:
    """Attention rollout from the class token to the patches: [B, H, W] in [0, 1].

    ``rollout_matrix`` of every block's attention (as the model computes it, read through
    hooks); the class token's row over the patch tokens, as a patch grid, upsampled bilinearly
    and scaled to [0, 1]. None when the token count is not a class token plus a square patch grid.
    """
    weights: list[torch.Tensor] = []
    hooks = [block.attn.register_forward_pre_hook(
        lambda module, args: weights.append(_attention_weights(module, args[0])))
        for block in model.blocks]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    tokens = weights[0].shape[-1]
    side = math.isqrt(tokens - 1)
    if side * side != tokens - 1:
        return None
    grid = rollout_matrix(weights)[:, 0, 1:].reshape(-1, side, side)
    return _normalise_maps(grid, tuple(inputs.shape[-2:]))


def where_model_looks(model: nn.Module, inputs: torch.Tensor) -> tuple[str, torch.Tensor] | None:
    """(method naming the layers used, maps [B, H, W]) for a ViT or a CNN; None if neither fits:
    "attention rollout over blocks 0-11" or "Grad-CAM on layer3"."""
    blocks = getattr(model, "blocks", None)
    if blocks is not None and all(hasattr(getattr(b, "attn", None), "qkv") for b in blocks):
        maps = attention_rollout(model, inputs)
        return None if maps is None else (f"attention rollout over blocks 0-{len(blocks) - 1}", maps)
    layers = _cam_layers(model)
    found = grad_cam_layer(model, inputs, layers) if layers else None
    if found is None:
        return None
    names = {id(module): name for name, module in model.named_modules()}
    return f"Grad-CAM on {names.get(id(found[1]), type(found[1]).__name__)}", found[0]


# ---------------------------------------------------------------- one pass over the held-out set


class _Collector:
    """Confusion counts, the most confident mistakes and a few images (one per class first)."""

    def __init__(self, num_classes: int) -> None:
        self.k = num_classes
        self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64)
        self.wrong: list[tuple[float, np.ndarray, int, int]] = []
        self.picked: list[tuple[np.ndarray, int]] = []
        self.spare: list[tuple[np.ndarray, int]] = []

    def add(self, images: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor) -> None:
        conf, pred = probs.max(1)
        self.confusion += torch.bincount((labels * self.k + pred).cpu(), minlength=self.k ** 2)
        wrong_conf = torch.where(pred != labels, conf, -1.0)
        top = wrong_conf.topk(min(SHEET_SIZE, len(labels))).indices.tolist()
        self.wrong += [(float(conf[i]), images[i].cpu().numpy(), int(labels[i]), int(pred[i]))
                       for i in top if wrong_conf[i] >= 0]
        self.wrong = sorted(self.wrong, key=lambda w: -w[0])[:SHEET_SIZE]
        seen = {label for _, label in self.picked}
        for i, label in enumerate(labels.tolist()):
            if len(self.picked) == len(self.spare) == MAP_IMAGES:
                break
            if len(self.picked) < MAP_IMAGES and label not in seen:
                self.picked.append((images[i].cpu().numpy(), label))
                seen.add(label)
            elif len(self.spare) < MAP_IMAGES:
                self.spare.append((images[i].cpu().numpy(), label))

    def map_images(self) -> list[tuple[np.ndarray, int]]:
        return (self.picked + self.spare)[:MAP_IMAGES]


# ---------------------------------------------------------------- the public function


def per_class_accuracy(confusion: np.ndarray, classes: list[str]) -> dict[str, float | None]:
    """Top-1 per class from a confusion matrix (rows: true class); None for a class not held out."""
    totals = confusion.sum(1)
    return {name: (float(confusion[i, i] / totals[i]) if totals[i] else None)
            for i, name in enumerate(classes)}


def write_run_analysis(out: Path, model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
                       classes: list[str], *, prepare: Callable[[torch.Tensor], torch.Tensor],
                       device: torch.device, model_name: str) -> dict[str, Any]:
    """Write confusion.json/.png, misclassified.png and attention_maps.png into ``out``.

    Args:
        out: the run folder (exists).
        model: the trained classifier (the plain module, not DDP-wrapped); its train/eval mode is
            restored afterwards.
        loader: held-out batches of (uint8 images [B, C, H, W], int64 labels [B]).
        classes: class names, index = label.
        prepare: a uint8 batch on ``device`` -> the normalised float model input.
        device: where the model is.
        model_name: shown in the figure titles.

    Returns:
        ``{"per_class_top1": {class: accuracy or None}, "where_model_looks": method or None}``.
    """
    out = Path(out)
    was_training = model.training
    model.eval()
    collector = _Collector(len(classes))
    try:
        with torch.no_grad():
            for images, labels in loader:
                images, labels = images.to(device), labels.to(device)
                probs = torch.softmax(model(prepare(images)).float(), dim=1)
                collector.add(images, labels, probs)
        matrix = collector.confusion.view(len(classes), len(classes)).numpy()
        per_class = per_class_accuracy(matrix, classes)
        seen = int(matrix.sum())
        report = {"classes": classes, "matrix": matrix.tolist(), "per_class_top1": per_class,
                  "top1": float(np.trace(matrix) / seen) if seen else None, "images": seen}
        write_file(out / "confusion.json", (json.dumps(report) + "\n").encode())
        write_file(out / "confusion.png", confusion_png(matrix, classes, f"{model_name}: held-out confusion"))
        write_file(out / "misclassified.png", misclassified_png(collector.wrong, classes))
        method = _write_maps(out, model, collector.map_images(), classes, prepare, device, model_name)
    finally:
        model.train(was_training)
    return {"per_class_top1": per_class, "where_model_looks": method}


def _write_maps(out: Path, model: nn.Module, picked: list[tuple[np.ndarray, int]],
                classes: list[str], prepare: Callable[[torch.Tensor], torch.Tensor],
                device: torch.device, model_name: str) -> str | None:
    if not picked:
        return None
    images = torch.from_numpy(np.stack([image for image, _ in picked])).to(device)
    inputs = prepare(images)
    found = where_model_looks(model, inputs)
    if found is None:
        log.info("no attention maps: %s is neither a ViT with qkv attention nor a CNN", model_name)
        return None
    method, maps = found
    with torch.no_grad():
        preds = model(inputs).argmax(1).tolist()
    write_file(out / "attention_maps.png", maps_png(
        inputs, maps, [label for _, label in picked], preds, classes, method, model_name))
    return method
