"""The base types of the data layer: `Sample` and `DataSource`, and the array-key helpers. Every reader (folders,
lists, HDF5, arrays) makes a DataSource; nothing here knows any layout.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .imageset import ImageSet, array_hw, is_array_key, parse_array_key  # noqa: F401 - re-exported
from .problems import Problem
from .targets import KINDS, case_hint, kind_of, label_text  # noqa: F401 - re-exported: what readers import from base

LAYOUTS = ("auto", "folders", "presplit", "list", "hdf5")
VAL_NAMES = ("val", "valid", "validation", "verify")
LIST_SUFFIXES = (".txt", ".tsv", ".csv", ".lst")
H5_SUFFIXES = (".h5", ".hdf5", ".hdf")


# What a sample's label is, by the source's `task`: a class index (classification), the target value (regression,
# `classes` is [the target's name]), or the sorted indices of the labels it has (multilabel, possibly none).
Label = int | float | tuple[int, ...]
TASK_KINDS = tuple(KINDS)  # the kinds of labels a reader reads (data/targets.py), by task name


@dataclass(frozen=True)
class Sample:
    key: str  # a file path (absolute) or an array reference "<source>#<split>[<i>]"
    label: Label


def label_classes(label: Label) -> tuple[int, ...]:
    """The class indices a label counts for: its class, every label it has, or the one target (index 0)."""
    if isinstance(label, tuple):
        return label
    return (label,) if isinstance(label, int) else (0,)


@dataclass
class DataSource:
    root: Path  # what the user pointed at
    layout: str  # one of LAYOUTS (never "auto"), or "arrays"
    classes: list[str]  # index = label; taken from the training part, so val/test never shift it
    splits: dict[str, list[Sample]]  # "train"/"val"/"test", or "all" for data still to be split
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # for array layouts: split -> (N,H,W,C)
    problems: list[Problem] = field(default_factory=list)  # what reading the layout found (doctor adds per-file checks)
    task: str = "classification"  # what the labels are (TASK_KINDS): the reader read them for this task

    def images(self, content: bool = False) -> ImageSet:
        """Every image of the source (all splits, in order), apart from the labels: what the feature store and the
        label-free tools (embed, similar, review) read."""
        keys = list(dict.fromkeys(s.key for v in self.splits.values() for s in v))
        return ImageSet(self.root, keys, self.arrays, content)

    @property
    def _loader(self) -> ImageSet:
        if getattr(self, "_image_set", None) is None:
            self._image_set = ImageSet(self.root, [], self.arrays)
        return self._image_set

    def load(self, key: str, short_side: int | None = None, interpolation: str = "bicubic"):
        return self._loader.load(key, short_side, interpolation)

    def image_size(self, key: str) -> tuple[int, int]:
        """(width, height) from the file header or array shape; decodes nothing."""
        return self._loader.image_size(key)

    def identity(self, key: str) -> str:
        """How the feature store knows the image (data/imageset.py): never its label or split."""
        return self._loader.identity(key)

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
                for i in label_classes(s.label):
                    c[self.classes[i]] += 1
            out[split] = c
        return out

    def class_view(self, splits: dict[str, list[Sample]] | None = None) -> tuple[DataSource, dict[str, list[Sample]]]:
        """The source (and `splits`) with one class index per sample, for the checks that think in classes (doctor):
        a regression target is one class, so identical photos with different values are not "conflicting labels";
        a multi-label set is a class of its own ('a|b'), so identical photos with different sets are."""
        return kind_of(self.task).class_view(self, self.splits if splits is None else splits)
