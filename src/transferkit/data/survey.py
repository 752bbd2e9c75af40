"""Look at every image once, in parallel, without keeping pixels: header facts, a content hash and (deep) a
perceptual hash. `doctor` turns the facts into problems.

    infos = inspect_samples(src, splits, deep=True)
    [i for i in infos if i.error]                  # ImageInfo(error=('truncated', '...'), ...)

Cost per file: one read of its bytes (SHA-256 at ~1 GB/s), the header, and with deep=True a decode at 1/8 scale for
JPEGs (libjpeg skips most of the inverse DCT at 1/8, and still reads every byte, so truncation is caught). Pillow and
hashlib release the GIL, so a thread pool uses every core.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .images import array_to_image, open_image, to_rgb
from .sources import DataSource, Sample, array_hw, is_array_key, parse_array_key

GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
THUMB = 64  # px: enough for an 8x9 difference hash and a grayscale test, and JPEGs decode at 1/8 scale


@dataclass
class ImageInfo:
    key: str  # file path or array reference, as in the source
    split: str  # train / val / test / all
    label: int  # class index
    format: str | None = None  # Pillow's name (JPEG, PNG, GIF, ...); "array" for arrays; None when unreadable
    mode: str | None = None  # Pillow mode as stored (RGB, L, P, RGBA, CMYK, I;16, ...)
    width: int = 0
    height: int = 0
    orientation: int = 1  # EXIF orientation; anything but 1 is rotated or mirrored when loaded
    frames: int = 1  # > 1 for animated GIF/WebP/TIFF
    sha: str | None = None  # SHA-256 of the file's bytes (of the pixels for arrays): exact duplicates
    dhash: int | None = None  # 64-bit difference hash (deep only): near duplicates
    gray_rgb: bool = False  # a colour mode whose channels are equal: grayscale stored as RGB (deep only)
    large: bool = False  # over Pillow's pixel limit: decoding would need much memory, so it is not decoded here
    error: tuple[str, str] | None = None  # (problem code, message) when the file cannot be used


def dhash(img: Image.Image) -> int:
    """Difference hash: is each of 8x8 cells brighter than its right neighbour? Survives resizing and re-encoding."""
    g = np.asarray(img.convert("L").resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    return int.from_bytes(np.packbits(g[:, 1:] > g[:, :-1]).tobytes(), "big")


def is_gray(img: Image.Image) -> bool:
    """R == G == B up to JPEG's chroma noise (a few levels) on 99.5% of the pixels."""
    a = np.asarray(to_rgb(img), dtype=np.int16)
    spread = np.maximum(np.abs(a[..., 0] - a[..., 1]), np.abs(a[..., 1] - a[..., 2]))
    return bool((spread > 4).mean() < 0.005)


def _pixels(img: Image.Image, info: ImageInfo) -> None:
    """Decode small, then hash and test for gray; a failure here is the file's error."""
    if img.format == "JPEG":
        img.draft(img.mode, (THUMB, THUMB))
    try:
        img.load()
    except OSError as e:
        code = "truncated" if "truncated" in str(e) or "broken data stream" in str(e) else "unreadable"
        info.error = (code, f"cannot be decoded ({e}).")
        return
    except Exception as e:  # noqa: BLE001 - a decoder failure of any kind is reported, never fatal
        info.error = ("unreadable", f"cannot be decoded ({type(e).__name__}: {e}).")
        return
    try:
        small = to_rgb(img)  # 16-bit, palette and CMYK first, as training will see them
        small.thumbnail((THUMB, THUMB), Image.Resampling.BOX)
        if info.orientation != 1:
            small = ImageOps.exif_transpose(small)
        info.dhash = dhash(small)
        info.gray_rgb = info.mode not in GRAY_MODES and is_gray(small)
    except Exception:  # noqa: BLE001 - the image decoded; hashes are extras and their absence only skips a check
        pass


