"""Backbone features through the feature store (core/store.py): one row per image, computed once per image, backbone
configuration, precision and view, whatever split, fold, seed or label it comes with.

    out, seconds = cached_features(net, dataset, ids=ids, config=store_config(cfg, bcfg, size), ...)

`fit` (cached phases), `rank`, `advise` and `embed` all come here: an image whose features are in the store is never
run through the backbone again, a new one is appended.
"""

from __future__ import annotations

import contextlib
import hashlib
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset


@torch.no_grad()
def extract(
    net: nn.Module, dataset, batch_size: int, device, autocast, memory_format, on_batch=lambda n=1: None
) -> torch.Tensor:
    """Pooled features (N, F) in float32 on the CPU, for every item of `dataset` in order; a tuple of such matrices
    for a net that returns a tuple (depth.with_last: two feature sets from one pass).

    Each batch is written into its rows of one (N, F) matrix made at the first batch: a list of batches joined by
    torch.cat would hold the features twice at the end (50,000 x 1,280 floats = 256 MB, twice)."""
    net.eval()
    outs, row = [], 0
    for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        with autocast:
            got = net(x)
        parts = [f.float().cpu() for f in (got if isinstance(got, tuple) else (got,))]
        if row == 0:
            outs = [torch.empty((len(dataset), *f.shape[1:]), dtype=f.dtype) for f in parts]
        for out, f in zip(outs, parts):
            out[row : row + len(f)] = f
        row += len(parts[0])
        on_batch(1)
    if not outs:
        return torch.empty(0)
    return tuple(outs) if isinstance(got, tuple) else outs[0]


class SeededViews(Dataset):
    """An augmenting dataset whose draws for item i come from seeds[i]: a view of an image is the same pixels
    whichever run, split, position or process extracts it, so it can be stored by the image's identity."""

    def __init__(self, dataset, seeds: list[int]):
        self.dataset, self.seeds = dataset, seeds

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        torch.manual_seed(self.seeds[i])
        return self.dataset[i]


def view_seeds(ids: list[str], view: int, seed: int) -> list[int]:
    """One seed per image for augmented view `view` under the run's seed (a hash, stable across processes)."""
    return [
        int.from_bytes(hashlib.blake2b(f"{i}|{view}|{seed}".encode(), digest_size=8).digest(), "little") for i in ids
    ]


def cached_features(
    net: nn.Module,
    dataset,
    *,
    ids: list[str],
    config: dict,
    cache_dir: str | None,
    batch_size: int,
    device,
    precision: str,
    memory_format,
    reporter,
    label: str,
    view: dict | None = None,
    side: dict | None = None,
) -> tuple[torch.Tensor, float | None]:
    """(pooled features (N, F) float32 of `dataset`'s items, seconds per extracted image or None when nothing was
    extracted). ids[i] is item i's identity (data/imageset.py); config the backbone configuration
    (`store_config`). view: `view_config(cfg, v)` of an augmented view v >= 1 (`dataset` augments), each image's
    drawn under a seed of its own (`view_seeds`), so views are stored by image too.

    Launched on N processes (torchrun, accelerate launch) every process calls this together: the images missing
    from the store are shared out (each extracts its contiguous 1/N), every process gets all rows, and only the
    main process appends to the store. A process whose store lacks other rows than the main one's (a node's own
    cache folder) makes all of them extract every image.

    side: the `store_config` of a second feature set `net` returns from the same pass (net(x) -> (these, those):
    depth.with_last); the rows extracted here are stored under it too (one process only), so a later call for it
    extracts nothing."""
    from .fuse import folded
    from .runtime import autocast_for, processes

    if len(ids) != len(dataset):
        raise ValueError(f"{len(ids)} identities for {len(dataset)} images")
    procs = processes()
    if view:
        dataset = SeededViews(dataset, view_seeds(ids, view["view"], view["view_seed"]))
    store = open_store(cache_dir, config, precision, view)
    on = f", {procs.num_processes} processes" if procs.num_processes > 1 else ""
    timed: list[float] = []

    def compute(missing: np.ndarray) -> np.ndarray:
        """The features of dataset[missing], this process's share extracted, every process's gathered."""
        lo, hi = procs.shard(len(missing))
        share = Subset(dataset, missing[lo:hi].tolist())
        start = time.perf_counter()
        views = torch.random.fork_rng(devices=[]) if view else contextlib.nullcontext()  # the caller's RNG untouched
        with reporter.task(f"Features ({label}, {precision}{on})", len(missing)) as advance, views:
            example = share[0][0][None].to(device).contiguous(memory_format=memory_format) if len(share) else None
            new = extract(
                # BatchNorms folded: 1.2x faster (fuse.py), where the pass is long enough to pay for the folding
                folded(net, example, len(share) * example[0, 0].numel()) if example is not None else net,
                share,
                batch_size,
                device,
                autocast_for(precision, device.type),
                memory_format,
                on_batch=lambda n=1: advance(batch_size * procs.num_processes),
            )
        timed.append((time.perf_counter() - start) / max(1, hi - lo))
        if isinstance(new, tuple):  # a net giving a second feature set from the same pass (`side`)
            new, other = new
            if side is not None and procs.num_processes == 1:
                _store_side(open_store(cache_dir, side, precision, view), [ids[i] for i in missing], other, reporter)
        return procs.gather_rows(new).numpy()  # every process's share, in order: all missing rows

    if procs.num_processes == 1:  # the store reads what it holds (checked) and appends what `compute` makes
        out, _ = store.get_or_compute(ids, compute)
        return torch.from_numpy(np.ascontiguousarray(out)), (timed[0] if timed else None)
    # Launched: every process must extract the same images together, so the main one's view of the store decides.
    rows = store.verified(ids)
    missing = np.flatnonzero(rows < 0)
    main_missing = procs.from_main(missing)
    if not procs.all_true(np.array_equal(missing, main_missing)):
        missing = np.arange(len(ids))
    new = compute(missing) if len(missing) else None
    if new is not None and procs.is_main_process:
        try:
            store.append([ids[i] for i in missing], new)
        except OSError as e:  # a read-only or full cache folder slows the next run, nothing more
            reporter.message(f"note: could not write the feature store at {store.path}: {e}")
    out = np.empty((len(ids), store.dim or (new.shape[1] if new is not None else 0)), dtype=np.float32)
    keep = np.setdiff1d(np.flatnonzero(rows >= 0), missing, assume_unique=True)
    if len(keep):
        out[keep] = store.read(rows[keep])
    if new is not None:
        out[missing] = new
    return torch.from_numpy(out), (timed[0] if timed else None)


