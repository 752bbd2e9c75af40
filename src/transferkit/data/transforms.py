"""Train and eval transforms built from the backbone's pretrained config (mean/std/size/crop never hard-coded here).

They run on uint8 CHW tensors already decoded at `resize_size(size, crop_pct)` on the short side, so eval is a
centre crop plus normalisation, and training adds RandomResizedCrop/flip (and on request TrivialAugmentWide or
RandAugment, rotation, colour jitter).
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2 as T

from .sizes import choose_image_size, resize_size  # noqa: F401 - re-exported; sizes.py is torch-free for doctor

_MODES = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
}
_POLICIES = {"trivial": T.TrivialAugmentWide, "randaugment": T.RandAugment}  # --augment; "standard": neither


def eval_transform(size: int, crop_pct: float, mean, std, interpolation: str = "bicubic") -> T.Compose:
    return T.Compose(
        [
            T.Resize(
                resize_size(size, crop_pct),
                interpolation=_MODES.get(interpolation, T.InterpolationMode.BICUBIC),
                antialias=True,
            ),
            T.CenterCrop(size),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean, std),
        ]
    )


def train_transform(
    size: int,
    mean,
    std,
    interpolation: str = "bicubic",
    *,
    crop_scale: tuple[float, float] = (0.35, 1.0),
    flip: bool = True,
    rotate: float = 0.0,
    color_jitter: float = 0.0,
    augment: str = "standard",
) -> T.Compose:
    mode = _MODES.get(interpolation, T.InterpolationMode.BICUBIC)
    steps: list = [T.RandomResizedCrop(size, scale=tuple(crop_scale), interpolation=mode, antialias=True)]
    if flip:
        steps.append(T.RandomHorizontalFlip())
    # on the uint8 crop, as in timm and torchvision's recipes: their ops (posterize, solarize, ...) expect 0-255 pixels
    if augment != "standard":
        steps.append(_POLICIES[augment]())
    if rotate:
        steps.append(T.RandomRotation(rotate, interpolation=T.InterpolationMode.BILINEAR))
    if color_jitter:
        steps.append(T.ColorJitter(color_jitter, color_jitter, color_jitter))
    steps += [T.ToDtype(torch.float32, scale=True), T.Normalize(mean, std)]
    return T.Compose(steps)
