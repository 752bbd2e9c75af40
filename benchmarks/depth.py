"""Features from every depth (`--features`) against the last layer, and two built-in backbones concatenated, on
identical splits: a mean with its 95% interval per row, the paired difference to the last layer, seconds per run.

    python benchmarks/depth.py                                   # 4 sets x 5 splits (ants/bees, cat/non-cat: 5 seeds)
    python benchmarks/depth.py --sets eurosat --repeats 2        # development
    python benchmarks/depth.py --json runs/depth.json --md runs/depth.md
    python benchmarks/depth.py --auto-cost --sets eurosat,hymenoptera   # auto vs the run it chose, whole processes

Rows: `linear` (the last layer, today's default), `stages` (`--features stages`: lite0's blocks 2-6 pooled, 744
features, the head standardised per feature, the input at 3x the data's side up to 224: backbones/depth.py), `stages+last` (those and the last layer's 1,280), `concat` (lite0's and lite1's last layers side by side,
2,560 features, the same L-BFGS logistic head `linear` fits, L2 picked on val). Every row is `linear` on
efficientnet_lite0 at the input size that follows the data. The split machinery, sets and seeds are benchmarks/accuracy.py's: repeat i of a
set is the same split in both benchmarks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import accuracy as acc  # noqa: E402 - the suite, its splits and the transferkit row runner

ROWS = {
    "linear": acc.Row("linear, last layer (default)", "tk", {"strategy": "linear"}),
    "stages": acc.Row("linear, --features stages", "tk", {"strategy": "linear", "features": "stages"}),
    "stages+last": acc.Row("linear, --features stages+last", "tk", {"strategy": "linear", "features": "stages+last"}),
    "concat": acc.Row("linear on lite0 + lite1 last layers concatenated", "concat"),
}
CONCAT = ("efficientnet_lite0", "efficientnet_lite1")


def run_concat(fixed, seed: int, row, work: Path, tag: str) -> dict:
    """Frozen features of each backbone (train, val and the scored split), side by side, one logistic head."""
    import numpy as np
    import torch

    from transferkit.config import RunConfig
    from transferkit.core.heads import fit_head
    from transferkit.selection.frozen import frozen_features, open_data

    start = time.perf_counter()
    cfg = RunConfig()
    cfg.runtime.cache_dir, cfg.train.seed, cfg.quiet = str(work / "cache" / tag.rsplit("-s", 1)[0]), seed, True
    parts = {"train": [], "val": [], "eval": []}
    scored = fixed
    if acc.eval_split(fixed) == "test":
        scored = dataclasses.replace(fixed, splits={"train": fixed.splits["train"], "val": fixed.splits["test"]})
    for name in CONCAT:
        ff = frozen_features(open_data(fixed, cfg), name, cfg)
        fe = frozen_features(open_data(scored, cfg), name, cfg) if scored is not fixed else ff
        parts["train"].append(ff.train)
        parts["val"].append(ff.val)
        parts["eval"].append(fe.val)
        labels = (ff.train_labels, ff.val_labels, fe.val_labels)
    x = {k: torch.from_numpy(np.concatenate(v, 1)) for k, v in parts.items()}
    y = [torch.from_numpy(np.asarray(v)) for v in labels]
    fitted = fit_head(x["train"], y[0], "classification", val=(x["val"], y[1]), solver="lbfgs")
    accuracy = float((fitted.logits(x["eval"]).argmax(1) == y[2]).float().mean())
    return {"accuracy": accuracy, "seconds": time.perf_counter() - start, "resolved": "+".join(CONCAT)}


def run_tk(fixed, seed: int, row, work: Path, tag: str) -> dict:
    """`fit` with the row's options; the feature cache is the row's own for every split of the set (cold at the
    first: its seconds include extraction, the later ones read the store, as a second run on the data does)."""
    import transferkit

    run = transferkit.fit(
        fixed,
        seed=seed,
        out=str(work / "runs"),
        name=tag,
        cache_dir=str(work / "cache" / tag.rsplit("-s", 1)[0]),
        quiet=True,
        **row.options,
    )
    shutil.rmtree(run.path, ignore_errors=True)
    return {"accuracy": run.test_metrics["accuracy"], "seconds": run.seconds, "resolved": run.strategy}


RUNNERS = {"tk": run_tk, "concat": run_concat}


def measure(sets: list[str], rows: list[str], repeats: int | None, data: Path, work: Path) -> dict:
    results = {}
    for name in sets:
        suite = acc.SETS[name]
        src = acc.open_suite(name, data, work)
        n = repeats or 5  # 5 splits (pre-split sets: 5 training seeds; linear's seed moves only the val carve)
        results[name] = {"repeats": n, "rows": {r: [] for r in rows}}
        for seed in range(n):
            fixed = acc.repeat_source(src, suite, seed)
            results[name]["split"] = acc.eval_split(fixed)
            for r in rows:
                out = RUNNERS[ROWS[r].kind](fixed, seed, ROWS[r], work, f"{name}-{r}-s{seed}")
                results[name]["rows"][r].append(out)
                print(f"[depth] {name} seed {seed} {r}: {out['accuracy']:.4f} in {out['seconds']:.0f} s", flush=True)
    return results


def table(results: dict, command: str) -> str:
    from transferkit.evaluation.intervals import mean_interval

    lines = [
        f"`{command}`",
        "",
        "| set | row | accuracy, mean [95% interval] | vs last layer, paired [95%] | s: first run / later runs |",
        "|---|---|---|---|---|",
    ]
    for name, per in results.items():
        base = [o["accuracy"] for o in per["rows"].get("linear", [])]
        for r, outs in per["rows"].items():
            a = [o["accuracy"] for o in outs]
            m, lo, hi = mean_interval(a)
            diff = ""
            if r != "linear" and len(base) == len(a):
                dm, dlo, dhi = mean_interval([x - b for x, b in zip(a, base)])
                diff = f"{100 * dm:+.1f} [{100 * dlo:+.1f}, {100 * dhi:+.1f}]"
            secs = f"{outs[0]['seconds']:.0f} / {sum(o['seconds'] for o in outs[1:]) / max(1, len(outs) - 1):.0f}"
            title = f"{acc.SETS[name].title} ({per['split']}, {per['repeats']} runs)"
            lines.append(
                f"| {title} | {ROWS[r].label} | {100 * m:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | {diff} | {secs} |"
            )
    return "\n".join(lines) + "\n"


def auto_cost(sets: list[str], data: Path, work: Path, rounds: int = 3) -> str:
    """`transferkit train DATA` (auto) and the fixed run it ends with, each a whole process with an empty feature
    store of its own, side by side: auto's cost as a multiple of its choice's (issue 24's target: <= 1.5x). `rounds`
    pairs, auto then the given run, interleaved so the load falls on both alike; the medians are compared (a single
    pair of 15-30 s processes moves by up to 0.4x with the load of this shared machine)."""
    from run import run

    lines = [
        "| set | auto chose | auto: s (median; each) | the same run given: s (median; each) | ratio of the medians "
        "| each pair's ratio | of auto's s: candidates / the rest of measuring (winner's full extraction, shift, "
        "gain.py's short fine-tune where run) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sets:
        path = acc.open_suite(name, data, work).root
        tk = [sys.executable, "-m", "transferkit", "train", str(path), "--out", str(work / "runs"), "--quiet"]
        autos, fixed, advice = [], [], None
        for r in range(rounds):
            autos.append(run([*tk, "--name", f"{name}-auto{r}"], env={"TRANSFERKIT_CACHE": str(work / f"{name}-a{r}")}))
            advice = json.loads((work / "runs" / f"{name}-auto{r}" / "config.json").read_text())["advice"]
            given = [
                *tk, "--name", f"{name}-given{r}", "--strategy", advice["strategy"], "--backbone", advice["backbone"],
                "--image-size", str(advice["image_size"]), "--features", advice.get("features", "last"),
            ]  # fmt: skip
            if advice.get("epochs"):
                given += ["--epochs", str(advice["epochs"])]
            fixed.append(run(given, env={"TRANSFERKIT_CACHE": str(work / f"{name}-g{r}")}))
        chose = f"{advice['strategy']} @ {advice['backbone'].replace('efficientnet_', '')} {advice['image_size']}px"
        chose += f" {advice.get('features', 'last')}"
        candidates = sum(c["seconds"] for c in advice["candidates"])  # wall seconds of measuring them, each
        gain = max(0.0, advice["seconds"] - candidates)  # the rest of measuring (gain.py's fine-tune, where run)
        a, g = [x["wall_s"] for x in autos], [x["wall_s"] for x in fixed]
        each = " ".join(f"{x / y:.2f}" for x, y in zip(a, g))
        lines.append(
            f"| {acc.SETS[name].title} | {chose} | {np.median(a):.0f}; {' '.join(f'{x:.0f}' for x in a)} | "
            f"{np.median(g):.0f}; {' '.join(f'{x:.0f}' for x in g)} | {np.median(a) / np.median(g):.2f}x | {each} | "
            f"{candidates:.0f} / {gain:.0f} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="folder holding the suite's sets")
    ap.add_argument("--sets", default="eurosat,digits,catvnoncat,hymenoptera", help="comma-separated")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of: {', '.join(ROWS)}")
    ap.add_argument("--repeats", type=int, default=None, help="splits (or seeds) per set (default 5)")
    ap.add_argument("--json", default=None, help="write every measurement to this JSON file")
    ap.add_argument("--md", default=None, help="write the table (markdown) to this file")
    ap.add_argument("--auto-cost", action="store_true", help="measure `auto`'s cost against its choice instead")
    ap.add_argument("--rounds", type=int, default=3, help="--auto-cost: interleaved pairs of processes per set")
    args = ap.parse_args()
    sets = [s for s in args.sets.split(",") if s]
    rows = [r for r in args.rows.split(",") if r]
    bad = [s for s in sets if s not in acc.SETS] + [r for r in rows if r not in ROWS]
    if bad:
        sys.exit(f"unknown set or row: {', '.join(bad)}. Sets: {', '.join(acc.SETS)}; rows: {', '.join(ROWS)}")
    from transferkit.engine.runtime import set_threads, tune_malloc

    tune_malloc()
    set_threads()
    import transferkit.engine.trainer  # noqa: F401 - imports are not any row's seconds

    if args.auto_cost:
        with tempfile.TemporaryDirectory(prefix="tk-auto-cost-") as tmp:
            text = f"`python benchmarks/depth.py {' '.join(sys.argv[1:])}`\n\n" + auto_cost(
                sets, Path(args.data), Path(tmp), args.rounds
            )
        print(text)
        if args.md:
            Path(args.md).write_text(text)
        return
    with tempfile.TemporaryDirectory(prefix="tk-depth-") as tmp:
        results = measure(sets, rows, args.repeats, Path(args.data), Path(tmp))
    text = table(results, " ".join(["python benchmarks/depth.py", *sys.argv[1:]]))
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.md:
        Path(args.md).write_text(text)


if __name__ == "__main__":
    main()
