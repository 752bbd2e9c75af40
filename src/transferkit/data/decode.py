"""Decode every image once, in parallel, to uint8 at the size training needs; bad files are skipped and reported.

The arrays are reused by every epoch (and by evaluation), so JPEG decoding is paid once per run, not once per epoch.
Pillow releases the GIL while decoding, so threads use every core without copying data between processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .sources import DataSource, Sample  # importing it sets Pillow's pixel limit (images.py)


def decode_samples(
    src: DataSource,
    samples: list[Sample],
    short_side: int,
    interpolation: str = "bicubic",
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[np.ndarray], list[int], list[tuple[str, str]]]:
    """Returns (HWC uint8 arrays, labels, skipped [(key, reason)]) in the order of `samples`, bad ones left out."""

    def one(s: Sample):
        try:
            return np.array(src.load(s.key, short_side, interpolation)), None  # writable: torch.from_numpy needs it
        except Exception as e:  # noqa: BLE001 - any unreadable file is reported, never fatal to the run
            return None, f"{type(e).__name__}: {e}"

    workers = workers or min(8, os.cpu_count() or 1)
    images, labels, skipped = [], [], []
    with ThreadPoolExecutor(workers) as pool:
        for s, (arr, err) in zip(samples, pool.map(one, samples)):
            if progress:
                progress(1)
            if err is not None:
                skipped.append((s.key, err))
                continue
            images.append(arr)
            labels.append(s.label)
    return images, labels, skipped
