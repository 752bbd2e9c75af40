"""Decoded images kept in one memory-mapped file, for data sets whose decoded arrays do not fit in memory.

The file is `<store_dir>/transferkit-decoded-*.u8` (store_dir defaults to the OS temp folder): the raw HWC uint8
bytes of each image, one after the other; the index (offset, shape per image) stays in memory. Pages of a mapping
that were read stay in the process's resident set until the kernel is short of memory, so an epoch over a 5 GB store
would show a 5 GB RSS: every `RESIDENT` bytes read, the mapping's pages are dropped (`madvise(MADV_DONTNEED)`).
They stay in the page cache, so reading them again costs a page fault, not a disk read, and the process's resident
memory stays at `RESIDENT` whatever the data's size.

The file is removed when its `StoredImages` list is garbage-collected or the Python process exits. A process that is
killed (kill -9, out of memory) cannot remove it; its name carries the host and process id, and the next StoreWriter
in that folder removes the files of processes of its host that no longer exist. A store is only ever read by the
process that wrote it (and its workers), so a file cut short by a kill is never read.
"""

from __future__ import annotations

import math
import mmap
import os
import re
import socket
import tempfile
import weakref
from pathlib import Path

import numpy as np

from ..faults import fault_point

PREFIX = "transferkit-decoded-"
HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:64] or "host"  # no '-': the name is split on it
# Bytes of the file read before its pages are dropped from the mapping: 64 MiB = 4,000 images of 73x73 px or 250 of
# 256x341 px, many batches' worth; dropping costs a walk of the mapping's page table (0.2 ms on an 800 MB file, and
# a pass over its 50,000 images read 16 us per image with a peak RSS of 130 MB, measured on this machine).
RESIDENT = 64 * 2**20


class StoredImages(list):
    """A list of HWC uint8 arrays that are views into one file, so every caller of a plain list works unchanged.

    The mapping is copy-on-write: the views are writable (torch.from_numpy wants that) and a write stays in the
    writer's private pages, never in the file or another process. Pickling (DataLoader workers under spawn or
    forkserver) re-maps the file instead of copying the pixels. Do not append to it or reorder it in place: the pickled
    form is rebuilt from the index (make a plain list, `list(images)` or a slice, for that).

    Reading an item counts its bytes; past `RESIDENT` the mapping's resident pages are dropped (see the module's
    docstring). A write into a view is private to the process and lasts until then: nothing here writes into them.
    """

    def __init__(self, path: str, offsets: list[int], shapes: list[tuple[int, ...]], *, owner: bool = False):
        flat = np.memmap(path, np.uint8, mode="c")
        super().__init__(flat[o : o + math.prod(s)].reshape(s).view(np.ndarray) for o, s in zip(offsets, shapes))
        self.path, self.offsets, self.shapes = path, offsets, shapes
        self._map, self._read = flat._mmap, 0  # the mmap.mmap under every view
        if owner:  # only the process that wrote the file removes it; unpickled copies in workers never do
            weakref.finalize(self, _remove, path, os.getpid())

    def __getitem__(self, i):
        item = super().__getitem__(i)
        if not isinstance(i, slice):
            self._read += item.nbytes
            if self._read > RESIDENT:
                self.release()
        return item

    def __iter__(self):  # through __getitem__, so a loop over every image counts what it reads too
        return (self[i] for i in range(len(self)))

    def release(self) -> None:
        """Drop the mapping's resident pages (they stay in the page cache); the views read them back on access."""
        self._read = 0
        if hasattr(self._map, "madvise") and hasattr(mmap, "MADV_DONTNEED"):  # Python >= 3.8 on Linux and macOS
            self._map.madvise(mmap.MADV_DONTNEED)

    def __reduce_ex__(self, protocol):
        return StoredImages, (self.path, self.offsets, self.shapes)


