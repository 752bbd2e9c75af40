"""The GPU check: train, extract, predict and export on ants/bees on one GPU, and print a table of times and accuracies.

    python benchmarks/gpu_check.py                                  # GPU if there is one, else the CPU (it says so)
    python benchmarks/gpu_check.py --also-cpu --out runs/gpu.json   # + the same steps on the CPU, on a subset
    python benchmarks/gpu_check.py --device cpu --out cpu.json      # a CPU result to compare against later:
    python benchmarks/gpu_check.py --cpu-table cpu.json --benchmarks BENCHMARKS.md   # ... and record the GPU table
    python benchmarks/gpu_check.py --tiny --device cpu              # generated images, 1 epoch, 32 px: seconds

Steps, in one process, through the public API only: `transferkit.fit` with `linear` (cold caches), `two-phase` and
`finetune` (bf16 autocast on a GPU: `mixed_precision` and `feature_precision`, config.py's Runtime options);
`transferkit.feature_extractor` over every image (decoding and forward timed apart); `transferkit.load(...).predict`
over the val images (the Predictor decodes the next batch during the forward on a GPU); `transferkit.export.export`
to ONNX with its parity check. Sized for under 8 minutes on one H100, --also-cpu included.
A step that fails is reported in the table (and the exit status is 1); the other steps still run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# ../shared beside the checkout, as everywhere here; else a shared/ inside it (what travels to a lent GPU machine)
DEFAULT_DATA = next(
    (d for d in (ROOT.parent / "shared", ROOT / "shared") if (d / "data" / "hymenoptera").is_dir()),
    ROOT.parent / "shared",
).joinpath("data", "hymenoptera")
sys.path.insert(0, str(HERE))
from run import run, write_section  # noqa: E402 - a child process's wall time; the BENCHMARKS.md section writer

STEPS = ("linear", "two-phase", "finetune", "features", "predict", "export")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
BACKBONE = "efficientnet_lite0"  # offline weights: no download on a machine that reaches nothing
BUDGET_S = 8 * 60  # what the check is sized for on one H100, --also-cpu included
# The head of BENCHMARKS.md's "gpu" section; `--benchmarks FILE` puts the table under it.
INTRO = """## GPU check

`make bench-gpu` (= `python benchmarks/gpu_check.py --also-cpu --out runs/gpu-check.json --benchmarks BENCHMARKS.md`)
on a machine with one CUDA GPU: `linear`, `two-phase` and `finetune` on ants/bees with bf16 autocast, feature
extraction, `predict` on the val images (decoding overlapped with the forward) and an ONNX export with its parity
check, each timed, beside the same steps on the CPU (on the first 20 images per class and split: compare the
per-image speed-up, not the seconds). Sized for under 8 minutes on one H100 (not yet timed there). Without a GPU
it says so, runs on the CPU and writes nothing here; `--tiny` runs it on generated images in seconds
(tests/test_gpu_check.py does, in `make test`).
"""


@dataclass
class Row:
    step: str
    seconds: float = math.nan
    accuracy: float = math.nan  # on the val images; nan where a step has none
    images: int = 0  # images the step went through (train + val for a fit): per-image times compare across sizes
    note: str = ""
    ok: bool = True


# ---- data -------------------------------------------------------------------------------------------------------


def labelled_files(data: Path, split: str) -> list[tuple[Path, str]]:
    """(file, class) for every image of data/split/<class>/, sorted."""
    return [
        (f, d.name)
        for d in sorted(p for p in (data / split).iterdir() if p.is_dir())
        for f in sorted(d.iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]


def check_layout(data: Path) -> None:
    missing = [s for s in ("train", "val") if not (data / s).is_dir() or not labelled_files(data, s)]
    if missing:
        sys.exit(
            f"gpu_check: {data} has no images under {' and '.join(f'{s}/<class>/' for s in missing)}. --data takes a "
            f"folder laid out as hymenoptera is (train/<class>/*.jpg, val/<class>/*.jpg), default {DEFAULT_DATA}."
        )


def subset(data: Path, dest: Path, per_class: int) -> Path:
    """The first `per_class` images of each class of train and val, as symbolic links (nothing copied)."""
    for split in ("train", "val"):
        for f, label in labelled_files(data, split):
            d = dest / split / label
            d.mkdir(parents=True, exist_ok=True)
            if len(list(d.iterdir())) < per_class:
                (d / f.name).symlink_to(f.resolve())
    return dest


def generate_tiny(dest: Path, train: int = 6, val: int = 4, size: int = 40) -> Path:
    """Two classes told apart by colour (a bright square on noise), laid out as hymenoptera: train/ and val/."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for label, colour in (("ants", (200, 40, 40)), ("bees", (40, 60, 200))):
            (dest / split / label).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = rng.integers(0, 60, (size, size, 3)).astype(np.int16)
                a[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] += colour
                Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(dest / split / label / f"{label}_{i}.png")
    return dest


