"""Optimizers and LR schedules, one table each: `--optimizer` and `--schedule` are their keys.

    optimizer = OPTIMIZERS["adamw"](groups, train_cfg)
    scheduler = SCHEDULES["cosine"](optimizer, groups, total_steps=300, warmup_steps=15)

Every schedule starts with `warmup_steps` of linear warm-up (half an epoch by default): the new head's first,
large gradients must not wreck pretrained weights. `make_ema` is --ema's moving average of the weights.
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


def make_ema(model: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """--ema: a copy of `model` whose weights and BatchNorm statistics are a moving average of the model's.

    Call `ema.update_parameters(model)` after each optimizer step. The decay warms up as
    decay_t = min(decay, (1 + t) / (10 + t)) after t updates (timm's ModelEmaV2 warm-up idea, TensorFlow's
    num_updates): a fixed 0.999 over a 3-epoch run of 30 steps would keep 0.999 ** 30 = 97% of the weights before
    training, while the warm-up averages over the last few steps (t = 30: 31 / 40 = 0.78) and reaches 0.999 only
    after 8,990 steps. t is the AveragedModel's own `n_averaged`, in its state_dict, so a resume continues it.
    """
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    def update(ema_params, params, num_averaged) -> None:
        t = int(num_averaged)
        get_ema_multi_avg_fn(min(decay, (1 + t) / (10 + t)))(ema_params, params, num_averaged)

    ema = AveragedModel(model, multi_avg_fn=update, use_buffers=True)
    return ema.eval()  # it is only evaluated and saved: BatchNorm must not update its (averaged) statistics