def _remove(path: str, pid: int) -> None:
    if os.getpid() == pid:  # a forked child that collects its inherited copy must not delete the parent's file
        try:
            os.unlink(path)
        except OSError:  # already gone, or still mapped on Windows: the OS temp cleaning takes it
            pass


class StoreWriter:
    """Appends arrays to a new file in order; `finish()` maps it and returns the views."""

    def __init__(self, store_dir: str | os.PathLike | None = None):
        if store_dir is not None:
            Path(store_dir).mkdir(parents=True, exist_ok=True)
        remove_orphans(store_dir)
        # transferkit-decoded-<host>-<pid>-<random>.u8: unique (mkstemp), and says whose it is for remove_orphans
        fd, self.path = tempfile.mkstemp(prefix=f"{PREFIX}{HOST}-{os.getpid()}-", suffix=".u8", dir=store_dir)
        self._file = os.fdopen(fd, "wb")
        self.offsets: list[int] = []
        self.shapes: list[tuple[int, ...]] = []
        self._end = 0

    def append(self, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr, dtype=np.uint8)
        self._file.write(arr.data)  # the array's own buffer: no bytes copy
        self.offsets.append(self._end)
        self.shapes.append(arr.shape)
        self._end += arr.nbytes
        fault_point("decode-store")

    def finish(self) -> list[np.ndarray]:
        self._file.close()
        if not self.offsets:  # nothing readable: an empty file cannot be mapped, and is not needed
            os.unlink(self.path)
            return []
        return StoredImages(self.path, self.offsets, self.shapes, owner=True)

    def abort(self) -> None:
        self._file.close()
        _remove(self.path, os.getpid())


def remove_orphans(store_dir: str | os.PathLike | None) -> list[str]:
    """Remove the store files left in `store_dir` by killed processes of this host; returns their paths. Files of
    other hosts (a shared cache folder) and of live processes are kept; so are names this version did not write."""
    if os.name != "posix":  # os.kill(pid, 0) only asks on POSIX; on Windows it would terminate the process
        return []
    folder = Path(store_dir if store_dir is not None else tempfile.gettempdir())
    removed = []
    try:
        names = [n for n in os.listdir(folder) if n.startswith(PREFIX) and n.endswith(".u8")]
    except OSError:
        return []
    for name in names:
        parts = name[len(PREFIX) : -len(".u8")].rsplit("-", 2)
        if len(parts) != 3 or parts[0] != HOST or not parts[1].isdigit() or _alive(int(parts[1])):
            continue
        try:
            os.unlink(folder / name)
            removed.append(str(folder / name))
        except OSError:  # removed meanwhile by another run, or not ours to remove
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True


def memory_budget() -> int:
    """Bytes of decoded images to keep in memory: half of what is available now (the rest is for the model, batches
    and other splits). Inside a container its memory limit counts, since /proc/meminfo shows the host's."""
    available = [a for a in (_meminfo_available(), _cgroup_available()) if a is not None]
    if not available:
        try:  # not Linux: free pages where the OS says, else a quarter of physical memory
            available.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            try:
                available.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2)
            except (ValueError, OSError, AttributeError):
                return 2**62  # unknown: keep today's behaviour (memory)
    return max(0, min(available)) // 2


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# (limit, usage, reclaimable page-cache key in memory.stat) for cgroup v2, then v1
_CGROUPS = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "inactive_file"),
    (
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        "total_inactive_file",
    ),
)


def _cgroup_available() -> int | None:
    for limit, usage, cache_key in _CGROUPS:
        try:
            raw = Path(limit).read_text().strip()
            if raw == "max":
                return None
            stat = dict(line.split()[:2] for line in (Path(limit).parent / "memory.stat").read_text().splitlines())
            # usage counts page cache; its inactive part is given back on demand, as `docker stats` assumes
            return int(raw) - int(Path(usage).read_text()) + int(stat.get(cache_key, 0))
        except (OSError, ValueError):
            continue
    return None
