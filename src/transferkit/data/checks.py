"""From what `survey.py` saw to problems: class counts, outliers inside a class, duplicates within and across splits.

Each check is a function `(facts) -> list[Problem]`; `doctor.py` runs them all. Thresholds are named constants with
the reasoning beside them.
"""

from __future__ import annotations

import os
import re
import statistics
from collections import Counter, defaultdict

import numpy as np
from PIL import Image

from .problems import Problem, problem
from .sizes import choose_image_size
from .sources import is_array_key
from .survey import ImageInfo

IMBALANCE_RATIO = 3.0  # largest / smallest class: past 3:1 an unweighted loss visibly neglects the small class
NEAR_BITS = (
    5  # dHash bits that may differ for "near duplicate": copies differ by 0-3; distinct hymenoptera photos by >= 12
)
OUTLIER_SHARE = 0.05  # a format held by at most 5% of a class (and at least 80% share one format) is an outlier
SMALL_FACTOR = 4  # short side under 1/4 of the class median: a thumbnail or icon rather than a photo like the rest
ELONGATED = 4.0  # aspect ratio past max(4, 3x the class median): a banner or a strip, not an object photo
SHOWN = 5  # files named in a message; the full list is in Problem.files

EXTENSIONS = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png",),
    "GIF": (".gif",),
    "BMP": (".bmp",),
    "TIFF": (".tif", ".tiff"),
    "WEBP": (".webp",),
    "PPM": (".ppm", ".pgm", ".pbm", ".pnm"),
}
MODE_WORDS = {
    "RGBA": "have an alpha channel (dropped)",
    "LA": "are grayscale with alpha (alpha dropped)",
    "P": "are palette images",
    "PA": "are palette images with alpha",
    "CMYK": "are CMYK (print colours)",
    "I;16": "are 16-bit",
    "I;16B": "are 16-bit",
    "I;16L": "are 16-bit",
    "I": "are 32-bit integer",
    "F": "are floating point",
    "L": "are grayscale",
    "1": "are black-and-white (1 bit)",
    "YCbCr": "are YCbCr",
}


def short(key: str, root: str) -> str:
    """A file's path relative to the data folder `root`, for messages; array references as they are."""
    if is_array_key(key):
        return key
    full = os.path.abspath(key)
    return os.path.relpath(full, root) if full.startswith(root.rstrip(os.sep) + os.sep) else key


def name_list(keys: list[str], root: str) -> str:
    shown = [short(k, root) for k in keys[:SHOWN]]
    return ", ".join(shown) + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


def file_errors(infos: list[ImageInfo], root: str) -> list[Problem]:
    return [
        problem(i.error[0], f"{name_list([i.key], root)} ({i.split}) {i.error[1]}", [i.key]) for i in infos if i.error
    ]


def class_checks(classes: list[str], counts: dict[str, dict[str, int]]) -> list[Problem]:
    """Empty classes, classes only in val/test, classes missing from val/test, imbalance, near-identical names."""
    out: list[Problem] = []
    base = "train" if "train" in counts else "all"
    train = counts.get(base, {})
    for split, c in counts.items():
        if split == base:
            continue
        stray = [n for n in classes if c.get(n) and not train.get(n)]
        if stray:
            out.append(
                problem("class-not-in-train", f"{split} has images of {', '.join(stray)}, which {base} has none of.")
            )
        absent = [n for n in classes if train.get(n) and not c.get(n)]
        if absent:
            out.append(problem("class-missing-from-split", f"{split} has no images of {', '.join(absent)}."))
    empty = [n for n in classes if not train.get(n)]  # named (HDF5 list_classes) yet without training images;
    if empty:  # empty class folders never get here: the source leaves them out and says so
        out.append(problem("empty-class", f"{base} has no images of {', '.join(empty)}."))
    sizes = {n: k for n, k in train.items() if k}
    if len(sizes) >= 2:
        big, small = max(sizes, key=sizes.get), min(sizes, key=sizes.get)
        ratio = sizes[big] / sizes[small]
        if ratio >= IMBALANCE_RATIO:
            out.append(
                problem(
                    "imbalance",
                    f"Classes are imbalanced {ratio:.1f}:1 in {base}: '{big}' has {sizes[big]} "
                    f"images, '{small}' {sizes[small]}.",
                )
            )
    groups = defaultdict(list)
    for n in classes:
        groups[re.sub(r"[\W_]+", "", n.lower())].append(n)
    for names in groups.values():
        if len(names) > 1:
            out.append(
                problem(
                    "similar-class-names",
                    f"Classes {', '.join(repr(n) for n in names)} differ only in case, spaces or punctuation.",
                )
            )
    return out


