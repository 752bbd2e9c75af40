"""Writes that a crash cannot leave half done, and the fault points where tests kill them.

    with atomic_path(run_dir / "last.ckpt") as tmp:   # a unique temporary file beside the target...
        torch.save(state, tmp)                       # ...renamed over it only once it is complete
    write_atomic(run_dir / "report.json", text)

    TRANSFERKIT_FAULT=last.ckpt   transferkit train ...   # SIGKILL at the first checkpoint, before its rename
    TRANSFERKIT_FAULT=last.ckpt:2 transferkit train ...   # at the second

A reader (another run, `predict`, a resume) sees the old file or the new one, never a part of one. The fault points
sit between writing the temporary file and renaming it, the spot where a kill used to leave a truncated file.
This module imports nothing from transferkit: every layer may use it.
"""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "TRANSFERKIT_FAULT"
_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill this process (SIGKILL: no cleanup, as an OOM kill or a pulled plug) when $TRANSFERKIT_FAULT is `name`
    or `name:N` and this is the N-th time the point is reached. Without the variable: one dict lookup."""
    want = os.environ.get(ENV)
    if not want:
        return
    target, _, nth = want.partition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def umask() -> int:
    """The process umask, read without changing it where Linux shows it (os.umask can only be read by setting it,
    which would let a file made meanwhile by another thread get the wrong mode)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


@contextmanager
def atomic_path(path: str | os.PathLike, fault: str | None = None) -> Iterator[Path]:
    """A new temporary path beside `path` that becomes `path` in one rename once the block ends without an error
    (and is removed if it raises). The name is unique (mkstemp), so two processes writing the same target (two runs
    filling one cold feature cache) never write into each other's file; the same folder keeps the rename atomic
    (os.replace is atomic only within one file system). The file gets the mode an ordinary new file would have
    (0644 under umask 022), not mkstemp's 0600. No fsync: a kill leaves the page cache intact, and syncing a 40 MB
    checkpoint every epoch would cost more than the power cut it guards against."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())
        fault_point(fault or path.name)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes, fault: str | None = None) -> None:
    """Write text (UTF-8) or bytes to `path` through `atomic_path`."""
    with atomic_path(path, fault) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def is_temporary(path: Path) -> bool:
    """Whether `path` is a temporary file of `atomic_path` (left behind by a killed process)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")
