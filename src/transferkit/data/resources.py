"""Will it fit? What decoding a dataset at a given size costs in memory or disk, checked before anything is decoded.

    check_decode_fits(n_images=30, short_side=11428, aspect=1.33, store="auto", store_dir=..., image_size=10000)
    -> DataError: "Decoding 30 images at 11428 px needs about 15.6 GB ..."

Without it a wrong `--image-size` decodes for a minute and is then killed by the kernel with no message, or fills
the disk with the decode store until everything else on the machine fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import DataError
from .sizes import decoded_bytes
from .store import memory_budget

DISK_SHARE = 0.8  # of the free disk the decode store may take: the rest is the machine's, not ours


def gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def free_disk(folder: str | os.PathLike) -> int:
    """Free bytes on the disk that holds `folder` (or its nearest existing parent)."""
    p = Path(folder).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return 2**62  # unknown: do not refuse on a guess


def check_decode_fits(n_images: int, short_side: int, aspect: float, store: str, store_dir, image_size: int) -> int:
    """The estimated decoded size in bytes; a DataError with the numbers and the way out when it fits neither in
    memory (twice `memory_budget()`, i.e. what is available now) nor, where the store may go to disk, on the disk."""
    need = decoded_bytes(n_images, short_side, aspect)
    memory = memory_budget() * 2
    if need <= memory // 2 or (store == "memory" and need <= memory):
        return need
    disk = free_disk(store_dir) if store != "memory" else 0
    if store != "memory" and need <= disk * DISK_SHARE:
        return need
    where = (
        f"{gb(memory)} of memory is available"
        if store == "memory"
        else f"{gb(memory)} of memory is available and {gb(disk)} is free on the disk of {store_dir}"
    )
    raise DataError(
        f"Decoding {n_images} images at {short_side} px on the short side (for --image-size {image_size}) needs about "
        f"{gb(need)} ({n_images} x {short_side} x {int(short_side * aspect)} x 3 bytes), but {where}. Use a smaller "
        "--image-size (the backbone's own, 224 for most, is typical; leave it out to follow the data), fewer images, "
        "or --decode-store disk with TRANSFERKIT_CACHE set to a folder on a larger disk."
    )