NUMERIC_SHARE = 0.9  # class names that are numbers, past which the labels look like values (prices), not classes
NUMERIC_MIN_CLASSES = 10  # a few numbered classes ("0".."9" digits) are classes; dozens of distinct numbers are not


def numeric_labels(classes: list[str], layout: str) -> list[Problem]:
    """Labels read as classes that look like values: `doctor houses/labels.csv --target-column price` without
    --task regression makes every price a class (and then calls them imbalanced)."""
    if len(classes) < NUMERIC_MIN_CLASSES:
        return []
    numbers = []
    for c in classes:
        try:
            numbers.append(float(c))
        except ValueError:
            pass
    if len(numbers) < NUMERIC_SHARE * len(classes) or all(n == int(n) for n in numbers) and max(numbers) < 100:
        return []  # integer codes under 100 (class ids, digits) are more likely classes than values
    shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
    return [
        problem(
            "numeric-labels",
            f"The labels are {len(classes)} distinct numbers ({shown}), read as {len(classes)} classes.",
        )
    ]


def image_checks(infos: list[ImageInfo], classes: list[str], root: str, image_size: int | None) -> list[Problem]:
    """Modes, EXIF, animation, extension, size: grouped, one problem per kind."""
    ok = [i for i in infos if not i.error and i.width]
    out: list[Problem] = []
    by_mode = defaultdict(list)
    for i in ok:
        if i.mode not in ("RGB", None) and i.format != "array":
            by_mode[i.mode].append(i.key)
    for mode, keys in sorted(by_mode.items()):
        out.append(
            problem(
                "color-mode",
                f"{len(keys)} image(s) {MODE_WORDS.get(mode, f'are {mode}')} (mode {mode}): {name_list(keys, root)}.",
                keys,
            )
        )
    groups = {
        "grayscale-as-rgb": ([i.key for i in ok if i.gray_rgb], "are grayscale pictures stored as colour"),
        "exif-rotation": ([i.key for i in ok if i.orientation != 1], "carry an EXIF rotation"),
        "animated": ([i.key for i in ok if i.frames > 1], "are animated"),
        "large-image": ([i.key for i in ok if i.large], f"have more than {Image.MAX_IMAGE_PIXELS:,} pixels"),
        "extension-mismatch": (
            [i.key for i in ok if i.format in EXTENSIONS and not i.key.lower().endswith(EXTENSIONS[i.format])],
            "have an extension that is not their format",
        ),
    }
    for code, (keys, what) in groups.items():
        if keys:
            out.append(problem(code, f"{len(keys)} image(s) {what}: {name_list(keys, root)}.", keys))
    if ok:
        short = [min(i.width, i.height) for i in ok]
        target = image_size or choose_image_size(statistics.median(short), 224)
        small = [i.key for i, s in zip(ok, short) if s * 2 < target]
        if small:
            out.append(
                problem(
                    "too-small",
                    f"{len(small)} image(s) have a short side under {target // 2} px, half the "
                    f"{target} px input: {name_list(small, root)}.",
                    small,
                )
            )
    return out + outliers(ok, classes, root)


def outliers(ok: list[ImageInfo], classes: list[str], root: str) -> list[Problem]:
    """Per class (all splits together): a rare file format, or a size/shape unlike the rest."""
    out: list[Problem] = []
    per_class = defaultdict(list)
    for i in ok:
        per_class[i.label].append(i)
    for label, items in sorted(per_class.items()):
        name = classes[label]
        formats = Counter(i.format for i in items)
        common, top = formats.most_common(1)[0]
        if len(items) >= 5 and top >= 0.8 * len(items):
            for fmt, n in formats.items():
                if fmt != common and n <= max(1, OUTLIER_SHARE * len(items)):
                    keys = [i.key for i in items if i.format == fmt]
                    out.append(
                        problem(
                            "format-outlier",
                            f"{n} of {len(items)} '{name}' image(s) are {fmt} while "
                            f"{top} are {common}: {name_list(keys, root)}.",
                            keys,
                        )
                    )
        if len(items) < 5:
            continue
        med_short = statistics.median(min(i.width, i.height) for i in items)
        med_aspect = statistics.median(max(i.width, i.height) / max(1, min(i.width, i.height)) for i in items)
        odd = [
            i.key
            for i in items
            if min(i.width, i.height) * SMALL_FACTOR < med_short
            or max(i.width, i.height) / max(1, min(i.width, i.height)) > max(ELONGATED, 3 * med_aspect)
        ]
        if odd:
            out.append(
                problem(
                    "size-outlier",
                    f"{len(odd)} '{name}' image(s) are far smaller or more elongated than "
                    f"the class's typical {med_short:.0f} px short side: {name_list(odd, root)}.",
                    odd,
                )
            )
    return out


