"""Every click of a page, written at once to an embedded SQLite file: a killed server or a closed tab loses nothing.

    log = Journal("out/review.sqlite")
    log.add("/data/ants/1.jpg", "exclude")          # one row per answer, with its time; the latest per key counts
    log.latest()                                    # {key: value} after every answer so far
    log.undo()                                      # removes the last answer (any key); returns it, or None

Two tabs, or two servers, on one file: WAL lets readers run beside the one writer, busy_timeout makes a second
writer wait for the first instead of failing, and each answer is one short transaction, so the rows interleave and
none is lost or torn. A connection per call: FastAPI answers on a thread pool, and a connection is cheap (~0.1 ms).
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

BUSY_MS = 10_000  # how long a writer waits for another (a second server on the file); one answer takes ~1 ms

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_key ON answers (key);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Answer:
    id: int
    key: str
    value: str
    at: float  # seconds since the epoch


class Journal:
    """The answers of one page, append-only but for `undo`."""

    def __init__(self, path: str | Path):
        from ..faults import check_out_folder

        self.path = Path(path)
        # the page's --out: a file there is a message naming it, not FileExistsError from mkdir
        check_out_folder(self.path.parent).mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as con, con:
            con.execute("PRAGMA journal_mode=WAL")  # persistent: set once for the file
            con.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=BUSY_MS / 1000, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a power cut may lose the last answer, a crash none
        return con

    def add(self, key: str, value: str) -> Answer:
        with closing(self._connect()) as con:
            at = time.time()
            con.execute("BEGIN IMMEDIATE")
            cur = con.execute("INSERT INTO answers (key, value, at) VALUES (?, ?, ?)", (key, value, at))
            con.execute("COMMIT")
            return Answer(cur.lastrowid, key, value, at)

    def undo(self) -> Answer | None:
        """Remove the last answer; the one before it (if any) counts again for that key."""
        with closing(self._connect()) as con:
            con.execute("BEGIN IMMEDIATE")  # read and delete in one transaction: two undos never remove one row twice
            row = con.execute("SELECT id, key, value, at FROM answers ORDER BY id DESC LIMIT 1").fetchone()
            if row:
                con.execute("DELETE FROM answers WHERE id = ?", (row[0],))
            con.execute("COMMIT")
        return Answer(*row) if row else None

    def answers(self) -> list[Answer]:
        with closing(self._connect()) as con:
            return [Answer(*r) for r in con.execute("SELECT id, key, value, at FROM answers ORDER BY id")]

    def latest(self) -> dict[str, str]:
        """{key: its last answer}, in the order the keys were last answered."""
        out: dict[str, str] = {}
        for a in self.answers():
            out.pop(a.key, None)
            out[a.key] = a.value
        return out

    def count(self) -> int:
        with closing(self._connect()) as con:
            return con.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def get_meta(self, name: str, default=None):
        with closing(self._connect()) as con:
            row = con.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, name: str, value) -> None:
        with closing(self._connect()) as con, con:
            con.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, json.dumps(value)))
