"""Data of any size in flat memory: `auto` decodes to the disk store past its memory budget and reads the same pixels
as the in-memory path; the disk store drops the pages it read; the check before `train` reads a seeded sample of
large data and says how many files it read."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import transferkit
from transferkit.data import decode, doctor, store
from transferkit.data.dataset import DecodedImages
from transferkit.data.decode import decode_splits
from transferkit.data.doctor import preflight, sample_splits
from transferkit.data.sources import open_source
from transferkit.data.split import make_splits
from transferkit.data.store import StoredImages

from .conftest import FAST, write_folder


class Messages:
    def __init__(self):
        self.lines = []

    def message(self, text):
        self.lines.append(text)


@pytest.fixture
def src(tmp_path):
    """300 tiny images in 3 classes, split 70/15/15."""
    root = write_folder(tmp_path / "d", per_class=100, size=24)
    s = open_source(root)
    s.splits = make_splits(s, (0.7, 0.15, 0.15), 0)
    return s


def _scale(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255


def test_small_budget_decodes_to_disk_and_reads_what_memory_holds(src, tmp_path, monkeypatch):
    mem, mem_bad = decode_splits(src, src.splits, 28, store="memory")
    monkeypatch.setattr(decode, "AUTO_MEMORY", 10 * 28 * 28 * 3)  # ten images: every split spills to the file
    disk, disk_bad = decode_splits(src, src.splits, 28, store="auto", store_dir=tmp_path / "store")
    assert mem_bad == disk_bad == {"train": [], "val": [], "test": []}
    released = []
    monkeypatch.setattr(store, "RESIDENT", 50 * 28 * 28 * 3)  # drop the mapping's pages every 50 images read
    monkeypatch.setattr(StoredImages, "release", lambda self, f=StoredImages.release: (released.append(1), f(self)))
    for split in src.splits:
        (m, ml), (d, dl) = mem[split], disk[split]
        assert type(m) is list and isinstance(d, StoredImages) and ml == dl and len(d) == len(src.splits[split])
        loader = DataLoader(DecodedImages(d, dl, _scale), batch_size=16)
        want = torch.stack([_scale(torch.from_numpy(a).permute(2, 0, 1)) for a in m])
        assert torch.equal(torch.cat([x for x, _ in loader]), want)  # the same pixels after pages were dropped
        assert all(np.array_equal(a, b) for a, b in zip(m, d, strict=True))  # iteration reads through release too
    assert len(released) >= 2 * 210 // 50  # train alone: 210 images read twice, 50 per release


def test_budget_is_shared_by_the_splits(src, monkeypatch):
    """Each split is held to its share of the budget, so all splits together never hold more than the budget."""
    one = 28 * 28 * 3
    monkeypatch.setattr(decode, "AUTO_MEMORY", 100 * one)  # 300 images: more than the budget in all, each split under
    out, _ = decode_splits(src, src.splits, 28, store="auto")
    held = sum(sum(a.nbytes for a in imgs) for imgs, _ in out.values() if not isinstance(imgs, StoredImages))
    assert held <= 100 * one and isinstance(out["train"][0], StoredImages)


def test_features_from_the_disk_store_equal_those_from_memory(src, tmp_path, monkeypatch):
    """What `linear` trains on: the backbone's features of every image, through the eval transform, bit for bit."""
    from transferkit.backbones import create_backbone
    from transferkit.data.transforms import eval_transform, resize_size
    from transferkit.engine.features import extract

    net, cfg = create_backbone("efficientnet_lite0")
    net.reset_classifier(0)  # pooled features, as TransferModel's backbone gives them
    tf = eval_transform(32, cfg.crop_pct, cfg.mean, cfg.std, cfg.interpolation)
    short = resize_size(32, cfg.crop_pct)
    val = {"val": src.splits["val"]}
    mem = decode_splits(src, val, short, cfg.interpolation, store="memory")[0]["val"]
    monkeypatch.setattr(store, "RESIDENT", 4096)  # pages dropped after every image or two
    disk = decode_splits(src, val, short, cfg.interpolation, store="disk", store_dir=tmp_path / "s")[0]["val"]
    assert isinstance(disk[0], StoredImages)
    args = (8, torch.device("cpu"), contextlib.nullcontext(), torch.contiguous_format)
    a, b = extract(net, DecodedImages(*mem, tf), *args), extract(net, DecodedImages(*disk, tf), *args)
    assert a.shape == (len(src.splits["val"]), net.num_features) and torch.equal(a, b)


def test_fit_under_a_small_budget_trains_from_the_disk_store(tmp_path, monkeypatch):
    writers = []

    class Counting(store.StoreWriter):
        def __init__(self, *a, **kw):
            writers.append(self)
            super().__init__(*a, **kw)

    monkeypatch.setattr(decode, "StoreWriter", Counting)
    monkeypatch.setattr(decode, "AUTO_MEMORY", 1)  # as if the data were 100,000 images
    root = write_folder(tmp_path / "small", per_class=20, size=24)
    run = transferkit.fit(root, strategy="linear", out=str(tmp_path / "runs"), **FAST)
    assert len(writers) == 3  # train, val and test each went to a file as they were decoded
    assert run.test_metrics["accuracy"] >= 0.8  # colours and a square: learnt from the file as from memory
    assert list((tmp_path / "feature-cache" / "decoded").iterdir()) == []  # the files went with the run


def test_sample_is_seeded_in_order_and_covers_every_split(src):
    picked = sample_splits(src.splits, 60)
    assert sum(len(v) for v in picked.values()) == 60 and picked == sample_splits(src.splits, 60)
    for split, samples in picked.items():
        order = [src.splits[split].index(s) for s in samples]
        assert order == sorted(order) and samples  # a subset, in listing order; no split left out at this size
    assert sample_splits(src.splits, 300) is src.splits and sample_splits(src.splits, None) is src.splits


def test_preflight_reads_a_sample_of_large_data_and_says_so(src, monkeypatch):
    monkeypatch.setattr(doctor, "PREFLIGHT_FILES", 50)
    (src.root / "red" / "red_07.png").write_bytes(b"")  # one broken file: maybe sampled, always counted
    said = Messages()
    report = preflight(src, src.splits, said)
    assert (report.files, report.listed) == (50, 300)
    assert said.lines[0].startswith("Checked a seeded sample of 50 of the 300 files in ")
    assert sum(sum(c.values()) for c in report.counts.values()) == 300  # class counts cover every file
    with pytest.raises(transferkit.errors.TransferkitError, match="--strict"):
        preflight(src, src.splits, Messages(), strict=True)  # strict reads every file, so it finds the broken one
    monkeypatch.setattr(doctor, "PREFLIGHT_FILES", 5000)
    small = preflight(src, src.splits, said)
    assert (small.files, small.listed) == (300, 300) and said.lines[-1].startswith("Checked 300 files in ")
