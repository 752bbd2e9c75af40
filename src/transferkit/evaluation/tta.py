"""Test-time augmentation (TTA): average a model's predictions over shifted and mirrored crops of each image.

    views = TTAViews(224, crop_pct=0.875, mean=cfg.mean, std=cfg.std, flip=True)
    x = views(image_chw_uint8)              # (10, 3, 224, 224): centre + 4 corner crops, each also mirrored
    probs = average_views(view_logits)      # (N, K): mean of the 10 softmaxes (classification; each task has its
    tta_summary(view_logits, labels)        # own mean in Task.average_views); what TTA changed: accuracy and loss
                                            # with and without, fixed/broken

The image arrives decoded at the eval resize (224 / 0.875 = 256 px short side), so the corner crops shift the
224 px window by up to 32 px: small moves that the model should be indifferent to. View 0 is exactly the plain
centre crop, so the plain prediction comes for free and TTA can always be compared with it.
Cost: 10 views = 10x the compute of a plain prediction.

What it buys depends on training. Measured on linear probes (head on frozen features; the backbone never saw a
shifted crop): hymenoptera val accuracy 0.9477 -> 0.9477 (1 fixed, 1 broken), digits at 64 px 0.948 -> 0.919
(5 views, no flips). `tta_summary` reports exactly this for the data at hand, so nobody has to take TTA on faith.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from ..data.sizes import resize_size
from .calibration import softmax


class TTAViews:
    """uint8 CHW image -> (views, 3, size, size) normalised float crops: centre first, then corners, then mirrors."""

    def __init__(self, size: int, *, crop_pct: float, mean, std, interpolation: str = "bicubic", flip: bool = True):
        self.size = size
        self.resize = resize_size(size, crop_pct)
        self.mean, self.std = list(mean), list(std)
        modes = {m.value: m for m in TF.InterpolationMode}  # "bicubic" -> InterpolationMode.BICUBIC, as in training
        self.mode = modes.get(interpolation, TF.InterpolationMode.BICUBIC)
        self.flip = flip  # off for models trained without flips (digits, text): a mirrored 2 is not a 2

    @property
    def count(self) -> int:
        return 10 if self.flip else 5

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = TF.resize(x, self.resize, interpolation=self.mode, antialias=True)  # a no-op on images decoded for eval
        tl, tr, bl, br, centre = TF.five_crop(x, self.size)
        crops = [centre, tl, tr, bl, br]
        if self.flip:
            crops += [TF.horizontal_flip(c) for c in crops]
        v = torch.stack(crops).to(torch.float32) / 255.0
        return TF.normalize(v, self.mean, self.std)


def trained_with_flip(meta: dict) -> bool:
    """Whether the model was trained on flipped images (then TTA mirrors too): the bundle's own `tta.flip`; for
    bundles from before it was stored, the run's config.json beside best/; True if unknown."""
    if "flip" in meta.get("tta", {}):
        return bool(meta["tta"]["flip"])
    config = Path(meta.get("_path", ".")).parent / "config.json"
    try:
        return bool(json.loads(config.read_text())["config"]["data"].get("flip", True))
    except (OSError, ValueError, KeyError, TypeError):
        return True


def average_views(view_logits, temperature: float = 1.0) -> np.ndarray:
    """(N, V, K) logits -> (N, K) probabilities: the mean over views of softmax(logits / T)."""
    v = np.asarray(view_logits, dtype=np.float64)
    n, views, k = v.shape
    return softmax(v.reshape(n * views, k), temperature).reshape(n, views, k).mean(axis=1)


def averaged_logits(view_logits) -> torch.Tensor:
    """(N, V, K) -> (N, K) log of the averaged probabilities: logits whose softmax is the TTA prediction."""
    return torch.from_numpy(np.log(np.clip(average_views(view_logits), 1e-12, 1.0))).float()


def tta_summary(view_logits, labels) -> dict:
    """What TTA changed against the plain centre crop (view 0), on labelled images."""
    import torch.nn.functional as F

    v = torch.as_tensor(np.asarray(view_logits), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    plain, tta = v[:, 0], averaged_logits(v)
    p_plain, p_tta = plain.argmax(1), tta.argmax(1)
    right_plain, right_tta = p_plain == y, p_tta == y
    return {
        "views": int(v.shape[1]),
        "accuracy_without": float(right_plain.float().mean()) if len(y) else float("nan"),
        "accuracy_with": float(right_tta.float().mean()) if len(y) else float("nan"),
        "loss_without": float(F.cross_entropy(plain, y)) if len(y) else float("nan"),
        "loss_with": float(F.cross_entropy(tta, y)) if len(y) else float("nan"),
        "changed": int((p_plain != p_tta).sum()),  # predictions TTA moved to another class
        "fixed": int((~right_plain & right_tta).sum()),  # ... from wrong to right
        "broken": int((right_plain & ~right_tta).sum()),  # ... from right to wrong
    }


def describe(summary: dict) -> str:
    """One line for people: 'TTA (10 views): accuracy 0.9412 -> 0.9477 (+0.0065), loss 0.21 -> 0.19; 3 fixed, 1 broken.'
    Any task's summary (`Task.tta_summary`): its score under "score" (r2, map), the changed answers where it has them."""
    s = summary
    score = s.get("score", "accuracy")
    before, after = s[f"{score}_without"], s[f"{score}_with"]
    line = (
        f"TTA ({s['views']} views): {score} {before:.4f} -> {after:.4f} ({after - before:+.4f}), loss "
        f"{s['loss_without']:.4f} -> {s['loss_with']:.4f}"
    )
    if "fixed" in s:
        return line + f"; {s['changed']} prediction(s) changed: {s['fixed']} fixed, {s['broken']} broken."
    if "changed" in s:
        return line + f"; {s['changed']} answer(s) changed."
    return line + "."
