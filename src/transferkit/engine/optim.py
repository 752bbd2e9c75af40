"""Optimizers and LR schedules, one table each: `--optimizer` and `--schedule` are their keys.

    optimizer = OPTIMIZERS["adamw"](groups, train_cfg)
    scheduler = SCHEDULES["cosine"](optimizer, groups, total_steps=300, warmup_steps=15)

Every schedule starts with `warmup_steps` of linear warm-up (half an epoch by default): the new head's first,
large gradients must not wreck pretrained weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def _warm_then(after: Callable[[float], float], warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR factor per step: linear warm-up to 1, then `after(progress)` with progress going 0 -> 1 until the end."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return after(min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps)))

    return factor


def _lambda(after: Callable[[float], float]):
    def make(optimizer, groups, total_steps: int, warmup_steps: int):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, _warm_then(after, max(1, warmup_steps), total_steps))

    return make


def _onecycle(optimizer, groups, total_steps: int, warmup_steps: int):
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[g["lr"] for g in groups],
        total_steps=total_steps,
        pct_start=max(0.05, warmup_steps / total_steps),
    )


OPTIMIZERS: dict[str, Callable] = {
    "adamw": lambda groups, t: torch.optim.AdamW(groups, lr=t.lr),  # weight decay is per group (param_groups)
    "sgd": lambda groups, t: torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, nesterov=True),
}
SCHEDULES: dict[str, Callable] = {
    "cosine": _lambda(lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress))),
    "constant": _lambda(lambda progress: 1.0),
    "onecycle": _onecycle,
}
