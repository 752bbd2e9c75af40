"""List-file layouts: one `path<TAB>label` / CSV file, or a folder with train / val / test lists.

    src = read_lists(Path("labels.csv"), path_column="filename", label_column="species")

Accepted: tab-, comma-, semicolon- or space-separated; a header row with known names (path/filename/file/image...,
label/class/category/target...) or any names chosen with --path-column / --label-column (a name, or a 0-based
index when there is no header). Paths are relative to the list file. Lines starting with '#' are comments.
A list with a header may carry its own split: a `split` column of train / val / test on every line (what `review`'s
fix list writes for a pre-split data set), kept by `train` as a pre-split folder's are; without it (or with a `split`
column of other values, which stays the user's), `train` splits.

By task: regression reads the label column as numbers (`--target-column log_price`); multi-label reads `a|b` in one
column, or one 0/1 column per label (`--label-column cat,dog`, or every column but the path when none is named).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..errors import DataError
from .base import LIST_SUFFIXES, VAL_NAMES, DataSource, Sample
from .images import IMAGE_EXTENSIONS
from .problems import Problem, problem
from .targets import CLASSES, MULTI_SEPARATOR, OTHER_SEPARATORS, Classes, kind_of

PATH_COLUMNS = ("path", "filename", "file", "image", "img", "filepath", "file_path", "image_path", "image_id", "name")
LABEL_COLUMNS = (
    "label",
    "class",
    "category",
    "target",
    "y",
    "class_name",
    "species",
    "breed",
    "labels",
    "tags",
    "value",
)
SPLIT_COLUMN = "split"  # a header's optional column: the line's split, one of SPLIT_NAMES
SPLIT_NAMES = {"train": "train", "test": "test", **dict.fromkeys(VAL_NAMES, "val")}  # as written (any case) -> split


@dataclass(frozen=True)
class Row:
    line: int  # 1-based line number in the list file, for messages
    path: str  # as written (relative to the list file, or absolute)
    label: str  # class name as written (surrounding spaces removed)
    split: str = ""  # the `split` column's cell as written; "" without the column


def _delimiter(first: str) -> str:
    for d in ("\t", ",", ";"):
        if d in first:
            return d
    return " "  # "path label": some lists use one space


def _index(choice: str, header: list[str] | None, width: int | None, flag: str, where: Path) -> int:
    """A column chosen by 0-based index, checked against the columns the list has: an index past them would
    otherwise read every line as empty and be reported as unlabelled or badly separated lines."""
    i = int(choice)
    n = len(header) if header is not None else width
    if n is None or -n <= i < n:
        return i if n is None else i % n  # -1: the last column, as Python counts
    has = f"{n} column{'s' if n != 1 else ''} ({'0' if n == 1 else f'0-{n - 1}'})"
    named = f": {', '.join(header)}. Choose one by name or by index." if header else ". Choose one by index."
    raise DataError(f"{flag} {choice.strip()}: {where} has {has}{named}")


def _column(
    choice: str | None,
    header: list[str] | None,
    known: tuple[str, ...],
    flag: str,
    where: Path,
    width: int | None = None,
) -> int | None:
    """The column `choice` names (a header name, or a 0-based index checked against `header`, else against `width`
    fields), else the first `known` name in the header, else None."""
    if choice is not None and choice.strip().lstrip("-").isdigit():
        return _index(choice, header, width, flag, where)
    if header is None:
        return None
    lower = [h.lower() for h in header]
    if choice is not None:
        if choice.strip().lower() not in lower:
            raise DataError(f"{where}: {flag} '{choice}' is not a column. Its header has: {', '.join(header)}.")
        return lower.index(choice.strip().lower())
    return next((lower.index(c) for c in known if c in lower), None)


def _header_only(path: Path, header: list[str], what: str) -> DataError:
    # Read on, a header alone is a dataset without classes: "fewer than two classes ... put each class's images in
    # its own sub-folder", which sends people away from the list they are writing.
    return DataError(
        f"{path} has a header ({', '.join(header)}) but no rows: add one line per image under it, with {what}."
    )


def _exists(parent: Path, p: str) -> bool:
    return bool(p) and (parent / p).exists()


def _multi_hot(
    header: list[str], rows: list[list[str]], label_column: str | None, path_column: str | None, where: Path
) -> tuple[int, list[int]] | None:
    """(path column, label columns) when a multi-label list has one 0/1 column per label: the columns named
    (`cat,dog`), or every column but the path when the header names a path column and no label column."""
    lower = [h.lower() for h in header]
    pcol = _column(path_column, header, PATH_COLUMNS, "--path-column", where)
    if label_column is not None and "," in label_column:
        return (0 if pcol is None else pcol), [
            _column(c.strip(), header, LABEL_COLUMNS, "--label-column", where) for c in label_column.split(",")
        ]
    if label_column is not None or pcol is None or any(c in lower for c in LABEL_COLUMNS):
        return None
    split = _split_index(header, rows)
    return pcol, [j for j in range(len(header)) if j != pcol and j != split]


def _hot_label(row: list[str], cols: list[int], header: list[str], n: int, where: Path) -> str:
    """'cat|dog' from the 0/1 cells of one line."""
    names = []
    for j in cols:
        cell = row[j].strip() if len(row) > j else ""
        if cell not in ("0", "1", "0.0", "1.0"):
            raise DataError(
                f"{where}: line {n}: column '{header[j]}' holds {cell!r}; one-column-per-label lists hold 0 or 1 in "
                f"every label column. Name the label columns with --label-column (e.g. --label-column "
                f"{','.join(header[k] for k in cols[:2])}), or put the labels in one column as 'a|b'."
            )
        if cell.startswith("1"):
            names.append(header[j])
    return MULTI_SEPARATOR.join(names)


def read_list(
    path: Path,
    path_column: str | int | None,
    label_column: str | int | None,
    problems: list[Problem],
    kind: Classes = CLASSES,
) -> list[Row]:
    """The rows of one list file, as `kind` (data/targets.py) reads them: which column flag messages name, whether a
    line may hold several labels (an empty cell is then an image with none)."""
    path_column, label_column = (None if c is None else str(c) for c in (path_column, label_column))
    flag = kind.column_flag
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"List file '{path}' is not UTF-8 text ({e}). Save it as UTF-8 (CSV UTF-8 in Excel).") from e
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        has = "no lines" if not text.strip() else "only comment lines (starting with '#')"
        raise DataError(f"List file '{path}' has {has}: expected one 'path<TAB>label' (or CSV) line per image.")
    delim = _delimiter(lines[0][1])
    rows = list(csv.reader([ln for _, ln in lines], delimiter=delim, skipinitialspace=True))
    header = [c.strip() for c in rows[0]]
    hot = _multi_hot(header, rows, label_column, path_column, path) if kind.several else None
    if hot is not None:
        pcol, cols = hot
        if len(rows) == 1:
            raise _header_only(
                path, header, f"the image's path in column '{header[pcol]}' and 0 or 1 in each label column"
            )
        scol = _split_column(header, rows, (pcol, *cols))
        out = [
            Row(n, row[pcol].strip(), _hot_label(row, cols, header, n, path), _cell(row, scol))
            for (n, _), row in zip(lines[1:], rows[1:])
        ]
        return [r for r in out if r.path]
    lower = [h.lower() for h in header]
    named = any(c is not None and not c.strip().lstrip("-").isdigit() for c in (path_column, label_column))
    has_header = named or (any(c in lower for c in PATH_COLUMNS) and any(c in lower for c in LABEL_COLUMNS))
    fields = max(len(r) for r in rows)  # without a header, an index is checked against the widest line
    pcol = _column(path_column, header if has_header else None, PATH_COLUMNS, "--path-column", path, fields)
    lcol = _column(label_column, header if has_header else None, LABEL_COLUMNS, flag, path, fields)
    if has_header and (pcol is None or lcol is None):
        missing = "--path-column" if pcol is None else flag
        raise DataError(
            f"{path}: cannot tell which column holds the {'path' if pcol is None else 'label'}. "
            f"Its header has: {', '.join(header)}. Choose one with {missing} NAME."
        )
    pcol = 0 if pcol is None else pcol
    lcol = 1 if lcol is None else lcol
    scol = _split_column(header, rows, (pcol, lcol)) if has_header else None
    if has_header and len(rows) == 1:
        raise _header_only(
            path,
            header,
            f"the image's path in column '{header[pcol]}' and its {kind.column_word} in column '{header[lcol]}'",
        )
    if not has_header and len(rows) > 1:
        # An unknown header ("id,fname,species"): no cell of it looks like an image, while the next line names a file.
        file_col = next((j for j, c in enumerate(rows[1]) if _exists(path.parent, c.strip())), None)
        if file_col is not None and not any(c.strip().lower().endswith(IMAGE_EXTENSIONS) for c in rows[0]):
            pname = header[min(file_col, len(header) - 1)]
            lname = header[-1] if header[-1] != pname else header[0]
            raise DataError(
                f"{path} starts with a header ({', '.join(header)}) whose column names transferkit does not "
                f"know. Say which columns hold the image path and the {kind.column_word}, "
                f"e.g. --path-column {pname} {flag} {lname}."
            )
    out, bad, unlabelled = [], [], 0
    width = len(header)
    for (n, raw), row in zip(lines[1:] if has_header else lines, rows[1:] if has_header else rows):
        if kind.several and has_header and len(row) > width and delim in OTHER_SEPARATORS:
            raise DataError(
                f"{path}: line {n} has {len(row)} fields but the header has {width} ({raw!r}): are labels separated "
                f"by '{delim}', the list's own separator? Separate the labels of one image with "
                f"'{MULTI_SEPARATOR}' (e.g. cat{MULTI_SEPARATOR}dog)."
            )
        if delim == " " and len(row) > 2 and max(pcol, lcol) <= 1 and scol is None:  # a space in the path: the
            row = [" ".join(row[:-1]), row[-1]]  # label is the last field
        p = row[pcol].strip() if len(row) > pcol else ""
        lab = row[lcol].strip() if len(row) > lcol else ""
        if not p or (not lab and not kind.several):  # multi-label: an empty cell is an image with no label
            bad.append((n, raw))
            unlabelled += bool(p)  # a path without its label yet: a list to fill in
            continue
        out.append(Row(n, p, lab, _cell(row, scol)))
    if has_header and bad and len(bad) > len(out) and unlabelled == len(bad):  # a list to fill in (`suggest`)
        raise DataError(
            f"{path}: {len(bad)} of {len(bad) + len(out)} images have no label yet (first on line {bad[0][0]}). Fill "
            "in the label column (a class name per image), or remove the lines you do not want to label; lines "
            "left empty are skipped once most are filled."
        )
    if bad and len(bad) > len(out):
        n, raw = bad[0]
        raise DataError(
            f"{path}: {len(bad)} of {len(bad) + len(out)} lines do not have both a path and a label (line "
            f"{n}: {raw!r}). Separate them with a tab, comma or semicolon, or choose the columns with "
            "--path-column / --label-column."
        )
    if bad:
        where = ", ".join(str(n) for n, _ in bad[:10]) + (", ..." if len(bad) > 10 else "")
        problems.append(
            problem(
                "bad-list-row",
                f"{path.name}: {len(bad)} line(s) without a path or a label were skipped (line {where}).",
                [f"{path}:{n}" for n, _ in bad],
            )
        )
    return out


def _split_index(header: list[str], rows: list[list[str]]) -> int | None:
    """The header's `split` column when it holds splits: every filled cell one of SPLIT_NAMES (train, val, test, any
    case; an empty one is then an error that names its line). A `split` column of anything else (a user's A/B, a fold
    number) is the user's, read as before."""
    lower = [h.lower() for h in header]
    if SPLIT_COLUMN not in lower:
        return None
    j = lower.index(SPLIT_COLUMN)
    cells = [r[j].strip().lower() if len(r) > j else "" for r in rows[1:]]
    filled = [c for c in cells if c]
    return j if filled and all(c in SPLIT_NAMES for c in filled) else None


