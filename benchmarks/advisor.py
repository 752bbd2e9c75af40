"""Validation of the advisor on real data: do the transferability estimators order the backbones the way training
does, and does `auto` come within a point of the best strategy at no more than its cost?

    python benchmarks/advisor.py [--data ../shared/data] [--seeds 1]     # rewrites the advisor section of BENCHMARKS.md

Per dataset (ants/bees, cat/non-cat, scikit-learn's digits): `rank` over the three offline backbones, then each
backbone trained with `linear` (the accuracy the estimators try to predict), Kendall's tau between each estimator
and that accuracy; `compare` over linear / two-phase / finetune and `auto`, same split and seeds.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKBONES = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
ESTIMATORS = ("logme", "leep", "nce", "hscore", "probe_acc", "imagenet_top1", "score")
BEGIN, END = "<!-- advisor:begin -->", "<!-- advisor:end -->"


def kendall(a, b) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


STRATEGIES = ["linear", "two-phase", "finetune", "scratch", "auto"]
# The digits need the demo's training settings: a mirrored 2 is not a 2, and crops of an 8x8 digit cut strokes off.
SETTINGS = {"digits": {"flip": False, "crop_scale": (0.7, 1.0), "lr": 3e-3}}


def validate(name: str, data: Path, work: Path, seeds: int, epochs: int) -> dict:
    import transferkit

    cache = str(work / "cache")
    rows = transferkit.rank(data, BACKBONES, cache_dir=cache, quiet=True)
    trained = {}
    for b in BACKBONES:
        run = transferkit.fit(
            data, backbone=b, strategy="linear", cache_dir=cache, out=str(work / "runs"), name=f"{name}-{b}", quiet=True
        )
        trained[b] = run.test_metrics["accuracy"]
    by = {r.backbone: r for r in rows}
    acc = [trained[b] for b in BACKBONES]
    taus = {e: kendall([getattr(by[b], e) for b in BACKBONES], acc) for e in ESTIMATORS}
    cmp = transferkit.compare(
        data,
        strategies=STRATEGIES,
        seeds=seeds,
        epochs=epochs,
        out=str(work / "compare"),
        name=name,
        cache_dir=cache,
        quiet=True,
        **SETTINGS.get(name, {}),
    )
    return {"rank": by, "trained": trained, "taus": taus, "compare": cmp}


def section(results: dict, command: str) -> str:
    lines = [
        BEGIN,
        "## Advisor validation",
        "",
        f"Made with `{command}` on {time.strftime('%Y-%m-%d')}, same machine as above. Candidates: the three "
        "offline backbones. 'trained' is the accuracy each reaches with `linear` (val for ants/bees, test "
        "otherwise); Kendall's tau compares each estimator's order with that (3 candidates: tau is one of "
        "-1, -1/3, 1/3, 1).",
        "",
        "| data | "
        + " | ".join(f"{b} trained" for b in BACKBONES)
        + " | "
        + " | ".join(f"tau {e}" for e in ESTIMATORS)
        + " |",
        "|---|" + "---:|" * (len(BACKBONES) + len(ESTIMATORS)),
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{100 * r['trained'][b]:.1f}%" for b in BACKBONES)
            + " | "
            + " | ".join("tie" if r["taus"][e] != r["taus"][e] else f"{r['taus'][e]:+.2f}" for e in ESTIMATORS)
            + " |"
        )  # nan: the trained accuracies (or the estimator) tie, so no order to compare
    lines += [
        "",
        "Strategies (efficientnet_lite0, identical split, at most 4 epochs; the digits with the demo's settings: no "
        "flips, crop scale 0.7-1, lr 3e-3; mean test/val accuracy and wall time per run, in-process with a warm "
        "feature cache; `auto` includes the advisor's own measuring):",
        "",
        "| data | linear | two-phase | finetune | scratch (seed 001's comparison) | auto | auto vs best |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in results.items():
        rows = {row.strategy.split(" ")[0]: row for row in r["compare"].rows}
        best = max((rows[s] for s in ("linear", "two-phase", "finetune")), key=lambda x: (x.mean, -x.seconds))
        auto = rows["auto"]
        gap = 100 * (best.mean - auto.mean)
        ok = gap <= 1.0 and auto.seconds <= best.seconds * 1.1  # 10%: the runs' own wall-time noise here
        cells = " | ".join(
            f"{100 * rows[s].mean:.1f}% / {rows[s].seconds:.0f} s"
            for s in ("linear", "two-phase", "finetune", "scratch")
        )
        lines.append(
            f"| {name} | {cells} | {rows['auto'].strategy}: {100 * auto.mean:.1f}% / {auto.seconds:.0f} s | "
            f"{'met' if ok else '**missed**'}: {gap:+.1f} points vs {best.strategy}, "
            f"{auto.seconds / best.seconds:.2f}x its time |"
        )
    lines += ["", END, ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tk-advisor-"))
    from transferkit.demo import write_digits

    sets = {
        "ants/bees": Path(args.data) / "hymenoptera",
        "cat/non-cat": Path(args.data) / "catvnoncat",
        "digits": write_digits(work / "digits"),
    }
    results = {}
    for name, path in sets.items():
        if not path.exists():
            print(f"skipping {name}: {path} not found", file=sys.stderr)
            continue
        print(f"[advisor] {name} ...", file=sys.stderr, flush=True)
        results[name] = validate(name.replace("/", "-"), path, work, args.seeds, args.epochs)
        print(
            f"[advisor] {name}: trained {results[name]['trained']} taus {results[name]['taus']} "
            f"compare {results[name]['compare'].verdict}",
            file=sys.stderr,
            flush=True,
        )
    text = section(results, " ".join(["python", "benchmarks/advisor.py", *sys.argv[1:]]))
    out = Path(args.out)
    old = out.read_text() if out.exists() else "# Benchmarks\n"
    old = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", "", old, flags=re.S)
    out.write_text(old.rstrip() + "\n\n" + text)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
