"""A torch Dataset over images decoded once (uint8 HWC arrays) plus a transform.

The arrays may be views into a memory-mapped file (decode store "disk", see store.py): writable copy-on-write views,
so `torch.from_numpy` takes them without a copy, and the dataset pickles to DataLoader workers by re-mapping the file.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset


class DecodedImages(Dataset):
    def __init__(self, images: list[np.ndarray], labels: list[int], transform: Callable):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.images[i]).permute(2, 0, 1)  # HWC uint8 -> CHW, no copy
        return self.transform(x), self.labels[i]