# ---- device ---------------------------------------------------------------------------------------------------


def pick_device(asked: str) -> tuple[str, str]:
    """(device, precision): cuda with bf16 autocast (fp16 before Ampere), or cpu at fp32; says so when there is no
    GPU."""
    import torch

    if asked == "cuda" and not torch.cuda.is_available():
        sys.exit(
            f"gpu_check: --device cuda was asked for, but PyTorch sees no CUDA GPU here (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda or 'none'}). Use --device auto or --device cpu."
        )
    if asked == "cpu" or not torch.cuda.is_available():
        if asked == "auto":
            print(
                "gpu_check: NO GPU: PyTorch sees no CUDA device here, so every step runs on the CPU. The table below "
                "is a CPU table, not a GPU figure.",
                file=sys.stderr,
                flush=True,
            )
        return "cpu", "fp32"
    return "cuda", "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def describe(device: str) -> str:
    import torch

    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        gpu = f"{p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
    else:
        gpu = "no GPU used" if torch.cuda.is_available() else "no GPU present"
    return f"{gpu}; {os.cpu_count()} CPU cores; Python {platform.python_version()}, torch {torch.__version__}"


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


# ---- steps ----------------------------------------------------------------------------------------------------


def fit_step(name: str, data: Path, work: Path, device: str, precision: str, args) -> tuple[Row, Path]:
    import transferkit

    options = dict(
        strategy=name,
        # two-phase takes an epoch at least for each phase: --tiny's 1 epoch is its head's and one fine-tuning's
        epochs=max(args.epochs, 2) if name == "two-phase" else args.epochs,
        head_epochs=1,
        out=str(work / "runs"),
        name=name,
        cache_dir=str(work / "cache"),  # cold for the first fit (linear): its time includes decoding and extraction
        quiet=True,
        device=device,
        mixed_precision="no" if device == "cpu" else precision,
        feature_precision=precision,
        image_size=args.image_size,
    )
    if name == "linear":
        options.pop("epochs"), options.pop("head_epochs")
    started = time.perf_counter()
    r = transferkit.fit(str(data), **options)
    seconds = time.perf_counter() - started
    loop = [h for h in r.history if h.get("train_seconds")]
    epochs = len({(h.get("phase"), h.get("epoch")) for h in r.history})
    note = f"{epochs} epoch{'s' * (epochs != 1)}" if loop else "cold caches: decode, features, heads, report"
    if loop:  # images per second of the training loop itself (augmentation, forward, backward)
        rate = sum(h["train_images"] for h in loop) / sum(h["train_seconds"] for h in loop)
        note += f", loop {rate:.0f} img/s"
    n = len(labelled_files(data, "train")) + len(labelled_files(data, "val"))
    return Row(name, seconds, r.test_metrics.get("accuracy", math.nan), n, note), r.best


