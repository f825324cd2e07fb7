"""The optimiser of a run: SGD as in the FractalDB paper, AdamW as in DeiT."""

from __future__ import annotations

import torch
from torch import nn

from fdsl.train.recipes import TrainConfig


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (weight decay on every weight, as the FractalDB paper) or AdamW (no decay on biases,
    norms, position embeddings and class token, as DeiT)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        skip = param.ndim <= 1 or name.endswith(("pos_embed", "cls_token"))
        (no_decay if skip else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr)
