"""HDF5 arrays as a dataset: one file, or a folder of files (e.g. train_catvnoncat.h5 + test_catvnoncat.h5).

    src = read_hdf5(Path("catvnoncat"))                              # train_set_x / train_set_y / list_classes
    src = read_hdf5(Path("digits.h5"), x_key="X_{split}", y_key="y_{split}")   # X_train, y_train, X_test, ...

Found automatically: `<split>..._x` + `..._y` (the deeplearning.ai convention), `x_<split>` + `y_<split>`, and
`images` + `labels` / `x` + `y` (the split then comes from the file name: train_*.h5, test_*.h5, else "all").
Keys may be group paths ("data/images"). `{split}` in a key stands for train, val, valid, validation, dev and test.
Labels: integers, one-hot rows, or strings; class names from `list_classes` / `classes` / `class_names` if present.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .base import H5_SUFFIXES, DataSource, Sample
from .targets import Classes, kind_of

SPLIT_WORDS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}
CLASS_KEYS = ("list_classes", "classes", "class_names", "label_names")
PAIRS = (("images", "labels"), ("x", "y"), ("X", "Y"), ("data", "labels"))


def _split_of(name: str) -> str | None:
    """'train_set_x' -> 'train', 'X_valid' -> 'val', 'test_catvnoncat' -> 'test', 'images' -> None."""
    return next((SPLIT_WORDS[t] for t in re.split(r"[_\-. /]+", name.lower()) if t in SPLIT_WORDS), None)


def _describe(h) -> str:
    found: list[str] = []
    h.visititems(lambda name, obj: found.append(f"{name} {obj.shape} {obj.dtype}") if hasattr(obj, "shape") else None)
    return "; ".join(found[:20]) or "none"


def _open(f: Path):
    import h5py

    try:
        return h5py.File(f, "r")
    except OSError as e:
        head = f.read_bytes()[:200] if f.is_file() else b""
        if not head:
            why = "it is empty"
        elif head.lstrip().startswith(b"<"):
            why = "it is a web page (HTML), probably saved from a browser instead of downloaded raw"
        elif head.startswith(b"version https://git-lfs"):
            why = "it is a Git LFS pointer, not the data: run `git lfs pull` where you got it"
        else:
            why = str(e)
        raise DataError(f"'{f}' is not a readable HDF5 file: {why}.") from e


def _pairs(h, f: Path, x_key: str | None, y_key: str | None) -> list[tuple[str, str, str]]:
    """(split, x key, y key) for every image array in the file."""
    file_split = _split_of(f.stem) or "all"
    if x_key or y_key:
        if not (x_key and y_key):
            raise ConfigError("Give both --h5-x (the images' key) and --h5-y (the labels' key).")
        if "{split}" in x_key:
            found = [
                (s, x_key.replace("{split}", w), y_key.replace("{split}", w))
                for w, s in SPLIT_WORDS.items()
                if x_key.replace("{split}", w) in h
            ]
        else:
            found = [(file_split, x_key, y_key)] if x_key in h else []
        if not found:
            raise DataError(
                f"'{f}' has no array '{x_key}'. Its arrays: {_describe(h)}. Give the right key with --h5-x "
                "(use {split} for one key per split, e.g. --h5-x X_{split})."
            )
        return found
    names: list[str] = []
    h.visititems(lambda name, obj: names.append(name) if hasattr(obj, "shape") else None)
    have = set(names)
    found = []
    for n in names:
        prefix, _, base = n.rpartition("/")
        prefix = prefix + "/" if prefix else ""
        if base.lower().endswith("_x"):  # train_set_x -> train_set_y
            candidates = [base[:-1] + c for c in "yY"]
        elif base[:2] in ("x_", "X_"):  # X_train -> y_train
            candidates = [c + base[1:] for c in "yY"]
        else:  # images -> labels
            candidates = [b for a, b in PAIRS if a == base]
        partner = next((prefix + c for c in candidates if prefix + c in have), None)
        if partner:
            found.append((_split_of(base) or file_split, n, partner))
    if not found:
        raise DataError(
            f"'{f}' has no image/label arrays transferkit recognises (it has: {_describe(h)}). Name them with "
            "--h5-x KEY --h5-y KEY (use {split} for one key per split, e.g. --h5-x X_{split})."
        )
    return found


def _labels(y: np.ndarray, n: int, f: Path, kx: str, ky: str) -> np.ndarray:
    """Labels as a 1-D array (ints or strings), checked against the number of images."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[0] == n and y.shape[1] > 1:  # one-hot rows
        y = y.argmax(1)
    y = y.reshape(-1)
    if len(y) != n:
        raise DataError(
            f"'{f}': '{kx}' has {n} images but '{ky}' has {len(y)} labels. Each image needs exactly one "
            "label: check that the two keys belong together (--h5-x / --h5-y)."
        )
    if y.dtype.kind in "SUO":
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in y], dtype=object)
    if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
        bad = y[~(np.isfinite(y) & (y == np.round(y)))][0]
        raise DataError(
            f"'{f}': '{ky}' holds labels that are not whole numbers (e.g. {bad}). Labels must be class "
            "indices 0, 1, 2, ... or class names."
        )
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise DataError(
            f"'{f}': '{ky}' has negative labels ({int(y.min())}). Labels must be class indices 0, 1, 2, ..."
        )
    return y


