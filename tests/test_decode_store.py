"""Decoded images on disk (one memory-mapped file) match those in memory, and read the same through a DataLoader."""

from __future__ import annotations

import gc
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from transferkit.data import decode
from transferkit.data.dataset import DecodedImages
from transferkit.data.decode import decode_samples
from transferkit.data.sources import open_source
from transferkit.data.store import StoredImages
from transferkit.errors import ConfigError

from .conftest import write_folder


@pytest.fixture
def src(tmp_path):
    """Three classes with images of several shapes (so offsets differ) and one corrupt file in the middle."""
    root = write_folder(tmp_path / "d", per_class=6)
    rng = np.random.default_rng(5)
    for i, (w, h) in enumerate([(50, 30), (31, 64), (45, 45)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "green" / f"odd_{i}.png")
    (root / "red" / "red_03.png").write_bytes(b"not a png")
    return open_source(root)


def _files(d) -> list[str]:
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def _decode(src, **kw):
    return decode_samples(src, src.splits["all"], 24, "bicubic", workers=2, **kw)


def test_disk_matches_memory_bit_for_bit_and_file_is_removed(src, tmp_path):
    mem, mem_labels, mem_skipped = _decode(src, store="memory")
    disk, disk_labels, disk_skipped = _decode(src, store="disk", store_dir=tmp_path / "store")
    assert type(mem) is list and isinstance(disk, StoredImages)
    assert len(mem) == len(src.splits["all"]) - 1 and len({a.shape for a in mem}) > 1
    assert disk_labels == mem_labels and disk_skipped == mem_skipped and len(mem_skipped) == 1
    assert mem_skipped[0][0].endswith("red_03.png")
    for a, b in zip(mem, disk, strict=True):
        assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape and np.array_equal(a, b)
        assert b.flags.writeable and b.flags.c_contiguous  # torch.from_numpy takes it without a copy or a warning
    (name,) = _files(tmp_path / "store")
    assert os.path.getsize(tmp_path / "store" / name) == sum(a.nbytes for a in mem)
    disk[0][0, 0, 0] ^= 1  # copy-on-write: the file keeps the decoded pixels
    assert np.array_equal(pickle.loads(pickle.dumps(disk))[0], mem[0])
    del disk
    gc.collect()
    assert _files(tmp_path / "store") == []


def test_auto_picks_disk_over_budget_and_memory_under_it(src, tmp_path, monkeypatch):
    mem, labels, _ = _decode(src, store="memory")
    under, _, _ = _decode(src, budget=10**12)
    assert type(under) is list
    one_image = mem[0].nbytes
    for budget in (0, 5 * one_image):  # over budget at once; and after a few images are already held (spilled)
        over, over_labels, _ = _decode(src, budget=budget, store_dir=tmp_path / "s")
        assert isinstance(over, StoredImages) and over_labels == labels
        assert all(np.array_equal(a, b) for a, b in zip(mem, over, strict=True))
    monkeypatch.setattr(decode, "memory_budget", lambda: 1)  # the default budget comes from this function
    assert isinstance(_decode(src, store_dir=tmp_path / "s")[0], StoredImages)


def test_nothing_readable_and_errors_leave_no_file(src, tmp_path):
    bad = [s for s in src.splits["all"] if s.key.endswith("red_03.png")]
    images, labels, skipped = decode_samples(src, bad, 24, store="disk", store_dir=tmp_path / "s")
    assert images == [] and labels == [] and len(skipped) == 1

    def interrupt(_n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _decode(src, store="disk", store_dir=tmp_path / "s", progress=interrupt)
    assert _files(tmp_path / "s") == []
    with pytest.raises(ConfigError, match="Did you mean: disk"):
        _decode(src, store="dsk")


def _scale(x: torch.Tensor) -> torch.Tensor:  # module level: picklable for DataLoader workers
    return x.float() / 255


def test_decoded_images_over_disk_store_through_dataloader(src, tmp_path):
    mem, labels, _ = _decode(src, store="memory")
    disk, _, _ = _decode(src, store="disk", store_dir=tmp_path / "s")
    ref, ds = DecodedImages(mem, labels, _scale), DecodedImages(disk, labels, _scale)
    for i in range(len(ref)):
        assert torch.equal(ref[i][0], ds[i][0]) and ref[i][1] == ds[i][1]
    assert len(pickle.dumps(ds)) < 2000  # workers under spawn/forkserver re-map the file, not copy the pixels
    square = [s for s in src.splits["all"] if "odd_" not in s.key]  # same shapes, so batches stack
    mem, labels, _ = decode_samples(src, square, 24, store="memory")
    disk, _, _ = decode_samples(src, square, 24, store="disk", store_dir=tmp_path / "s")
    want = torch.stack([_scale(torch.from_numpy(a).permute(2, 0, 1)) for a in mem])
    for workers in (0, 2):
        loader = DataLoader(DecodedImages(disk, labels, _scale), batch_size=4, num_workers=workers)
        got = torch.cat([x for x, _ in loader])
        assert torch.equal(got, want)