def _split_column(header: list[str], rows: list[list[str]], taken: tuple[int, ...]) -> int | None:
    """The header's `split` column (_split_index), unless it is the path or a label column chosen by name."""
    j = _split_index(header, rows)
    return None if j in taken else j


def _cell(row: list[str], j: int | None) -> str:
    return row[j].strip() if j is not None and len(row) > j else ""


def by_split_column(path: Path, rows: list[Row]) -> tuple[dict[str, Path], dict[str, list[Row]]]:
    """(split -> file, split -> rows) of one list file: {"all": ...} when no line has a split (no `split` column,
    or an empty one), else train / val / test as the column says, every line in one."""
    if not any(r.split for r in rows):
        return {"all": path}, {"all": rows}
    valid = "train, val or test"
    for r in rows:
        if not r.split:
            raise DataError(
                f"{path}: line {r.line} has no split, but other lines do. Give every line {valid} in the "
                f"'{SPLIT_COLUMN}' column, or remove the column to let train split the list."
            )
        if r.split.lower() not in SPLIT_NAMES:
            raise DataError(
                f"{path}: line {r.line}: split {r.split!r} is not {valid}. Fix the '{SPLIT_COLUMN}' column, or "
                "rename it if it holds something else."
            )
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(SPLIT_NAMES[r.split.lower()], []).append(r)
    if "train" not in out:
        raise DataError(
            f"{path}: no line is in the train split (the '{SPLIT_COLUMN}' column has {', '.join(sorted(out))} only): "
            "give the images to train on the split train."
        )
    out = {s: out[s] for s in ("train", "val", "test") if s in out}
    return dict.fromkeys(out, path), out


