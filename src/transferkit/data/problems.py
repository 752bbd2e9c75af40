"""What can be wrong with a dataset: one table of problem codes, each with its severity and the action to suggest.

    p = problem("zero-byte", "train/cats/a.jpg is empty (0 bytes).", ["train/cats/a.jpg"])
    p.severity, p.action          # 'error', 'Re-copy the file from its source, or delete it; ...'

Severities: `error` - a file cannot be used, or labels would be wrong; `warning` - training works but the result
may mislead (leaks, duplicates, outliers); `info` - handled automatically, shown so that nothing is a surprise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SEVERITIES = ("error", "warning", "info")
# Errors about one file that training answers by skipping that file (it is listed in skipped.csv). Every other
# error (conflicting labels, a class only in val/test, ...) would make the model or its metrics wrong: it stops
# `train` unless --force.
SKIPPED_FILE_ERRORS = frozenset(
    {
        "zero-byte",
        "truncated",
        "not-an-image",
        "unreadable",
        "decompression-bomb",
        "symlink-loop",
        "broken-link",
        "missing-file",
        "bad-list-row",
    }
)

_SKIPPED = "Training skips it (listed in the run's skipped.csv)."
# code -> (severity, suggested action). Tests and users match on these codes, so they are part of the API.
CODES: dict[str, tuple[str, str]] = {
    # files that cannot be used
    "zero-byte": ("error", f"Re-copy the file from its source, or delete it. {_SKIPPED}"),
    "truncated": ("error", f"The download or copy was cut short: re-copy the file from its source. {_SKIPPED}"),
    "not-an-image": (
        "error",
        f"The file is not an image Pillow can read (an HTML page, a text file, ...): replace or delete it. {_SKIPPED}",
    ),
    "unreadable": ("error", f"Check the file's permissions and that it opens in an image viewer. {_SKIPPED}"),
    "decompression-bomb": (
        "error",
        f"The image has more pixels than the safety limit: if you trust it, downscale it "
        f"(e.g. to 4096 px on the long side). {_SKIPPED}",
    ),
    "symlink-loop": ("error", f"The link points (through other links) back at itself: fix or remove it. {_SKIPPED}"),
    "broken-link": ("error", f"The link's target does not exist: fix or remove the link. {_SKIPPED}"),
    "missing-file": (
        "error",
        "Fix the path in the list file (paths are relative to the list file), or remove the line. The line is skipped.",
    ),
    "bad-list-row": (
        "error",
        "Give every line a path and a label (choose columns with --path-column / --label-column). The line is skipped.",
    ),
    # labels and classes
    "class-not-in-train": (
        "error",
        "A model cannot predict a class it never saw in training, and mixing it in would "
        "mislabel images: add training images for it or remove it from this split.",
    ),
    "single-class": (
        "error",
        "A classifier needs at least two classes: put each class's images in its own sub-folder.",
    ),
    "labels-look-multilabel": (
        "warning",
        "If an image may have several labels, give --task multilabel (one output per label); as it is, each "
        "combination of labels is a class of its own.",
    ),
    "conflicting-labels": ("error", "The same picture is labelled as two classes: keep it in the right class only."),
    "empty-class": ("warning", "The class has no images and is left out: add images, or remove the empty folder."),
    "class-missing-from-split": (
        "warning",
        "Metrics cannot measure a class that has no images in this split: move a few of its images here.",
    ),
    "similar-class-names": (
        "warning",
        "Class names that differ only in case, spaces or punctuation are probably one class: merge them.",
    ),
    "numeric-labels": (
        "warning",
        "If the labels are values to predict (prices, ages, scores), give --task regression (and "
        "--target-column COLUMN); as classes, each value is a class of its own.",
    ),
    "imbalance": (
        "warning",
        "Train with --balance weights (a weighted loss) or --balance sampler, and judge the model "
        "by macro F1 rather than accuracy.",
    ),
    # duplicates
    "duplicate-across-splits": (
        "warning",
        "A training image also in val/test inflates the measured accuracy: remove the copy from val/test.",
    ),
    "duplicate": ("warning", "Identical files give one image extra weight: keep one copy."),
    "near-duplicate-across-splits": (
        "warning",
        "Almost the same picture in training and val/test inflates the measured accuracy: keep it in one split only.",
    ),
    "near-duplicate": (
        "info",
        "Near-identical pictures (resized or re-encoded copies) add little: keep one if they are copies.",
    ),
    # outliers and image properties
    "format-outlier": (
        "warning",
        "A file format that no other image of its class has often marks a placeholder or a "
        "stray file: open it and check it belongs to the class.",
    ),
    "size-outlier": (
        "info",
        "Far smaller, or far more elongated, than the rest of its class: check it is a real "
        "example of the class, not a thumbnail, icon or banner.",
    ),
    "too-small": (
        "warning",
        "The image is upscaled more than 2x to the input size and will be blurry: use a larger "
        "copy, or a smaller --image-size.",
    ),
    "large-image": ("warning", "Decoding needs a lot of memory and time: downscale the file."),
    "grayscale-as-rgb": (
        "info",
        "Grayscale pictures stored as RGB train fine; make sure colour is not what tells the classes apart.",
    ),
    "color-mode": ("info", "Converted to 8-bit RGB when loaded (alpha dropped, palette/CMYK/16-bit converted)."),
    "exif-rotation": (
        "info",
        "Rotated upright on load from its EXIF orientation tag; tools that ignore EXIF show it sideways.",
    ),
    "animated": ("info", "Only the first frame is used."),
    "extension-mismatch": ("info", "The file's extension does not match its format; it is read by its content."),
    "not-image-extension": ("info", "Not read: transferkit reads only image extensions in class folders."),
    "link-not-followed": ("info", "A folder link that leads back into the data is not followed again."),
    "unreadable-dataset": ("error", "See the message: the data cannot be read as a dataset."),
}


@dataclass
class Problem:
    severity: str  # error | warning | info (see the module docstring)
    code: str  # a key of CODES: stable, for scripts and tests
    message: str  # what is wrong, in words, with counts
    files: list[str] = field(
        default_factory=list
    )  # the files (or array references) concerned; empty for dataset-level problems
    action: str = ""  # what to do about it

    def to_dict(self) -> dict:
        return asdict(self)


def problem(code: str, message: str, files: list[str] | None = None, severity: str | None = None) -> Problem:
    """A Problem with the severity and action from CODES (`severity` overrides, e.g. a leak found in test vs val)."""
    default, action = CODES[code]
    return Problem(severity or default, code, message, list(files or []), action)


def by_severity(problems: list[Problem]) -> dict[str, list[Problem]]:
    out: dict[str, list[Problem]] = {s: [] for s in SEVERITIES}
    for p in problems:
        out[p.severity].append(p)
    return out
