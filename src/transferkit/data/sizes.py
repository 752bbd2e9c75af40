"""Input-size arithmetic shared by training and `doctor`; no torch, so checking data stays light."""

from __future__ import annotations

import math


def resize_size(size: int, crop_pct: float) -> int:
    return int(math.floor(size / crop_pct))  # 224 / 0.875 = 256, as timm and torchvision do


def choose_image_size(median_short_side: float, backbone_size: int, smallest: int = 0) -> int:
    """Follow the data: the median short side rounded up to a multiple of 32, at least 64, at most the backbone's size,
    and never under `smallest`, what the network takes at least (BackboneCfg.min_input: a ViT its own size).

    8x8 digits -> 64 px (12x fewer pixels than 224: fine-tuning runs ~10x faster at the same accuracy);
    64x64 photos -> 64 px; ordinary photos -> the backbone's own size.
    """
    side = 32 * math.ceil(max(1.0, median_short_side) / 32)
    return int(max(smallest, min(backbone_size, max(64, side))))


def survey_sides(src, samples, limit: int = 200) -> tuple[float, float]:
    """(median short side, median long/short ratio) from the headers of up to `limit` evenly spaced samples.
    Decodes nothing; unreadable files are left to decoding to report. (224.0, 1.0) when none can be read."""
    import statistics
    from concurrent.futures import ThreadPoolExecutor

    keys = [s.key for s in samples[:: max(1, len(samples) // limit)]]

    def sides(key):
        try:
            w, h = src.image_size(key)
            return (min(w, h), max(w, h) / max(1, min(w, h))) if min(w, h) > 0 else None
        except Exception:  # noqa: BLE001 - unreadable files are reported by decoding, not here
            return None

    with ThreadPoolExecutor(4) as pool:
        found = [s for s in pool.map(sides, keys) if s]
    if not found:
        return 224.0, 1.0
    return float(statistics.median(s for s, _ in found)), float(statistics.median(r for _, r in found))


def decoded_bytes(n_images: int, short_side: int, aspect: float) -> int:
    """What decoding n images costs as uint8 RGB: each is resized to `short_side` on its short side and kept whole
    (the crop is random per epoch), so n x S x (S x aspect) x 3 bytes. 1,000 photos at 256 px and 4:3 = 262 MB."""
    return int(n_images * short_side * short_side * aspect * 3)