def features_step(data: Path, device: str, precision: str, batch_size: int = 64) -> Row:
    """Every image through the backbone's body: decoding (threads) and the forward timed apart; accuracy is a
    nearest-class-mean of the val features on the train ones (a sanity check of what came out, no training)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import torch
    from PIL import Image

    import transferkit

    fx = transferkit.feature_extractor(BACKBONE)
    net = fx.net.eval().to(device, memory_format=torch.channels_last)
    side = math.ceil(fx.cfg.input_size / fx.cfg.crop_pct)  # the transform's resize target, from the backbone's cfg
    files = [(f, label, split) for split in ("train", "val") for f, label in labelled_files(data, split)]

    def load(path: Path):
        try:
            with Image.open(path) as im:
                im.draft("RGB", (side, side))  # JPEG: decode at 1/2-1/8 scale when that still covers the size needed
                a = np.asarray(im.convert("RGB"))
        except OSError:
            return None  # unreadable: left out, as fit leaves it out
        return fx.transform(torch.from_numpy(a.copy()).permute(2, 0, 1))

    started = time.perf_counter()
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(load, [f for f, _, _ in files]))
    decode_s = time.perf_counter() - started
    kept = [(x, label, split) for x, (_, label, split) in zip(decoded, files) if x is not None]
    x_all = torch.stack([x for x, _, _ in kept])
    autocast = torch.autocast(device, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    ctx = contextlib.nullcontext() if precision == "fp32" else autocast

    def forward(x: torch.Tensor) -> torch.Tensor:
        return net(x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)).float().cpu()

    with torch.no_grad(), ctx:
        forward(x_all[:batch_size])  # warm-up: cuDNN picks its kernels, the allocator grows (not timed)
        synchronize(device)
        started = time.perf_counter()
        feats = torch.cat([forward(x_all[i : i + batch_size]) for i in range(0, len(x_all), batch_size)])
        synchronize(device)
    forward_s = time.perf_counter() - started
    labels = np.array([label for _, label, _ in kept])
    train = np.array([split == "train" for _, _, split in kept])
    f = torch.nn.functional.normalize(feats, dim=1).numpy()
    classes = sorted(set(labels[train]))
    means = np.stack([f[train & (labels == c)].mean(0) for c in classes])
    guess = np.array(classes)[(f[~train] @ means.T).argmax(1)]
    note = (
        f"decode {decode_s:.1f} s, forward {forward_s:.2f} s ({len(kept) / forward_s:.0f} img/s, {precision}, "
        f"batch {batch_size}); accuracy: nearest class mean"
    )
    return Row("features", decode_s + forward_s, float((guess == labels[~train]).mean()), len(kept), note)


def predict_step(bundle: Path, data: Path, device: str, precision: str) -> Row:
    import transferkit

    files = labelled_files(data, "val")
    p = transferkit.load(bundle, device=device, precision=precision)
    p.predict([str(f) for f, _ in files[:2]])  # warm-up (not timed): CUDA context, cuDNN's kernel choice
    synchronize(device)
    started = time.perf_counter()
    out = p.predict([str(f) for f, _ in files])
    synchronize(device)
    seconds = time.perf_counter() - started
    right = sum(o.get("label") == label for o, (_, label) in zip(out, files))
    overlap = "decoding overlaps the forward" if getattr(p, "overlap", False) else "decoding between forwards"
    note = f"finetune bundle, {len(files) / seconds:.0f} img/s incl. decoding, {p.precision}, {overlap}"
    return Row("predict", seconds, right / len(files), len(files), note)


def export_step(bundle: Path, work: Path) -> Row:
    from transferkit.export import export

    started = time.perf_counter()
    report = export(bundle, out=work / "onnx" / "model.onnx")  # refused (raises) when parity fails
    r = report["fp32"]
    agreement = r.get("agreement", r.get("top1_agreement"))  # the report's names before and after issue 20
    diff = r.get("max_abs_diff", r.get("max_abs_dp"))
    note = (
        f"ONNX fp32 of the finetune bundle, parity on {r['images']} images: top-1 agreement "
        f"{100 * agreement:.1f}%, max abs dp {diff:.1e}, " + ("accepted" if report["accepted"] else "REFUSED")
    )
    accuracy = r.get("accuracy_export", math.nan)
    return Row("export", time.perf_counter() - started, accuracy, r["images"], note, bool(report["accepted"]))


def check(data: Path, work: Path, device: str, precision: str, args) -> list[Row]:
    rows: list[Row] = []
    bundles: dict[str, Path] = {}

    def step(name: str, fn, *a) -> None:
        print(f"[gpu_check] {name} ({device}) ...", file=sys.stderr, flush=True)
        try:
            out = fn(*a)
            row, bundles[name] = out if isinstance(out, tuple) else (out, None)
        except Exception as e:  # one broken step must not waste the GPU time the others can still use
            traceback.print_exc()
            row = Row(name, note=f"FAILED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", ok=False)
        rows.append(row)
        print(f"[gpu_check] {name}: {row.seconds:.1f} s, accuracy {row.accuracy:.3f}; {row.note}", file=sys.stderr)

    for name in ("linear", "two-phase", "finetune"):
        step(name, fit_step, name, data, work, device, precision, args)
    step("features", features_step, data, device, precision)
    if bundles.get("finetune"):
        step("predict", predict_step, bundles["finetune"], data, device, precision)
        step("export", export_step, bundles["finetune"], work)
    else:
        rows += [Row(s, note="not run: no finetune bundle", ok=False) for s in ("predict", "export")]
    return rows


# ---- the table --------------------------------------------------------------------------------------------------


def _s(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.1f}"


def _pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:.1f}%"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # an error message's pipe would end the cell


def table(result: dict, cpu: dict | None = None) -> str:
    """Markdown: one row per step; with `cpu`, its seconds and accuracy beside, and the speed-up per image (the CPU
    result may cover a subset: seconds per image compare, seconds do not)."""
    head = f"Device: {result['device']} ({result['machine']}), {result['precision']}; data {result['data']}"
    lines = [head + (f"; CPU: {cpu['machine']}, {cpu['data']}" if cpu else ""), ""]
    if cpu is None:
        lines += ["| step | seconds | accuracy | images | notes |", "|---|---:|---:|---:|---|"]
        for r in result["rows"]:
            lines.append(
                f"| {r['step']} | {_s(r['seconds'])} | {_pct(r['accuracy'])} | {r['images']} | {_cell(r['note'])} |"
            )
        return "\n".join(lines) + "\n"
    dev = result["device"]
    lines += [
        f"| step | {dev} s | {dev} accuracy | images | CPU s | CPU accuracy | CPU images | speed-up per image "
        "| notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    other = {r["step"]: r for r in cpu["rows"]}
    for r in result["rows"]:
        c = other.get(r["step"], asdict(Row(r["step"])))
        per = (c["seconds"] / max(c["images"], 1)) / (r["seconds"] / max(r["images"], 1))
        lines.append(
            f"| {r['step']} | {_s(r['seconds'])} | {_pct(r['accuracy'])} | {r['images']} | {_s(c['seconds'])} | "
            f"{_pct(c['accuracy'])} | {c['images']} | {'–' if math.isnan(per) else f'{per:.1f}x'} | "
            f"{_cell(r['note'])} |"
        )
    return "\n".join(lines) + "\n"


def record(path: Path, result: dict, text: str, command: str) -> None:
    """The table into BENCHMARKS.md's "gpu" section, in place of the one there (which `make bench` keeps)."""
    made = f"Made with `{command}` on {result['date']}, {result['seconds']:.0f} s in all."
    write_section(path, "gpu", f"<!-- gpu:begin -->\n{INTRO}\n{made}\n\n{text}<!-- gpu:end -->")


