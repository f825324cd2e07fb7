"""Starting weights from a user's file (``--finetune-from``): fdsl runs, torchvision and timm.

Accepted: ``.safetensors``; ``.pth`` / ``.pt`` / ``.pth.tar`` / ``.bin`` pickles read with
``torch.load(weights_only=True)`` (a downloaded file cannot run code), holding a raw state_dict or
one wrapped as ``{"state_dict": ...}`` (timm's training checkpoints, whose ``args`` Namespace is
allowed as plain data) or ``{"model": ...}`` (fdsl, DeiT). Keys may carry the prefixes DDP,
torch.compile or Lightning add (``module.``, ``_orig_mod.``, ``model.``).

Our ResNets use torchvision's keys, which timm's ``resnet18/34/50`` share (conv1, bn1, layer1-4,
downsample.0/1, fc; timm's act/pool modules hold no weights); our ViT uses timm's keys. A
``head.fc.*`` classifier (timm's newer heads) is read as ``fc.*``. BatchNorm
``num_batches_tracked`` counters absent from old torchvision files are not required. The file's
classifier is dropped and the model keeps its fresh head, as the official FDSL fine-tuning does
(``load_local_pretrained_model.py`` deletes it whatever the class count). Any other mismatch is
refused in one line naming the first key (``fdsl.train.models.load_backbone``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fdsl.errors import FdslError
from fdsl.train.models import load_backbone

WRAPPERS = ("state_dict", "model")  # timm / fdsl and DeiT checkpoints
PREFIXES = ("module.", "_orig_mod.", "model.")
RENAMES = (("head.fc.", "fc."),)  # (theirs, ours) where the model has ``fc``
COUNTER = "num_batches_tracked"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weight file (see the module docstring); FdslError (one line) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FdslError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except Exception:  # noqa: BLE001 - a broken install is as good as none
            raise FdslError(f"reading {path} needs the safetensors package: pip install safetensors") from None
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:  # SafetensorError, OSError: an unreadable file either way
            raise FdslError(f"cannot read weights file {path}: {_first_line(exc)}") from None
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean an unreadable file
        raise FdslError(f"cannot read checkpoint {path} (read with weights_only=True): "
                        f"{_first_line(exc)}") from None
    return unwrap(obj, str(path))


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def unwrap(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """A raw state_dict, or the one under ``state_dict`` / ``model``."""
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in WRAPPERS:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key])
    raise FdslError(f"checkpoint {source} holds no model weights (expected a state_dict, or one under "
                    f"{' or '.join(repr(k) for k in WRAPPERS)})")


def to_model_keys(state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """``state`` under ``model``'s key names: wrapper prefixes stripped (each when every key has
    it), timm's ``head.fc.`` read as ``fc.`` when the model has an ``fc`` head, and BatchNorm
    counters the file lacks taken from the model."""
    own = model.state_dict()
    state = dict(state)
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    for theirs, ours in RENAMES:
        if any(k.startswith(ours) for k in own) and not any(k.startswith(ours) for k in state):
            state = {(ours + k[len(theirs):] if k.startswith(theirs) else k): v for k, v in state.items()}
    for key, value in own.items():
        if key.endswith(COUNTER) and key not in state:
            state[key] = value.clone()
    return state


def load_starting_weights(model: nn.Module, path: str | Path) -> None:
    """Initialise every non-head weight of ``model`` from the file at ``path``; the head stays
    fresh. FdslError (one line) for an unreadable file or weights of another architecture."""
    load_backbone(model, to_model_keys(read_state_dict(path), model), str(path))
