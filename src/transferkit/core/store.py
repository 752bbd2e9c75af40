"""Features kept per image, not per split: computed once, appended, read back by row.

    store = FeatureStore(store_root(None), {"weights": "efficientnet_lite0", "size": 224, "crop": 0.875,
                                             "interpolation": "bilinear", "mean": [...], "std": [...],
                                             "precision": "fp32", "view": "center"})
    feats, n_new = store.get_or_compute(ids, lambda idx: extract(images[idx]))   # (N, F) in the order of ids

Layout: one folder per configuration (weights, preprocessing, precision, view: whatever changes the numbers),
named by a short hash of the configuration's JSON (`folder_name`), `<root>/<hash>/`:
    config.json      the configuration, for people (the name is its hash; nothing reads this back)
    features.f32     the matrix: float32 rows of F features, one after the other, append-only, read with np.memmap
    index.sqlite     identity -> (row, crc32 of the row's bytes); meta: F and the next free row (SQLite in WAL mode)
    lock             the file writers flock
An identity is the caller's string ("file:/abs/path|size|mtime", "sha256:..."); labels, splits, folds and seeds are
index arrays over the rows and never part of anything here, so a new split or a corrected label finds every image.
Size: 50,000 images x 1,280 floats x 4 bytes = 256 MB of matrix; the index ~80 bytes an image = 4 MB.

Writers: "re-check the index, append the bytes, fsync, commit the index rows" runs under an exclusive flock on
`lock`, so two runs or torchrun processes appending at once neither overwrite each other's rows nor lose any.
Readers take no lock: WAL gives them a consistent snapshot of the index, and a row the index points at was
written and synced before the commit that points at it. A crash between the bytes and the commit leaves rows that
no index entry points at (harmless: the next append starts past the file's real end, rounded up to a whole row,
and past every row the index ever handed out). A file cut short is read as its whole rows only; an entry past
them, or whose bytes fail their crc32 or are not finite, counts as missing: get_or_compute computes it again and
re-appends it, and the entry then points at the new row.

A cache folder that cannot be written (read-only, full, on a file) never fails get_or_compute: it returns what it
computed and stores nothing, silently (the caller may log). A cache folder that is a file is refused before a store
is opened (options.check_cache_dir, by `validate`, the commands and engine.features.open_store): there every run
would extract everything again without a word. `append` itself raises OSError / sqlite3.Error there.
Different F for one configuration is a bug in the caller: ValueError.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..config import cache_home
from ..faults import fault_point, write_atomic

LAYOUT = 1  # part of every folder's hash: a change of the files' layout starts new folders instead of misreading
MATRIX, INDEX, LOCK, CONFIG = "features.f32", "index.sqlite", "lock", "config.json"
CHUNK = 500  # ids per `IN (...)` query: under the 999 variables of the oldest SQLite Python ships with
BUSY_S = 60.0  # a writer waits this long for another's commit (they are short: the flock serialises the rest)

__all__ = ["FeatureStore", "folder_name", "store_root"]


def store_root(cache_dir: str | None = None) -> Path:
    """Where the feature stores live: `cache_home(cache_dir) / "store"`."""
    return cache_home(cache_dir) / "store"


def folder_name(config: dict) -> str:
    """The store folder of a configuration: 16 hex digits of the SHA-256 of its JSON (keys sorted), stable across
    processes, Python versions and dict order. 64 bits: a clash among a million configurations has odds of 1 in
    36 million."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"layout{LAYOUT}:{text}".encode()).hexdigest()[:16]


def row_checks(features: np.ndarray) -> np.ndarray:
    """crc32 of each float32 row's bytes (int64): 75 ms for 50,000 x 1,280 floats on this machine."""
    block = np.ascontiguousarray(features, dtype=np.float32)
    return np.fromiter((zlib.crc32(r) for r in block), np.int64, len(block))