def _open_error(key: str, e: OSError) -> tuple[str, str]:
    if e.errno == errno.ELOOP:
        return "symlink-loop", "is a symbolic link that loops back on itself."
    if os.path.islink(key):
        return "broken-link", f"is a symbolic link to '{os.readlink(key)}', which does not exist."
    if e.errno == errno.ENOENT:
        return "missing-file", "does not exist (listed, but not there)."
    return "unreadable", f"cannot be read ({e.strerror or e})."


def inspect_file(key: str, split: str, label: int, deep: bool) -> ImageInfo:
    info = ImageInfo(key, split, label)
    try:
        st = os.stat(key)
        if stat.S_ISDIR(st.st_mode):
            info.error = ("not-an-image", "is a folder, not an image file.")
            return info
        if st.st_size == 0:
            info.error = ("zero-byte", "is empty (0 bytes).")
            return info
        with open(key, "rb") as f:
            data = f.read()
    except OSError as e:
        info.error = _open_error(key, e)
        return info
    info.sha = hashlib.sha256(data).hexdigest()
    try:
        # Pillow warns above MAX_IMAGE_PIXELS (and raises above twice it); catching the warning is not thread-safe
        # (this runs on a pool), so open_image silences it and the pixel count decides instead.
        with open_image(io.BytesIO(data)) as img:
            return _describe(img, info, deep)
    except Image.DecompressionBombError as e:
        info.error = ("decompression-bomb", f"claims more pixels than the safety limit ({e}).")
        return info
    except UnidentifiedImageError:
        start = data[:24].decode("utf-8", "replace").strip()
        info.error = ("not-an-image", f"is not an image Pillow can read (it starts with {start!r}).")
        return info
    except Exception as e:  # noqa: BLE001 - a malformed header of any kind is reported, never fatal
        info.error = ("unreadable", f"has an unreadable header ({type(e).__name__}: {e}).")
        return info


def _describe(img: Image.Image, info: ImageInfo, deep: bool) -> ImageInfo:
    info.large = img.size[0] * img.size[1] > Image.MAX_IMAGE_PIXELS
    info.format, info.mode, (info.width, info.height) = img.format, img.mode, img.size
    info.frames = int(getattr(img, "n_frames", 1) or 1)
    try:
        info.orientation = int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - corrupt EXIF: Pillow ignores it when loading too
        info.orientation = 1
    if deep and not info.large:
        _pixels(img, info)
    return info


def inspect_array(src: DataSource, key: str, split: str, label: int) -> ImageInfo:
    """Arrays are in memory already: every check, deep ones included, costs microseconds."""
    name, i = parse_array_key(key)
    a = src.arrays[name][i]
    h, w = array_hw(src.arrays[name])
    chw = a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3, 4)
    channels = 1 if a.ndim == 2 else a.shape[0] if chw else a.shape[-1]
    mode = {1: "L", 4: "RGBA"}.get(int(channels), "RGB")
    info = ImageInfo(key, split, label, format="array", mode=mode, width=w, height=h)
    info.sha = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
    img = array_to_image(a)
    info.dhash = dhash(img)
    info.gray_rgb = mode != "L" and is_gray(img)
    return info


def inspect_samples(
    src: DataSource,
    splits: dict[str, list[Sample]],
    deep: bool = True,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ImageInfo]:
    """ImageInfo for every sample of every split, in order."""
    jobs = [(s.key, split, s.label) for split, samples in splits.items() for s in samples]

    def one(job):
        key, split, label = job
        try:
            if is_array_key(key) and src.arrays:
                return inspect_array(src, key, split, label)
            return inspect_file(key, split, label, deep)
        except Exception as e:  # noqa: BLE001 - whatever a file does, the check of the others goes on
            return ImageInfo(
                key, split, label, error=("unreadable", f"could not be checked ({type(e).__name__}: {e}).")
            )

    out = []
    with ThreadPoolExecutor(workers or min(8, (os.cpu_count() or 1) * 2)) as pool:
        for info in pool.map(one, jobs):
            out.append(info)
            if progress:
                progress(1)
    return out
