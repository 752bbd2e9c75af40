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

from ..errors import DataError

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
# Resizing multiplies pixels: a 320-byte PNG of 1x60000 px, resized to a 73 px short side, is 73 x 4,380,000 px (960 MB
# as RGB, 3.7 GB with the filter's buffers). The long side may be at most this many times the short one: a 12:1
# panorama passes, a strip or a crafted file does not. With it, the resized image is at most short_side^2 x 32 pixels
# (73 px: 170 k; 1170 px for a 1024 px crop: 44 M).
MAX_ASPECT = 32


class ImageTooLarge(DataError, ValueError):
    """An image refused from its header, before any decoding: too many pixels, or sides too far apart to resize.
    The decoders report it as an unreadable file, with this message; the API raises it for an image passed in."""


def check_size(width: int, height: int, short_side: int | None = None, max_pixels: int | None = None) -> None:
    """Raise ImageTooLarge when decoding a `width` x `height` image (more than `max_pixels`; without it Pillow's own
    bomb check decides) or resizing it to a `short_side` short side (more than `max_pixels`, default Pillow's limit,
    or sides over MAX_ASPECT:1 apart) would cost more memory than any real photo does. Called with the header's
    size, before decoding."""
    limit = max_pixels or Image.MAX_IMAGE_PIXELS
    if max_pixels and width * height > max_pixels:
        raise ImageTooLarge(
            f"{width}x{height} px = {width * height / 1e6:.1f} megapixels; the most decoded is {limit / 1e6:.1f} "
            "(refused before decoding). Use a smaller image."
        )
    if not short_side:
        return
    short, long = sorted((max(1, width), max(1, height)))
    resized = short_side * max(short_side, round(long * short_side / short))
    if long > MAX_ASPECT * short or resized > limit:
        raise ImageTooLarge(
            f"{width}x{height} px: its long side is {long / short:.0f} times its short side; resized to the model's "
            f"{short_side} px short side it would be {resized / 1e6:.1f} megapixels. Images up to {MAX_ASPECT}:1 are "
            "taken (refused before decoding): crop it, or split it into parts."
        )


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


def open_rgb(
    path, short_side: int | None = None, interpolation: str = "bicubic", max_pixels: int | None = None
) -> Image.Image:
    """Decode `path` to RGB, rotated per EXIF, resized so that its shorter side is `short_side` (if given).
    An image too large to decode or to resize (`check_size`) raises ImageTooLarge from its header alone."""
    with open_image(path) as img:
        check_size(*img.size, short_side, max_pixels)  # the aspect ratio and the resized size, from the header
        if short_side and img.format == "JPEG":
            img.draft("RGB", (short_side, short_side))  # decode at >= the size needed, not the full size
        img = ImageOps.exif_transpose(img)  # returns a copy; honours the camera's orientation tag
        img = to_rgb(img)
        img.load()
    return resize_short(img, short_side, interpolation) if short_side else img


def check_file(path, short_side: int | None = None, max_pixels: int | None = None) -> None:
    """`check_size` from the file's header alone (microseconds), decoding bounded at `max_pixels` (default Pillow's
    limit, where training decodes up to twice it): `predict` refuses a 20000x20000 PNG (3.1 GB to decode) here."""
    with open_image(path) as img:
        check_size(*img.size, short_side, max_pixels or Image.MAX_IMAGE_PIXELS)


def resize_short(img: Image.Image, short_side: int, interpolation: str = "bicubic") -> Image.Image:
    w, h = img.size
    check_size(w, h, short_side)  # in memory already: only what resizing makes of it
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
