"""Decode every image once, in parallel, to uint8 at the size training needs; bad files are skipped and reported.

The arrays are reused by every epoch (and by evaluation), so JPEG decoding is paid once per run, not once per epoch.
Pillow releases the GIL while decoding, so threads use every core without copying data between processes.

Where they are kept (`store`): "memory" (a list of arrays), "disk" (one memory-mapped file, see store.py: the same
list interface, resident memory bounded by store.RESIDENT whatever the data's size), or "auto": disk once the
decoded size, estimated from the images decoded so far times the sample count, exceeds `budget` (default: half the
available memory, at most AUTO_MEMORY). Either way decoding is a stream: a bounded window of images is in flight,
and with the disk store each image goes to the file as it is decoded, so 100,000 images never sit in memory at once.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..config import cache_home
from ..errors import unknown_choice
from .sources import DataSource, Sample  # importing it sets Pillow's pixel limit (images.py)
from .store import StoreWriter, memory_budget

STORES = ("auto", "memory", "disk")
PROBE = 32  # images decoded before "auto" trusts its size estimate (unless they alone exceed the budget)
# The most "auto" keeps in memory, all splits together. In memory, decoded pixels grow the process with the image
# count (50,000 images at 73x73 px = 800 MB); the disk store reads at page-cache speed (~25 us more per image and
# epoch, against ~5 ms of a 64 px training step) in flat memory. 128 MiB = 500 photos at 256x341 px, 8,000 at 73 px.
AUTO_MEMORY = 128 * 2**20


def decode_one(src: DataSource, key: str, short_side: int, interpolation: str) -> tuple[np.ndarray | None, str | None]:
    """(HWC uint8 array, None), or (None, why) for an unreadable file: one image as every caller decodes it."""
    try:
        return np.array(src.load(key, short_side, interpolation)), None  # writable: torch.from_numpy needs it
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported, never fatal to the run
        return None, f"{type(e).__name__}: {e}"


class LazyImages:
    """The decoded images of `keys`, each decoded when it is read (as `decode_one` decodes it): for splits whose
    features are all stored, where only the few images a report shows are ever looked at."""

    def __init__(self, src, keys: list[str], short_side: int, interpolation: str):
        self.src, self.keys, self.short_side, self.interpolation = src, keys, short_side, interpolation

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> np.ndarray:
        arr, why = decode_one(self.src, self.keys[i], self.short_side, self.interpolation)
        if arr is None:
            from ..errors import DataError

            raise DataError(f"'{self.keys[i]}' can no longer be read ({why}): it changed during the run.")
        return arr


def store_dir(cache_dir: str | None) -> Path:
    """Where "disk" stores go: beside the feature cache, not /tmp, which may be RAM (tmpfs)."""
    return cache_home(cache_dir) / "decoded"


def decode_samples(
    src: DataSource,
    samples: list[Sample],
    short_side: int,
    interpolation: str = "bicubic",
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    store: str = "auto",
    store_dir: str | os.PathLike | None = None,
    budget: int | None = None,
) -> tuple[list[np.ndarray], list[int], list[tuple[str, str]]]:
    """Returns (HWC uint8 arrays, labels, skipped [(key, reason)]) in the order of `samples`, bad ones left out.

    store: "auto" | "memory" | "disk"; store_dir: where the disk file goes (default: the OS temp folder);
    budget: bytes "auto" keeps in memory (default: `auto_budget()`).
    """
    if store not in STORES:
        raise unknown_choice("decode store", store, STORES)

    def one(s: Sample):
        return decode_one(src, s.key, short_side, interpolation)

    workers = workers or min(8, os.cpu_count() or 1)
    if store == "auto" and budget is None:
        budget = auto_budget()
    writer = StoreWriter(store_dir) if store == "disk" else None
    images: list[np.ndarray] = []  # in memory until (and unless) they go to the writer
    held = 0
    labels, skipped = [], []
    try:
        with ThreadPoolExecutor(workers) as pool:
            # A bounded window of decodes in flight, taken in order: order is kept and at most `window` decoded
            # arrays wait in memory (pool.map would run ahead of a slow writer without limit).
            window, todo, pending = 4 * workers, iter(samples), deque()
            for s in todo:
                pending.append((s, pool.submit(one, s)))
                if len(pending) >= window:
                    break
            while pending:
                s, fut = pending.popleft()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(one, nxt)))
                arr, err = fut.result()
                del fut  # drop the future's reference to the array, or the window's arrays outlive their write
                if progress:
                    progress(1)
                if err is not None:
                    skipped.append((s.key, err))
                    continue
                labels.append(s.label)
                if writer is not None:
                    writer.append(arr)
                    continue
                images.append(arr)
                held += arr.nbytes
                estimate = held / len(images) * len(samples)
                if store == "auto" and (held > budget or (len(images) >= PROBE and estimate > budget)):
                    writer = StoreWriter(store_dir)  # spill what is held, then write the rest straight to the file
                    for a in images:
                        writer.append(a)
                    images.clear()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return (writer.finish() if writer is not None else images), labels, skipped


def auto_budget() -> int:
    """Bytes "auto" keeps in memory: half of what is available now, at most AUTO_MEMORY."""
    return min(memory_budget(), AUTO_MEMORY)


def decode_splits(
    src: DataSource,
    splits: dict[str, list[Sample]],
    short_side: int,
    interpolation: str = "bicubic",
    *,
    store: str = "auto",
    store_dir: str | os.PathLike | None = None,
    progress: Callable[[int], None] | None = None,
    done: tuple[dict, dict] | None = None,
) -> tuple[dict[str, tuple[list[np.ndarray], list[int]]], dict[str, list[tuple[str, str]]]]:
    """Every split decoded once: ({split: (images, labels)}, {split: [(key, why)]}), the one decode path of `fit`,
    `rank` and `advise`. `done` holds splits already decoded at this size and filter, in the same two dicts (what
    the advisor decoded under `auto`), reused as they are."""
    done_images, done_skipped = done or ({}, {})
    decoded, skipped = {}, {}
    budget, total = auto_budget(), max(1, sum(len(v) for v in splits.values()))
    for split, samples in splits.items():
        if split in done_images:
            decoded[split], skipped[split] = done_images[split], done_skipped[split]
            if progress:
                progress(len(samples))
            continue
        share = budget * len(samples) // total  # each split its share, so all of them together stay under the budget
        images, labels, skipped[split] = decode_samples(
            src, samples, short_side, interpolation, progress=progress, store=store, store_dir=store_dir, budget=share
        )
        decoded[split] = (images, labels)
    return decoded, skipped
