"""The feature store's three ratios (issue "Images -> features -> heads", item 1), whole processes, cold store:

    python benchmarks/store.py                       # ants/bees from ../shared/data; writes its BENCHMARKS.md section
    python benchmarks/store.py --repeats 1 --no-write

1. `train --strategy linear --cv 5`            <= 1.3x one `train --strategy linear`
2. `compare --strategies linear --seeds 3`     <= 1.5x one `train --strategy linear`
3. one label edited in a list file, `train --strategy linear` again: 0 images extracted

Each command runs in its own process with an empty feature store of its own (TRANSFERKIT_CACHE), so every ratio
includes the one extraction a user would pay; the repeats alternate the commands so that machine load hits them alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import machine, run, write_section  # noqa: E402

ROOT = HERE.parent


def stored(cache: Path) -> int:
    """How many features the store under `cache` holds, all configurations together."""
    import sqlite3

    total = 0
    for index in (cache / "store").glob("*/index.sqlite"):
        con = sqlite3.connect(index)
        total += con.execute("select count(*) from entries").fetchone()[0]
        con.close()
    return total


def cli(*args: str, cache: Path) -> dict:
    """Wall seconds of `transferkit ARGS` in a fresh process, and how many images it ran through the backbone
    (the rows it added to the feature store)."""
    before = stored(cache)
    r = run([sys.executable, "-m", "transferkit", *args], env={"TRANSFERKIT_CACHE": str(cache)})
    r["extracted"] = stored(cache) - before
    return r


def list_file(data: Path, path: Path, flip: int | None = None) -> Path:
    """Every image of a pre-split class-folder tree as `path,label` rows (absolute paths); `flip`: that row's label
    changed to the other class."""
    rows = sorted(
        (str(f.resolve()), f.parent.name) for f in data.glob("*/*/*") if f.suffix.lower() in (".jpg", ".jpeg")
    )
    classes = sorted({c for _, c in rows})
    if flip is not None:
        p, c = rows[flip]
        rows[flip] = (p, classes[1 - classes.index(c)])
    path.write_text("path,label\n" + "".join(f"{p},{c}\n" for p, c in rows))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "hymenoptera"))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print the table, leave BENCHMARKS.md as it is")
    a = ap.parse_args()
    data = Path(a.data)
    times: dict[str, list[float]] = {"one": [], "cv": [], "compare": []}
    extracted: dict[str, list[int]] = {k: [] for k in times}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i in range(a.repeats):
            for name, args in (
                ("one", ["train", str(data), "--strategy", "linear"]),
                ("cv", ["train", str(data), "--strategy", "linear", "--cv", "5"]),
                ("compare", ["compare", str(data), "--strategies", "linear", "--seeds", "3"]),
            ):
                r = cli(*args, "--out", str(tmp / f"runs-{name}-{i}"), cache=tmp / f"cache-{name}-{i}")
                times[name].append(r["wall_s"])
                extracted[name].append(r["extracted"])
                print(f"{name} #{i}: {r['wall_s']:.1f} s, {r['extracted']} images extracted", flush=True)
        cache = tmp / "cache-relabel"
        first = cli(
            "train",
            str(list_file(data, tmp / "labels.csv")),
            "--strategy",
            "linear",
            "--out",
            str(tmp / "rl"),
            cache=cache,
        )
        again = cli(
            "train",
            str(list_file(data, tmp / "labels.csv", flip=0)),
            "--strategy",
            "linear",
            "--out",
            str(tmp / "rl"),
            cache=cache,
        )
        print(f"relabel: first {first['extracted']} images extracted, after one label edited {again['extracted']}")
    one = statistics.median(times["one"])
    cv, cmp_ = statistics.median(times["cv"]), statistics.median(times["compare"])
    command = f"python benchmarks/store.py --repeats {a.repeats}"
    block = "\n".join(
        [
            "<!-- store:begin -->",
            "## The feature store: folds, seeds and relabelling cost no new extraction",
            "",
            f"`{command}` on ants/bees (398 photos, 224 px, efficientnet_lite0), each command a whole process with",
            f"an empty store of its own; medians of {a.repeats} alternating repeats. Machine: {machine()}.",
            "",
            "| command (cold store) | seconds | images extracted | ratio to one run | target | |",
            "|---|---:|---:|---:|---:|---|",
            f"| `train --strategy linear` | {one:.1f} | {extracted['one'][0]} | 1.00x | | |",
            f"| `train --strategy linear --cv 5` | {cv:.1f} | {extracted['cv'][0]} | {cv / one:.2f}x | <= 1.3x | "
            f"{'met' if cv / one <= 1.3 else '**missed**'} |",
            f"| `compare --strategies linear --seeds 3` | {cmp_:.1f} | {extracted['compare'][0]} | {cmp_ / one:.2f}x | "
            f"<= 1.5x | {'met' if cmp_ / one <= 1.5 else '**missed**'} |",
            f"| one label edited in a list file, `train` again | {again['wall_s']:.1f} | {again['extracted']} | "
            f"{again['wall_s'] / first['wall_s']:.2f}x of the first | 0 extracted | "
            f"{'met' if again['extracted'] == 0 else '**missed**'} |",
            "",
            f"All times: one run {[round(t, 1) for t in times['one']]}, --cv 5 {[round(t, 1) for t in times['cv']]}, "
            f"compare {[round(t, 1) for t in times['compare']]} s.",
            "<!-- store:end -->",
        ]
    )
    print(block)
    if not a.no_write:
        write_section(ROOT / "BENCHMARKS.md", "store", block)


if __name__ == "__main__":
    main()
