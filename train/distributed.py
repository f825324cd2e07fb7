"""Process group, device choice and the collectives the trainer needs.

Launch with ``torchrun --nproc_per_node N``: RANK, WORLD_SIZE and LOCAL_RANK come from the
environment (nccl on CUDA, gloo on CPU). One process without them is rank 0 of 1. A run that
torchrun launched joins the process group and trains under DDP even with one process, so a
1-GPU ``torchrun`` run exercises the same path as a multi-GPU one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from fdsl.errors import FdslError


@dataclass
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun (a process group is joined, DDP used)

    @property
    def main(self) -> bool:
        """Rank 0 writes the run folder and logs."""
        return self.rank == 0


def setup_distributed(device_flag: str) -> tuple[Dist, torch.device]:
    """Read the torchrun environment, pick the device and join the process group if needed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launched = world > 1 or "TORCHELASTIC_RUN_ID" in os.environ
    ctx = Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")), launched)
    device = pick_device(device_flag, ctx.local_rank)
    if launched and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ctx, device


def pick_device(flag: str, local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when present), ``cuda`` or ``cpu``; FdslError for the impossible."""
    if flag not in ("auto", "cpu", "cuda"):
        raise FdslError(f"unknown device {flag!r}; choose auto, cpu or cuda")
    if flag == "cuda" and not torch.cuda.is_available():
        raise FdslError("--device cuda asked for, but torch sees no CUDA device")
    if flag == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def all_reduce(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over the ranks in place (no-op in a single process)."""
    if dist.is_initialized():
        dist.all_reduce(t)
    return t


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_buffers(net: nn.Module) -> None:
    """Every rank continues from rank 0's buffers (BatchNorm statistics drift apart otherwise)."""
    if dist.is_initialized():
        for buffer in net.buffers():
            dist.broadcast(buffer, 0)


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` in a single process)."""
    if not dist.is_initialized():
        return [obj]
    found: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(found, obj)
    return found


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself in a single process)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
