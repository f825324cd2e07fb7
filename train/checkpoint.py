"""Checkpoint and weight files: what a run saves after each epoch and how such files are read.

``checkpoint.pt`` loads with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists
and dicts only (RNG states included). ``model.safetensors`` holds the weights alone, under the
torchvision/timm keys. Both are written atomically and fsynced (``fdsl.atomic``).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fdsl.errors import FdslError
from fdsl.train.outputs import write_file

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.safetensors"


def state_digest(model: nn.Module) -> str:
    """sha256 over every tensor of the state dict (keys sorted): equal digests = equal weights."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except Exception:  # noqa: BLE001 - a broken install is as good as none
        raise FdslError(f"reading {path} needs the safetensors package: pip install safetensors") from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # SafetensorError, OSError: an unreadable file either way
        raise FdslError(f"cannot read weights file {path}: {_first_line(exc)}") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read fdsl's checkpoint, a bare state_dict (torchvision/timm ``.pt``/``.pth``) or a
    ``.safetensors`` file; returns a dict with at least ``model`` (a state_dict).

    Pickles are read with ``weights_only=True``: a downloaded file cannot run code.
    """
    path = Path(path)
    if path.is_dir():
        raise FdslError(f"checkpoint {path} is a folder; name the file in it (checkpoint.pt, "
                        "model.safetensors, ...)")
    if not path.is_file():
        raise FdslError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        return {"model": _load_safetensors(path)}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean an unreadable file
        raise FdslError(f"cannot read checkpoint {path} (read with weights_only=True): "
                        f"{_first_line(exc)}") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"model": obj}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return {"model": obj["state_dict"]}
    raise FdslError(f"checkpoint {path} holds no model weights")


def save_checkpoint(state: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` through a temporary file, fsynced and renamed."""
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    write_file(path, buffer.getvalue())


def save_weights(model: nn.Module, path: Path) -> None:
    """The model's weights alone as safetensors (same keys as torchvision/timm)."""
    try:
        from safetensors.torch import save
    except Exception:  # noqa: BLE001
        log.warning("safetensors is not installed; %s not written (pip install safetensors)", path.name)
        return
    # Copies: safetensors refuses tensors that share storage (tied weights in some timm models).
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    write_file(path, save(tensors))
