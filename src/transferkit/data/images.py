"""Open any image a user has as 8-bit RGB: EXIF rotation honoured, alpha dropped, palette/CMYK/16-bit converted.

JPEGs are decoded in draft mode at the size needed (libjpeg scales by 1/2, 1/4, 1/8 while decoding), which makes
a 2592x1944 photo cost about as much as a 640x480 one.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
# Files and folders that operating systems and zip tools leave behind; never data, never worth a warning.
SYSTEM_FILES = (
    "thumbs.db",
    "ehthumbs.db",
    "desktop.ini",
    ".ds_store",
    "__macosx",
    "@eadir",
    "$recycle.bin",
    "system volume information",
)
# Pillow refuses images above twice this (DecompressionBombError) and warns above it: a small file can claim
# billions of pixels. 200M (~14k x 14k, 600 MB as RGB) allows any real photo; Pillow's own 89M rejects some panoramas.
Image.MAX_IMAGE_PIXELS = 200_000_000
# Between the limit and twice it Pillow only warns, with its raw "could be decompression bomb DOS attack", once per
# image in the middle of a progress bar. Such an image is a big photo, not an attack: the doctor (run before every
# `train`) names it in our words ("large-image") and decoding just decodes it. Twice the limit is still refused
# (DecompressionBombError), which the decoder reports as a skipped file. `catch_warnings` swaps the process-wide
# filter list, so the decode threads take turns inside it; only the header read is inside (microseconds), the
# decoding is not.
_QUIET_OPEN = threading.Lock()

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


def is_hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_FILES


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB. Alpha is dropped (not composited), as most training pipelines do."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit and float greyscale: scale to 8 bits
        a = np.asarray(img, dtype=np.float32)
        hi = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        if img.mode == "F" and a.max() <= 1.0:
            hi = 1.0
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if img.mode == "P":  # palette, maybe with transparency: through RGBA so the palette's colours are kept
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


@contextmanager
def open_image(path):
    """`Image.open(path)` without Pillow's DecompressionBombWarning (see _QUIET_OPEN); the bomb error still raises."""
    with _QUIET_OPEN, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = Image.open(path)  # reads the header only: where Pillow checks the pixel count
    with img:
        yield img


def open_rgb(path, short_side: int | None = None, interpolation: str = "bicubic") -> Image.Image:
    """Decode `path` to RGB, rotated per EXIF, resized so that its shorter side is `short_side` (if given)."""
    with open_image(path) as img:
        if short_side and img.format == "JPEG":
            img.draft("RGB", (short_side, short_side))  # decode at >= the size needed, not the full size
        img = ImageOps.exif_transpose(img)  # returns a copy; honours the camera's orientation tag
        img = to_rgb(img)
        img.load()
    return resize_short(img, short_side, interpolation) if short_side else img


def resize_short(img: Image.Image, short_side: int, interpolation: str = "bicubic") -> Image.Image:
    w, h = img.size
    scale = short_side / min(w, h)
    size = (max(short_side, round(w * scale)), max(short_side, round(h * scale)))
    if size == (w, h):
        return img
    return img.resize(size, _RESAMPLE.get(interpolation, Image.Resampling.BICUBIC))


def array_to_image(a: np.ndarray) -> Image.Image:
    """An HWC / HW array (uint8, or float in [0, 1]) -> RGB image."""
    if a.dtype != np.uint8:
        a = np.asarray(a, dtype=np.float32)
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3, 4):  # CHW -> HWC
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return to_rgb(Image.fromarray(a))


def image_files(path: Path) -> list[Path]:
    """`path` itself if it is a file, else every image below it (hidden and system files left out), sorted."""
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(is_hidden(part) for part in p.relative_to(path).parts)
    )


def image_inputs(inputs) -> list:
    """What `predict` takes, as a flat list: files and folders become image paths (in sorted order), lists are
    flattened, anything else (a PIL image, an array) stays as it is. A path that is missing or holds no image is
    a TransferkitError naming it."""
    from ..errors import TransferkitError

    if isinstance(inputs, (list, tuple)):
        return [x for item in inputs for x in image_inputs(item)]
    if isinstance(inputs, (str, Path)):
        path = Path(inputs).expanduser()
        if not path.exists():
            raise TransferkitError(f"'{path}' does not exist.")
        files = image_files(path)
        if not files:
            raise TransferkitError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in '{path}'.")
        return files
    return [inputs]