def cpu_result(data: Path, work: Path, args) -> dict | None:
    """The same check on the CPU in a child process, on `--cpu-subset` images per class (it takes minutes there)."""
    out = work / "cpu.json"
    cmd = [sys.executable, __file__, "--device", "cpu", "--data", str(data), "--out", str(out)]
    cmd += ["--subset", str(args.cpu_subset), "--epochs", str(args.epochs)]
    cmd += ["--image-size", str(args.image_size)] if args.image_size else []
    print(f"[gpu_check] the CPU comparison: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    try:
        run(cmd)
    except RuntimeError as e:  # a failed step exits 1 but still writes its rows
        print(f"[gpu_check] the CPU run failed: {str(e)[-1500:]}", file=sys.stderr)
    return json.loads(out.read_text()) if out.exists() else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, default=None, help=f"train/<class>, val/<class> images (default {DEFAULT_DATA})"
    )
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto", help="auto: cuda when there is one")
    ap.add_argument("--tiny", action="store_true", help="generated images (unless --data), 1 epoch, 32 px: seconds")
    ap.add_argument("--out", type=Path, help="write the results (JSON) here; --cpu-table reads such a file")
    ap.add_argument("--epochs", type=int, default=3, help="two-phase and finetune epochs (as benchmarks/run.py)")
    ap.add_argument("--image-size", type=int, default=None, help="default: follow the data (224 on ants/bees)")
    ap.add_argument("--subset", type=int, default=0, help="use only the first N images per class and split")
    ap.add_argument("--also-cpu", action="store_true", help="run the same check on the CPU too, on --cpu-subset")
    ap.add_argument("--cpu-subset", type=int, default=20, help="images per class and split for --also-cpu")
    ap.add_argument("--cpu-table", type=Path, help="compare with an earlier CPU result (the --out of --device cpu)")
    ap.add_argument("--benchmarks", type=Path, help="write the table into this BENCHMARKS.md (its 'gpu' section)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (runs, bundles, the ONNX file)")
    args = ap.parse_args(argv)
    if args.tiny:
        args.epochs, args.image_size = 1, args.image_size or 32
    started = time.perf_counter()
    given = args.data or (None if args.tiny else DEFAULT_DATA)
    if given is not None:  # what is wrong with the options fails here, before minutes of work
        if not given.is_dir():
            sys.exit(f"gpu_check: no data at {given}: pass --data DIR (../shared/data/README.md), or --tiny.")
        check_layout(given)
    cpu = json.loads(args.cpu_table.read_text()) if args.cpu_table else None
    device, precision = pick_device(args.device)
    work = Path(tempfile.mkdtemp(prefix="tk-gpu-check-"))
    source = given or generate_tiny(work / "tiny")
    data = subset(source, work / "subset", args.subset) if args.subset else source
    rows = check(data, work, device, precision, args)
    label = str(args.data or ("generated (--tiny)" if args.tiny else DEFAULT_DATA))
    result = {
        "device": device,
        "precision": precision,
        "machine": describe(device),
        "data": label + (f", first {args.subset} per class and split" if args.subset else ""),
        "epochs": args.epochs,
        "image_size": args.image_size,
        "date": time.strftime("%Y-%m-%d"),
        "rows": [asdict(r) for r in rows],
    }
    if args.also_cpu and device == "cpu":
        print("[gpu_check] --also-cpu: this run is on the CPU already; no second run.", file=sys.stderr)
    elif args.also_cpu and cpu is None:  # --cpu-table, when given too, is the comparison: no second run
        cpu = cpu_result(source, work, args)
    result["seconds"] = time.perf_counter() - started
    result["cpu"] = cpu
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    text = table(result, cpu)
    over = result["seconds"] > BUDGET_S
    print(f"\n{text}\nTotal {result['seconds']:.0f} s" + (f" (OVER the {BUDGET_S} s budget)" if over else ""))
    if args.benchmarks:
        if device == "cpu":
            print(
                "[gpu_check] --benchmarks records a GPU figure; this run was on the CPU: not written.", file=sys.stderr
            )
        else:
            command = " ".join(["python", "benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])])
            record(args.benchmarks, result, text, command)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
