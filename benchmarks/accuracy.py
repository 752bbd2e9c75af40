"""Accuracy on data nobody tuned for: transferkit's defaults against each fixed strategy, each built-in backbone and
peers on identical splits, every figure a mean with its 95% interval over repeats.

    make bench-accuracy                                    # = python benchmarks/accuracy.py: the whole suite
    python benchmarks/accuracy.py --quick                  # 1 set, 2 repeats, 4 rows: minutes, for development
    python benchmarks/accuracy.py --sets eurosat --rows defaults,linear,probe --repeats 5 --out /tmp/A.md

The suite: ants/bees (hymenoptera, pre-split train/val, scored on val: it has no test split), cat/non-cat (HDF5
train/test, val carved from train), scikit-learn's digits and EuroSAT (both un-split). Un-split sets get a seeded
stratified 70/15/15 split per repeat (5 by default), pre-split sets keep their split and repeat the training seed (3;
for cat/non-cat the val carved from train changes with it). Within a repeat every row sees the same split, so rows
are paired; the interval is Student's t over the repeats (evaluation/intervals.py).

Rows (ROWS): `defaults` is `transferkit train DATA` with nothing given; each fixed strategy; each built-in backbone
with `linear`; `probe` is scikit-learn's LogisticRegression on the same frozen features `linear` uses (C picked on
val from a grid, the classic linear probe); `fastai` is fastai's `fine_tune` with the same backbone, weights and input
size (the `bench` extra; the row is skipped with a note when fastai is not installed). transferkit rows run in this
process through the Python API with one feature cache shared by all rows (a warm cache, as a second run would have);
their seconds are `fit`'s own wall time. The table and the plot go between the accuracy markers of BENCHMARKS.md;
the other sections are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from run import write_section  # noqa: E402 - the section writer BENCHMARKS.md shares

BEGIN, END = "<!-- accuracy:begin -->", "<!-- accuracy:end -->"
SPLIT = (0.7, 0.15, 0.15)  # un-split sets: train/val/test, the default of `train`
BACKBONE = "efficientnet_lite0"  # the default; the fixed strategies, the probe and fastai use it too


@dataclass(frozen=True)
class Suite:
    title: str
    folder: str  # under --data; "" for the digits (written from scikit-learn)
    resplit: bool  # True: a new seeded split per repeat; False: the data's own split, training seeds repeated


SETS = {
    "hymenoptera": Suite("ants/bees", "hymenoptera", False),
    "catvnoncat": Suite("cat/non-cat", "catvnoncat", False),
    "digits": Suite("digits (sklearn)", "", True),
    "eurosat": Suite("EuroSAT", "eurosat", True),
}


@dataclass(frozen=True)
class Row:
    label: str
    kind: str  # tk | probe | fastai
    options: dict = field(default_factory=dict)  # fit() options for tk rows


ROWS = {
    "defaults": Row("transferkit defaults (auto)", "tk"),
    "linear": Row("linear", "tk", {"strategy": "linear"}),
    "freeze": Row("freeze:2", "tk", {"strategy": "freeze:2"}),
    "two-phase": Row("two-phase", "tk", {"strategy": "two-phase"}),
    "finetune": Row("finetune", "tk", {"strategy": "finetune"}),
    "scratch": Row("scratch", "tk", {"strategy": "scratch"}),
    "lite1": Row("linear @ efficientnet_lite1", "tk", {"strategy": "linear", "backbone": "efficientnet_lite1"}),
    "lite2": Row("linear @ efficientnet_lite2", "tk", {"strategy": "linear", "backbone": "efficientnet_lite2"}),
    "probe": Row("scikit-learn LogisticRegression on frozen features", "probe"),
    "fastai": Row("fastai fine_tune (1 frozen + 3 epochs)", "fastai"),
}
# scratch is left out of the default rows: 10 epochs from random weights cost as much as finetune and lost by 26-49
# points on ants/bees and cat/non-cat ("Advisor validation"); --rows ...,scratch adds it.
FULL_ROWS = [r for r in ROWS if r != "scratch"]
# One small set whose defaults stay a frozen-feature run (eurosat's and the digits' fine-tune for minutes).
QUICK = {"sets": ["catvnoncat"], "rows": ["defaults", "linear", "probe", "fastai"], "repeats": 2}


# ---- the data ---------------------------------------------------------------------------------------------------
def open_suite(name: str, data: Path, work: Path):
    from transferkit.data.sources import open_source

    if name == "digits":
        from transferkit.demo import write_digits

        return open_source(write_digits(work / "digits"))
    path = data / SETS[name].folder
    if not path.exists():
        sys.exit(f"benchmark data not found at {path}: pass --data DIR (the folder with {SETS[name].folder}/)")
    return open_source(path)


def repeat_source(src, suite: Suite, seed: int):
    """The data as every row of repeat `seed` sees it: its split fixed in the DataSource."""
    from transferkit.data.split import make_splits

    return dataclasses.replace(src, splits=make_splits(src, SPLIT, seed))


def eval_split(fixed) -> str:
    return "test" if fixed.splits.get("test") else "val"


# ---- the rows ---------------------------------------------------------------------------------------------------
def run_tk(fixed, seed: int, row: Row, work: Path, tag: str) -> dict:
    import transferkit

    run = transferkit.fit(
        fixed,
        seed=seed,
        out=str(work / "runs"),
        name=tag,
        cache_dir=str(work / "cache"),
        quiet=True,
        **row.options,
    )
    return {"accuracy": run.test_metrics["accuracy"], "seconds": run.seconds, "resolved": run.strategy}


def run_probe(fixed, seed: int, row: Row, work: Path, tag: str) -> dict:
    """LogisticRegression on standardised frozen features of the train split, C from a grid by val accuracy,
    scored on the evaluated split: the same features (backbone, input size, preprocessing) `linear` trains on."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from transferkit.config import RunConfig
    from transferkit.selection.frozen import frozen_features, open_data

    start = time.perf_counter()
    cfg = RunConfig()
    cfg.runtime.cache_dir, cfg.train.seed, cfg.quiet = str(work / "cache"), seed, True
    ff = frozen_features(open_data(fixed, cfg), BACKBONE, cfg)
    if eval_split(fixed) == "test":  # the test features, computed as val features of a train/test source
        as_val = dataclasses.replace(fixed, splits={"train": fixed.splits["train"], "val": fixed.splits["test"]})
        ft = frozen_features(open_data(as_val, cfg), BACKBONE, cfg)
        x_eval, y_eval = ft.val, ft.val_labels
    else:
        x_eval, y_eval = ff.val, ff.val_labels
    scale = StandardScaler().fit(ff.train)
    xtr, xva, xev = scale.transform(ff.train), scale.transform(ff.val), scale.transform(x_eval)
    best = None
    for c in np.logspace(-4, 1, 11):  # 1e-4 .. 10
        model = LogisticRegression(C=c, max_iter=3000).fit(xtr, ff.train_labels)
        acc = float((model.predict(xva) == ff.val_labels).mean())
        if best is None or acc > best[0]:
            best = (acc, model, c)
    return {
        "accuracy": float((best[1].predict(xev) == y_eval).mean()),
        "seconds": time.perf_counter() - start,
        "resolved": f"C={best[2]:.0e}",
    }


