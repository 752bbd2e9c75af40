"""Does bf16 inference give the answers fp32 gives? Top-1 agreement and max |Δp| on the real data, per bundle.

    python benchmarks/precision.py                     # appends/replaces the "Inference precision" section
    python benchmarks/precision.py --out /tmp/P.md

`--precision auto` (predict, evaluate) and `--feature-precision auto` (the cached features of `linear`) could use bf16
on CPUs with AVX512-BF16/AMX. It is worth it only where bf16 agrees with fp32 on >= 99.5% of top-1 answers on every
bundle measured here, and is faster: this script measures both and writes them to BENCHMARKS.md, and the default
in `engine/runtime.best_precision` follows what it found. On a CPU without native bf16 there is nothing to measure
(bf16 is emulated there, 10-20x slower).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from run import write_section  # noqa: E402 - the section writer BENCHMARKS.md shares

THRESHOLD = 0.995
SECTION = "## Inference precision: bf16 vs fp32"


def bundles(data: Path, work: Path) -> list[tuple[str, Path, Path]]:
    """(label, bundle, data) for a `linear` and a fine-tuned bundle on each real set."""
    import transferkit

    jobs = [
        ("hymenoptera, linear, 224 px", data / "hymenoptera", {"strategy": "linear"}),
        (
            "hymenoptera, finetune 2 epochs, 160 px",
            data / "hymenoptera",
            {"strategy": "finetune", "epochs": 2, "image_size": 160},
        ),
        ("catvnoncat, linear, 64 px", data / "catvnoncat", {"strategy": "linear"}),
        ("catvnoncat, finetune 3 epochs, 64 px", data / "catvnoncat", {"strategy": "finetune", "epochs": 3}),
        ("eurosat, linear, 64 px", data / "eurosat", {"strategy": "linear"}),
        ("eurosat, finetune 3 epochs, 64 px", data / "eurosat", {"strategy": "finetune", "epochs": 3}),
    ]
    out = []
    for label, path, kw in jobs:
        if not path.exists():
            print(f"[precision] {path} missing: skipped", file=sys.stderr)
            continue
        print(f"[precision] training {label} ...", file=sys.stderr, flush=True)
        run = transferkit.fit(path, out=str(work / "runs"), cache_dir=str(work / "cache"), quiet=True, **kw)
        out.append((label, run.best, path))
    return out


def compare(bundle: Path, data: Path) -> dict:
    """Logits of every image of the bundle's own evaluation split (and val) at fp32 and at bf16."""
    import numpy as np

    from transferkit.data.sources import open_source
    from transferkit.data.split import load_splits
    from transferkit.evaluation.calibration import softmax
    from transferkit.predict import Predictor

    splits = load_splits(bundle.parent / "split.csv")
    samples = [s for k in ("val", "test") for s in splits.get(k, [])]
    src = open_source(data)
    fast = "bf16"
    row = {"images": len(samples), "precision": fast}
    probs, seconds = {}, {}
    for precision in ("fp32", fast):
        p = Predictor(bundle, precision=precision)
        t0 = time.perf_counter()
        logits, kept, _ = p.logits_for(src, samples)
        seconds[precision] = time.perf_counter() - t0
        probs[precision] = softmax(logits.numpy(), p.temperature)
    a, b = probs["fp32"], probs[fast]
    row["agreement"] = float(np.mean(a.argmax(1) == b.argmax(1)))
    row["max_dp"] = float(np.abs(a - b).max())
    row["speedup"] = seconds["fp32"] / seconds[fast]
    return row


def forward_speed(reps: int = 4) -> dict[str, list[float]]:
    """Images/s of efficientnet_lite0's forward pass at 224 px, batch 32, fp32 and bf16 alternating."""
    import torch

    from transferkit.backbones import create_backbone
    from transferkit.engine.runtime import autocast_for

    net, _ = create_backbone("efficientnet_lite0")
    net.eval().to(memory_format=torch.channels_last)
    x = torch.randn(32, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    out: dict[str, list[float]] = {"fp32": [], "bf16": []}
    with torch.no_grad():
        for p in out:  # warm-up: the first bf16 call builds its kernels
            with autocast_for(p, "cpu"):
                net(x)
        for _ in range(reps):
            for p in out:
                t0 = time.perf_counter()
                with autocast_for(p, "cpu"):
                    net(x)
                out[p].append(32 / (time.perf_counter() - t0))
    return out


def write(path: Path, rows: list[tuple[str, dict]], speed: dict, machine: str, command: str) -> None:
    import statistics

    native = bool(rows)
    ok = all(r["agreement"] >= THRESHOLD for _, r in rows)
    lines = [SECTION, "", f"Made with `{command}` on {time.strftime('%Y-%m-%d')}. Machine: {machine}.", ""]
    if not native:
        lines += [
            "This CPU has no native bf16 (AVX2 only): `--precision auto` is fp32 here and nothing is compared.",
            "",
        ]
    else:
        fp32, bf16 = (statistics.median(speed[p]) for p in ("fp32", "bf16"))
        lines += [
            "Every val and test image of each bundle, predicted at fp32 and at bf16 (autocast, as `--precision auto` "
            "runs on this CPU); probabilities are calibrated (the bundle's temperature).",
            "",
            "| bundle | images | top-1 agreement | max \\|Δp\\| | bf16 speed-up (one pass, decoding included: noisy) |",
            "|---|---:|---:|---:|---:|",
            *[
                f"| {label} | {r['images']} | {100 * r['agreement']:.2f}% | {r['max_dp']:.4f} | {r['speedup']:.2f}x |"
                for label, r in rows
            ],
            "",
            f"Forward pass of efficientnet_lite0 (224 px, batch 32, tensors in memory), median of "
            f"{len(speed['fp32'])} alternating runs: fp32 {fp32:.1f} img/s, bf16 {bf16:.1f} img/s ({bf16 / fp32:.2f}x).",
            "",
            (
                f"Every bundle agrees on >= {100 * THRESHOLD:.1f}% of top-1 answers."
                if ok
                else f"Some bundles agree on fewer than {100 * THRESHOLD:.1f}% of top-1 answers, so `--precision auto` and "
                "`--feature-precision auto` stay fp32 on CPUs, also where bf16 is native (`engine/runtime.best_precision`); "
                "bf16 remains an explicit choice, and `linear` is then evaluated on its cached bf16 features, the numbers "
                "`predict --precision bf16` reproduces."
            ),
            "",
        ]
    block = "<!-- precision:begin -->\n" + "\n".join(lines).rstrip() + "\n<!-- precision:end -->"
    write_section(path, "precision", block)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()
    import platform

    import torch

    from transferkit.engine.runtime import cpu_bf16_supported, set_threads, tune_malloc

    tune_malloc()
    set_threads()
    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    rows, speed = [], {}
    if cpu_bf16_supported():
        speed = forward_speed()
        with tempfile.TemporaryDirectory(prefix="tk-precision-") as work:
            for label, bundle, data in bundles(Path(args.data), Path(work)):
                rows.append((label, compare(bundle, data)))
                print(f"[precision] {label}: {rows[-1][1]}", file=sys.stderr, flush=True)
    write(Path(args.out), rows, speed, machine, " ".join(["python", "benchmarks/precision.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