def find_lists(root: Path) -> dict[str, Path]:
    """split -> list file: `root` itself ("all"), or train/val/test lists inside the folder `root`."""
    if root.is_file():
        return {"all": root}
    files: dict[str, Path] = {}
    for split, names in (("train", ("train",)), ("val", VAL_NAMES), ("test", ("test",))):
        for n in names:
            for suffix in LIST_SUFFIXES:
                if (root / f"{n}{suffix}").is_file():
                    files.setdefault(split, root / f"{n}{suffix}")
    if "train" not in files:
        raise DataError(f"'{root}' has no train list (train.txt, train.csv, train.tsv or train.lst).")
    return files


def _target_name(path: Path, label_column: str | None) -> str:
    """The regression target's name: its header cell (or the column chosen), else 'target'."""
    if label_column is not None and not label_column.strip().lstrip("-").isdigit():
        return label_column.strip()
    first = next((ln for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()), "")
    header = [c.strip() for c in next(csv.reader([first], delimiter=_delimiter(first)))]
    lower = [h.lower() for h in header]
    known = next((header[lower.index(c)] for c in LABEL_COLUMNS if c in lower), None)
    return known or "target"


def read_lists(
    root: Path,
    path_column: str | None = None,
    label_column: str | None = None,
    lenient: bool = False,
    task: str = "classification",
) -> DataSource:
    kind = kind_of(task)
    files = find_lists(root)
    problems: list[Problem] = []
    rows = {split: read_list(p, path_column, label_column, problems, kind) for split, p in files.items()}
    if "all" in rows:  # one file: its `split` column, if any, says the splits (a folder's lists are named by theirs)
        files, rows = by_split_column(files["all"], rows["all"])
    # The target's name (a regression's one class) is read only when the kind asks: other lists may name columns by
    # index.
    target = partial(_target_name, next(iter(files.values())), label_column)
    classes, labelled = kind.from_rows(files, rows, lenient, problems, target)
    splits = {split: [Sample(path, label) for path, label in pairs] for split, pairs in labelled.items()}
    if not lenient:
        check_some_exist(files, rows, splits)
    return DataSource(root, "list", classes, splits, problems=problems, task=kind.task)


