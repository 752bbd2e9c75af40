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
from .evaluation.tta import TTAViews, average_views, trained_with_flip


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
        # Temperature scaling fitted on the run's validation split (1.0 for bundles without one): probabilities
        # come out honest, the top class is unchanged.
        self.temperature = float(self.meta.get("calibration", {}).get("temperature", 1.0))
        self.views = TTAViews(pre["image_size"], crop_pct=pre["crop_pct"], mean=pre["mean"], std=pre["std"],
                              interpolation=pre["interpolation"], flip=trained_with_flip(self.meta["_path"]))

    @torch.no_grad()
    def _forward(self, images: list[np.ndarray], tta: bool = False) -> torch.Tensor:
        """(N, K) logits; with tta, (N, V, K): one row per view of `self.views` (view 0 = the plain centre crop)."""
        ds = DecodedImages(images, [0] * len(images), self.views if tta else self.transform)
        per_batch = max(1, self.batch_size // self.views.count) if tta else self.batch_size  # images x views per forward
        out = []
        for i in range(0, len(ds), per_batch):
            x = torch.stack([ds[j][0] for j in range(i, min(i + per_batch, len(ds)))])
            n = x.shape[0]
            x = x.flatten(0, 1) if tta else x  # (n, V, C, H, W) -> (n * V, C, H, W)
            x = x.to(self.device).contiguous(memory_format=torch.channels_last)
            logits = self.model(x).float().cpu()
            out.append(logits.view(n, -1, logits.shape[-1]) if tta else logits)
        if out:
            return torch.cat(out)
        return torch.empty(0, self.views.count, len(self.classes)) if tta else torch.empty(0, len(self.classes))

    def logits_for(self, src: DataSource, samples: list[Sample], batch_size: int | None = None, tta: bool = False):
        """(logits, samples kept, skipped [(key, reason)]) for samples of a DataSource.

        Raw logits (no temperature). With tta=True the logits are (N, views, K); `evaluation.tta` combines them.
        """
        if batch_size:
            self.batch_size = batch_size
        images, _, skipped = decode_samples(src, samples, self.short_side, self.interpolation)
        bad = {k for k, _ in skipped}
        kept = [s for s in samples if s.key not in bad]
        return self._forward(images, tta), kept, skipped

    def probabilities(self, images: list[np.ndarray], tta: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(calibrated probabilities, the plain ones when tta else None) for decoded images."""
        logits = self._forward(images, tta)
        if not tta:
            return torch.softmax(logits / self.temperature, dim=1), None
        plain = torch.softmax(logits[:, 0] / self.temperature, dim=1)
        return torch.from_numpy(average_views(logits.numpy(), self.temperature)).float(), plain

    def predict(self, inputs: Any, top_k: int = 5, tta: bool = False) -> dict | list[dict]:
        """One dict for one image (path, PIL image or array); a list for a folder or a list of inputs.

        Probabilities are calibrated (the bundle's temperature). tta=True averages 5 crops and their mirrors (10x the
        compute; no mirrors for models trained without flips) and adds `without_tta` (the plain label and
        probability) to each result.
        """
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
                arrays.append(np.array(resize_short(img, self.short_side, self.interpolation)))
        good = [a for a in arrays if a is not None]
        probs, plain = self.probabilities(good, tta) if good else (torch.empty(0), None)
        k = max(1, min(top_k, len(self.classes)))
        results, gi = [], 0
        for name, a in zip(names, arrays):
            if a is None:
                results.append({"path": name, "error": errors.get(name, "unreadable")})
                continue
            p = probs[gi]
            top = torch.topk(p, k)
            results.append({
                "path": name,
                "label": self.classes[int(top.indices[0])],
                "probability": float(top.values[0]),
                "top_k": [{"label": self.classes[int(i)], "probability": float(v)} for v, i in zip(top.values, top.indices)],
            })
            if plain is not None:
                j = int(plain[gi].argmax())
                results[-1]["without_tta"] = {"label": self.classes[j], "probability": float(plain[gi, j])}
            gi += 1
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