def _store_side(store, ids: list[str], rows: torch.Tensor, reporter) -> None:
    """Append the rows of the second feature set (ids it holds already keep theirs)."""
    import sqlite3

    try:
        store.append(ids, rows.numpy())
    except (OSError, sqlite3.Error) as e:  # a read-only or full cache folder: that set is extracted when asked for
        reporter.message(f"note: could not write the feature store at {store.path}: {e}")


def open_store(cache_dir: str | None, config: dict, precision: str, view: dict | None = None):
    """The feature store's folder for a backbone configuration (`store_config`), a precision and a view
    (`view_config`): the one place its key is made, so `fit`, `embed` and the checks before decoding agree."""
    from ..core.store import FeatureStore, store_root
    from ..options import check_cache_dir

    check_cache_dir(cache_dir)  # embed(cache_dir=...) and $TRANSFERKIT_CACHE reach here without `validate`
    return FeatureStore(store_root(cache_dir), {**config, "precision": precision, **(view or {})})


def view_config(cfg, view: int) -> dict:
    """What an augmented view's features depend on besides the image and the backbone: its number, the run's seed
    and the augmentation; {} for the plain eval crop (view 0)."""
    if not view:
        return {}
    d = cfg.data
    return {
        "view": view,
        "view_seed": cfg.train.seed,
        "augment": [d.crop_scale, d.flip, d.rotate, d.color_jitter, d.augment],
    }


def store_config(cfg, bcfg, size: int) -> dict:
    """What a feature depends on besides the image: the backbone's weights and the preprocessing. Never the data,
    its split or its labels."""
    from pathlib import Path

    weights = bcfg.extra.get("weights_key")  # a builder that loads a local file says which (bundle:, file:)
    if not weights and cfg.model.backbone.startswith("file:"):
        p = Path(cfg.model.backbone[5:]).expanduser()
        st = p.stat() if p.exists() else None
        weights = f"{p.resolve()}|{st.st_size if st else 0}|{st.st_mtime_ns if st else 0}|{cfg.model.arch}"
    config = {
        "backbone": bcfg.name,
        "weights": weights or cfg.model.backbone,
        "size": size,
        "crop": bcfg.crop_pct,
        "interpolation": bcfg.interpolation,
        "mean": list(bcfg.mean),
        "std": list(bcfg.std),
    }
    depth = bcfg.extra.get("depth")  # features from several depths (backbones/depth.py): another matrix, folder
    if depth:  # only then: the last layer's folders keep the names they always had
        config["depth"] = [*depth["stages"], *(["last"] if depth["last"] else [])]
    return config