def _read_targets(root: Path, x_key, y_key, kind: Classes) -> DataSource:
    """An HDF5 source for labels read image by image (regression, multi-label): the arrays as for classes, the
    targets as `kind.from_h5` reads them (data/targets.py)."""
    files = [root] if root.is_file() else sorted(p for p in root.iterdir() if p.suffix.lower() in H5_SUFFIXES)
    arrays, splits, names, width = {}, {}, None, 0
    for f in files:
        with _open(f) as h:
            for split, kx, ky in _pairs(h, f, x_key, y_key):
                if ky not in h:
                    raise DataError(f"'{f}': array '{kx}' has no targets '{ky}'. Its arrays: {_describe(h)}.")
                arrays[split] = h[kx][()]
                targets = kind.from_h5(np.asarray(h[ky][()]), len(arrays[split]), f, kx, ky)
                splits[split] = [Sample(f"{root.name}#{split}[{i}]", t) for i, t in enumerate(targets)]
                width = h[ky].shape[-1]
            key = next((k for k in CLASS_KEYS if k in h), None)
            if key and names is None:
                names = [c.decode() if isinstance(c, bytes) else str(c) for c in np.asarray(h[key][()]).reshape(-1)]
    if "all" in arrays and len(arrays) > 1:
        arrays["train"], splits["train"] = arrays.pop("all"), splits.pop("all")
    return DataSource(root, "hdf5", kind.h5_classes(y_key, names, width), splits, arrays=arrays, task=kind.task)


def read_hdf5(
    root: Path, x_key: str | None = None, y_key: str | None = None, task: str = "classification"
) -> DataSource:
    kind = kind_of(task)
    if kind.by_image:  # a number or a 0/1 row per image, not classes named by the training part
        return _read_targets(root, x_key, y_key, kind)
    files = [root] if root.is_file() else sorted(p for p in root.iterdir() if p.suffix.lower() in H5_SUFFIXES)
    if not files:
        raise DataError(f"'{root}' holds no HDF5 files ({', '.join(H5_SUFFIXES)}).")
    arrays: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    names: list[str] | None = None
    for f in files:
        with _open(f) as h:
            for split, kx, ky in _pairs(h, f, x_key, y_key):
                if ky not in h:
                    raise DataError(f"'{f}': array '{kx}' has no labels '{ky}'. Its arrays: {_describe(h)}.")
                x = h[kx][()]
                if x.ndim not in (3, 4):
                    raise DataError(
                        f"'{f}': '{kx}' has shape {x.shape}; expected images (N, H, W[, C]) or (N, C, H, W)."
                    )
                if split in arrays:
                    raise DataError(
                        f"Two arrays claim the {split} split: {origin[split]} and {f.name}:{kx}. Point "
                        "transferkit at one file, or name the keys with --h5-x / --h5-y."
                    )
                arrays[split], labels[split], origin[split] = x, _labels(h[ky][()], len(x), f, kx, ky), f"{f.name}:{kx}"
            key = next((k for k in CLASS_KEYS if k in h), None)
            if key and names is None:
                names = [c.decode() if isinstance(c, bytes) else str(c) for c in np.asarray(h[key][()]).reshape(-1)]
    if "all" in arrays and len(arrays) > 1:  # images.h5 + test.h5: the unnamed part is the training part
        arrays["train"], labels["train"] = arrays.pop("all"), labels.pop("all")
    base = "train" if "train" in arrays else "all"
    if base not in arrays:
        raise DataError(
            f"'{root}' has no training arrays (found: {', '.join(origin.values())}). Name the files "
            "train_*.h5 / test_*.h5, or the keys with --h5-x / --h5-y."
        )
    classes, labels = _classes(labels, base, names, root)
    order = sorted(arrays, key=("train", "all", "val", "test").index)
    splits = {s: [Sample(f"{root.name}#{s}[{i}]", int(v)) for i, v in enumerate(labels[s])] for s in order}
    return DataSource(root, "hdf5", classes, splits, arrays=arrays)


def _classes(labels: dict[str, np.ndarray], base: str, names: list[str] | None, root: Path):
    """Class names, and every split's labels as indices into them."""
    if labels[base].dtype == object:  # string labels: classes are the training part's names, sorted
        classes = sorted(set(labels[base].tolist()))
        index = {c: i for i, c in enumerate(classes)}
        for s, y in labels.items():
            unknown = sorted(set(y.tolist()) - set(index))
            if unknown:
                raise DataError(
                    f"'{root}': the {s} labels include classes the training labels do not: "
                    f"{', '.join(map(str, unknown[:10]))}. A model cannot learn them; remove them or add training images."
                )
        return classes, {s: np.array([index[v] for v in y.tolist()], dtype=np.int64) for s, y in labels.items()}
    top = max((int(y.max()) for y in labels.values() if len(y)), default=-1)
    if names is not None and top >= len(names):
        raise DataError(
            f"'{root}': labels go up to {top} but the class-name array has {len(names)} names "
            f"({', '.join(names)}). Fix the labels or the names."
        )
    trained = set(labels[base].tolist())
    for s, y in labels.items():
        unknown = sorted(set(y.tolist()) - trained)
        if unknown:
            raise DataError(
                f"'{root}': the {s} labels include {', '.join(map(str, unknown[:10]))}, which no training "
                "image has. A model cannot learn them; remove those images or add training images."
            )
    return names or [str(i) for i in range(top + 1)], labels