class FeatureStore:
    """The features of one configuration, by image identity. See the module's docstring for the files and locking.

    Nothing is created until the first write. One instance may be used from several threads; a forked child
    (DataLoader worker, multiprocessing) opens its own connection to the index."""

    def __init__(self, root: Path, config: dict):
        self.config = config
        self.path = Path(root) / folder_name(config)
        self._mutex = threading.RLock()
        self._con: sqlite3.Connection | None = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, rows={len(self)}, dim={self.dim})"

    def close(self) -> None:
        """Close this process's connection to the index (the last one closed folds the WAL back into the index).
        The store stays usable: the next call opens it again."""
        with self._mutex:
            if self._con is not None and self._pid == os.getpid():
                self._con.close()
            self._con = None

    # --- reading: no lock -------------------------------------------------------------------------------------------

    @property
    def dim(self) -> int | None:
        """F, the features per row; None while nothing has been stored."""
        with self._mutex:
            con = self._connection()
            try:
                row = con and con.execute("SELECT value FROM meta WHERE key = 'dim'").fetchone()
            except sqlite3.Error:
                return None
            return int(row[0]) if row else None

    def __len__(self) -> int:
        """Identities indexed (rows a crash left unindexed are not counted)."""
        with self._mutex:
            con = self._connection()
            try:
                return con.execute("SELECT COUNT(*) FROM entries").fetchone()[0] if con else 0
            except sqlite3.Error:
                return 0

    def lookup(self, ids: Sequence[str]) -> np.ndarray:
        """The row of each id (int64), -1 where it is unknown or its row lies past the end of a file cut short.
        Checksums are not verified here (get_or_compute does, on the rows it reads)."""
        rows, _ = self._entries(list(ids))
        dim = self.dim
        whole = self._whole_rows(dim) if dim else 0
        rows[rows >= whole] = -1
        return rows

    def verified(self, ids: Sequence[str]) -> np.ndarray:
        """As `lookup`, and -1 too where the row is damaged (its checksum fails, or it is not finite): the rows
        `get_or_compute` would read rather than compute. Reads the rows to check them."""
        ids = list(ids)
        rows, checks = self._entries(ids)
        dim = self.dim
        if dim is None or not (rows >= 0).any():
            return np.full(len(ids), -1, np.int64)
        rows[rows >= self._whole_rows(dim)] = -1
        found = np.flatnonzero(rows >= 0)
        block = self._read(rows[found], dim)
        ok = np.isfinite(block).all(axis=1) & (row_checks(block) == checks[found])
        rows[found[~ok]] = -1
        return rows

    def read(self, rows: np.ndarray) -> np.ndarray:
        """A float32 (len(rows), F) copy of those rows of the matrix."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        dim = self.dim
        if dim is None:
            if rows.size:
                raise ValueError(f"The feature store {self.path} is empty: there is no row {rows[0]} to read.")
            return np.empty((0, 0), np.float32)
        whole = self._whole_rows(dim)
        bad = rows[(rows < 0) | (rows >= whole)]
        if bad.size:
            raise ValueError(
                f"Row {bad[0]} is not in the feature store {self.path}: it holds rows 0 to {whole - 1}. "
                "Pass rows from lookup(), which gives -1 for an unknown id."
            )
        return self._read(rows, dim)

    # --- writing: under the flock -----------------------------------------------------------------------------------

    def append(self, ids: Sequence[str], features: np.ndarray) -> np.ndarray:
        """Store the features of `ids` (one row each, in order) and return each id's row (int64). An id already
        stored keeps its row, unless that row is damaged (then it is replaced); a repeated id is stored once; a row
        with a NaN or an infinity is not stored (-1: it would be computed again anyway).
        Raises ValueError for a different F than the store holds, OSError / sqlite3.Error where the folder cannot be
        written (get_or_compute swallows those)."""
        ids = list(ids)
        feats = _as_matrix(features, len(ids), "features")
        dim = feats.shape[1]
        self._check_dim(dim)
        first: dict[str, int] = {}
        for i, key in enumerate(ids):
            first.setdefault(key, i)
        uniq = list(first)
        at = np.fromiter(first.values(), np.int64, len(first))
        finite = np.isfinite(feats[at]).all(axis=1)
        uniq, at = [k for k, ok in zip(uniq, finite) if ok], at[finite]
        checks = row_checks(feats[at])  # before the lock: keep the time others wait short
        rows_of: dict[str, int] = {}
        if uniq:
            self.path.mkdir(parents=True, exist_ok=True)
            if not (self.path / CONFIG).exists():
                write_atomic(self.path / CONFIG, json.dumps(self.config, indent=2, sort_keys=True, default=str) + "\n")
            with self._mutex, self._locked():
                rows_of = self._append_locked(uniq, feats[at], checks)
        return np.array([rows_of.get(k, -1) for k in ids], dtype=np.int64)

    def get_or_compute(self, ids: Sequence[str], compute: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, int]:
        """(features (N, F) in the order of ids, how many were computed). compute(indices into ids) returns the
        features of the missing ones, in that order; duplicates in ids computed once. Known, intact rows are never
        computed again; unknown and damaged ones are computed and appended. A cache folder that cannot be written
        only means nothing is stored."""
        ids = list(ids)
        first: dict[str, int] = {}
        for i, key in enumerate(ids):
            first.setdefault(key, i)
        uniq = list(first)
        at = np.fromiter(first.values(), np.int64, len(uniq))  # the first position of each distinct id in `ids`
        slot = {key: j for j, key in enumerate(uniq)}
        inverse = np.fromiter((slot[key] for key in ids), np.int64, len(ids))
        if not uniq:
            return np.empty((0, self.dim or 0), np.float32), 0

        rows, checks = self._entries(uniq)
        good = np.zeros(len(uniq), bool)
        dim = self.dim
        block = None
        if dim is not None and (rows >= 0).any():
            found = np.flatnonzero(rows >= 0)
            whole = self._whole_rows(dim)
            inside = rows[found] < whole  # entries past a file cut short are missing
            found = found[inside]
            block = self._read(rows[found], dim)
            ok = np.isfinite(block).all(axis=1) & (row_checks(block) == checks[found])
            if not ok.all():  # (a boolean index copies: skipped in the usual case, every row intact)
                found, block = found[ok], block[ok]
            good[found] = True
        missing = np.flatnonzero(~good)

        if not missing.size:
            out = block  # every row found, in order (`found` is sorted): no copy
        else:
            computed = _as_matrix(compute(at[missing]), len(missing), "compute(...)")
            self._check_dim(computed.shape[1], dim)
            try:
                self.append([uniq[i] for i in missing], computed)
            except (OSError, sqlite3.Error):
                pass  # a read-only or full cache folder: the caller still gets its features, stored or not
            out = np.empty((len(uniq), computed.shape[1]), np.float32)
            out[missing] = computed
            if block is not None:
                out[found] = block
        return (out if len(uniq) == len(ids) else out[inverse]), int(missing.size)

    # --- internals --------------------------------------------------------------------------------------------------

    def _check_dim(self, dim: int, stored: int | None = None) -> None:
        stored = self.dim if stored is None else stored
        if stored is not None and dim != stored:
            raise ValueError(
                f"The features have {dim} columns but the feature store {self.path} holds rows of {stored} for the "
                f"same configuration {self.config}. One configuration must always give the same width: put whatever "
                "changes it (backbone, layer, view) into the configuration dict."
            )

    def _whole_rows(self, dim: int) -> int:
        try:
            return (self.path / MATRIX).stat().st_size // (4 * dim)
        except OSError:
            return 0

    def _read(self, rows: np.ndarray, dim: int) -> np.ndarray:
        if not rows.size:
            return np.empty((0, dim), np.float32)
        whole = int(rows.max()) + 1  # map only as far as needed: the file may be growing under another writer
        matrix = np.memmap(self.path / MATRIX, dtype=np.float32, mode="r", shape=(whole, dim))
        try:
            return np.asarray(matrix[rows])  # fancy indexing copies
        finally:
            del matrix

    def _connection(self) -> sqlite3.Connection | None:
        """This process's connection to the index; None while there is no index (or it cannot be opened)."""
        if self._pid != os.getpid():  # a forked child must not share its parent's SQLite connection
            self._con, self._pid = None, os.getpid()
        if self._con is None and (self.path / INDEX).exists():
            self._con = _open_index(self.path / INDEX)
        return self._con

    def _entries(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(row, crc) of each distinct id; row -1 where unknown or the index cannot be read."""
        rows, checks = np.full(len(ids), -1, np.int64), np.zeros(len(ids), np.int64)
        with self._mutex:
            con = self._connection()
            if con is None or not ids:
                return rows, checks
            try:
                _query(con, ids, rows, checks)
            except sqlite3.Error:
                rows[:] = -1  # an index that cannot be read is an empty one: everything is computed
        return rows, checks

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            _lock(fd)
            yield
        finally:
            os.close(fd)  # closing releases the lock, and a killed process's lock goes with its descriptors

    def _append_locked(self, ids: list[str], feats: np.ndarray, checks: np.ndarray) -> dict[str, int]:
        con = self._connection()
        if con is None:
            con = self._con = _create_index(self.path / INDEX)
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        dim = feats.shape[1]
        self._check_dim(dim, int(meta["dim"]) if "dim" in meta else None)
        row_bytes = 4 * dim

        # Re-check under the lock: another writer may have stored some of these since the caller looked.
        rows, old = np.full(len(ids), -1, np.int64), np.zeros(len(ids), np.int64)
        _query(con, ids, rows, old)
        fd = os.open(self.path / MATRIX, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            size = os.fstat(fd).st_size
            keep = (rows >= 0) & (rows < size // row_bytes)
            if keep.any():  # kept only if intact: a damaged entry is what the caller is replacing
                idx = np.flatnonzero(keep)
                block = self._read(rows[idx], dim)
                keep[idx] = np.isfinite(block).all(axis=1) & (row_checks(block) == old[idx])
            new = np.flatnonzero(~keep)
            # Past the file's real end, rounded up to a whole row, and past every row ever indexed (a file cut short
            # must not hand out again a row that a damaged entry still points at).
            start = max(math.ceil(size / row_bytes), int(meta.get("next_row", 0)))
            rows[new] = start + np.arange(len(new))
            if new.size:
                _write_all(fd, np.ascontiguousarray(feats[new]).tobytes(), start * row_bytes)
                os.fsync(fd)
        finally:
            os.close(fd)
        if new.size:
            fault_point(MATRIX)  # a kill here leaves bytes no entry points at
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany(
                    "INSERT OR REPLACE INTO entries (id, row, crc) VALUES (?, ?, ?)",
                    ((ids[i], int(rows[i]), int(checks[i])) for i in new),
                )
                con.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [("dim", dim), ("next_row", start + len(new))],
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return dict(zip(ids, rows.tolist()))


def _as_matrix(features, n: int, what: str) -> np.ndarray:
    feats = np.asarray(features, dtype=np.float32)
    if feats.ndim != 2 or len(feats) != n:
        raise ValueError(f"{what} gave an array of shape {feats.shape}; expected ({n}, F): one row per id asked for.")
    return feats


def _query(con: sqlite3.Connection, ids: list[str], rows: np.ndarray, checks: np.ndarray) -> None:
    """Fill rows/checks for the (distinct) ids that are indexed: 50,000 ids in 0.1 s, in queries of CHUNK."""
    pos = {k: i for i, k in enumerate(ids)}
    for s in range(0, len(ids), CHUNK):
        part = ids[s : s + CHUNK]
        sql = f"SELECT id, row, crc FROM entries WHERE id IN ({','.join('?' * len(part))})"
        for key, row, crc in con.execute(sql, part):
            rows[pos[key]], checks[pos[key]] = row, crc


def _open_index(path: Path) -> sqlite3.Connection | None:
    """The index opened for reading and writing, else read-only, else as an immutable file (a read-only folder where
    SQLite cannot create the WAL's -shm file); None where none of those can read it."""
    uri = path.resolve().as_uri()
    for query in ("?mode=rw", "?mode=ro", "?immutable=1"):
        try:
            con = sqlite3.connect(uri + query, uri=True, timeout=BUSY_S, isolation_level=None, check_same_thread=False)
            con.execute("SELECT value FROM meta WHERE key = 'dim'").fetchall()
            return con
        except sqlite3.Error:
            continue
    return None


def _create_index(path: Path) -> sqlite3.Connection:
    """Create the index (under the flock, so one process does it)."""
    con = sqlite3.connect(path, timeout=BUSY_S, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")  # readers see a snapshot while a writer commits; stays set in the file
    con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID")
    con.execute(
        "CREATE TABLE IF NOT EXISTS entries (id TEXT PRIMARY KEY, row INTEGER NOT NULL, crc INTEGER NOT NULL)"
        " WITHOUT ROWID"
    )
    return con


def _write_all(fd: int, data: bytes, offset: int) -> None:
    """Write until every byte is written (a write near a size limit can be short; the next one raises)."""
    os.lseek(fd, offset, os.SEEK_SET)  # not os.pwrite: Windows has none (the flock keeps the offset ours)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: lock the first byte, msvcrt retrying for 10 s at a time
        import msvcrt

        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:
                continue
    fcntl.flock(fd, fcntl.LOCK_EX)
