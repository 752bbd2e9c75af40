"""Shared fixtures: tiny image folders made in the test, the real data beside the repo, an isolated feature cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Three classes told apart by colour and a shape, so that even a 1-epoch head learns them.
COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFERKIT_CACHE", str(tmp_path / "feature-cache"))


def make_image(rng: np.random.Generator, colour, size=40) -> Image.Image:
    a = rng.integers(0, 60, (size, size, 3)).astype(np.int16)
    c = size // 2
    r = rng.integers(size // 5, size // 3)
    a[c - r : c + r, c - r : c + r] += np.array(colour, dtype=np.int16)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def write_folder(
    root: Path, per_class: int = 12, classes=("red", "green", "blue"), seed: int = 0, size: int = 40
) -> Path:
    rng = np.random.default_rng(seed)
    for name in classes:
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            make_image(rng, COLOURS[name], size).save(d / f"{name}_{i:02d}.png")
    return root


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    return write_folder(tmp_path / "colours")


@pytest.fixture
def tiny_presplit(tmp_path) -> Path:
    root = tmp_path / "presplit"
    write_folder(root / "train", per_class=10, seed=1)
    write_folder(root / "val", per_class=5, seed=2)
    write_folder(root / "test", per_class=5, seed=3)
    return root


def shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data '{name}' is not at {path} (it is beside the repo in CI: ../shared/data)")
    return path


def files_state(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under root: to prove a run changed none of the user's files."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


FAST = {"image_size": 32, "quiet": True}  # fit() settings that keep a unit test to a few seconds


def store_rows(cache: Path) -> dict[str, int]:
    """The feature store under a cache folder (core/store.py): its folders (one per backbone configuration, view
    and precision) and how many images each indexes."""
    import sqlite3

    out = {}
    for index in sorted((Path(cache) / "store").glob("*/index.sqlite")):
        con = sqlite3.connect(index)
        out[index.parent.name] = con.execute("select count(*) from entries").fetchone()[0]
        con.close()
    return out
