"""The transfer chain on real data: ImageNet -> a proxy task with plentiful labels -> a scarce target, against direct
transfer from ImageNet to the same target on the same splits.

    .venv/bin/python examples/transfer_chain/chain.py            # the README's table and plot (results.json, chain.png)
    .venv/bin/python examples/transfer_chain/chain.py --quick    # one split, tiny settings: tests/test_transfer_chain.py

Data: ../shared/data/houses, 535 frontal photos with their listing (price, bedrooms, bathrooms, area, zipcode).
Per seed:
1. The houses are split into a target test set (133), a val set (50) and the rest. Duplicate photos and listings
   (the data's README lists them) are glued into groups first, and a group is never cut by a split.
2. The proxy: log(area), a listing fact known for every house, predicted from the photo. transferkit fine-tunes
   efficientnet_lite0 (ImageNet weights) on every house outside the test and val sets (352), its val set the 50.
   No test photo is seen by the proxy.
3. The target: log(price) from only 50 or 100 of those houses (the same 50 inside the 100), the 50 val houses to pick
   the ridge penalty, the 133 test houses to score. Two arms, both `strategy="linear"` (ridge on frozen features,
   closed form), so the only difference is the body under the head:
     direct   efficientnet_lite0 with its ImageNet weights
     chain    the proxy's fine-tuned body (`backbone="bundle:<proxy run>/best"`)
Uses transferkit's public API (fit, with list files written to a temporary folder) and numpy/scipy.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

import transferkit

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1].parent / "shared" / "data" / "houses"  # ../shared/data/houses, beside the repository
BACKBONE = "efficientnet_lite0"
IMAGE_SIZE = 128  # fine-tuning: ~16 ms per image on 2 quiet cores; 224 px has 3x the pixels
TEST, VAL = 133, 50  # 25% of the 533 usable houses are test; 50 val houses pick the ridge penalty
SIZES = (50, 100)  # scarce target labels
# Glued into one group each (README of the data): byte-identical photos, near-identical photos, identical listings
SAME = [(59, 72), (199, 214), (292, 293), (331, 351), (11, 30), (12, 32), (232, 266), (270, 305), (345, 353)]
PRICE_ERRORS = {153, 157}  # 22,000 and 1,795,000 among 164,000-449,900 in their zipcode: never a target label
# The proxy's fine-tuning: 352 images x 2 epochs x ~16 ms = 11 s per seed on quiet cores
# (40-60 s per epoch when the cores are shared)
PROXY = dict(strategy="finetune", epochs=2, lr=3e-3, backbone_lr_mult=0.1, crop_scale=(0.6, 1.0), patience=0)


# ---- data and splits -----------------------------------------------------------------------------------------------


def read_houses(data: Path) -> list[dict]:
    rows = list(csv.DictReader((data / "labels.csv").read_text().splitlines()))
    for r in rows:
        r["id"] = int(r["house_id"])
        r["image"] = str((data / r["path"]).resolve())
        r["log_area"] = math.log(float(r["area"]))
    return rows


def groups(ids: list[int]) -> list[list[int]]:
    """Houses that must stay on one side of every split, as lists (most of them of one house)."""
    owner = {i: [i] for i in ids}
    for a, b in (pair for pair in SAME if set(pair) <= owner.keys()):
        merged = owner[a] + [h for h in owner[b] if h not in owner[a]]
        for h in merged:
            owner[h] = merged
    return list({id(g): sorted(g) for g in owner.values()}.values())


def make_split(ids: list[int], seed: int, test: int = TEST, val: int = VAL) -> dict[str, list[int]]:
    """test, val, train (the target's 100, then the rest), by whole groups in a seeded random order.
    The target's train houses come first in `train`, so train[:50] is inside train[:100]."""
    rng = np.random.default_rng(seed)
    glued = groups(ids)
    order = [glued[i] for i in rng.permutation(len(glued))]
    eligible = [g for g in order if not PRICE_ERRORS & set(g)]  # price errors: proxy training only
    parts: dict[str, list[int]] = {"test": [], "val": []}
    rest = []
    for g in eligible:
        for part, want in (("test", test), ("val", val)):
            if len(parts[part]) + len(g) <= want:
                parts[part] += g
                break
        else:
            rest += g
    parts["train"] = rest + [h for g in order if PRICE_ERRORS & set(g) for h in g]
    return parts


def write_list(path: Path, houses: list[dict], column: str) -> None:
    """A transferkit list file: absolute image paths, the target column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"path,{column}"] + [f"{h['image']},{h[column]}" for h in houses]
    path.write_text("\n".join(lines) + "\n")


def split_keys(run) -> dict[str, set[str]]:
    """The images each part of a run held (its split.csv), by path."""
    parts: dict[str, set[str]] = {}
    for row in csv.DictReader((run.path / "split.csv").read_text().splitlines()):
        parts.setdefault(row["split"], set()).add(str(Path(row["key"]).resolve()))
    return parts


# ---- one seed ------------------------------------------------------------------------------------------------------


def run_seed(seed: int, houses: list[dict], sizes, parts_sizes, proxy: dict, image_size: int, threads: int, work: Path):
    by_id = {h["id"]: h for h in houses}
    parts = make_split(list(by_id), seed, *parts_sizes)
    test, val = [by_id[i] for i in parts["test"]], [by_id[i] for i in parts["val"]]
    common = dict(image_size=image_size, threads=threads, cache_dir=str(work / "cache"), quiet=True, seed=seed)

    lists = work / f"seed{seed}"
    write_list(lists / "proxy" / "train.csv", [by_id[i] for i in parts["train"]], "log_area")
    write_list(lists / "proxy" / "val.csv", val, "log_area")
    t0 = time.perf_counter()
    out = str(work / "runs")
    proxy_run = transferkit.fit(
        str(lists / "proxy"),
        task="regression",
        target_column="log_area",
        out=out,
        name=f"proxy-{seed}",
        **proxy,
        **common,
    )
    seen = set().union(*split_keys(proxy_run).values())
    leaked = seen & {h["image"] for h in test}
    assert not leaked, f"the proxy saw {len(leaked)} test images"  # the chain's premise: tested on unseen photos
    # The proxy's frozen-feature baseline: what fine-tuning on log(area) added to ImageNet's features, on the same val
    proxy_ridge = transferkit.fit(
        str(lists / "proxy"),
        task="regression",
        target_column="log_area",
        strategy="linear",
        out=out,
        name=f"proxy-ridge-{seed}",
        **common,
    )
    rows = [
        {
            "seed": seed,
            "what": "proxy",
            "train": len(parts["train"]),
            "val_r2": proxy_run.test_metrics["r2"],
            "val_r2_ridge": proxy_ridge.test_metrics["r2"],
            "seconds": round(time.perf_counter() - t0, 1),
            "run": str(proxy_run.path),
        }
    ]
    print(
        f"seed {seed}: proxy log(area) val R² {rows[0]['val_r2']:.3f} fine-tuned, {rows[0]['val_r2_ridge']:.3f} "
        f"ridge on ImageNet features ({rows[0]['seconds']:.0f} s)",
        flush=True,
    )
    arms = {"direct": BACKBONE, "chain": f"bundle:{proxy_run.best}"}
    for n in sizes:
        target = lists / f"target{n}"
        write_list(target / "train.csv", [by_id[i] for i in parts["train"][:n]], "log_price")
        write_list(target / "val.csv", val, "log_price")
        write_list(target / "test.csv", test, "log_price")
        for arm, backbone in arms.items():
            run = transferkit.fit(
                str(target),
                task="regression",
                target_column="log_price",
                strategy="linear",
                backbone=backbone,
                out=out,
                name=f"{arm}-{n}-{seed}",
                **common,
            )
            assert run.eval_split == "test"
            m = run.test_metrics
            rows.append(
                {"seed": seed, "what": arm, "n": n, "r2": m["r2"], "rmse": m["rmse"], "test": m["n"],
                 "rmse_of_mean": m["rmse_of_mean"], "backbone": backbone, "run": str(run.path)}
            )  # fmt: skip
        d, c = rows[-2], rows[-1]
        print(f"  {n:>3} houses: R² direct {d['r2']:.3f}, chain {c['r2']:.3f}", flush=True)
    return rows


# ---- the table and the plot ----------------------------------------------------------------------------------------


def mean_ci(values) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval over seeds (0 for one seed)."""
    from scipy import stats

    v = np.asarray(list(values), dtype=float)
    if len(v) < 2:
        return float(v.mean()), 0.0
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def cell(values, digits: int = 3) -> str:
    m, ci = mean_ci(values)
    return f"{m:.{digits}f} ± {ci:.{digits}f}"


def table(rows: list[dict]) -> str:
    """Markdown: per number of target labels, test R² and RMSE of both arms and the chain's paired difference."""
    seeds = sorted({r["seed"] for r in rows})
    proxy = [r for r in rows if r["what"] == "proxy"]
    lines = [
        f"{len(seeds)} split(s); mean ± half-width of the 95% t-interval over splits. Proxy log(area), val R²: "
        f"fine-tuned {cell(r['val_r2'] for r in proxy)}, ridge on ImageNet features "
        f"{cell(r['val_r2_ridge'] for r in proxy)}.",
        "",
        "| target labels | R² direct | R² chain | R² chain − direct | RMSE direct | RMSE chain | RMSE chain − direct |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sorted({r["n"] for r in rows if "n" in r}):
        arm = {a: sorted((r for r in rows if r.get("n") == n and r["what"] == a), key=lambda r: r["seed"])
               for a in ("direct", "chain")}  # fmt: skip
        cells = []
        for key in ("r2", "rmse"):
            d, c = [r[key] for r in arm["direct"]], [r[key] for r in arm["chain"]]
            cells += [cell(d), cell(c), cell(np.subtract(c, d))]  # paired: the same split, test houses, val houses
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    mean_rmse = mean_ci(r["rmse_of_mean"] for r in rows if "n" in r)[0]
    lines += ["", f"Predicting the training mean: RMSE {mean_rmse:.3f} (R² ≈ 0)."]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["n"] for r in rows if "n" in r})
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for k, (arm, colour) in enumerate((("direct", "tab:blue"), ("chain", "tab:orange"))):
        for i, n in enumerate(sizes):
            r2 = [r["r2"] for r in rows if r.get("n") == n and r["what"] == arm]
            x = i + (k - 0.5) * 0.3
            ax.scatter(np.full(len(r2), x), r2, color=colour, alpha=0.4, s=14)
            m, ci = mean_ci(r2)
            ax.errorbar(x, m, yerr=ci, fmt="o", color=colour, capsize=4, label=arm if i == 0 else None)
    ax.set_xticks(range(len(sizes)), [f"{n} houses" for n in sizes])
    ax.set_ylabel("test R² of log(price)")
    ax.set_title("ImageNet → target vs ImageNet → log(area) → target", fontsize=9)
    ax.axhline(0, color="grey", lw=0.8)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--proxy-epochs", type=int, default=PROXY["epochs"])
    p.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    p.add_argument("--threads", type=int, default=2, help="torch threads (1 on a busy machine)")
    p.add_argument(
        "--out",
        type=Path,
        help=f"where results.json and chain.png go (default: {HERE}; with --quick a temporary folder)",
    )
    p.add_argument("--work", type=Path, help="keep the list files and runs here (default: a temporary folder)")
    p.add_argument("--quick", action="store_true", help="houses 1-200, one split, 50 target houses, 1 epoch at 64 px")
    a = p.parse_args(argv)
    # --quick's one-seed numbers never replace the published results.json and plot beside this script
    a.out = a.out or (Path(tempfile.mkdtemp(prefix="transferkit-quick-")) if a.quick else HERE)
    houses, sizes, parts_sizes = read_houses(a.data), SIZES, (TEST, VAL)
    if a.quick:  # 200 houses to decode instead of 535: 50 test, 25 val, 125 for the proxy
        a.seeds, a.proxy_epochs, a.image_size = 1, 1, 64
        houses, sizes, parts_sizes = [h for h in houses if h["id"] <= 200], (50,), (50, 25)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or Path(tmp)
        rows = []
        for seed in range(a.seeds):
            rows += run_seed(
                seed, houses, sizes, parts_sizes, {**PROXY, "epochs": a.proxy_epochs}, a.image_size, a.threads, work
            )
    a.out.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "table": table(rows), "wall_seconds": round(time.perf_counter() - started)}
    kept = [{k: v for k, v in r.items() if k not in ("run", "backbone")} for r in rows]  # no temporary paths
    (a.out / "results.json").write_text(json.dumps({**result, "rows": kept}, indent=1))
    plot(rows, a.out / "chain.png")
    print(result["table"])
    print(f"{result['wall_seconds']} s; wrote {a.out / 'results.json'} and {a.out / 'chain.png'}")
    return result


if __name__ == "__main__":
    main()
