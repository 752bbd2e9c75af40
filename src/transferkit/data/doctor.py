"""`doctor`: what is in a dataset and what is wrong with it, before any training.

    from transferkit.data.doctor import doctor
    report = doctor("data/hymenoptera")
    report.counts                  # {'train': {'ants': 124, 'bees': 121}, 'val': {...}}
    [p.code for p in report.problems]   # ['format-outlier', 'color-mode', 'grayscale-as-rgb']
    report.save("doctor.json")

`train` runs `preflight` (the same checks without decoding pixels, so it costs a read of each file) right after
the split is made, and `--strict` stops there on any error or warning about a file. On data of more than
PREFLIGHT_FILES images it reads a seeded sample of that many (class counts still come from every listed file) and
says so; `transferkit doctor`, and `train --strict`, read every file. Decoding reports any unreadable file anyway.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import DataError, TransferkitError
from . import checks
from .problems import SEVERITIES, SKIPPED_FILE_ERRORS, Problem, by_severity, problem
from .sources import DataSource, Sample, open_source
from .survey import inspect_samples

# Files the check before `train` reads at most: 5,000 headers and hashes take a few seconds and find a defect held by
# 0.1% of the files with probability 1 - 0.999^5000 = 99.3%; reading 100,000 would take a minute and hold 100,000
# ImageInfo records. The duplicate checks see pairs within the sample only.
PREFLIGHT_FILES = 5000
# Files the check before `train` also decodes (1/8 scale for JPEGs: ~0.7 ms a photo on hymenoptera, so 2,000 take about
# 1.4 s on one core) for what only pixels show: near duplicates across splits (a re-encoded copy of a training image
# in val), truncation, grayscale stored as RGB. Past that it reads headers only and says what it did not check.
PREFLIGHT_DEEP_FILES = 2000
NOT_CHECKED = "near duplicates, truncated files and grayscale-as-RGB"  # what headers alone cannot show
SAMPLE_SEED = 0  # the sample is the same on every run over the same listing


@dataclass
class DoctorReport:
    root: str  # the data that was checked
    layout: str  # the layout it was read as ("" when it could not be read)
    classes: list[str] = field(default_factory=list)  # class names, index = label
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> listed images
    images: dict[str, int] = field(default_factory=dict)  # split -> listed images (a multi-label image: once)
    imbalance: float | None = None  # largest / smallest class in the training part; None with < 2 non-empty classes
    sizes: dict[str, dict[str, float]] = field(
        default_factory=dict
    )  # width / height -> min, median, max (readable images)
    modes: dict[str, int] = field(default_factory=dict)  # Pillow mode as stored -> images
    formats: dict[str, int] = field(default_factory=dict)  # file format -> images
    problems: list[Problem] = field(default_factory=list)  # errors first, then warnings, then notes
    deep: bool = True  # pixels decoded (truncation, near duplicates, grayscale-as-RGB) or headers only
    files: int = 0  # samples inspected
    listed: int = 0  # samples listed; more than `files` when a seeded sample of them was inspected
    seconds: float = 0.0  # wall time of the check

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def codes(self) -> list[str]:
        return [p.code for p in self.problems]

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON, in one rename. A file already at `path` is replaced only when it is a doctor
        report (one this command made); anything else is the user's and is refused, as is a place that cannot be
        written (a read-only folder), each with a ConfigError that says what to give instead."""
        from ..errors import ConfigError
        from ..faults import write_atomic

        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"--out '{path}' is a folder: give a file name, e.g. {path / 'doctor.json'}.")
        if path.exists() and not is_report(path):
            raise ConfigError(
                f"--out '{path}' exists and is not a doctor report, so it was not overwritten. Give --out a new "
                "file name (or remove that file yourself)."
            )
        try:
            write_atomic(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False))
        except OSError as e:
            raise ConfigError(
                f"The report cannot be written to '{path}' ({e.strerror or e}). Give --out a file in a folder you "
                "can write to, or --json to print it."
            ) from None
        return path

    def one_line(self) -> str:
        """'Checked 398 files in 0.3 s: 1 warning (format-outlier), 2 notes (color-mode, grayscale-as-rgb).'"""
        parts = []
        for sev, word in zip(SEVERITIES, ("error", "warning", "note")):
            found = by_severity(self.problems)[sev]
            if found:
                codes = ", ".join(f"{c} x{n}" if n > 1 else c for c, n in Counter(p.code for p in found).items())
                parts.append(f"{len(found)} {word}{'s' if len(found) > 1 else ''} ({codes})")
        checked = f"Checked {self.files} files"
        if self.listed > self.files:
            checked = f"Checked a seeded sample of {self.files} of the {self.listed} files"
        return f"{checked} in {self.seconds:.1f} s: " + ("; ".join(parts) or "no problems") + "."