def check_some_exist(files: dict[str, Path], rows: dict, splits: dict[str, list[Sample]]) -> None:
    """Refuse lists none of whose files exist, saying where their paths were looked for: a list written with paths
    relative to the current folder failed with every class "without a readable training image" and the advice to
    drop the classes. One that exists is enough to go on (the missing ones are skipped and listed, as before)."""
    paths = [s.key for samples in splits.values() for s in samples]
    if not paths or any(os.path.exists(k) for k in paths):
        return
    folders = ", ".join(sorted({f"'{f.parent}'" for f in files.values()}))
    written = [r.path for split_rows in rows.values() for r in split_rows]
    here = sum(os.path.exists(w) for w in written[:100])
    hint = (
        f" They are there relative to the current folder ('{os.getcwd()}'): write them relative to the list file's "
        "folder, or as absolute paths."
        if here
        else " Check the path column (--path-column) and where the images are."
    )
    raise DataError(
        f"None of the {len(paths)} image paths of {', '.join(str(f) for f in files.values())} exist (the first: "
        f"'{paths[0]}'). A list file's paths are read relative to its own folder ({folders}).{hint}"
    )


def read_paths(path: Path, path_column: str | None = None) -> list[str]:
    """The image paths of a list file, labelled or not (a pool to label, a file `suggest` wrote): absolute, in
    order. The path column as `read_list` finds it (a known header name, --path-column, else the first)."""
    lines = [ln for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise DataError(f"'{path}' lists no images.")
    delim = _delimiter(lines[0])
    rows = list(csv.reader(lines, delimiter=delim)) if delim != " " else [ln.split() for ln in lines]
    first = [c.strip().lower() for c in rows[0]]
    has_header = any(c in PATH_COLUMNS for c in first) or (path_column is not None and path_column.lower() in first)
    header = [c.strip() for c in rows[0]] if has_header else None
    col = _column(path_column, header, PATH_COLUMNS, "--path-column", path, max(len(r) for r in rows)) or 0
    body = rows[1:] if has_header else rows
    return [str((path.parent / r[col].strip()).resolve()) for r in body if len(r) > col and r[col].strip()]
