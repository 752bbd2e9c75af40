"""Read labelled images as users have them, behind one description (`DataSource`).

    src = open_source("data/hymenoptera")        # layout found automatically
    src.layout, src.classes, {k: len(v) for k, v in src.splits.items()}
    img = src.load(src.splits["train"][0].key)   # PIL RGB

Layouts:
- folders:   root/<class>/<image> (sub-folders and folder links followed, loops not)   -> split "all"
- presplit:  root/train/<class>/..., root/val|valid|validation|verify/..., optional root/test/...
- list:      a `path<TAB>label` or CSV (`path,label`, `filename,class`, ...) file, paths relative to it;
             or a folder holding train.txt / val.txt / test.txt lists (see `lists.py`)
- hdf5:      arrays `<split>_set_x` (N,H,W,C) + `<split>_set_y` (+ `list_classes`), in one file or a folder of
             `train_*.h5` / `test_*.h5` files; other keys through options (see `hdf5.py`)
- arrays:    NumPy arrays through the Python API (`from_arrays`)

A source lists what the user declared: a listed file that is missing, or an image that does not decode, is still a
sample, so that decoding reports it in the run's skipped.csv and `doctor` names it. What cannot become a sample
(a line without a label, a non-image file in a class folder) is recorded in `problems`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError, unknown_choice
from .base import (  # noqa: F401 - re-exported: the base types are part of this module's API
    H5_SUFFIXES,
    LAYOUTS,
    LIST_SUFFIXES,
    VAL_NAMES,
    DataSource,
    Sample,
    array_hw,
    case_hint,
    is_array_key,
    parse_array_key,
)
from .images import IMAGE_EXTENSIONS, image_files, is_hidden
from .imageset import ImageSet
from .problems import Problem, problem
from .targets import kind_of


def open_source(
    path: str | os.PathLike,
    layout: str = "auto",
    *,
    path_column: str | None = None,
    label_column: str | None = None,
    target_column: str | None = None,
    h5_x: str | None = None,
    h5_y: str | None = None,
    lenient: bool = False,
    task: str = "classification",
) -> DataSource:
    """Read `path` as a dataset. Columns apply to list files, h5 keys to HDF5 (see their modules).

    lenient=True records problems that would make training wrong (classes only in val/test, a single class) in
    `src.problems` instead of raising; `doctor` uses it to report everything at once.
    task: what the labels are (a class, a number, a set of labels); a layout that cannot hold them (class folders
    for regression) reads as what it holds, which the caller checks against the task (`Task.check_data`, tasks/).
    """
    from .hdf5 import read_hdf5
    from .lists import read_lists

    label_column = target_column or label_column  # --target-column: the regression name of the same column
    root = Path(path).expanduser()
    if layout not in LAYOUTS:
        raise unknown_choice("--layout", layout, LAYOUTS)
    if not root.exists():
        raise DataError(f"Data path '{root}' does not exist.")
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "list":
        src = read_lists(root, path_column, label_column, lenient, task)
    elif layout == "hdf5":
        src = read_hdf5(root, h5_x, h5_y, task)
    else:
        src = {"folders": _folders, "presplit": _presplit}[layout](root, lenient)
    check_classes(src, lenient)
    return src


def detect_layout(root: Path) -> str:
    if root.is_file():
        if root.suffix.lower() in H5_SUFFIXES:
            return "hdf5"
        if root.suffix.lower() in LIST_SUFFIXES:
            return "list"
        raise DataError(
            f"'{root}' is a file transferkit cannot read as a dataset. Give a folder of class sub-folders, a list file "
            f"({', '.join(LIST_SUFFIXES)}) or an HDF5 file ({', '.join(H5_SUFFIXES)})."
        )
    children = [c for c in root.iterdir() if not is_hidden(c.name)]
    dirs = {c.name.lower(): c for c in children if c.is_dir()}
    if "train" in dirs and (any(v in dirs for v in VAL_NAMES) or "test" in dirs):
        return "presplit"
    if any(c.is_file() and c.suffix.lower() in H5_SUFFIXES for c in children) and not dirs:
        return "hdf5"
    if any(c.is_file() and c.stem.lower() == "train" and c.suffix.lower() in LIST_SUFFIXES for c in children):
        return "list"
    if dirs:
        return "folders"
    raise DataError(
        f"'{root}' has no class sub-folders. Expected root/<class>/<image>, a pre-split root/train|val|test/<class>/, "
        "a list file or HDF5 arrays."
    )


def _walk_images(top: Path, problems: list[Problem]) -> list[str]:
    """Image files under `top`, sorted. Folder links are followed once: a link back into a folder already read
    (a loop, or a second way into the same files) is skipped, so nothing is read twice and nothing loops forever."""
    files, others = [], []
    seen = {os.path.realpath(top)}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        kept = []
        for n in sorted(dirnames):
            if is_hidden(n):
                continue
            full = os.path.join(dirpath, n)
            real = os.path.realpath(full)
            if real in seen:
                problems.append(
                    problem("link-not-followed", f"'{full}' links to '{real}', which is read already.", [full])
                )
                continue
            seen.add(real)
            kept.append(n)
        dirnames[:] = kept
        for n in sorted(filenames):
            if is_hidden(n):
                continue  # .DS_Store, Thumbs.db, ._* AppleDouble files: never data, never worth a word
            full = os.path.join(dirpath, n)
            # A looping or dangling link lands here even when named like a folder; decoding and doctor report it.
            (files if n.lower().endswith(IMAGE_EXTENSIONS) else others).append(full)
    if others:
        shown = ", ".join(os.path.basename(f) for f in others[:5]) + (", ..." if len(others) > 5 else "")
        problems.append(
            problem(
                "not-image-extension",
                f"{len(others)} file(s) in '{top}' without an image extension were not read: {shown}.",
                others,
            )
        )
    return files


def _scan_class_folders(root: Path, problems: list[Problem]) -> dict[str, list[str]]:
    """class name -> image files, for every non-hidden sub-folder of root (empty ones included)."""
    dirs = sorted(p for p in root.iterdir() if not is_hidden(p.name) and p.is_dir())
    return {d.name: _walk_images(d, problems) for d in dirs}


def _drop_empty(files: dict[str, list[str]], where: Path, problems: list[Problem]) -> list[str]:
    """Class names with images; an empty class folder would give the model an output it can never learn."""
    empty = [n for n, f in files.items() if not f]
    for n in empty:
        problems.append(
            problem(
                "empty-class", f"Class folder '{where / n}' has no images; the class is left out.", [str(where / n)]
            )
        )
    return [n for n in files if files[n]]


def _folders(root: Path, lenient: bool = False) -> DataSource:
    problems: list[Problem] = []
    files = _scan_class_folders(root, problems)
    names = _drop_empty(files, root, problems)
    samples = [Sample(f, i) for i, n in enumerate(names) for f in files[n]]
    return DataSource(root, "folders", names, {"all": samples}, problems=problems)


def _presplit(root: Path, lenient: bool = False) -> DataSource:
    dirs = {c.name.lower(): c for c in root.iterdir() if c.is_dir() and not is_hidden(c.name)}
    if "train" not in dirs:
        raise DataError(f"'{root}' looks pre-split but has no train/ folder.")
    problems: list[Problem] = []
    train_files = _scan_class_folders(dirs["train"], problems)
    classes = _drop_empty(train_files, dirs["train"], problems)
    index = {n: i for i, n in enumerate(classes)}
    splits = {"train": [Sample(f, index[n]) for n in classes for f in train_files[n]]}
    val_dir = next((dirs[v] for v in VAL_NAMES if v in dirs), None)
    for split, d in (("val", val_dir), ("test", dirs.get("test"))):
        if d is None:
            continue
        files = _scan_class_folders(d, problems)
        unknown = [n for n in files if n not in index and files[n]]
        if unknown and not lenient:
            raise DataError(
                f"{d.name}/ has classes that train/ does not: {', '.join(unknown)}. A model cannot learn a class it never "
                f"sees, and mixing them in would mislabel images."
                + (case_hint(unknown, classes, f"{d}/") or f" Add them to train/ or remove them from {d.name}/.")
            )
        for n in unknown:
            problems.append(
                problem(
                    "class-not-in-train",
                    f"{d.name}/{n}/ has {len(files[n])} image(s) of a class "
                    "that train/ does not have; they are left out." + case_hint([n], classes, f"{d}/"),
                    files[n],
                )
            )
        splits[split] = [Sample(f, index[n]) for n in files if n in index for f in files[n]]
    return DataSource(root, "presplit", classes, splits, problems=problems)


# What an image array may be (from_arrays, predict): refusing anything else beats training on black images.
IMAGE_RULE = (
    "Images are (N, H, W, 3) arrays (also (N, H, W) grey, (N, H, W, 1), (N, H, W, 4) RGBA or (N, 3, H, W)) of uint8 "
    "0-255, or of floats in [0, 1] (or 0-255), every value finite."
)


def image_batch(x, what: str = "x") -> np.ndarray:
    """Images as users hold them -> (N, H, W, C) uint8, C in (1, 3, 4); anything that would decode to something
    other than what the user sees is refused with the rule. Floats in [0, 1] are scaled by 255 for the whole batch
    (not image by image: a dark 0-255 image whose values stay under 1 is not 255x brighter)."""
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    try:
        x = np.asarray(x)
    except ValueError as e:  # a ragged list
        raise DataError(f"{what} is not one array ({e}): resize the images to one size. {IMAGE_RULE}") from e
    if x.dtype == object or x.size == 0:
        why = "empty" if x.size == 0 else "images of different sizes (or not numbers)"
        raise DataError(f"{what} has shape {x.shape}: {why}. {IMAGE_RULE}")
    if x.ndim == 2:
        hint = ""
        for c, shape in ((3, "-1, {s}, {s}, 3"), (1, "-1, {s}, {s}")):
            s = int(round((x.shape[1] / c) ** 0.5))
            if s * s * c == x.shape[1]:
                hint = f" If each row is a flattened {s}x{s} image, give x.reshape({shape.format(s=s)})."
                break
        raise DataError(f"{what} has shape {x.shape}: one flat row per image is not an image.{hint} {IMAGE_RULE}")
    if x.ndim == 4 and x.shape[-1] not in (1, 3, 4) and x.shape[1] in (1, 3):
        x = x.transpose(0, 2, 3, 1)  # NCHW (torch's layout) -> NHWC
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3, 4)):
        raise DataError(f"{what} has shape {x.shape}. {IMAGE_RULE}")
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind == "b" or x.dtype.kind not in "uif":
        raise DataError(f"{what} has dtype {x.dtype}. {IMAGE_RULE}")
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{what if len(x) == 1 else f'{what}[{i}]'} holds NaN or infinite values ({int(bad.sum())} image(s) "
                f"do): replace them (np.nan_to_num) or leave those images out. {IMAGE_RULE}"
            )
    lo, hi = float(x.min()), float(x.max())
    if x.dtype == np.uint16:  # a 16-bit image, whatever its values: 8-bit readings of it would be dark or saturated
        hi = max(hi, 256.0)
    if lo < 0:
        hint = " Floats in [-1, 1] look normalised: give x * 0.5 + 0.5." if x.dtype.kind == "f" and lo >= -1 else ""
        raise DataError(f"{what} has values from {lo:g} to {hi:g}: negative values are not pixels.{hint} {IMAGE_RULE}")
    if hi > 255:
        hint = " 16-bit images: give (x // 257).astype(np.uint8)." if hi <= 65535 else ""
        raise DataError(f"{what} is {x.dtype}, values up to {float(x.max()):g}: not 8-bit.{hint} {IMAGE_RULE}")
    if x.dtype.kind == "f":  # [0, 1] -> x 255, as array_to_image reads one float image; 0-255 floats as they are
        return np.clip(x * (255.0 if hi <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8)
    return x.astype(np.uint8)  # integers 0-255 of another dtype


def from_arrays(
    x: np.ndarray, y: np.ndarray, classes: list[str] | None = None, name: str = "arrays", task: str = "classification"
) -> DataSource:
    """NumPy images and their labels as an unsplit source. Images: see IMAGE_RULE (checked; stored as uint8).
    Labels: class indices, one-hot rows or class names (classification), numbers (task="regression"; classes:
    [the target's name]) or a 0/1 row per image (task="multilabel")."""
    x = image_batch(x)
    y = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y)
    if len(x) != len(y):
        hint = ""
        if x.ndim == 3 and x.shape[-1] in (3, 4):
            hint = f" x {x.shape} reads as {x.shape[0]} grey images; for one colour image give x[None]."
        raise DataError(f"{len(x)} images but {len(y)} labels: give one label per image.{hint}")
    labels, classes = kind_of(task).from_array(y, classes)  # what y may be, by kind of labels (data/targets.py)
    samples = [Sample(f"{name}#all[{i}]", lab) for i, lab in enumerate(labels)]
    src = DataSource(Path(name), "arrays", classes, {"all": samples}, arrays={"all": x}, task=task)
    check_classes(src)
    return src


def from_dataset(dataset, classes: list[str] | None = None, name: str = "dataset") -> DataSource:
    """An existing map-style dataset of (image, label) pairs as an unsplit source, read once into memory.

    Images may be PIL images, HWC/HW arrays or CHW tensors (uint8, or floats in [0, 1]); pass the dataset without
    its normalisation transform, since transferkit applies the backbone's own. Images of different sizes are
    centre-cropped to squares and resized to the median side, so they can share one array.
    """
    from .images import array_to_image, to_rgb

    classes = classes or list(getattr(dataset, "classes", []) or []) or None
    images, labels = [], []
    for i in range(len(dataset)):
        img, label = dataset[i]
        if hasattr(img, "detach"):  # a torch tensor
            img = img.detach().cpu().numpy()
        images.append(to_rgb(img) if hasattr(img, "mode") else array_to_image(np.asarray(img)))
        labels.append(int(label))
    if not images:
        raise DataError(f"The dataset '{name}' is empty.")
    if len({im.size for im in images}) > 1:
        from PIL import ImageOps

        side = int(np.median([min(im.size) for im in images]))
        images = [ImageOps.fit(im, (side, side)) for im in images]
    return from_arrays(np.stack([np.asarray(im) for im in images]), np.asarray(labels), classes, name)


def check_classes(src: DataSource, lenient: bool = False) -> None:
    """Something to learn in the training part, as the source's kind of labels counts it (data/targets.py)."""
    kind_of(src.task).check(src, lenient)


def open_images(path: str | os.PathLike, content: bool = False) -> ImageSet:
    """Every image a path holds, labelled or not: a file, a folder (searched through, class folders or not), a list
    file (its path column: labels are not needed), or an HDF5 file (its image arrays)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"'{root}' does not exist: give an image file, a folder of images, a list file or HDF5.")
    if root.is_dir():
        files = image_files(root)
        if not files:
            raise DataError(f"'{root}' holds no image files (looked for .jpg, .png, ... in every sub-folder).")
        return ImageSet(root, [str(f.resolve()) for f in files], content=content)
    if root.suffix.lower() in LIST_SUFFIXES:
        from .lists import read_paths

        return ImageSet(root, read_paths(root), content=content)
    if root.suffix.lower() in H5_SUFFIXES:
        return open_source(root).images(content=content)
    return ImageSet(root.parent, [str(root.resolve())], content=content)