def is_report(path: Path) -> bool:
    """Whether `path` holds a doctor report (JSON with the fields every report has): one doctor may replace."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and {"root", "layout", "problems", "counts"} <= d.keys()


def sample_splits(splits: dict[str, list[Sample]], limit: int | None, seed: int = SAMPLE_SEED) -> dict:
    """At most `limit` samples of all splits together, drawn uniformly under `seed` and kept in listing order (each
    split keeps its share on average); the splits themselves when they hold no more than that, or limit is None."""
    total = sum(len(v) for v in splits.values())
    if limit is None or total <= limit:
        return splits
    chosen = sorted(random.Random(seed).sample(range(total), limit))
    out, start, it = {}, 0, iter(chosen)
    nxt = next(it, None)
    for split, samples in splits.items():
        end, picked = start + len(samples), []
        while nxt is not None and nxt < end:
            picked.append(samples[nxt - start])
            nxt = next(it, None)
        out[split], start = picked, end
    return out


def _order(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: SEVERITIES.index(p.severity))  # stable: check order kept within a severity


def doctor(
    data: str | os.PathLike | DataSource,
    *,
    splits: dict[str, list[Sample]] | None = None,
    image_size: int | None = None,
    deep: bool = True,
    layout: str = "auto",
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    limit: int | None = None,
    task: str = "classification",
    split: str | tuple | None = None,
    seed: int = 0,
    **source_options,
) -> DoctorReport:
    """Check `data` (a path or an opened source). `splits` overrides the source's own (train passes its split);
    `image_size` is the input size for the too-small check (None: what train would choose); deep=False reads
    headers and bytes only; limit: inspect a seeded sample of at most this many files (None: every file; class
    counts always cover every file). task: what the labels are (regression: a value, never a class, so no class
    counts, imbalance or per-class checks). split/seed: the split `train` would make of data that is not pre-split
    (`train --split X --seed S`), so doctor checks the parts train would see. A dataset that cannot be read at all
    gives a report with one `unreadable-dataset` error."""
    started = time.perf_counter()
    if isinstance(data, DataSource):
        src = data
    else:
        try:
            src = open_source(data, layout, lenient=True, task=task, **source_options)
        except DataError as e:
            return DoctorReport(
                str(data), "", problems=[problem("unreadable-dataset", str(e))], seconds=time.perf_counter() - started
            )
    if splits is None and split is not None:
        from .split import make_splits, parse_split

        splits = make_splits(src, parse_split(split), seed)
    # Counts by label: a multi-label image counts under each of its labels ("test has no images of water" when 3
    # test images are labelled water|green was the label sets' count), a regression target is one column.
    classes, splits = list(src.classes), src.splits if splits is None else splits
    counts = DataSource(src.root, src.layout, classes, splits).counts()
    # The checks on images think in classes: a regression value is one "class", a label set one each (so identical
    # photos with different sets conflict); classes: as they are.
    src, splits = src.class_view(splits)
    root = os.path.abspath(src.root if src.root.is_dir() else src.root.parent)  # messages name files relative to it
    infos = inspect_samples(src, sample_splits(splits, limit), deep=deep, workers=workers, progress=progress)
    found = list(src.problems)
    found += checks.file_errors(infos, root)
    found += checks.class_checks(classes, counts)
    found += checks.numeric_labels(classes, src.layout)
    found += checks.image_checks(infos, src.classes, root, image_size)
    found += checks.duplicates(infos, src.classes, root)
    ok = [i for i in infos if not i.error and i.width]
    base = counts.get("train", counts.get("all", {}))
    nonzero = [n for n in base.values() if n]
    return DoctorReport(
        root=str(src.root),
        layout=src.layout,
        classes=classes,
        counts=counts,
        images={split: len(samples) for split, samples in splits.items()},
        imbalance=round(max(nonzero) / min(nonzero), 2) if len(nonzero) >= 2 else None,
        sizes={dim: _stats([getattr(i, dim) for i in ok]) for dim in ("width", "height")} if ok else {},
        modes=dict(Counter(i.mode for i in ok)),
        formats=dict(Counter(i.format for i in ok)),
        problems=_order(found),
        deep=deep,
        files=len(infos),
        listed=sum(len(v) for v in splits.values()),
        seconds=round(time.perf_counter() - started, 3),
    )


def _stats(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def preflight(
    src: DataSource,
    splits: dict[str, list[Sample]],
    reporter,
    *,
    strict: bool = False,
    force: bool = False,
    image_size: int | None = None,
    balance: str = "none",
    doctor_command: str | None = None,
) -> DoctorReport:
    """The check at the start of `train`: what `doctor` checks, on a seeded sample of PREFLIGHT_FILES files on
    larger data, decoding them (for near duplicates across splits and truncation) when they are at most
    PREFLIGHT_DEEP_FILES, else headers and bytes only, and then its line says what it did not check. Prints one
    line, which says how many files it read and names any class left out. Errors that skipping a file cannot fix
    (conflicting labels, a class only in val/test) stop the run unless `force`; with `strict`, every file is read
    and any error or warning about one stops the run too, before anything is decoded. doctor_command: how to run
    doctor on the same parts (train's --split and --seed), for the messages."""
    limit = None if strict else PREFLIGHT_FILES
    inspected = sum(len(v) for v in sample_splits(splits, limit).values())
    deep = bool(src.arrays) or inspected <= PREFLIGHT_DEEP_FILES  # arrays: deep costs nothing
    report = doctor(src, splits=splits, image_size=image_size, deep=deep, limit=limit)
    command = doctor_command or f"transferkit doctor {src.root}"
    line = report.one_line()
    empty = [p for p in report.problems if p.code == "empty-class"]
    if empty:  # a class left out is named here, not only by doctor: "1 warning (empty-class)" hides which
        line += " Left out: " + " ".join(p.message for p in empty[:3]) + (" ..." if len(empty) > 3 else "")
    for p in report.problems:  # said in full on train's line, not only counted: the run trains another task
        if p.code == "labels-look-multilabel":
            line += f" {p.message} {p.action}"
    if balance == "none" and "imbalance" in report.codes():
        line += f" Classes are {report.imbalance:.1f}:1 imbalanced: consider --balance weights."
    if not deep:
        line += f" Headers only ({inspected} files): {NOT_CHECKED} not checked; `{command}` checks them."
    reporter.message(line)
    blocking = [p for p in report.problems if p.severity in ("error", "warning") and p.files]
    if strict and blocking:
        listing = "; ".join(f"[{p.code}] {p.message}" for p in blocking[:5])
        raise TransferkitError(
            f"--strict: {len(blocking)} problem(s) with files, so nothing was trained: {listing}"
            f"{' ...' if len(blocking) > 5 else ''} Run `{command}` for the full "
            "list and suggested fixes, or train without --strict to skip unreadable files."
        )
    wrong = [p for p in report.problems if p.severity == "error" and p.code not in SKIPPED_FILE_ERRORS]
    if wrong and not force:
        listing = "; ".join(f"[{p.code}] {p.message}" for p in wrong[:5])
        raise DataError(
            f"The data has {len(wrong)} error(s) that would make the model or its metrics wrong, so nothing "
            f"was trained: {listing}{' ...' if len(wrong) > 5 else ''} Run `{command}` "
            "for the full list and how to fix each; give --force to train anyway."
        )
    return report
