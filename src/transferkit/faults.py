"""Writes that a crash cannot leave half done, and the fault points where tests kill them.

    with atomic_path(run_dir / "last.ckpt") as tmp:   # a unique temporary file beside the target...
        torch.save(state, tmp)                       # ...renamed over it only once it is complete
    write_atomic(run_dir / "report.json", text)

    TRANSFERKIT_FAULT=last.ckpt   transferkit train ...   # SIGKILL at the first checkpoint, before its rename
    TRANSFERKIT_FAULT=last.ckpt:2 transferkit train ...   # at the second

A reader (another run, `predict`, a resume) sees the old file or the new one, never a part of one. The fault points
sit between writing the temporary file and renaming it, the spot where a kill used to leave a truncated file.
A write that fails because the disk is full raises `DiskFull` ("disk full at <path>, needs N MB"; exit 2 in the CLI)
with the temporary file removed. This module imports only transferkit.errors: every layer may use it.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigError, TransferkitError

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


class DiskFull(TransferkitError, OSError):
    """No space left where a file was being written: which file, what it needs, what is free. An OSError too (errno
    ENOSPC), so that code which tolerates a failed write (failed.json, a cache) still does."""

    def __str__(self) -> str:
        return self.strerror


FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)  # no space; over the user's quota
# torch.save and safetensors report a failed write without its errno ("file write failed"): such an error with less
# than this free where the file was going is taken for a full disk.
NEARLY_FULL = 2**20


def free_bytes(folder: str | os.PathLike) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def disk_full(error: BaseException, path: str | os.PathLike, size: int | None = None, written: int = 0):
    """A DiskFull for `error` (raised while writing `path`) if a full disk caused it, else None. `size`: the bytes the
    file needs, when the caller knows; else `written` (what it reached before failing) is a lower bound."""
    if isinstance(error, DiskFull):
        return error
    path = Path(path)
    free = free_bytes(path.parent if not path.is_dir() else path)
    chain, e = [], error
    while e is not None and len(chain) < 8:  # the errno may sit in a cause (a library's wrapper around an OSError)
        chain.append(e)
        e = e.__cause__ or e.__context__
    if not any(isinstance(x, OSError) and x.errno in FULL_ERRNOS for x in chain):
        no_errno = isinstance(error, RuntimeError) or (isinstance(error, OSError) and error.errno is None)
        if not no_errno or free is None or free >= NEARLY_FULL:  # another cause (a permission, a bug): as it was
            return None
    need = f"needs {size / 1e6:.1f} MB" if size else f"needs more than {written / 1e6:.1f} MB"
    said = next((x.strerror for x in chain if isinstance(x, OSError) and x.strerror), None) or str(error)
    have = f"{free / 1e6:.1f} MB free; " if free is not None else ""
    return DiskFull(
        errno.ENOSPC,
        f"disk full at {path}, {need} ({have}the system said: {said}). Nothing half-written was left: free some "
        "space there (or write elsewhere, e.g. another --out) and run again.",
    )


@contextmanager
def disk_full_check(path: str | os.PathLike, size: int | None = None) -> Iterator[None]:
    """Any error of the block that a full disk caused becomes DiskFull (see `disk_full`); others pass unchanged."""
    try:
        yield
    except Exception as e:
        full = disk_full(e, path, size)
        if full is None or full is e:
            raise
        raise full from e


@contextmanager
def atomic_path(path: str | os.PathLike, fault: str | None = None, size: int | None = None) -> Iterator[Path]:
    """A new temporary path beside `path` that becomes `path` in one rename once the block ends without an error
    (and is removed if it raises). The name is unique (mkstemp), so two processes writing the same target (two runs
    filling one cold feature cache) never write into each other's file; the same folder keeps the rename atomic
    (os.replace is atomic only within one file system). The file gets the mode an ordinary new file would have
    (0644 under umask 022), not mkstemp's 0600. No fsync: a kill leaves the page cache intact, and syncing a 40 MB
    checkpoint every epoch would cost more than the power cut it guards against. A full disk raises DiskFull, which
    names `path` and `size` (the bytes the file needs, when the caller knows them)."""
    path = Path(path)
    with disk_full_check(path, size):
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())
        fault_point(fault or path.name)
        os.replace(tmp, path)
    except BaseException as e:
        written = tmp.stat().st_size if tmp.exists() else 0
        full = disk_full(e, path, size, written) if isinstance(e, Exception) else None  # before the unlink frees it
        tmp.unlink(missing_ok=True)
        if full is None or full is e:
            raise
        raise full from e


def write_atomic(path: str | os.PathLike, data: str | bytes, fault: str | None = None) -> None:
    """Write text (UTF-8) or bytes to `path` through `atomic_path`."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path, fault, size=len(data)) as tmp:
        tmp.write_bytes(data)


def is_temporary(path: Path) -> bool:
    """Whether `path` is a temporary file of `atomic_path` (left behind by a killed process)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def check_folder(folder: str | os.PathLike, named: str, fix: str, *, writable: bool = False) -> Path:
    """`folder` as a folder that is there or can be made, creating nothing (the one check of --out, --cache-dir and
    the pages' folders, before any work: a wrong folder fails in a second, not after decoding). named: how the
    message names it ("--out 'runs'"); fix: what to do, as a clause ("give a folder (it is made if missing)").
    Refused with ConfigError: a file at `folder`, a file above it ("a/b" under a file "a"), and with `writable` an
    existing folder above it that this user cannot write to."""
    path = Path(folder).expanduser()
    existing = nearest_existing(path)
    if not os.path.isdir(existing):
        if existing == path:
            raise ConfigError(f"{named} is a file, not a folder: {fix}.")
        raise ConfigError(f"{named} cannot be made: '{existing}' is a file, not a folder. {fix[0].upper()}{fix[1:]}.")
    if writable and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{named}: '{existing}' is not writable to you. Give a folder you can write to.")
    return path


def check_out_folder(path: str | os.PathLike, flag: str = "--out") -> Path:
    """`check_folder` for a folder given as `flag` that files will be written in (review's and the pages' --out)."""
    return check_folder(
        path, f"{flag} '{Path(path).expanduser()}'", "give a folder (it is made if missing)", writable=True
    )


def nearest_existing(path: Path) -> Path:
    """`path` when it exists, else its nearest ancestor that does ("." for a relative path with none). os.path, not
    Path.exists: an unreadable folder on the way is passed over, not raised."""
    return next((p for p in (path, *path.parents) if os.path.exists(p)), Path("."))
