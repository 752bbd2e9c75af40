"""Heads on stored features cost less than extracting them, on a quiet and on a busy machine:

    python benchmarks/heads.py                    # 4,000 EuroSAT-style tiles at 32 px; writes its BENCHMARKS.md section
    python benchmarks/heads.py --n 1000 --no-write

Targets (issue "Images -> features -> heads", item 3): `fit_head` (both solvers, the better kept) at most the
extraction's time, also while other processes keep both cores busy; `oof_predict` with 5 folds at most 3x one
`fit_head`. The images are EuroSAT's 1,000 tiles (../shared/data/eurosat) each 4 times, flipped and rotated, so the
4,000 are different images to the store; `busy` runs two spinning processes beside the measurement, as a second job
on the same 2 cores would.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import machine, write_section  # noqa: E402

ROOT = HERE.parent


def spin(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def tiles(source: Path, dest: Path, n: int) -> Path:
    """n images from the EuroSAT tiles: each tile as it is, mirrored, and turned 90 / 180 degrees."""
    from PIL import Image

    files = sorted(source.glob("*/*.jpg"))
    ops = [
        lambda im: im,
        lambda im: im.transpose(Image.FLIP_LEFT_RIGHT),
        lambda im: im.rotate(90),
        lambda im: im.rotate(180),
    ]
    for i in range(n):
        f = files[i % len(files)]
        out = dest / f.parent.name / f"{i:05d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        ops[(i // len(files)) % 4](Image.open(f).convert("RGB")).save(out)
    return dest


def measure(folder: Path, cache: Path) -> dict:
    import numpy as np

    from transferkit.core.embed import embed
    from transferkit.core.heads import fit_head
    from transferkit.core.oof import oof_predict

    t = time.perf_counter()
    emb = embed(folder, image_size=32, cache_dir=str(cache))
    extract = time.perf_counter() - t
    names = sorted({Path(k).parent.name for k in emb.keys})
    y = np.array([names.index(Path(k).parent.name) for k in emb.keys])
    t = time.perf_counter()
    fitted = fit_head(emb.features, y)
    head = time.perf_counter() - t
    t = time.perf_counter()
    oof = oof_predict(emb.features, y, k=5)
    folds = time.perf_counter() - t
    return {
        "extract": extract,
        "fit_head": head,
        "oof": folds,
        "solver": fitted.solver,
        "oof_acc": oof.metrics["accuracy"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "eurosat"))
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    rows = {"quiet": [], "busy": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = tiles(Path(a.data), Path(tmp) / "tiles", a.n)
        for i in range(a.repeats):
            for load in ("quiet", "busy"):
                stop = mp.Event()
                spinners = [mp.Process(target=spin, args=(stop,)) for _ in range(2 if load == "busy" else 0)]
                for p in spinners:
                    p.start()
                try:
                    r = measure(folder, Path(tmp) / f"cache-{load}-{i}")  # a cold store: the extraction is paid
                finally:
                    stop.set()
                    for p in spinners:
                        p.join()
                rows[load].append(r)
                print(load, i, {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}, flush=True)

    def med(load: str, key: str) -> float:
        return statistics.median(r[key] for r in rows[load])

    lines = [
        "<!-- heads:begin -->",
        "## Heads on stored features: cheaper than extracting them, also on a busy machine",
        "",
        f"`python benchmarks/heads.py --n {a.n} --repeats {a.repeats}`: {a.n} EuroSAT tiles (each of the 1,000 as it is,",
        "mirrored and turned) at 32 px, efficientnet_lite0, cold store; `busy`: two spinning processes share the 2",
        f"cores throughout. Medians of {a.repeats}. Machine: {machine()}.",
        "",
        "| machine | extraction s | `fit_head` s (both solvers) | `oof_predict` 5 folds s | fit_head / extraction | oof / fit_head |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for load in ("quiet", "busy"):
        e, h, o = med(load, "extract"), med(load, "fit_head"), med(load, "oof")
        lines.append(f"| {load} | {e:.1f} | {h:.1f} | {o:.1f} | {h / e:.2f}x | {o / h:.2f}x |")
    met = all(med(m, "fit_head") <= med(m, "extract") and med(m, "oof") <= 3 * med(m, "fit_head") for m in rows)
    lines += [
        "",
        f"Targets ({'met' if met else '**missed**'}): fit_head <= 1x the extraction (quiet and busy), oof_predict <= 3x "
        "fit_head. Out-of-fold accuracy "
        f"{statistics.median(r['oof_acc'] for r in rows['quiet']):.3f}; solver kept: "
        f"{', '.join(sorted({r['solver'] for v in rows.values() for r in v}))}.",
        "<!-- heads:end -->",
    ]
    block = "\n".join(lines)
    print(block)
    if not a.no_write:
        write_section(ROOT / "BENCHMARKS.md", "heads", block)


if __name__ == "__main__":
    main()
