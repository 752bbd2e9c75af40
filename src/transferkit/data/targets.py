"""What a source's labels are, one small class per kind: what the readers (lists, HDF5, arrays) do differently for
each, so that no reader asks which task it reads for.

    kind = kind_of("regression")                   # VALUES: one finite number per image
    kind.column_flag                                # '--target-column': what the list messages call the column
    labels, classes = kind.from_array(y, None)      # from_arrays' y -> sample labels and class names
    viewed, splits = kind.class_view(src, splits)   # one class index per sample, for doctor's checks

Kinds: CLASSES (one class index per image), VALUES (one number per image: regression; `classes` is [the target's
name]) and SETS (the sorted class indices an image has, possibly none: multi-label), in `KINDS` by task name. A task
(tasks/) names its kind in `labels`. This module is the data layer's lowest for labels: base.py imports it, so it
imports no reader and builds no DataSource (readers do, from what a kind returns).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import DataError, unknown_choice
from .problems import problem

MULTI_SEPARATOR = "|"  # between the labels of one image: 'cat|dog'
OTHER_SEPARATORS = (",", ";", "+")  # what people also write between labels: refused, naming the line


def label_order(label: str):
    return (not label.isdigit(), int(label) if label.isdigit() else 0, label)  # 2 before 10; numbers before names


def label_text(label, classes: list[str]) -> str:
    """How a label reads in split.csv and messages: the class name, 'a|b', or the value."""
    if isinstance(label, tuple):
        return "|".join(classes[i] for i in label)
    return classes[label] if isinstance(label, int) else f"{label:g}"


def case_hint(unknown: list[str], known: list[str], where: str = "") -> str:
    """A sentence for unknown class names that differ from a known one only in case (train/Ants vs val/ants): a
    typo, not a new class, so the advice is to rename; '' when none does. `where`: their folder, for the example."""
    lower = {k.lower(): k for k in known}
    pairs = [(u, lower[u.lower()]) for u in unknown if u.lower() in lower]
    if not pairs:
        return ""
    shown = ", ".join(f"'{u}' (training: '{k}')" for u, k in pairs[:5])
    u, k = pairs[0]
    example = f", e.g. mv '{where}{u}' '{where}{k}'" if where else ""
    return (
        f" Class names are case-sensitive, and these differ from a training class only in case: {shown}. Rename "
        f"them to match{example}."
    )


# What from_rows returns: the class names, and per split (path, label) pairs with absolute paths.
Labelled = tuple[list[str], dict[str, list[tuple[str, object]]]]


def _not_prototypes(head: str) -> bool:
    """--head is anything but `prototypes` (nearest class mean: a head of single-label classes only)."""
    return head.split(":")[0] != "prototypes"


class Classes:
    """One class index per image; classes are the names the training part uses."""

    task: ClassVar[str] = "classification"
    column_flag: ClassVar[str] = "--label-column"  # how list messages name the label column's option
    column_word: ClassVar[str] = "label"  # ... and the column
    # An image may have several labels: 'a|b' cells, one 0/1 column per label, an empty cell for none (lists).
    several: ClassVar[bool] = False
    # HDF5: the label is read image by image (a number, a 0/1 row); classes map names or indices over the
    # training part instead (hdf5.read_hdf5 itself, which also checks the split arrays).
    by_image: ClassVar[bool] = False
    # report.html's table of the split: its title and first column; counted: each class's images are counted
    split_table: ClassVar[tuple[str, str]] = ("Images per class and split", "class")
    counted: ClassVar[bool] = True
    # Options that mean something for some kinds of label only (options.check_task_options refuses the rest by name):
    reads_target_column: ClassVar[bool] = False  # --target-column: the column of a number
    picks_loss: ClassVar[bool] = False  # --loss chooses among losses of a number; other kinds train with their own
    # option -> (the values it may take, or a test of the value; why not, as a clause): a field of any config section
    option_limits: ClassVar[dict[str, tuple]] = {}

    def from_rows(
        self, files: dict[str, Path], rows: dict, lenient: bool, problems: list, target: Callable[[], str]
    ) -> Labelled:
        """A list file's rows (lists.Row) -> classes and labelled paths; labels the training list lacks refused.
        `target()`: the target's name, for the kinds whose one class it is."""
        base = rows.get("train") or rows.get("all") or []
        classes = sorted({r.label for r in base}, key=label_order)
        index = {n: i for i, n in enumerate(classes)}
        joined = [c for c in classes if MULTI_SEPARATOR in c]
        if joined:  # (Values and Sets read their rows themselves: here the labels are classes)
            # 'crop|green' read as one class: a multi-label list trained without --task multilabel; said, not
            # refused, since a class name may hold '|' (rarely: the README's multi-label lists are written so)
            problems.append(
                problem(
                    "labels-look-multilabel",
                    f"{files.get('train', files.get('all'))}: {len(joined)} of the {len(classes)} classes are labels "
                    f"joined by '{MULTI_SEPARATOR}' ({', '.join(joined[:3])}): each is trained as a class of its own.",
                )
            )
        splits = {}
        for split, split_rows in rows.items():
            parent = files[split].parent
            unknown = sorted({r.label for r in split_rows if r.label not in index}, key=label_order)
            if unknown:
                lines = [r for r in split_rows if r.label not in index]
                msg = (
                    f"{files[split]}: {len(lines)} line(s) have labels the training list does not have: "
                    f"{', '.join(unknown[:10])} (first on line {lines[0].line}). Known labels: "
                    f"{', '.join(classes[:20])}."
                ) + case_hint(unknown, classes)
                if not lenient:
                    raise DataError(msg + " Fix the labels or add training images of those classes.")
                problems.append(
                    problem(
                        "class-not-in-train",
                        msg + " Those lines are left out.",
                        [os.path.abspath(parent / r.path) for r in lines],
                    )
                )
            # Missing files stay samples: decoding lists them in skipped.csv and doctor reports them.
            splits[split] = [(os.path.abspath(parent / r.path), index[r.label]) for r in split_rows if r.label in index]
        return classes, splits

    def from_array(self, y: np.ndarray, classes: list[str] | None) -> tuple[list, list[str]]:
        """Class labels as users hold them: indices 0..K-1, one-hot rows (N, K) or names -> (indices, names)."""
        rule = "Give one class per image: an index 0..K-1, a one-hot row (N, K) or a class name."
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim == 2:  # one-hot rows: (N, K), a single 1 per row
            ones = y.sum(axis=1) if y.dtype.kind in "uifb" else None
            if ones is None or not np.isin(y, (0, 1)).all() or not (ones == 1).all():
                i = 0 if ones is None else int(np.flatnonzero(~np.isin(y, (0, 1)).all(axis=1) | (ones != 1))[0])
                raise DataError(
                    f"from_arrays: y has shape {y.shape} and row {i} is {y[i].tolist()[:10]}, not one-hot (a single "
                    f"1). {rule} For several labels per image give task='multilabel'."
                )
            if classes is not None and len(classes) != y.shape[1]:
                raise DataError(f"from_arrays: y has {y.shape[1]} one-hot columns but {len(classes)} class names.")
            return [int(v) for v in y.argmax(axis=1)], list(classes or [str(i) for i in range(y.shape[1])])
        if y.ndim != 1:
            raise DataError(f"from_arrays: y has shape {y.shape}. {rule}")
        if y.dtype.kind in "USO":  # names: classes in their natural order (2 before 10), or as given
            names = [str(v) for v in y]
            classes = list(classes or sorted(set(names), key=label_order))
            index = {c: i for i, c in enumerate(classes)}
            unknown = sorted(set(names) - set(index))
            if unknown:
                raise DataError(
                    f"from_arrays: y names {', '.join(unknown[:10])}, not in classes ({', '.join(classes)})."
                )
            return [index[v] for v in names], classes
        if y.dtype.kind not in "uifb":
            raise DataError(f"from_arrays: y has dtype {y.dtype}. {rule}")
        if y.dtype.kind == "f":
            bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
            if len(bad):
                raise DataError(
                    f"from_arrays: y[{bad[0]}] is {y[bad[0]]}, not a class index; for numeric targets give "
                    "task='regression'."
                )
        labels = y.astype(np.int64)
        k = len(classes) if classes is not None else int(labels.max()) + 1
        bad = np.flatnonzero((labels < 0) | (labels >= k))
        if len(bad):
            i = int(bad[0])
            why = (
                "unlabelled images (often -1) cannot be trained on: leave them out, e.g. x[y >= 0], y[y >= 0]"
                if labels[i] < 0
                else f"only {k} class names are given"
            )
            raise DataError(f"from_arrays: y[{i}] is {labels[i]}; class indices run from 0 to {k - 1} ({why}).")
        return [int(v) for v in labels], list(classes or [str(i) for i in range(k)])

    def check(self, src, lenient: bool = False) -> None:
        """Something to learn: at least two classes with training images (lenient: a problem instead)."""
        train = src.splits.get("train", src.splits.get("all", []))
        present = sorted({s.label for s in train})
        if len(src.classes) < 2 or len(present) < 2:
            found = ", ".join(src.classes) or "none"
            msg = (
                f"'{src.root}' has fewer than two classes with images (found: {found}). A classifier needs at least "
                "two: put each class's images in its own sub-folder, e.g. data/cats/*.jpg and data/dogs/*.jpg."
            )
            if not lenient:
                raise DataError(msg)
            src.problems.append(problem("single-class", msg))

    def class_view(self, src, splits: dict):
        """The source and `splits` with one class index per sample (doctor's checks think in classes): as they are."""
        return src, splits

    def _viewed(self, src, splits: dict, names: list[str], index: dict):
        """`src` and `splits` relabelled to classes `names` (`index`: label -> class; others: class 0)."""

        def view(samples):
            return [dataclasses.replace(s, label=index.get(s.label, 0)) for s in samples]

        viewed = dataclasses.replace(
            src, classes=names, splits={k: view(v) for k, v in src.splits.items()}, task=CLASSES.task
        )
        return viewed, {k: view(v) for k, v in splits.items()}