def _groups_of_pairs(n: int, pairs) -> list[list[int]]:
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in pairs:
        parent[find(a)] = find(b)
    groups = defaultdict(list)
    for i in range(n):
        groups[find(i)].append(i)
    return [g for g in groups.values() if len(g) > 1]


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        return np.bitwise_count(x)
    table = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)
    return table[x[..., None].view(np.uint8)].sum(-1, dtype=np.uint8)


def _near_pairs(hashes: np.ndarray, bits: int):
    """Index pairs whose 64-bit hashes differ in <= `bits` bits. All pairs, in blocks of rows: 20,000 images are
    200M comparisons, about a second; a block holds <= 2^24 distances so memory stays ~150 MB."""
    rows = max(1, 2**24 // len(hashes))
    for start in range(0, len(hashes), rows):
        dist = _popcount(hashes[start : start + rows, None] ^ hashes[None, :])
        for a, b in zip(*np.nonzero(dist <= bits)):
            if start + a < b:
                yield int(start + a), int(b)


def duplicates(infos: list[ImageInfo], classes: list[str], root: str) -> list[Problem]:
    """Exact (same bytes or pixels) and near (dHash) duplicates: across classes, across splits, within a split."""
    hashed = [i for i in infos if not i.error and i.sha]
    by_sha = defaultdict(list)
    for n, i in enumerate(hashed):
        by_sha[i.sha].append(n)
    out = [_describe(hashed, g, classes, root, near=False) for g in by_sha.values() if len(g) > 1]
    with_hash = [n for n, i in enumerate(hashed) if i.dhash is not None]
    if len(with_hash) > 1:
        hashes = np.array([hashed[n].dhash for n in with_hash], dtype=np.uint64)
        pairs = [
            (with_hash[a], with_hash[b])
            for a, b in _near_pairs(hashes, NEAR_BITS)
            if hashed[with_hash[a]].sha != hashed[with_hash[b]].sha
        ]
        for g in _groups_of_pairs(len(hashed), pairs):
            out.append(_describe(hashed, g, classes, root, near=True))
    return out


def _spread(members: list[ImageInfo], kind) -> list[ImageInfo]:
    """The members a message names: one of each `kind` (label, split) first, then the next in order up to SHOWN.
    The first SHOWN alone can all be of one label, and the message would not show the conflict it reports."""
    firsts = {}
    for n, m in enumerate(members):
        firsts.setdefault(kind(m), n)
    chosen = set(firsts.values())
    chosen.update(n for n in range(len(members)) if n not in chosen and len(chosen) < SHOWN)
    return [members[n] for n in sorted(chosen)]


def _describe(items: list[ImageInfo], group: list[int], classes: list[str], root: str, near: bool) -> Problem:
    members = [items[n] for n in group]
    keys = [m.key for m in members]
    labels = Counter(classes[m.label] for m in members)
    conflict, across = len(labels) > 1, len({m.split for m in members}) > 1
    shown = _spread(members, (lambda m: m.label) if conflict else (lambda m: m.split))
    where = "; ".join(f"{name_list([m.key], root)} ({m.split}/{classes[m.label]})" for m in shown)
    if len(shown) < len(members):
        where += f"; and {len(members) - len(shown)} more"
    what = "Nearly identical images" if near else "Identical images"
    if conflict:
        # With some left out, how many carry each label says which one the group mostly is.
        counts = (
            f" ({', '.join(f'{k} {name}' for name, k in labels.most_common())})" if len(shown) < len(members) else ""
        )
        return problem(
            "conflicting-labels",
            f"{what} with different labels{counts}: {where}.",
            keys,
            severity="warning" if near else None,
        )
    if across:
        code = "near-duplicate-across-splits" if near else "duplicate-across-splits"
        return problem(code, f"{what} in more than one split: {where}.", keys)
    return problem("near-duplicate" if near else "duplicate", f"{what} within {members[0].split}: {where}.", keys)