def image_files(fixed, work: Path) -> dict[str, str]:
    """key -> an image file fastai can read: files as they are, array images (HDF5) written once as PNG."""
    from transferkit.data.base import is_array_key

    out = {}
    folder = work / "png" / re.sub(r"\W+", "-", str(fixed.root))
    for samples in fixed.splits.values():
        for s in samples:
            if not is_array_key(s.key):
                out[s.key] = s.key
                continue
            path = folder / (re.sub(r"\W+", "-", s.key) + ".png")
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                fixed.load(s.key).convert("RGB").save(path)
            out[s.key] = str(path)
    return out


def run_fastai(fixed, seed: int, row: Row, work: Path, tag: str) -> dict:
    """fastai's own recipe (benchmarks/jobs.py's): vision_learner-style body + fastai head, `fine_tune(3)`, at the
    input size transferkit's defaults choose for the data, on the same train/val, scored on the same split."""
    import pandas as pd
    import torch
    from fastai.vision.all import ImageDataLoaders, Normalize, Resize, aug_transforms
    from jobs import fastai_learner  # benchmarks/ is on sys.path when this file runs

    from transferkit.backbones import create_backbone
    from transferkit.data.sizes import choose_image_size, resize_size, survey_sides

    start = time.perf_counter()
    torch.manual_seed(seed)
    net, cfg = create_backbone(BACKBONE)
    size = choose_image_size(survey_sides(fixed, fixed.splits["train"])[0], cfg.input_size)
    files = image_files(fixed, work)
    classes = fixed.classes

    def frame(split, valid):
        return pd.DataFrame(
            {
                "path": [files[s.key] for s in fixed.splits[split]],
                "label": [classes[s.label] for s in fixed.splits[split]],
                "is_valid": valid,
            }
        )

    df = pd.concat([frame("train", False), frame("val", True)], ignore_index=True)
    dls = ImageDataLoaders.from_df(
        df,
        path="/",
        fn_col="path",
        label_col="label",
        valid_col="is_valid",
        item_tfms=Resize(resize_size(size, cfg.crop_pct)),
        batch_tfms=[*aug_transforms(size=size), Normalize.from_stats(list(cfg.mean), list(cfg.std))],
        bs=32,
        num_workers=0,
    )
    learn = fastai_learner(dls, net, cfg)
    split = eval_split(fixed)
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(3, base_lr=2e-3)
        preds, targets = learn.get_preds(dl=dls.test_dl(frame(split, False), with_labels=True))
    acc = float((preds.argmax(1) == targets).float().mean())
    return {"accuracy": acc, "seconds": time.perf_counter() - start, "resolved": f"{size} px"}


