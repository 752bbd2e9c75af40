"""One index over embeddings, several questions asked of it: the nearest images to a query, near-duplicate groups,
and how far each image is from the rest (outliers).

    index = SimilarityIndex(features, keys)          # rows L2-normalised: a dot product is the cosine similarity
    hits = index.query(vector, k=10)                 # [(key, cosine), ...], most similar first
    sims, nbrs = index.neighbours(k=5)               # every row's k nearest others, in blocks (memory flat)
    groups = duplicate_groups(features, threshold=DUPLICATE_COSINE)

    similar("photos/", "query.jpg", k=10)            # the same from a folder and an image file, through the store

Exact search is NumPy matrix products in blocks (block_rows: memory bounded whatever N is); above FAISS_ABOVE rows the index is FAISS's (the
`similar` extra, `pip install transferkit[similar]`) where it is installed: an HNSW graph, approximate, with the
build and query times in BENCHMARKS.md. Either way the answer is cosine similarity in [-1, 1].
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ..config import DEFAULT_BACKBONE

# rows per matrix product: at most 1,024, and at most BLOCK_CELLS similarities (8M float32 = 32 MB, with the sort's
# int64 indices ~100 MB of temporaries) whatever N is: 1,024 rows up to 7,800 images, 400 at 20,000, 160 at 50,000
BLOCK, BLOCK_CELLS = 1024, 8_000_000


def block_rows(n: int) -> int:
    return max(16, min(BLOCK, BLOCK_CELLS // max(n, 1)))


BACKENDS = ("auto", "exact", "faiss")  # faiss: the optional faiss-cpu; auto: faiss past FAISS_ABOVE rows
FAISS_ABOVE = 20_000  # exact NumPy search costs ~N*F flops per query: at 20k x 1280 about 10 ms, HNSW pays from here
# Near-duplicates: cosine of efficientnet_lite0's pooled features at or above this. Calibrated in
# benchmarks/review.py (`duplicates`) on 60 photos each of ants/bees and houses, 5 copies of each (JPEG quality 50 and
# 90, resized to half and to double, a centre crop of 90%): 600 copies. The lowest copy is at 0.80 (an ant at JPEG
# q50), 98% of ants/bees copies and 100% of houses copies are at 0.84 or more; the nearest *different* ants/bees
# photo is at most 0.81 (none of 398 at 0.84). 0.85 = 0.81 + 0.04 of margin over distinct photos, and catches
# 98-100% of copies. 64 px satellite tiles are another matter: open-water tiles are at 0.998 to each other (near-flat
# blue squares are near-duplicates to any feature extractor) and a JPEG q50 copy of a tile falls to 0.34-0.94; those
# groups are reported as what they are.
DUPLICATE_COSINE = 0.85
# Where those features tell nothing apart (tiny upscaled images: review's CROWD check), near-copies are looked for in
# the pixels: each image as a PIXEL_SIDE x PIXEL_SIDE grey thumbnail, centred and L2-normalised. On 500 scikit-learn
# digits saved as 32 px PNGs (benchmarks/review.py `pixels`): JPEG q50 / q90 re-encodes and half / double
# resizes of a digit are at 0.996 or more to it (all caught), the nearest *different* digit at most 0.985 (none over);
# a 90% centre crop (one pixel off each side of 32) is at 0.97 or more, caught on 37%.
PIXEL_SIDE, PIXEL_COSINE = 16, 0.99


def pixel_features(images, keys, side: int = PIXEL_SIDE) -> np.ndarray:
    """(N, side * side) float32: each image of `images` (an ImageSet) as a grey side x side thumbnail (bilinear),
    less its mean and scaled to unit length, so a cosine compares shapes whatever the brightness. An image that
    cannot be read is a zero row (similar to nothing)."""
    from PIL import Image

    out = np.zeros((len(keys), side * side), np.float32)
    for n, key in enumerate(keys):
        try:
            grey = images.load(key).convert("L").resize((side, side), Image.BILINEAR)
        except Exception:  # noqa: BLE001 - the review lists unreadable images already; here it matches nothing
            continue
        g = np.asarray(grey, dtype=np.float32).ravel()
        out[n] = g - g.mean()
    return normalise(out)


def normalise(features) -> np.ndarray:
    """Rows scaled to unit length (float32); an all-zero row stays zero (similar to nothing)."""
    x = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


class SimilarityIndex:
    """Nearest neighbours by cosine similarity over one set of embeddings. backend: "auto" (exact NumPy up to
    FAISS_ABOVE rows, then FAISS HNSW if installed), "exact" or "faiss"."""

    def __init__(self, features, keys: list[str] | None = None, backend: str = "auto"):
        self.x = normalise(features)
        self.keys = list(keys) if keys is not None else [str(i) for i in range(len(self.x))]
        if len(self.keys) != len(self.x):
            raise ValueError(f"{len(self.keys)} keys for {len(self.x)} feature rows")
        if backend not in BACKENDS:
            raise ValueError(f"Unknown backend {backend!r}: one of {', '.join(BACKENDS)}.")
        faiss = _faiss() if backend != "exact" else None
        if backend == "faiss" and faiss is None:
            raise ImportError("The faiss backend needs faiss-cpu: pip install 'transferkit[similar]'.")
        self.backend = "faiss" if faiss is not None and (backend == "faiss" or len(self.x) > FAISS_ABOVE) else "exact"
        self._index = None
        if self.backend == "faiss":
            # HNSW with 32 links per node; efSearch 128 keeps recall@10 near 1 at 50k rows (BENCHMARKS.md)
            self._index = faiss.IndexHNSWFlat(self.x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
            self._index.hnsw.efConstruction = 80
            self._index.hnsw.efSearch = 128
            self._index.add(self.x)

    def __len__(self) -> int:
        return len(self.x)

    def search(self, queries, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """(similarities (Q, k), row indices (Q, k)), most similar first; k is capped at the index's size."""
        q = queries if queries is self.x else normalise(np.atleast_2d(queries))  # the index's own rows: no copy
        k = min(k, len(self.x))
        if self._index is not None:
            sims, idx = self._index.search(q, k)
            return sims, idx
        sims, idx = np.empty((len(q), k), np.float32), np.empty((len(q), k), np.int64)
        rows = block_rows(len(self.x))
        for s in range(0, len(q), rows):
            block = q[s : s + rows] @ self.x.T
            np.negative(block, out=block)  # in place: argpartition finds the k smallest
            top = np.argpartition(block, k - 1, axis=1)[:, :k]
            best = np.take_along_axis(block, top, axis=1)
            order = np.argsort(best, axis=1, kind="stable")
            idx[s : s + rows] = np.take_along_axis(top, order, axis=1)
            sims[s : s + rows] = -np.take_along_axis(best, order, axis=1)
        return sims, idx

    def query(self, vector, k: int = 10) -> list[tuple[str, float]]:
        sims, idx = self.search(vector, k)
        return [(self.keys[i], float(s)) for s, i in zip(sims[0], idx[0]) if i >= 0]

    def neighbours(self, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Every row's k nearest *other* rows: (similarities (N, k), indices (N, k)), exact, in blocks."""
        k = min(k, len(self.x) - 1)
        if k <= 0:
            return np.zeros((len(self.x), 0), np.float32), np.zeros((len(self.x), 0), np.int64)
        sims, idx = self.search(self.x, k + 1)
        # drop each row itself (the first hit, unless an identical row tied with it)
        own = idx == np.arange(len(self.x))[:, None]
        keep = ~own
        keep[~own.any(axis=1), -1] = False  # the row was not among its hits: drop the last one instead
        return sims[keep].reshape(len(self.x), k), idx[keep].reshape(len(self.x), k)


def duplicate_pairs(features, threshold: float = DUPLICATE_COSINE) -> list[tuple[int, int, float]]:
    """(i, j, cosine) for every pair i < j at or above `threshold`, exact, one block of rows at a time."""
    x = normalise(features)
    pairs = []
    step = block_rows(len(x))
    for s in range(0, len(x), step):
        block = x[s : s + step] @ x[s:].T  # only columns from s on: each pair once
        hit_rows, hit_cols = np.nonzero(block >= threshold)
        for r, c in zip(hit_rows, hit_cols):
            i, j = s + int(r), s + int(c)
            if i < j:
                pairs.append((i, j, float(block[r, c])))
    return pairs


def groups_of(n: int, pairs) -> list[list[int]]:
    """Groups (two or more members, each sorted, by first member) that the pairs draw, without chaining: the image
    with the most matches still free leads a group of its free matches, and so on. Connected components would
    chain (a~b, b~c, ..., through a class of near-flat tiles) into one group of images that are not alike; here
    every member is within the threshold of its leader."""
    near: dict[int, set[int]] = {}
    for i, j, *_ in pairs:
        near.setdefault(i, set()).add(j)
        near.setdefault(j, set()).add(i)
    free = set(near)
    groups = []
    for leader in sorted(near, key=lambda i: (-len(near[i]), i)):
        if leader not in free:
            continue
        members = sorted({leader} | (near[leader] & free))
        if len(members) > 1:
            groups.append(members)
            free -= set(members)
    return sorted(groups, key=lambda m: m[0])


def duplicate_groups(features, threshold: float = DUPLICATE_COSINE) -> list[list[int]]:
    return groups_of(len(features), duplicate_pairs(features, threshold))


@dataclass
class Neighbour:
    key: str
    similarity: float  # cosine, 1 = the same features
    label: str | None = None  # its label where the data has labels

    def to_dict(self) -> dict:
        return {"key": self.key, "similarity": self.similarity, "label": self.label}


def similar(
    data,
    image,
    k: int = 10,
    *,
    backbone: str = DEFAULT_BACKBONE,
    image_size: int | None = None,
    backend: str = "auto",
    cache_dir: str | None = None,
    reporter=None,
) -> list[Neighbour]:
    """The k images of `data` (a folder, a list file, HDF5, an ImageSet) most similar to `image` (a file path, or a
    key of `data`), by the cosine of `backbone`'s features (any backbone: `bundle:PATH` for a trained model's). The
    data's features come from the store (computed once); the query image is the first hit when it is in `data`.
    A query outside `data` must be one image file: a list file or an HDF5 is refused (DataError), not read as data."""
    from ..data.sources import open_images
    from ..errors import ConfigError, DataError, unknown_choice
    from .embed import as_image_set, check_options, embed

    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ConfigError(f"similar(k={k!r}): give how many neighbours to list, 1 or more (--top).")
    if backend not in BACKENDS:
        raise unknown_choice("backend", backend, BACKENDS)
    check_options(image_size=image_size)
    imgs = as_image_set(data)
    key = str(image)
    if key not in imgs.keys:  # checked before minutes of extraction
        _check_query_file(image)
    emb = embed(imgs, backbone, image_size=image_size, cache_dir=cache_dir, reporter=reporter)
    if not len(emb.keys):
        raise DataError(f"No image of '{data}' could be read: nothing to search.")
    if key in emb.keys:
        vector = emb.features[emb.keys.index(key)]
    else:
        q = embed(open_images(key), backbone, image_size=emb.image_size, cache_dir=cache_dir)
        if not len(q.keys):
            raise DataError(f"Query image '{image}' could not be read: {q.skipped[0][1] if q.skipped else 'unknown'}.")
        vector = q.features[0]
    labels = _labels_by_key(data)
    hits = SimilarityIndex(emb.features, emb.keys, backend).query(vector, k)
    return [Neighbour(kk, s, labels.get(kk)) for kk, s in hits]


def _check_query_file(image) -> None:
    """A query that is not a key of the data must be one image file. A list file or an HDF5 holds many images:
    opened as data, its first image would be searched with, unsaid."""
    import os

    from ..data.base import H5_SUFFIXES, LIST_SUFFIXES
    from ..errors import DataError

    fix = "give one image file (or a key of the data)"
    if not os.path.isfile(image):
        raise DataError(f"Query image '{image}' is not a file: {fix}.")
    suffix = os.path.splitext(str(image))[1].lower()
    if suffix in LIST_SUFFIXES or suffix in H5_SUFFIXES:
        what = "a list file" if suffix in LIST_SUFFIXES else "an HDF5 file"
        raise DataError(f"Query image '{image}' is {what}, not an image: {fix}.")


def _labels_by_key(data) -> dict[str, str]:
    """key -> label text when `data` is labelled data transferkit can read; {} otherwise (a plain folder). Keyed as
    `embed` keys images: a file by its absolute path (a source opened from `cf` or `.` keys `cf/ants/1.jpg`), an
    array row as it is."""
    from pathlib import Path

    from ..data.base import label_text
    from ..data.imageset import is_array_key
    from ..data.sources import DataSource, open_source
    from ..errors import TransferkitError

    try:
        src = data if isinstance(data, DataSource) else open_source(data, lenient=True)
    except (TransferkitError, TypeError, OSError):
        return {}
    return {
        s.key if is_array_key(s.key) else str(Path(s.key).resolve()): label_text(s.label, src.classes)
        for samples in src.splits.values()
        for s in samples
    }
