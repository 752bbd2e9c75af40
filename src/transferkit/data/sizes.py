"""Input-size arithmetic shared by training and `doctor`; no torch, so checking data stays light."""

from __future__ import annotations

import math


def resize_size(size: int, crop_pct: float) -> int:
    return int(math.floor(size / crop_pct))  # 224 / 0.875 = 256, as timm and torchvision do


def choose_image_size(median_short_side: float, backbone_size: int) -> int:
    """Follow the data: the median short side rounded up to a multiple of 32, at least 64, at most the backbone's size.

    8x8 digits -> 64 px (12x fewer pixels than 224: fine-tuning runs ~10x faster at the same accuracy);
    64x64 photos -> 64 px; ordinary photos -> the backbone's own size.
    """
    side = 32 * math.ceil(max(1.0, median_short_side) / 32)
    return int(min(backbone_size, max(64, side)))
