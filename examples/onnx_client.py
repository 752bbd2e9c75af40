"""A reference client for a transferkit ONNX export: onnxruntime, NumPy and Pillow only (no torch, no transferkit).

    python examples/onnx_client.py runs/ants-linear/best/model.onnx bee.jpg photos/ --json

Prints what `transferkit predict BUNDLE IMAGES --json` prints (path, label, probability, top_k per image), because it
decodes as transferkit does and the graph does the rest. The contract, also in the model's metadata ("contract"):
the caller gives uint8 RGB (N, H, W, 3) whose short side is preprocessing.short_side, resized by Pillow with
preprocessing.interpolation, decoded as the metadata's "decode" says (`load` below: a JPEG in Pillow's draft mode at
the short side, which changes pixels, so skipping it changes answers; then EXIF rotation); the graph centre-crops
image_size, normalises and returns the task's answer: "probabilities" = softmax(logits / temperature) for a
classifier, "values" in the target's units for a regression, "probabilities" = sigmoid(logits) for multi-label,
whose labels are those at or over the per-label "thresholds" in the metadata. Copy these ~120 lines into your
application.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
SYSTEM_FILES = (
    "thumbs.db",
    "ehthumbs.db",
    "desktop.ini",
    ".ds_store",
    "__macosx",
    "@eadir",
    "$recycle.bin",
    "system volume information",
)
FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}
Image.MAX_IMAGE_PIXELS = 200_000_000  # as transferkit: any real photo, not a decompression bomb


def image_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    hidden = lambda name: name.startswith(".") or name.lower() in SYSTEM_FILES  # noqa: E731
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(hidden(part) for part in p.relative_to(path).parts)
    )


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB, as transferkit does it (alpha dropped, 16-bit scaled to 8)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float32)
        hi = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        if img.mode == "F" and a.max() <= 1.0:
            hi = 1.0
        return Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        return img.convert("RGBA").convert("RGB")
    return img.convert("RGB")


def load(path: Path, short_side: int, interpolation: str, jpeg_draft: bool = True) -> np.ndarray:
    """The reference decode (metadata "decode"): a JPEG in draft mode at the short side, rotate per EXIF, RGB,
    resize so the short side is `short_side`: the contract's input for one image, the pixels `predict` sees."""
    with Image.open(path) as img:
        if jpeg_draft and img.format == "JPEG":
            img.draft("RGB", (short_side, short_side))  # libjpeg scales while decoding, as transferkit decodes
        img = to_rgb(ImageOps.exif_transpose(img))
        img.load()
    w, h = img.size
    scale = short_side / min(w, h)
    size = (max(short_side, round(w * scale)), max(short_side, round(h * scale)))
    if size != (w, h):
        img = img.resize(size, FILTERS[interpolation])
    return np.asarray(img, dtype=np.uint8)


def centre_crop(a: np.ndarray, size: int) -> np.ndarray:
    """The graph crops this too; cropping here lets images of any aspect ratio share one batch."""
    top, left = int(round((a.shape[0] - size) / 2.0)), int(round((a.shape[1] - size) / 2.0))
    return a[top : top + size, left : left + size]


def answer(p: np.ndarray, task: str, classes: list[str], meta: dict, k: int) -> dict:
    """One image's answer, as `transferkit predict --json` gives it for the task."""
    if task == "regression":
        return {"value": float(p.reshape(-1)[0]), "target": classes[0] if classes else "target"}
    order = np.argsort(-p, kind="stable")[:k]
    top = [{"label": classes[j], "probability": float(p[j])} for j in order]
    if task == "multilabel":
        cut = json.loads(meta.get("thresholds", "null")) or [0.5] * len(classes)
        over = [j for j in np.argsort(-p, kind="stable") if p[j] >= cut[j]]
        return {
            "labels": [{"label": classes[j], "probability": float(p[j])} for j in over],
            "top_k": [{**t, "threshold": float(cut[j])} for t, j in zip(top, order)],
        }
    return {"label": classes[order[0]], "probability": float(p[order[0]]), "top_k": top}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="A transferkit .onnx export.")
    ap.add_argument("images", type=Path, nargs="+", help="Image files or folders.")
    ap.add_argument("--top-k", "-k", type=int, default=5)  # as `transferkit predict` (TOP_K)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", action="store_true", help="Print one JSON list, as `transferkit predict --json`.")
    args = ap.parse_args()

    session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    classes, pre = json.loads(meta["classes"]), json.loads(meta["preprocessing"])
    task = meta.get("task", "classification")
    output = session.get_outputs()[0].name  # "probabilities", or "values" for a regression
    side, size, k = pre["short_side"], pre["image_size"], max(1, min(args.top_k, len(json.loads(meta["classes"]))))
    draft = json.loads(meta.get("decode", "{}")).get("jpeg_draft", True)  # exports before "decode" drafted too
    files = [f for p in args.images for f in image_files(p)]

    results = []
    for i in range(0, len(files), args.batch_size):
        batch, names, errors = [], [], {}
        for f in files[i : i + args.batch_size]:
            try:
                batch.append(centre_crop(load(f, side, pre["interpolation"], draft), size))
                names.append(str(f))
            except Exception as e:  # noqa: BLE001 - an unreadable file is reported, never fatal
                errors[str(f)] = f"{type(e).__name__}: {e}"
        probs = iter(session.run([output], {"images": np.stack(batch)})[0] if batch else [])
        for f in files[i : i + args.batch_size]:
            if str(f) in errors:
                results.append({"path": str(f), "error": errors[str(f)]})
                continue
            results.append({"path": str(f), **answer(next(probs), task, classes, meta, k)})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "value" in r:
                shown = f"{r['target']} {r['value']:.6g}"
            elif "labels" in r:
                shown = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["labels"]) or "(no label)"
            elif "label" in r:
                shown = f"{r['label']} {r['probability']:.3f}  " + ", ".join(
                    f"{t['label']} {t['probability']:.3f}" for t in r["top_k"]
                )
            print(r["path"], r.get("error") or shown)
    return 0 if any("error" not in r for r in results) else 2


if __name__ == "__main__":
    sys.exit(main())
