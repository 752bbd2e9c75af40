"""Does `train` stay flat in memory and linear in time as the folder grows? Wall time and peak RSS of `linear` and of
one fine-tune epoch on folders of 1k to 50k images, made here from the real EuroSAT tiles.

    make bench-scaling                                   # = python benchmarks/scaling.py, all sizes
    python benchmarks/scaling.py --sizes 500,2000 --out /tmp/S.md      # a quick look

Each folder is `<class>/<n>.jpg` for EuroSAT's 10 classes: every image is a copy of one of its 1,000 64x64 tiles,
cropped, flipped or turned and re-encoded under a seed, so no two files are the same bytes. Every `train` runs in
its own process with an empty feature cache; peak RSS is the child's own high-water mark (`ru_maxrss` from
`wait4`), and "anon" is the highest anonymous part (`RssAnon`, polled every 50 ms): memory that is not pages of a
file the kernel can drop and read again (the decode store and the libraries' code are such pages).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from run import machine, write_section  # noqa: E402 - the machine line and section writer BENCHMARKS.md shares

SIZES = (1000, 5000, 20000, 50000)
# Half EuroSAT's 64 px: on 2 shared cores a 64 px pass costs ~28 ms of CPU per image, so 50k images and their
# fine-tune epoch would take hours. Still past auto's 128 MiB at 50k (36x36x3 bytes x 50,000 = 194 MB): the disk store.
IMAGE_SIZE = 32
COMMON = ("--image-size", str(IMAGE_SIZE), "--threads", "2", "--split", "0.8,0.2,0", "-q")
JOBS = {
    "linear": ("--strategy", "linear"),
    "finetune 1 epoch": ("--strategy", "finetune", "--epochs", "1"),
}
RSS_GOAL = 1.5  # peak RSS at the largest folder / at the smallest


def make_folder(n: int, dest: Path, source: Path, seed: int = 0) -> Path:
    """n images spread evenly over the source's class folders, each a seeded variation of one source image."""
    from PIL import Image

    classes = sorted(p for p in source.iterdir() if p.is_dir())
    rng = random.Random(seed)
    for c, folder in enumerate(classes):
        tiles = sorted(folder.glob("*.jpg"))
        out = dest / folder.name
        out.mkdir(parents=True, exist_ok=True)
        for i in range(n // len(classes) + (c < n % len(classes))):
            with Image.open(tiles[i % len(tiles)]) as im:
                im = im.convert("RGB")
            w, h = im.size
            side = rng.randint(int(0.75 * min(w, h)), min(w, h))  # a crop of 75-100% of the side, resized back
            x, y = rng.randint(0, w - side), rng.randint(0, h - side)
            im = im.crop((x, y, x + side, y + side)).resize((w, h), Image.Resampling.BICUBIC)
            im = im.transpose(rng.choice(list(Image.Transpose))) if rng.random() < 0.75 else im
            im.save(out / f"{i:06d}.jpg", quality=rng.randint(80, 95))
    return dest


class Sampler(threading.Thread):
    """Polls /proc/<pid>/status for the highest RssAnon (kB) while the child runs."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.anon_kb, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            m = re.search(r"RssAnon:\s+(\d+)", text)
            if m:
                self.anon_kb = max(self.anon_kb, int(m.group(1)))


def train(data: Path, work: Path, name: str, args: tuple[str, ...]) -> dict:
    """One `transferkit train` in its own process with its own empty cache: wall s, peak MiB, anon MiB, accuracy."""
    cache = work / f"cache-{name}"
    cmd = [sys.executable, "-m", "transferkit", "train", str(data), "--out", str(work / "runs"), "--name", name]
    env = {**os.environ, "TRANSFERKIT_CACHE": str(cache)}
    logs = work / f"{name}.out", work / f"{name}.err"  # files, not pipes: nothing blocks before wait4 returns
    with open(logs[0], "w") as out, open(logs[1], "w") as err:
        start = time.perf_counter()
        p = subprocess.Popen([*cmd, *COMMON, *args], stdout=out, stderr=err, env=env)
        sampler = Sampler(p.pid)
        sampler.start()
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - start
        sampler.done.set()
    stdout, stderr = (f.read_text() for f in logs)
    code = os.waitstatus_to_exitcode(status)
    shutil.rmtree(cache, ignore_errors=True)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}):\n{stderr[-3000:]}")
    run_dir = Path(stdout.strip().splitlines()[-1])
    report = json.loads((run_dir / "report.json").read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,  # steadier than wall time on a shared machine
        "load": os.getloadavg()[0],  # the machine's 1-minute load average when the job ended
        "peak_mib": usage.ru_maxrss / 1024,
        "anon_mib": sampler.anon_kb / 1024,
        "accuracy": report["metrics"]["accuracy"],
    }


def measure(sizes: list[int], jobs: dict[str, int], source: Path, work: Path, done) -> dict[str, dict[int, dict]]:
    """jobs: name -> the largest size it runs at; done(results) is called after every job (partial results kept)."""
    results: dict[str, dict[int, dict]] = {job: {} for job in jobs}
    for n in sizes:
        t0 = time.perf_counter()
        data = make_folder(n, work / f"data-{n}", source)
        print(f"[scaling] made {n} images in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        for job in (j for j, top in jobs.items() if n <= top):
            r = results[job][n] = train(data, work, f"{n}-{job.split()[0]}", JOBS[job])
            print(f"[scaling] {n} {job}: {json.dumps({k: round(v, 3) for k, v in r.items()})}", file=sys.stderr)
            done(results)
        shutil.rmtree(data, ignore_errors=True)
    return results


def plot(results: dict[str, dict[int, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for job, rows in results.items():
        n = sorted(rows)
        ax_t.plot(n, [rows[k]["wall_s"] for k in n], "o-", label=job)
        ax_m.plot(n, [rows[k]["peak_mib"] for k in n], "o-", label=f"{job}: peak RSS")
        ax_m.plot(n, [rows[k]["anon_mib"] for k in n], "x--", label=f"{job}: anonymous")
    ax_t.set(xlabel="images", ylabel="wall time (s)", title="Time")
    ax_m.set(xlabel="images", ylabel="MiB", title="Peak memory", ylim=(0, None))
    for ax in (ax_t, ax_m):
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def section(results: dict[str, dict[int, dict]], command: str, image: str) -> str:
    lines = [
        "## Scaling: time and memory against the number of images",
        "",
        f"Made with `{command}` on {time.strftime('%Y-%m-%d')}. Machine: {machine()}.",
        "",
        f"Folders of EuroSAT-like 64x64 JPEGs in 10 classes (seeded crops, flips and re-encodings of the 1,000 real "
        f"tiles, made by the script), `transferkit train DATA {' '.join(COMMON)}` plus the strategy, each in its own "
        "process with an empty cache. Split 80/20, no test part. Peak RSS is the process's high-water mark "
        '(`ru_maxrss`); "anon" is its highest anonymous memory (RssAnon), i.e. without the pages of files (the '
        "decode store, the libraries) that the kernel drops and reads back when memory is short.",
        "",
        "| job | images | wall s | CPU s | CPU ms / image, from the size before | load | peak RSS MiB | anon MiB "
        "| val accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for job, rows in results.items():
        before = None
        for n in sorted(rows):
            r = rows[n]
            # the cost of the images added since the size before: start-up (imports, the model) cancels out
            step = f"{1000 * (r['cpu_s'] - rows[before]['cpu_s']) / (n - before):.1f}" if before else ""
            lines.append(
                f"| {job} | {n:,} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {step} | {r['load']:.1f} | "
                f"{r['peak_mib']:.0f} | {r['anon_mib']:.0f} | {100 * r['accuracy']:.1f}% |"
            )
            before = n
    lines += ["", f"![time and peak memory against images]({image})", ""]
    for job, rows in results.items():
        lo, hi = min(rows, default=0), max(rows, default=0)
        if lo == hi:
            continue
        rss = rows[hi]["peak_mib"] / rows[lo]["peak_mib"]
        lines.append(
            f"- {job}: peak RSS at {hi:,} images is {rss:.2f}x the {lo:,} figure (goal <= {RSS_GOAL}x: "
            f"{'met' if rss <= RSS_GOAL else 'not met'})."
        )
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="folder holding eurosat/")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="image counts, comma-separated")
    ap.add_argument("--jobs", default=",".join(JOBS), help=f"comma-separated, of: {', '.join(JOBS)}")
    ap.add_argument("--finetune-up-to", type=int, default=max(SIZES), help="the largest size fine-tuned")
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--plot", default=str(HERE / "scaling.png"))
    args = ap.parse_args()
    names = args.jobs.split(",")
    if unknown := [j for j in names if j not in JOBS]:
        sys.exit(f"--jobs: unknown {', '.join(unknown)}; choose from: {', '.join(JOBS)}")
    jobs = {j: args.finetune_up_to if j.startswith("finetune") else 10**9 for j in names}
    source = Path(args.data) / "eurosat"
    if not source.is_dir():
        sys.exit(f"benchmark data not found at {source}: pass --data DIR (the folder with eurosat/)")
    out, image = Path(args.out), Path(args.plot)
    command = " ".join(["python", "benchmarks/scaling.py", *sys.argv[1:]])

    def done(results):  # after every job: a run cut short still leaves what it measured
        plot(results, image)
        text = section(results, command, os.path.relpath(image.resolve(), out.resolve().parent))
        write_section(out, "scaling", "<!-- scaling:begin -->\n" + text + "<!-- scaling:end -->")

    work = Path(tempfile.mkdtemp(prefix="tk-scaling-"))
    try:
        measure(sorted(int(s) for s in args.sizes.split(",")), jobs, source, work, done)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out} and {image}", file=sys.stderr)


if __name__ == "__main__":
    main()
