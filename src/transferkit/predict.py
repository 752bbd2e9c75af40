"""`Predictor`: a saved bundle -> top-k classes for images (files, folders, PIL images or arrays).

    p = Predictor("runs/ants-linear/best")
    p.predict("bee.jpg")                   # {'path': 'bee.jpg', 'label': 'bees', 'probability': 0.97, 'top_k': [...]}
    p.predict("photos/", top_k=2)          # a list, one dict per image, in sorted path order

Images are decoded exactly as during training and evaluation (same resize, crop and normalisation), so `predict`
and `evaluate` agree on every image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .bundle import load_bundle
from .data.dataset import DecodedImages
from .data.decode import decode_samples
from .data.images import IMAGE_EXTENSIONS, is_hidden
from .data.sources import DataSource, Sample
from .data.transforms import eval_transform, resize_size
from .engine.runtime import set_threads, tune_malloc


def image_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(
        p for p in path.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not any(is_hidden(part) for part in p.relative_to(path).parts)
    )


class Predictor:
    def __init__(self, path: str | os.PathLike, device: str = "auto", batch_size: int = 32):
        tune_malloc()
        set_threads()
        self.model, self.meta = load_bundle(path)
        self.classes: list[str] = self.meta["classes"]
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
        self.model.to(self.device, memory_format=torch.channels_last)
        pre = self.meta["preprocessing"]
        self.image_size = pre["image_size"]
        self.short_side = resize_size(pre["image_size"], pre["crop_pct"])
        self.interpolation = pre["interpolation"]
        self.transform = eval_transform(pre["image_size"], pre["crop_pct"], pre["mean"], pre["std"], pre["interpolation"])
        self.batch_size = batch_size

    @torch.no_grad()
    def _forward(self, images: list[np.ndarray]) -> torch.Tensor:
        ds = DecodedImages(images, [0] * len(images), self.transform)
        out = []
        for i in range(0, len(ds), self.batch_size):
            x = torch.stack([ds[j][0] for j in range(i, min(i + self.batch_size, len(ds)))])
            x = x.to(self.device).contiguous(memory_format=torch.channels_last)
            out.append(self.model(x).float().cpu())
        return torch.cat(out) if out else torch.empty(0, len(self.classes))

    def logits_for(self, src: DataSource, samples: list[Sample], batch_size: int | None = None):
        """(logits, samples kept, skipped [(key, reason)]) for samples of a DataSource."""
        if batch_size:
            self.batch_size = batch_size
        images, _, skipped = decode_samples(src, samples, self.short_side, self.interpolation)
        bad = {k for k, _ in skipped}
        kept = [s for s in samples if s.key not in bad]
        return self._forward(images), kept, skipped

    def predict(self, inputs: Any, top_k: int = 5) -> dict | list[dict]:
        """One dict for one image (path, PIL image or array); a list for a folder or a list of inputs."""
        single = not isinstance(inputs, (list, tuple)) and not (isinstance(inputs, (str, Path)) and Path(inputs).is_dir())
        items = self._items(inputs)
        from .data.images import array_to_image, resize_short, to_rgb
        from .data.sources import DataSource as _DS

        arrays, names, errors = [], [], {}
        file_samples = [Sample(str(x), 0) for x in items if isinstance(x, Path)]
        if file_samples:
            src = _DS(Path("."), "files", [], {})
            imgs, _, skipped = decode_samples(src, file_samples, self.short_side, self.interpolation)
            errors = dict(skipped)
            it = iter(imgs)
            decoded = {s.key: next(it) for s in file_samples if s.key not in errors}
        for x in items:
            if isinstance(x, Path):
                names.append(str(x))
                arrays.append(decoded.get(str(x)))
            else:
                img = to_rgb(x) if hasattr(x, "mode") else array_to_image(np.asarray(x))
                names.append(None)
                arrays.append(np.asarray(resize_short(img, self.short_side, self.interpolation)))
        good = [a for a in arrays if a is not None]
        probs = torch.softmax(self._forward(good), dim=1) if good else torch.empty(0)
        k = max(1, min(top_k, len(self.classes)))
        results, gi = [], 0
        for name, a in zip(names, arrays):
            if a is None:
                results.append({"path": name, "error": errors.get(name, "unreadable")})
                continue
            p = probs[gi]
            gi += 1
            top = torch.topk(p, k)
            results.append({
                "path": name,
                "label": self.classes[int(top.indices[0])],
                "probability": float(top.values[0]),
                "top_k": [{"label": self.classes[int(i)], "probability": float(v)} for v, i in zip(top.values, top.indices)],
            })
        return results[0] if single and len(results) == 1 else results

    def _items(self, inputs) -> list:
        if isinstance(inputs, (list, tuple)):
            out = []
            for x in inputs:
                out += self._items(x)
            return out
        if isinstance(inputs, (str, Path)):
            path = Path(inputs).expanduser()
            if not path.exists():
                from .errors import TransferkitError

                raise TransferkitError(f"'{path}' does not exist.")
            files = image_files(path)
            if not files:
                from .errors import TransferkitError

                raise TransferkitError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in '{path}'.")
            return files
        return [inputs]
