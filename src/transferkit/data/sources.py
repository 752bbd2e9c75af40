"""Read labelled images as users have them, behind one description (`DataSource`).

    src = open_source("data/hymenoptera")        # layout found automatically
    src.layout, src.classes, {k: len(v) for k, v in src.splits.items()}
    img = src.load(src.splits["train"][0].key)   # PIL RGB

Layouts:
- folders:   root/<class>/<image>                                  -> split "all"
- presplit:  root/train/<class>/..., root/val|valid|validation|verify/..., optional root/test/...
- list:      a `path<TAB>label` or CSV (`path,label`, `filename,class`, ...) file, paths relative to it;
             or a folder holding train.txt / val.txt / test.txt lists
- hdf5:      arrays `<split>_set_x` (N,H,W,C) + `<split>_set_y` (+ `list_classes`), in one file or a folder of
             `train_*.h5` / `test_*.h5` files
- arrays:    NumPy arrays through the Python API (`from_arrays`)
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, unknown_choice
from .images import IMAGE_EXTENSIONS, array_to_image, is_hidden, open_rgb

LAYOUTS = ("auto", "folders", "presplit", "list", "hdf5")
VAL_NAMES = ("val", "valid", "validation", "verify")
LIST_SUFFIXES = (".txt", ".tsv", ".csv", ".lst")
H5_SUFFIXES = (".h5", ".hdf5", ".hdf")
PATH_COLUMNS = ("path", "filename", "file", "image", "img", "filepath", "image_path", "name")
LABEL_COLUMNS = ("label", "class", "category", "target", "y", "class_name")


@dataclass(frozen=True)
class Sample:
    key: str  # a file path (absolute) or an array reference "<source>#<split>[<i>]"
    label: int


@dataclass
class DataSource:
    root: Path
    layout: str
    classes: list[str]
    splits: dict[str, list[Sample]]  # "train"/"val"/"test", or "all" for data still to be split
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # for array layouts: split -> (N,H,W,C)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (path, why) for files that are not images

    def load(self, key: str, short_side: int | None = None, interpolation: str = "bicubic"):
        if "#" in key and key.endswith("]") and self.arrays:
            from .images import resize_short

            name, _, idx = key.rpartition("#")[2].partition("[")
            img = array_to_image(self.arrays[name][int(idx[:-1])])
            return resize_short(img, short_side, interpolation) if short_side else img
        return open_rgb(key, short_side, interpolation)

    def image_size(self, key: str) -> tuple[int, int]:
        """(width, height) from the file header or array shape; decodes nothing."""
        if "#" in key and key.endswith("]") and self.arrays:
            name = key.rpartition("#")[2].partition("[")[0]
            h, w = self.arrays[name].shape[1:3]
            return int(w), int(h)
        from PIL import Image

        with Image.open(key) as img:
            return img.size

    def fingerprint(self) -> str:
        """Changes when any file, label or array changes; cheap (sizes and mtimes, not contents, for files)."""
        h = hashlib.sha256("\n".join(self.classes).encode())
        for split in sorted(self.splits):
            for s in self.splits[split]:
                h.update(f"{split}|{s.key}|{s.label}".encode())
                if not self.arrays:
                    try:
                        st = os.stat(s.key)
                        h.update(f"|{st.st_size}|{int(st.st_mtime)}".encode())
                    except OSError:
                        pass
        for name in sorted(self.arrays):
            h.update(np.ascontiguousarray(self.arrays[name]).tobytes())
        return h.hexdigest()[:16]

    def counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for split, samples in self.splits.items():
            c = {name: 0 for name in self.classes}
            for s in samples:
                c[self.classes[s.label]] += 1
            out[split] = c
        return out


def open_source(path: str | os.PathLike, layout: str = "auto") -> DataSource:
    root = Path(path).expanduser()
    if layout not in LAYOUTS:
        raise unknown_choice("--layout", layout, LAYOUTS)
    if not root.exists():
        raise DataError(f"Data path '{root}' does not exist.")
    if layout == "auto":
        layout = detect_layout(root)
    src = {"folders": _folders, "presplit": _presplit, "list": _lists, "hdf5": _hdf5}[layout](root)
    _check_classes(src)
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
    if any(c.is_file() and c.name.lower() in ("train.txt", "train.csv", "train.tsv") for c in children):
        return "list"
    if dirs:
        return "folders"
    raise DataError(
        f"'{root}' has no class sub-folders. Expected root/<class>/<image>, a pre-split root/train|val|test/<class>/, "
        "a list file or HDF5 arrays."
    )


def _scan_class_folders(root: Path, ignored: list) -> tuple[list[str], dict[str, list[str]]]:
    classes: dict[str, list[str]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p.name)):
        files = []
        for dirpath, dirnames, filenames in os.walk(d, followlinks=False):
            dirnames[:] = sorted(n for n in dirnames if not is_hidden(n))
            for n in sorted(filenames):
                full = os.path.join(dirpath, n)
                if is_hidden(n):
                    continue
                if n.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(full)
                else:
                    ignored.append((full, "not an image file extension"))
        classes[d.name] = files
    return sorted(classes), classes


def _folders(root: Path) -> DataSource:
    ignored: list = []
    names, files = _scan_class_folders(root, ignored)
    samples = [Sample(f, i) for i, n in enumerate(names) for f in files[n]]
    return DataSource(root, "folders", names, {"all": samples}, ignored=ignored)


def _presplit(root: Path) -> DataSource:
    dirs = {c.name.lower(): c for c in root.iterdir() if c.is_dir() and not is_hidden(c.name)}
    if "train" not in dirs:
        raise DataError(f"'{root}' looks pre-split but has no train/ folder.")
    ignored: list = []
    classes, train_files = _scan_class_folders(dirs["train"], ignored)
    index = {n: i for i, n in enumerate(classes)}
    splits = {"train": [Sample(f, index[n]) for n in classes for f in train_files[n]]}
    val_dir = next((dirs[v] for v in VAL_NAMES if v in dirs), None)
    for split, d in (("val", val_dir), ("test", dirs.get("test"))):
        if d is None:
            continue
        names, files = _scan_class_folders(d, ignored)
        unknown = [n for n in names if n not in index and files[n]]
        if unknown:
            raise DataError(
                f"{d.name}/ has classes that train/ does not: {', '.join(unknown)}. A model cannot learn a class it never "
                f"sees, and mixing them in would mislabel images. Add them to train/ or remove them from {d.name}/."
            )
        splits[split] = [Sample(f, index[n]) for n in names for f in files[n]]
    return DataSource(root, "presplit", classes, splits, ignored=ignored)


def _read_list(path: Path) -> list[tuple[str, str]]:
    text = path.read_text(encoding="utf-8-sig")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise DataError(f"List file '{path}' is empty.")
    delim = "\t" if "\t" in lines[0] else ("," if "," in lines[0] else None)
    if delim is None:
        delim = " "  # "path label" with a single space, as some lists have
    rows = list(csv.reader(lines, delimiter=delim))
    header = [c.strip().lower() for c in rows[0]]
    pcol = next((header.index(c) for c in PATH_COLUMNS if c in header), None)
    lcol = next((header.index(c) for c in LABEL_COLUMNS if c in header), None)
    if pcol is not None and lcol is not None:
        rows = rows[1:]
    else:
        pcol, lcol = 0, 1
    out = []
    for n, row in enumerate(rows, start=2 if pcol != 0 or lcol != 1 else 1):
        if delim == " " and len(row) > 2:  # a space in the path: the label is the last field
            row = [" ".join(row[:-1]), row[-1]]
        if len(row) <= max(pcol, lcol):
            raise DataError(f"{path}, line {n}: expected a path and a label separated by a tab or comma, got {row!r}.")
        out.append((row[pcol].strip(), row[lcol].strip()))
    return out


def _lists(root: Path) -> DataSource:
    if root.is_file():
        files = {"all": root}
    else:
        files = {}
        for split, names in (("train", ("train",)), ("val", VAL_NAMES), ("test", ("test",))):
            for n in names:
                for suffix in LIST_SUFFIXES:
                    if (root / f"{n}{suffix}").is_file():
                        files.setdefault(split, root / f"{n}{suffix}")
    rows = {split: _read_list(p) for split, p in files.items()}
    labels = sorted({lab for r in rows.values() for _, lab in r}, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s))
    base = rows.get("train") or rows.get("all")
    known = {lab for _, lab in base}
    classes = [lab for lab in labels if lab in known]
    index = {n: i for i, n in enumerate(classes)}
    splits, ignored = {}, []
    for split, r in rows.items():
        unknown = sorted({lab for _, lab in r if lab not in index})
        if unknown:
            raise DataError(f"{files[split]}: labels not in the training list: {', '.join(unknown[:10])}.")
        parent = files[split].parent
        samples = []
        for p, lab in r:
            full = (parent / p) if not os.path.isabs(p) else Path(p)
            if not full.is_file():
                ignored.append((str(full), f"listed in {files[split].name} but missing"))
                continue
            samples.append(Sample(str(full), index[lab]))
        splits[split] = samples
    return DataSource(root, "list", classes, splits, ignored=ignored)


def _hdf5(root: Path) -> DataSource:
    import h5py

    files = [root] if root.is_file() else sorted(p for p in root.iterdir() if p.suffix.lower() in H5_SUFFIXES)
    arrays: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    classes: list[str] | None = None
    for f in files:
        try:
            h = h5py.File(f, "r")
        except OSError as e:
            raise DataError(f"'{f}' is not a readable HDF5 file ({e}).") from e
        with h:
            xs = [k for k in h.keys() if k.endswith("_x")]
            if not xs:
                raise DataError(
                    f"'{f}' has no '<split>_x' arrays (keys: {', '.join(h.keys())}). transferkit expects e.g. "
                    "train_set_x / train_set_y / list_classes."
                )
            for kx in xs:
                ky = kx[:-2] + "_y"
                if ky not in h:
                    raise DataError(f"'{f}': array '{kx}' has no labels '{ky}'.")
                x, y = h[kx][()], np.asarray(h[ky][()]).reshape(-1)
                if len(x) != len(y):
                    raise DataError(f"'{f}': '{kx}' has {len(x)} images but '{ky}' has {len(y)} labels.")
                split = kx.split("_")[0].lower()
                split = "val" if split in VAL_NAMES else split
                arrays[split], labels[split] = x, y.astype(np.int64)
            if "list_classes" in h and classes is None:
                classes = [c.decode() if isinstance(c, bytes) else str(c) for c in h["list_classes"][()]]
    if "train" not in arrays:
        raise DataError(f"'{root}' has no training arrays (found splits: {', '.join(arrays)}).")
    n_classes = int(max(int(y.max()) for y in labels.values())) + 1
    classes = classes or [str(i) for i in range(n_classes)]
    splits = {
        split: [Sample(f"{root.name}#{split}[{i}]", int(lab)) for i, lab in enumerate(labels[split])] for split in arrays
    }
    return DataSource(root, "hdf5", classes, splits, arrays=arrays)


def from_arrays(x: np.ndarray, y: np.ndarray, classes: list[str] | None = None, name: str = "arrays") -> DataSource:
    """NumPy images (N,H,W[,C]) and integer labels as an unsplit source."""
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if len(x) != len(y):
        raise DataError(f"{len(x)} images but {len(y)} labels.")
    classes = classes or [str(i) for i in range(int(y.max()) + 1)]
    samples = [Sample(f"{name}#all[{i}]", int(lab)) for i, lab in enumerate(y)]
    src = DataSource(Path(name), "arrays", classes, {"all": samples}, arrays={"all": np.asarray(x)})
    _check_classes(src)
    return src


def _check_classes(src: DataSource) -> None:
    train = src.splits.get("train", src.splits.get("all", []))
    present = sorted({s.label for s in train})
    if len(src.classes) < 2 or len(present) < 2:
        found = ", ".join(src.classes) or "none"
        raise DataError(
            f"'{src.root}' has fewer than two classes with images (found: {found}). A classifier needs at least two: "
            "put each class's images in its own sub-folder, e.g. data/cats/*.jpg and data/dogs/*.jpg."
        )
    if not train:
        raise DataError(f"'{src.root}' has no training images.")