class Values(Classes):
    """One finite number per image (regression); `classes` is [the target's name]."""

    task: ClassVar[str] = "regression"
    split_table: ClassVar[tuple[str, str]] = ("Images per split", "images")
    counted: ClassVar[bool] = False  # a target has no classes to count images under
    column_flag: ClassVar[str] = "--target-column"
    column_word: ClassVar[str] = "target"
    by_image: ClassVar[bool] = True
    reads_target_column: ClassVar[bool] = True
    picks_loss: ClassVar[bool] = True
    option_limits: ClassVar[dict[str, tuple]] = {
        "balance": (("none",), "a regression target has no classes to balance"),
        "drop_empty_classes": ((False,), "a regression target has no classes to drop"),
        "head": (
            _not_prototypes,
            "the prototypes head answers with the nearest class mean; give --head linear or mlp:N",
        ),
        "label_smoothing": ((0.0,), "label smoothing softens class targets, and a regression target is a number"),
    }

    def number(self, row, where: Path) -> float:
        """A list row's target; anything but a finite number is refused by line."""
        try:
            value = float(row.label)
        except ValueError:
            value = float("nan")
        if not math.isfinite(value):
            raise DataError(
                f"{where}: line {row.line}: the target {row.label!r} (for '{row.path}') is not a number. Regression "
                "targets must be numbers (e.g. 12.5); fix that line, or choose the target's column with "
                "--target-column."
            )
        return value

    def from_rows(
        self, files: dict[str, Path], rows: dict, lenient: bool, problems: list, target: Callable[[], str]
    ) -> Labelled:
        splits = {
            split: [(os.path.abspath(files[split].parent / r.path), self.number(r, files[split])) for r in split_rows]
            for split, split_rows in rows.items()
        }
        return [target()], splits

    def from_h5(self, y: np.ndarray, n: int, f: Path, kx: str, ky: str) -> list:
        """An HDF5 y of shape (N,) or (N, 1) -> one float per image of `kx`."""
        y = y.reshape(len(y), -1)[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
        if y.ndim != 1 or len(y) != n or y.dtype.kind not in "iuf":
            raise DataError(
                f"'{f}': '{ky}' has shape {y.shape} ({y.dtype}); regression needs one number per image of '{kx}' "
                f"({n}). Give the targets' key with --h5-y."
            )
        bad = np.flatnonzero(~np.isfinite(y.astype(np.float64)))
        if len(bad):
            raise DataError(f"'{f}': '{ky}'[{bad[0]}] is {y[bad[0]]}, not a finite number: fix or drop that image.")
        return [float(v) for v in y]

    def h5_classes(self, y_key: str | None, names: list[str] | None, width: int) -> list[str]:
        """The target's name: its key without {split} (y_{split} -> 'y'), else 'target'."""
        return [(y_key or "target").replace("{split}", "").strip("_") or "target"]

    def from_array(self, y: np.ndarray, classes: list[str] | None) -> tuple[list, list[str]]:
        targets = y.reshape(len(y), -1)
        try:
            values = targets[:, 0].astype(np.float64) if targets.shape[1] == 1 else None
        except ValueError:
            values = None
        bad = [0] if values is None else np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise DataError(
                f"from_arrays(task='regression'): y[{bad[0]}] is {y.reshape(-1)[bad[0]]}; give one finite number "
                "per image."
            )
        return [float(v) for v in values], classes or ["target"]

    def check(self, src, lenient: bool = False) -> None:
        train = src.splits.get("train", src.splits.get("all", []))
        if len({s.label for s in train}) < 2 and not lenient:
            raise DataError(f"'{src.root}': every training target is the same value: there is nothing to learn.")

    def class_view(self, src, splits: dict):
        # The target is one class, so identical photos with different values are not "conflicting labels".
        return self._viewed(src, splits, list(src.classes), {})


class Sets(Classes):
    """The sorted class indices an image has, possibly none (multi-label)."""

    task: ClassVar[str] = "multilabel"
    several: ClassVar[bool] = True
    split_table: ClassVar[tuple[str, str]] = (
        "Images per label and split (an image counts under each of its labels)",
        "label",
    )
    by_image: ClassVar[bool] = True
    option_limits: ClassVar[dict[str, tuple]] = {
        "balance": (("none", "weights"), "the sampler draws by class; --balance weights weighs each label's positives"),
        "drop_empty_classes": ((False,), "only single-label data has classes to drop"),
        "head": (_not_prototypes, "the prototypes head picks one class an image; give --head linear or mlp:N"),
    }

    def label_set(self, row, where: Path) -> list[str]:
        """'cat|dog' -> ['cat', 'dog']; a line that separates its labels some other way is refused by number."""
        names = [n.strip() for n in row.label.split(MULTI_SEPARATOR)] if row.label else []
        odd = next((c for c in OTHER_SEPARATORS if any(c in n for n in names)), None)
        if odd:
            raise DataError(
                f"{where}: line {row.line}: the labels {row.label!r} are separated by '{odd}'. Separate the labels "
                f"of one image with '{MULTI_SEPARATOR}' (e.g. {row.label.replace(odd, MULTI_SEPARATOR)}), or give "
                "one 0/1 column per label."
            )
        return [n for n in names if n]

    def from_rows(
        self, files: dict[str, Path], rows: dict, lenient: bool, problems: list, target: Callable[[], str]
    ) -> Labelled:
        sets = {split: [self.label_set(r, files[split]) for r in split_rows] for split, split_rows in rows.items()}
        base = "train" if "train" in sets else "all"
        classes = sorted({n for names in sets[base] for n in names}, key=label_order)
        index = {n: i for i, n in enumerate(classes)}
        splits = {}
        for split, split_rows in rows.items():
            unknown = sorted({n for names in sets[split] for n in names if n not in index}, key=label_order)
            if unknown:
                msg = f"{files[split]}: labels the training list does not have: {', '.join(unknown[:10])}." + (
                    case_hint(unknown, classes)
                )
                if not lenient:
                    raise DataError(msg + " Fix the labels or add training images with them.")
                problems.append(problem("class-not-in-train", msg + " They are left out."))
            splits[split] = [
                (os.path.abspath(files[split].parent / r.path), tuple(sorted({index[n] for n in names if n in index})))
                for r, names in zip(split_rows, sets[split])
            ]
        return classes, splits

    def from_h5(self, y: np.ndarray, n: int, f: Path, kx: str, ky: str) -> list:
        """An HDF5 y of one 0/1 row per image -> the indices of each row's 1s."""
        if y.ndim != 2 or len(y) != n or not np.isin(y, (0, 1)).all():
            raise DataError(
                f"'{f}': '{ky}' has shape {y.shape}; multi-label needs one row of 0/1 per image of '{kx}' ({n}, "
                "labels)."
            )
        return [tuple(int(j) for j in np.flatnonzero(row)) for row in y]

    def h5_classes(self, y_key: str | None, names: list[str] | None, width: int) -> list[str]:
        return names or [str(i) for i in range(width)]

    def from_array(self, y: np.ndarray, classes: list[str] | None) -> tuple[list, list[str]]:
        if y.ndim != 2 or not np.isin(y, (0, 1)).all():
            raise DataError(f"from_arrays(task='multilabel'): y has shape {y.shape}; give one 0/1 row per image.")
        return [tuple(int(j) for j in np.flatnonzero(row)) for row in y], classes or [str(i) for i in range(y.shape[1])]

    def check(self, src, lenient: bool = False) -> None:
        train = src.splits.get("train", src.splits.get("all", []))
        if not any(s.label for s in train) and not lenient:
            raise DataError(f"'{src.root}': no training image has a label: there is nothing to learn.")

    def class_view(self, src, splits: dict):
        # A set is a class of its own ('a|b'), so identical photos with different sets are conflicting labels.
        sets = sorted({s.label for v in splits.values() for s in v} | {s.label for v in src.splits.values() for s in v})
        names = [label_text(t, src.classes) or "(none)" for t in sets]
        return self._viewed(src, splits, names, {t: i for i, t in enumerate(sets)})


CLASSES, VALUES, SETS = Classes(), Values(), Sets()
KINDS: dict[str, Classes] = {k.task: k for k in (CLASSES, VALUES, SETS)}  # task name -> its kind of labels


def kind_of(task: str) -> Classes:
    """The kind of labels a task reads: the one place a task's name becomes its labels (readers keep `task=` for
    their callers, and ask the kind)."""
    if task not in KINDS:
        raise unknown_choice("task", task, KINDS)
    return KINDS[task]
