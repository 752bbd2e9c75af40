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
    is_array_key,
    parse_array_key,
)
from .images import IMAGE_EXTENSIONS, image_files, is_hidden
from .imageset import ImageSet
from .problems import Problem, problem


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
                f"sees, and mixing them in would mislabel images. Add them to train/ or remove them from {d.name}/."
            )
        for n in unknown:
            problems.append(
                problem(
                    "class-not-in-train",
                    f"{d.name}/{n}/ has {len(files[n])} image(s) of a class "
                    "that train/ does not have; they are left out.",
                    files[n],
                )
            )
        splits[split] = [Sample(f, index[n]) for n in files if n in index for f in files[n]]
    return DataSource(root, "presplit", classes, splits, problems=problems)


def from_arrays(
    x: np.ndarray, y: np.ndarray, classes: list[str] | None = None, name: str = "arrays", task: str = "classification"
) -> DataSource:
    """NumPy images (N,H,W[,C]) and their labels as an unsplit source: integer class indices (classification),
    numbers (task="regression"; classes: [the target's name]) or a 0/1 row per image (task="multilabel")."""
    y = np.asarray(y)
    if len(x) != len(y):
        raise DataError(f"{len(x)} images but {len(y)} labels: give one label per image.")
    if task == "regression":
        targets = y.reshape(len(y), -1)
        bad = np.flatnonzero(~np.isfinite(targets[:, 0].astype(np.float64))) if targets.shape[1] == 1 else [0]
        if len(bad):
            raise DataError(
                f"from_arrays(task='regression'): y[{bad[0]}] is {y.reshape(-1)[bad[0]]}; give one finite number per image."
            )
        labels, classes = [float(v) for v in targets[:, 0]], classes or ["target"]
    elif task == "multilabel":
        if y.ndim != 2 or not np.isin(y, (0, 1)).all():
            raise DataError(f"from_arrays(task='multilabel'): y has shape {y.shape}; give one 0/1 row per image.")
        labels = [tuple(int(j) for j in np.flatnonzero(row)) for row in y]
        classes = classes or [str(i) for i in range(y.shape[1])]
    else:
        flat = y.reshape(-1)
        if flat.dtype.kind == "f" and not np.all(flat == np.round(flat)):
            raise DataError(
                f"from_arrays: y holds numbers that are not class indices (e.g. {flat[flat != np.round(flat)][0]}); "
                "for numeric targets give task='regression'."
            )
        labels = [int(v) for v in flat.astype(np.int64)]
        classes = classes or [str(i) for i in range(max(labels) + 1)]
    samples = [Sample(f"{name}#all[{i}]", lab) for i, lab in enumerate(labels)]
    src = DataSource(Path(name), "arrays", classes, {"all": samples}, arrays={"all": np.asarray(x)}, task=task)
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
    train = src.splits.get("train", src.splits.get("all", []))
    if src.task == "regression":
        if len({s.label for s in train}) < 2 and not lenient:
            raise DataError(f"'{src.root}': every training target is the same value: there is nothing to learn.")
        return
    if src.task == "multilabel":
        if not any(s.label for s in train) and not lenient:
            raise DataError(f"'{src.root}': no training image has a label: there is nothing to learn.")
        return
    present = sorted({s.label for s in train})
    if len(src.classes) < 2 or len(present) < 2:
        found = ", ".join(src.classes) or "none"
        msg = (
            f"'{src.root}' has fewer than two classes with images (found: {found}). A classifier needs at least two: "
            "put each class's images in its own sub-folder, e.g. data/cats/*.jpg and data/dogs/*.jpg."
        )
        if not lenient:
            raise DataError(msg)
        src.problems.append(problem("single-class", msg))


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
