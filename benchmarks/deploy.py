"""Deploy benchmarks, side by side in one run: PyTorch eager vs ONNX Runtime (fp32, int8) at batch 1 and 32, what
int8 and an in-graph resize cost in agreement, and a bounded load test of `transferkit serve` on 127.0.0.1.

    python benchmarks/deploy.py --data ../shared/data/hymenoptera                # trains a 224 px linear bundle first
    python benchmarks/deploy.py --bundle runs/x/best --requests 500 --out /tmp/deploy.md

Prints a markdown section (BENCHMARKS.md, "Deploy"). Speeds are measured in interleaved rounds (every runtime once
per round, the median round reported), so that load from other work on a shared machine hits all of them alike.
All timings start from decoded uint8 images at the bundle's short side and end at calibrated probabilities.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def timed_rounds(fns: dict, rounds: int) -> dict[str, float]:
    """Median seconds of each fn over `rounds` rounds, fns interleaved within a round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def speed(bundle: Path, onnx_fp32: Path, onnx_int8: Path, arrays: list[np.ndarray], rounds: int) -> list[dict]:
    """Each runtime as transferkit runs it (every core: torch's intra-op threads, ORT's thread pool), then all of
    them on one thread: on a shared machine torch's OpenMP threads wait on each other, and the one-thread rows show
    what is left of the difference without that."""
    import torch

    from transferkit.export.runner import OnnxRunner
    from transferkit.predict import Predictor

    torch_runners = {
        "PyTorch eager fp32": Predictor(bundle, device="cpu", precision="fp32"),
        "PyTorch eager bf16": Predictor(bundle, device="cpu", precision="bf16"),
    }
    default_threads = torch.get_num_threads()

    def call(r, images):
        out = r.probabilities(images)
        return out[0] if isinstance(out, tuple) else out

    rows = []
    for threads in (default_threads, 1):
        torch.set_num_threads(threads)
        runners = {
            **torch_runners,
            "ONNX Runtime fp32": OnnxRunner(onnx_fp32, threads=threads),
            "ONNX Runtime int8": OnnxRunner(onnx_int8, threads=threads),
        }
        for batch, n in ((1, 32), (32, 128)):
            images = (arrays * (n // len(arrays) + 1))[:n]
            for r in runners.values():
                r.batch_size = batch
                call(r, images[: batch * 2])  # warm-up: allocations, ORT's first-run planning
            fns = {
                name: (
                    lambda r=r, images=images, batch=batch, n=n: [
                        call(r, images[i : i + batch]) for i in range(0, n, batch)
                    ]
                )
                for name, r in runners.items()
            }
            for name, sec in timed_rounds(fns, rounds).items():
                rows.append(
                    {
                        "runtime": name,
                        "threads": threads,
                        "batch": batch,
                        "images_per_s": n / sec,
                        "ms_per_batch": 1000 * sec / (n // batch),
                    }
                )
    torch.set_num_threads(default_threads)
    return rows


def resize_cost(bundle: Path, paths: list[Path]) -> dict:
    """What resizing inside a graph would cost: torch's antialiased bicubic of the whole decoded photo (what a graph
    given whole images would compute) against what training saw (open_rgb: JPEG draft decoding, then Pillow's filter),
    through the same fp32 model."""
    import torch
    import torch.nn.functional as F

    from transferkit.data.images import open_rgb
    from transferkit.export.parity import compare
    from transferkit.predict import Predictor

    p = Predictor(bundle, device="cpu", precision="fp32")
    pillow, tensor = [], []
    for path in paths:
        full = np.array(open_rgb(path))  # the whole photo, as a caller would hand it to such a graph
        pillow.append(np.array(open_rgb(path, p.short_side, p.interpolation)))  # open_rgb's draft + Pillow resize
        h, w = full.shape[:2]
        s = p.short_side / min(h, w)
        size = (max(p.short_side, round(h * s)), max(p.short_side, round(w * s)))
        x = torch.from_numpy(full).permute(2, 0, 1)[None].float()
        y = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
        tensor.append(y.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy())
    ref = p.probabilities(pillow)[0].numpy()
    return compare(ref, p.probabilities(tensor)[0].numpy(), None)


async def load_test(url: str, bodies: list[tuple[str, bytes]], requests: int, concurrency: int) -> dict:
    import httpx

    latencies, errors, statuses = [], 0, {}
    counter = iter(range(requests))

    async def worker(client):
        nonlocal errors
        for i in counter:
            name, data = bodies[i % len(bodies)]
            t = time.perf_counter()
            try:
                r = await client.post(url + "/predict", files=[("file", (name, data, "image/jpeg"))])
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - t)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        t = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t
    ms = np.array(latencies) * 1000
    return {
        "requests": requests,
        "concurrency": concurrency,
        "seconds": wall,
        "throughput": requests / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "errors": errors,
        "statuses": statuses,
    }


def memory_mib(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def serve_and_load(model: Path, bodies, requests: int, concurrency: int, max_batch: int, max_wait_ms: float) -> dict:
    sys.path.insert(0, str(ROOT))
    from tests.deploy_models import start_server, stop_server

    proc, url = start_server(model, "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms))
    try:
        import httpx

        httpx.post(url + "/predict", files=[("file", (bodies[0][0], bodies[0][1], "image/jpeg"))], timeout=60)
        before = memory_mib(proc.pid)
        result = asyncio.run(load_test(url, bodies, requests, concurrency))
        after = memory_mib(proc.pid)
    finally:
        code = stop_server(proc)
    return {
        **result,
        "rss_before_mib": before["VmRSS"],
        "rss_after_mib": after["VmRSS"],
        "peak_mib": after["VmHWM"],
        "exit_code": code,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "hymenoptera")
    ap.add_argument("--bundle", type=Path, help="An existing bundle (default: train a 224 px linear one on --data).")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--out", type=Path, help="Also write the markdown here.")
    args = ap.parse_args()

    import transferkit
    from transferkit.engine.runtime import inference_precision
    from transferkit.export import export
    from transferkit.export.runner import Preprocess

    work = Path(tempfile.mkdtemp(prefix="tk-deploy-bench-"))
    t = time.perf_counter()
    bundle = (
        args.bundle
        or transferkit.fit(args.data, strategy="linear", image_size=args.image_size, quiet=True, out=work / "runs").best
    )
    print(f"bundle {bundle} ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    fp32 = export(bundle, out=work / "model.onnx")
    int8 = export(bundle, int8=True, force=True, out=work / "model.int8.onnx")
    meta = json.loads((Path(bundle) / "transferkit.json").read_text())
    pre = meta["preprocessing"]
    from transferkit.data.sizes import resize_size

    side = resize_size(pre["image_size"], pre["crop_pct"])
    val = sorted(p for p in (args.data / "val").rglob("*.jpg"))
    decode = Preprocess(side, pre["interpolation"])
    arrays = [decode.file(p)[0] for p in val[:64]]
    print("speed ...", file=sys.stderr)
    rows = speed(Path(bundle), work / "model.onnx", work / "model.int8.onnx", arrays, args.rounds)
    print("resize ...", file=sys.stderr)
    resize = resize_cost(Path(bundle), val)
    print("load test ...", file=sys.stderr)
    bodies = [(p.name, p.read_bytes()) for p in val[:64]]
    load = serve_and_load(work / "model.onnx", bodies, args.requests, args.concurrency, 32, 5.0)

    by = {(r["runtime"], r["threads"], r["batch"]): r for r in rows}
    lines = [
        "## Deploy",
        "",
        f"`python benchmarks/deploy.py --data {args.data}` ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, shared; efficientnet_lite0 linear bundle at {pre['image_size']} px on hymenoptera, "
        f'{len(val)} val images; {time.strftime("%Y-%m-%d")}). `precision="auto"` picks '
        f"**{inference_precision('auto', 'cpu')}** on this CPU.",
        "",
        "Throughput from decoded uint8 images (short side resized) to calibrated probabilities; median of "
        f"{args.rounds} interleaved rounds.",
        "",
        "| runtime | threads | batch | images/s | ms per batch | vs eager fp32 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        eager = by[("PyTorch eager fp32", r["threads"], r["batch"])]["images_per_s"]
        lines.append(
            f"| {r['runtime']} | {r['threads']} | {r['batch']} | {r['images_per_s']:.1f} | "
            f"{r['ms_per_batch']:.1f} | {r['images_per_s'] / eager:.2f}x |"
        )
    f, q = fp32["fp32"], int8["int8"]
    lines += [
        "",
        f"Agreement with the bundle (PyTorch fp32) on {f['images']} val images: fp32 ONNX top-1 "
        f"{f['top1_agreement']:.1%}, max |Δp| {f['max_abs_dp']:.1e}; int8 ONNX top-1 {q['top1_agreement']:.1%}, max "
        f"|Δp| {q['max_abs_dp']:.3f}, accuracy {q['accuracy_bundle']:.1%} -> {q['accuracy_export']:.1%} "
        f"({q['accuracy_change']:+.1%}; {int8['int8_calibration']} for calibration; "
        f"{'inside' if int8['accepted'] else 'outside'} the export bound). int8 file "
        f"{(work / 'model.int8.onnx').stat().st_size / 2**20:.1f} MiB vs {(work / 'model.onnx').stat().st_size / 2**20:.1f} MiB.",
        "",
        "In-graph resize (torch's antialiased bicubic on the whole decoded photo, what a graph given whole images would "
        "compute, against the pixels training saw: Pillow's filter after JPEG draft decoding): top-1 "
        f"agreement {resize['top1_agreement']:.1%} ({resize['disagreements']} of {resize['images']} differ), max |Δp| "
        f"{resize['max_abs_dp']:.3f}, mean |Δp| {resize['mean_abs_dp']:.4f}. Hence the contract: the caller resizes with "
        f"Pillow, the graph crops and normalises.",
        "",
        f"Load test: `transferkit serve` (ONNX fp32, --max-batch 32 --max-wait-ms 5) on 127.0.0.1, {load['requests']} "
        f"requests of one photo each, {load['concurrency']} concurrent, client on the same 2 cores: "
        f"**p50 {load['p50_ms']:.0f} ms, p99 {load['p99_ms']:.0f} ms, {load['throughput']:.1f} requests/s, "
        f"{load['errors']} errors** (statuses {load['statuses']}); server RSS {load['rss_before_mib']:.0f} MiB before, "
        f"{load['rss_after_mib']:.0f} MiB after, peak {load['peak_mib']:.0f} MiB; SIGTERM exit {load['exit_code']}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    print(
        json.dumps({"speed": rows, "fp32": f, "int8": q, "resize": resize, "load": load}, default=str), file=sys.stderr
    )
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