RUNNERS = {"tk": run_tk, "probe": run_probe, "fastai": run_fastai}


def fastai_missing() -> str | None:
    try:
        import fastai  # noqa: F401
    except ImportError:
        return "fastai is not installed (`pip install -e '.[bench]'`): its row is skipped"
    return None


# ---- the suite --------------------------------------------------------------------------------------------------
def measure(sets: list[str], rows: list[str], repeats: int | None, data: Path, work: Path) -> dict:
    """{set: {"split", "repeats", "rows": {row: [per-repeat results]}}}: every row of repeat i on the same split."""
    results = {}
    for name in sets:
        suite = SETS[name]
        src = open_suite(name, data, work)
        n = repeats or (5 if suite.resplit else 3)
        results[name] = {"repeats": n, "rows": {r: [] for r in rows}}
        for seed in range(n):
            fixed = repeat_source(src, suite, seed)
            results[name]["split"] = eval_split(fixed)
            results[name]["sizes"] = {k: len(v) for k, v in fixed.splits.items()}
            for r in rows:
                row = ROWS[r]
                started = time.perf_counter()
                out = RUNNERS[row.kind](fixed, seed, row, work, f"{name}-{r}-s{seed}")
                results[name]["rows"][r].append(out)
                print(
                    f"[accuracy] {name} seed {seed} {r}: {out['accuracy']:.4f} in {out['seconds']:.0f} s "
                    f"({out.get('resolved', '')}; {time.perf_counter() - started:.0f} s wall)",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def summarise(results: dict) -> dict:
    from transferkit.evaluation.intervals import mean_interval

    for per_set in results.values():
        per_set["summary"] = {}
        for r, outs in per_set["rows"].items():
            if not outs:
                continue
            mean, low, high = mean_interval([o["accuracy"] for o in outs])
            seconds = sum(o["seconds"] for o in outs) / len(outs)
            resolved = sorted({o.get("resolved", "") for o in outs} - {""})
            per_set["summary"][r] = {"mean": mean, "low": low, "high": high, "seconds": seconds, "resolved": resolved}
    return results


def plot(results: dict, path: Path) -> Path:
    """One panel per set: each row's mean with its 95% interval as a horizontal error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    rows = list(dict.fromkeys(r for s in results.values() for r in s["summary"]))
    # 3 inches on the left for the row labels, 3.5 per set
    fig, axes = plt.subplots(1, len(names), figsize=(3 + 3.5 * len(names), 0.45 * len(rows) + 1.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        summary = results[name]["summary"]
        ys = [i for i, r in enumerate(rows) if r in summary]
        means = [100 * summary[rows[i]]["mean"] for i in ys]
        halves = [
            100 * (summary[rows[i]]["high"] - summary[rows[i]]["mean"])
            if math.isfinite(summary[rows[i]]["high"])
            else 0.0
            for i in ys
        ]
        ax.errorbar(means, ys, xerr=halves, fmt="o", capsize=3, color="#1f6feb")
        ax.set_yticks(range(len(rows)), [ROWS[r].label if ax is axes[0][0] else "" for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{SETS[name].title} ({results[name]['split']}, {results[name]['repeats']} repeats)", fontsize=9)
        ax.set_xlabel("accuracy (%)")
        ax.set_xlim(right=100.5)  # short t-intervals can reach past 100%
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def section(results: dict, command: str, notes: list[str], plot_path: Path, out: Path) -> str:
    lines = [
        BEGIN,
        "## Accuracy with error bars",
        "",
        f"Made with `{command}` on {time.strftime('%Y-%m-%d')}. Backbone `{BACKBONE}` unless the row names another. "
        "Each cell: mean accuracy over the repeats ± the half-width of its 95% interval (Student's t), then the "
        "repeats, then seconds per run. Un-split sets: a seeded stratified 70/15/15 split per repeat; pre-split "
        "sets: their own split, training seeds repeated. Every row of a repeat sees the same split.",
        "",
    ]
    for note in notes:
        lines.append(f"- {note}")
    if notes:
        lines.append("")
    for name, per_set in results.items():
        sizes = ", ".join(f"{k} {v}" for k, v in per_set.get("sizes", {}).items())
        lines += [
            f"### {SETS[name].title}: {per_set['split']} accuracy, {per_set['repeats']} "
            f"{'splits' if SETS[name].resplit else 'seeds'} ({sizes})",
            "",
            "| row | accuracy | 95% interval | per repeat | s / run | chose |",
            "|---|---:|---:|---|---:|---|",
        ]
        for r, s in per_set["summary"].items():
            half = s["high"] - s["mean"]
            spread = f" ± {100 * half:.1f}" if math.isfinite(half) else ""
            # an accuracy lies in 0-100%: a t-interval over 2-3 repeats can reach past it, shown clipped
            interval = f"{100 * max(0, s['low']):.1f}-{100 * min(1, s['high']):.1f}%" if math.isfinite(half) else "-"
            each = " ".join(f"{100 * o['accuracy']:.1f}" for o in per_set["rows"][r])
            lines.append(
                f"| {ROWS[r].label} | {100 * s['mean']:.1f}%{spread} | {interval} | {each} | {s['seconds']:.0f} | "
                f"{', '.join(s['resolved'])} |"
            )
        lines.append("")
    rel = plot_path.relative_to(out.parent) if plot_path.is_relative_to(out.parent) else plot_path
    lines += [f"![accuracy per set and row, 95% intervals]({rel})", "", END]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="folder holding the suite's sets")
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--plot", default=None, help="the plot's PNG (default: accuracy.png beside --out)")
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of: {', '.join(SETS)}")
    ap.add_argument("--rows", default=",".join(FULL_ROWS), help=f"comma-separated, of: {', '.join(ROWS)}")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per set (default: 5 splits or 3 seeds)")
    ap.add_argument("--quick", action="store_true", help=f"development run: {json.dumps(QUICK)}")
    ap.add_argument("--json", default=None, help="also write every measurement to this JSON file")
    args = ap.parse_args()
    sets = QUICK["sets"] if args.quick else [s.strip() for s in args.sets.split(",") if s.strip()]
    rows = QUICK["rows"] if args.quick else [r.strip() for r in args.rows.split(",") if r.strip()]
    repeats = args.repeats or (QUICK["repeats"] if args.quick else None)
    bad = [x for x in sets if x not in SETS] + [x for x in rows if x not in ROWS]
    if bad:
        sys.exit(f"unknown set or row: {', '.join(bad)}. Sets: {', '.join(SETS)}; rows: {', '.join(ROWS)}")
    notes = []
    if "fastai" in rows and (missing := fastai_missing()):
        rows = [r for r in rows if r != "fastai"]
        notes.append(missing)
    if "hymenoptera" in sets:
        notes.append(
            "ants/bees has no test split: every row is scored on val, which also picks its epoch, head or C "
            "(optimistic for every row alike)"
        )
    from transferkit.engine.runtime import set_threads, tune_malloc

    tune_malloc()
    set_threads()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tk-accuracy-") as tmp:
        results = summarise(measure(sets, rows, repeats, Path(args.data), Path(tmp)))
    minutes = (time.perf_counter() - started) / 60
    notes.append(f"the whole run took {minutes:.1f} minutes")
    out = Path(args.out)
    plot_path = plot(results, Path(args.plot) if args.plot else out.parent / "benchmarks" / "accuracy.png")
    command = " ".join(["python benchmarks/accuracy.py", *sys.argv[1:]])
    write_section(out, "accuracy", section(results, command, notes, plot_path, out))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"wrote {out} and {plot_path} in {minutes:.1f} minutes", file=sys.stderr)


if __name__ == "__main__":
    main()
