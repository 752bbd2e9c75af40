"""Images apart from labels: what can be loaded and how each image is known, whatever its labels (if any).

    images = open_images("photos/")                # every image under a folder: class folders or none
    images.keys[:2], len(images)                   # absolute paths (or "<source>#<split>[<i>]" for arrays)
    images.identities()                            # ['file:/abs/a.jpg|20811|1733470000123456789', ...]
    img = images.load(images.keys[0], short_side=256)

An image's identity is what the feature store (core/store.py) keys its features by: for a file, its resolved path,
size and modification time (a file that changes is a new image; a renamed one is too, which is cheap to be wrong
about: it is extracted again); for an array row (from_arrays, HDF5), a hash of its pixels, shape and dtype, so the
same pixels are the same image in every split, fold and run. `content=True` hashes file bytes too (a copied file,
or one restored with a new mtime, is then the same image). Labels and splits are never part of an identity: a
corrected label or another split needs no new features.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .images import array_to_image, open_image, open_rgb, resize_short


def is_array_key(key: str) -> bool:
    return "#" in key and key.endswith("]")


def parse_array_key(key: str) -> tuple[str, int]:
    """'train_catvnoncat.h5#train[146]' -> ('train', 146)."""
    name, _, idx = key.rpartition("#")[2].partition("[")
    return name, int(idx[:-1])


def array_hw(a: np.ndarray) -> tuple[int, int]:
    """(height, width) of the images in an (N,H,W[,C]) or (N,C,H,W) stack."""
    if a.ndim == 4 and a.shape[1] in (1, 3) and a.shape[-1] not in (1, 3, 4):
        return int(a.shape[2]), int(a.shape[3])
    return int(a.shape[1]), int(a.shape[2])


def file_identity(path: str, content: bool = False) -> str:
    """'file:/abs/path|size|mtime_ns' ('sha256:...' of the bytes with content=True); a file that cannot be read
    gets 'missing:/abs/path' (it never decodes, so nothing is stored under it)."""
    p = os.path.realpath(path)
    try:
        if content:
            with open(p, "rb") as f:
                return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()[:32]
        st = os.stat(p)
    except OSError:
        return f"missing:{p}"
    return f"file:{p}|{st.st_size}|{st.st_mtime_ns}"


def array_identity(a: np.ndarray) -> str:
    """A hash of one image's pixels, shape and dtype: 'px:<32 hex>' (blake2b: ~1 GB/s, 20,000 64x64 RGB images in
    about 0.25 s)."""
    a = np.ascontiguousarray(a)
    h = hashlib.blake2b(f"{a.shape}|{a.dtype.str}|".encode(), digest_size=16)
    h.update(a.data)
    return "px:" + h.hexdigest()


@dataclass
class ImageSet:
    """Keys that can be loaded, and their identities; no labels. `arrays`: name -> (N,H,W[,C]) stacks that array
    keys ("<root>#<name>[<i>]") point into."""

    root: Path
    keys: list[str]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    content: bool = False  # identify files by a hash of their bytes, not path+size+mtime
    _ids: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.keys)

    def load(self, key: str, short_side: int | None = None, interpolation: str = "bicubic"):
        """The image as PIL RGB, its short side resized to `short_side` (None: as it is)."""
        if is_array_key(key) and self.arrays:
            name, idx = parse_array_key(key)
            img = array_to_image(self.arrays[name][idx])
            return resize_short(img, short_side, interpolation) if short_side else img
        return open_rgb(key, short_side, interpolation)

    def image_size(self, key: str) -> tuple[int, int]:
        """(width, height) from the file header or the array's shape; decodes nothing."""
        if is_array_key(key) and self.arrays:
            h, w = array_hw(self.arrays[parse_array_key(key)[0]])
            return w, h
        with open_image(key) as img:
            return img.size

    def identity(self, key: str) -> str:
        if key not in self._ids:
            if is_array_key(key) and self.arrays:
                name, idx = parse_array_key(key)
                self._ids[key] = array_identity(self.arrays[name][idx])
            else:
                self._ids[key] = file_identity(key, self.content)
        return self._ids[key]

    def identities(self, keys: Sequence[str] | None = None) -> list[str]:
        """The identity of each key (all of this set's by default), in order."""
        return [self.identity(k) for k in (self.keys if keys is None else keys)]

    def subset(self, keys: Sequence[str]) -> ImageSet:
        """The same images' loader over other keys (identities computed so far are shared)."""
        return ImageSet(self.root, list(keys), self.arrays, self.content, self._ids)
