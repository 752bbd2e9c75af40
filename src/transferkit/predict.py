"""`Predictor`: a saved bundle -> top-k classes for images (files, folders, PIL images or arrays).
It is three parts: `Preprocess` (the bundle's preset), a runner (`TorchRunner` here; ONNX Runtime in export/) and
the task's post-processing (tasks.py).

    p = Predictor("runs/ants-linear/best")
    p.predict("bee.jpg")                   # {'path': 'bee.jpg', 'label': 'bees', 'probability': 0.97, 'top_k': [...]}
    p.predict("photos/", top_k=2)          # a list, one dict per image, in sorted path order

Images are decoded exactly as during training and evaluation (same resize, crop and normalisation), so `predict`
and `evaluate` agree on every image. Both stream a batch at a time (memory holds two batches, not the folder): threads
decode the next batch while a GPU runs the current one; on the CPU they decode it between forwards, on every core.
"""

from __future__ import annotations

import io
import numbers
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torchvision.transforms import v2 as T

from .bundle import load_bundle
from .config import TOP_K
from .data.decode import decode_one
from .data.images import array_to_image, check_file, image_inputs, open_image, open_rgb, resize_short, to_rgb
from .data.imageset import ImageSet
from .data.sources import DataSource, Sample, image_batch
from .data.transforms import eval_transform, resize_size
from .engine.fuse import FOLD_MIN_PIXELS, folded
from .engine.runtime import PRECISIONS, autocast_for, inference_precision
from .evaluation.tta import TTAViews, trained_with_flip
from .tasks import task_of

Item = TypeVar("Item")
Decoded = tuple[np.ndarray | None, str | None]  # (HWC uint8 array, None), or (None, why the file is unreadable)
_FILES = ImageSet(Path("."), [])  # images apart from labels: `load` opens a key as a path
ACCEPTED = (
    "predict takes image paths or folders (str, Path), PIL images, encoded image bytes (PNG, JPEG, ...), one image "
    "as an array or tensor ((H, W, 3), (H, W), or a tensor's (3, H, W)), a batch ((N, H, W, 3), (N, 3, H, W) or grey "
    "(N, H, W)) of uint8 0-255 or floats in [0, 1], or a list of these"
)


def user_inputs(inputs: Any) -> tuple[list, bool]:
    """What users pass to `predict` -> (the items `Preprocess.load` takes: Path, PIL image, uint8 HWC array, BytesIO;
    whether one answer is wanted rather than a list). Arrays are checked as `from_arrays` checks them (NaN, range,
    16-bit: data/sources.image_batch); anything else is a TransferkitError listing what is accepted."""
    from .errors import TransferkitError

    if isinstance(inputs, (list, tuple)):
        return [x for item in inputs for x in user_inputs(item)[0]], False
    if inputs is None:
        raise TransferkitError(f"predict got None: nothing to predict. {ACCEPTED}.")
    if isinstance(inputs, (str, Path)):
        return image_inputs(inputs), not Path(inputs).expanduser().is_dir()
    if isinstance(inputs, (bytes, bytearray, memoryview)):
        if not len(inputs):
            raise TransferkitError(f"predict got empty bytes. {ACCEPTED}.")
        return [io.BytesIO(bytes(inputs))], True  # decoded as a file is (EXIF, JPEG draft), by `Preprocess.load`
    if hasattr(inputs, "detach") or isinstance(inputs, np.ndarray):  # numpy, torch (CPU or GPU), anything array-like
        a = inputs.detach().cpu().numpy() if hasattr(inputs, "detach") else np.asarray(inputs)
        if a.size == 0:
            raise TransferkitError(f"predict got an empty array {a.shape}. {ACCEPTED}.")
        batch = a.ndim == 4 or (a.ndim == 3 and grey_batch(a, torch_layout=hasattr(inputs, "detach")))
        return list(image_batch(a if batch else a[None], "the images" if batch else "the image")), not batch
    if hasattr(inputs, "mode") and hasattr(inputs, "getbands"):  # a PIL image (a tensor has .mode() too)
        return [inputs], True
    raise TransferkitError(f"predict cannot read a {type(inputs).__name__}. {ACCEPTED}.")


def grey_batch(a: np.ndarray, torch_layout: bool) -> bool:
    """Whether a 3-D array is N grey images (N, H, W), as `from_arrays` reads it, rather than one image: (H, W, C)
    with C in 1, 3, 4, or (C, H, W) with C 1 (or 3, 4 for a torch tensor, torch's layout). A NumPy (3, H, W) is
    either, so it is refused with both readings: read as one colour image, three digits answered as one."""
    from .errors import TransferkitError

    if a.shape[-1] in (1, 3, 4) or a.shape[0] == 1 or (torch_layout and a.shape[0] in (3, 4)):
        return False
    if a.shape[0] in (3, 4):
        n, h, w = a.shape
        raise TransferkitError(
            f"predict got an array {a.shape}: {n} grey {h}x{w} images, or one {w}x{h} image with {n} colour planes "
            f"first? Give x[..., None] ({n}, {h}, {w}, 1) for {n} grey images, or x.transpose(1, 2, 0) ({h}, {w}, {n}) "
            "for one image."
        )
    return True


def source_size(x: Any) -> tuple[int, int] | None:
    """(width, height) of an input before decoding (a file's header, an array's shape); None if unknown."""
    try:
        if isinstance(x, Path):
            return _FILES.image_size(str(x))
        if hasattr(x, "read"):
            x.seek(0)
            with open_image(x) as img:
                return img.size
        if hasattr(x, "mode"):
            return x.size
        return int(x.shape[1]), int(x.shape[0])
    except Exception:  # noqa: BLE001 - an unreadable input is reported by its decoding, not here
        return None


def tiny_warning(size: tuple[int, int] | None, image_size: int, data_side: float | None = None) -> str | None:
    """doctor's "too-small" rule (data/checks.py), per image: a short side under half the input is upscaled so far
    that the answer says little about the picture. data_side: the median short side of the images the model learnt
    from (bundles record it): the bar is then half of that, since a model trained on 64 px tiles read at 192 px
    (features from every depth) was made for 64 px images."""
    side = int(min(data_side, image_size)) if data_side else image_size
    if size is None or min(size) * 2 >= side:
        return None
    if data_side:
        return (
            f"the image is {size[0]}x{size[1]} px, short side under {side // 2} px (half the {side} px of the images "
            "the model learnt from): the answer says little about it"
        )
    return (
        f"the image is {size[0]}x{size[1]} px, short side under {image_size // 2} px (half the model's {image_size} px "
        "input): upscaled this far, the answer says little about it"
    )


def _centre(a: np.ndarray, size: int) -> np.ndarray:
    """The centre size x size of an HWC array, at the offsets torchvision's CenterCrop takes."""
    top, left = int(round((a.shape[0] - size) / 2.0)), int(round((a.shape[1] - size) / 2.0))
    return a[top : top + size, left : left + size]


class Preprocess:
    """The bundle's preprocessing preset: the size images are decoded at, the batch transform, the TTA views.
    Exactly training's eval transform, so `predict` and `evaluate` give the numbers the run reported."""

    def __init__(self, pre: dict, flip: bool = True):
        self.image_size = pre["image_size"]
        self.short_side = resize_size(pre["image_size"], pre["crop_pct"])
        self.interpolation = pre["interpolation"]
        self.transform = eval_transform(
            pre["image_size"], pre["crop_pct"], pre["mean"], pre["std"], pre["interpolation"]
        )
        # The eval transform's float steps (scale, normalise), run once per batch: same ops, so the same numbers.
        steps = self.transform.transforms
        self._to_float = T.Compose(steps[next(i for i, t in enumerate(steps) if isinstance(t, T.ToDtype)) :])
        self.views = TTAViews(
            pre["image_size"],
            crop_pct=pre["crop_pct"],
            mean=pre["mean"],
            std=pre["std"],
            interpolation=pre["interpolation"],
            flip=flip,
        )

    def decode(self, src: DataSource | ImageSet, key: str) -> Decoded:
        """As `decode_samples` decodes (same size, same error text): an unreadable file is reported, never fatal."""
        return decode_one(src, key, self.short_side, self.interpolation)

    def load(self, x: Any) -> Decoded:
        """A path -> `decode`; a PIL image or array -> resized as files are (a bad one raises: the caller's)."""
        if isinstance(x, Path):
            try:  # too large to decode or to resize, from the header alone (a 1x60000 strip): reported, not decoded
                check_file(x, self.short_side)
            except Exception as e:  # noqa: BLE001 - in decode_one's words, as an unreadable file
                return None, f"{type(e).__name__}: {e}"
            return self.decode(_FILES, str(x))
        if hasattr(x, "read"):  # encoded bytes: decoded as a file is
            try:
                x.seek(0)
                check_file(x, self.short_side)  # the bound files have, from the header
                x.seek(0)
                return np.array(open_rgb(x, self.short_side, self.interpolation)), None
            except Exception as e:  # noqa: BLE001 - unreadable bytes are reported as an unreadable file is
                return None, f"{type(e).__name__}: {e}"
        img = to_rgb(x) if hasattr(x, "mode") else array_to_image(np.asarray(x))
        return np.array(resize_short(img, self.short_side, self.interpolation)), None

    def batch(self, images: list[np.ndarray], tta: bool = False) -> torch.Tensor:
        chw = (torch.from_numpy(a).permute(2, 0, 1) for a in images)  # HWC uint8 -> CHW, no copy
        if tta:
            return torch.stack([self.views(x) for x in chw]).flatten(0, 1)  # (n, V, C, H, W) -> (n * V, C, H, W)
        if self.short_side < self.image_size or any(min(a.shape[:2]) != self.short_side for a in images):
            return torch.stack([self.transform(x) for x in chw])  # not decoded by us: the whole transform per image
        # At the decoded size the transform's resize is a no-op and its centre crop a slice: done here on uint8, for the
        # batch at once (per-image transforms cost ~0.25 ms each in dispatch). NCHW, as the per-channel float ops
        # vectorise there and not on channels_last (3 channels innermost).
        crops = np.stack([_centre(a, self.image_size) for a in images]).transpose(0, 3, 1, 2)
        return self._to_float(torch.from_numpy(np.ascontiguousarray(crops)))


class TorchRunner:
    """The bundle's network on a device at a precision: a float batch (N, C, H, W) -> float32 logits on the CPU.
    (export/runner.py is the same part for ONNX Runtime.)"""

    def __init__(self, model, device: str = "auto", precision: str = "auto"):
        from .engine.runtime import resolve_device

        self.device = torch.device(resolve_device(device))
        self.model = model.to(self.device, memory_format=torch.channels_last)
        if precision not in PRECISIONS:
            from .errors import unknown_choice

            raise unknown_choice("--precision", precision, PRECISIONS)
        # "auto": what gives fp32's answers on this device (engine/runtime.best_precision, measured in BENCHMARKS.md)
        self.precision = inference_precision(precision, self.device.type)
        self._seen = 0  # input pixels run so far (__call__ folds the BatchNorms once they are enough)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        if self._seen < FOLD_MIN_PIXELS <= self._seen + x.shape[0] * x.shape[-2] * x.shape[-1]:
            # BatchNorms folded into their convolutions: the same answers, 1.2x faster on a CPU (engine/fuse.py
            # checks the copy against the model on this batch's first image). Once the images run reach the pixels
            # where the copy pays back: a one-image `predict` (0.05M pixels at 224 px) never pays the 0.1-0.3 s,
            # `serve` and a folder fold within their first ~80 images
            self.model = folded(self.model, x[:1])
        self._seen += x.shape[0] * x.shape[-2] * x.shape[-1]
        with autocast_for(self.precision, self.device.type):
            return self.model(x).float().cpu()


class Predictor:
    """Preprocessing preset + runner + the task's post-processing, streaming a batch at a time. Changes nothing
    outside itself (threads and the allocator are the caller's: `transferkit.load` tunes them)."""

    decode_workers = min(8, os.cpu_count() or 1)  # as decode_samples

    def __init__(self, path: str | os.PathLike, device: str = "auto", batch_size: int = 32, precision: str = "auto"):
        if not isinstance(path, (str, os.PathLike)):
            from .errors import ConfigError

            raise ConfigError(f"load({path!r}): give the path of a model (a run's best/ folder, or the run folder).")
        model, self.meta = load_bundle(path)
        # its post-processing and output format, with what the bundle stored for it (target statistics, thresholds)
        self.task = task_of(self.meta)
        self.classes: list[str] = self.meta["classes"]
        self.pre = Preprocess(self.meta["preprocessing"], flip=trained_with_flip(self.meta))
        self.runner = TorchRunner(model, device, precision)
        self.batch_size = batch_size
        # Decode the next batch during this one's forward only where the forward leaves the CPU idle (a GPU). On the
        # CPU torch's threads already fill every core, and decoding beside them makes them wait on each other: on 2
        # cores a batch of 32 took 1.0 s instead of 0.4 s beside one decoding thread, and whole folders ran about 4%
        # slower than when each batch is decoded between forwards on all cores.
        self.overlap = self.runner.device.type != "cpu"
        # Temperature scaling fitted on the run's validation split (1.0 for bundles without one): probabilities
        # come out honest, the top class is unchanged.
        self.temperature = float(self.meta.get("calibration", {}).get("temperature", 1.0))
        self.data_side = self.meta.get("data_side")  # the training images' median short side (older bundles: none)

    # The parts' attributes, as callers (export, benchmarks) read them.
    model = property(lambda self: self.runner.model)
    device = property(lambda self: self.runner.device)
    precision = property(lambda self: self.runner.precision)
    image_size = property(lambda self: self.pre.image_size)
    short_side = property(lambda self: self.pre.short_side)
    interpolation = property(lambda self: self.pre.interpolation)
    transform = property(lambda self: self.pre.transform)
    views = property(lambda self: self.pre.views)

    def _per_batch(self, tta: bool, batch_size: int | None = None) -> int:
        n = batch_size or self.batch_size
        return max(1, n // self.pre.views.count) if tta else n  # images (x views) per forward

    def _forward(self, images: list[np.ndarray], tta: bool = False, batch_size: int | None = None) -> torch.Tensor:
        """(N, K) logits; with tta, (N, V, K): one row per view of the TTA views (view 0 = the plain centre crop)."""
        per_batch, out, views = self._per_batch(tta, batch_size), [], self.pre.views.count
        for i in range(0, len(images), per_batch):
            logits = self.runner(self.pre.batch(images[i : i + per_batch], tta))
            out.append(logits.view(-1, views, logits.shape[-1]) if tta else logits)
        if out:
            return torch.cat(out)
        return torch.empty(0, views, len(self.classes)) if tta else torch.empty(0, len(self.classes))

    def _decoded(
        self, items: Sequence[Item], load: Callable[[Item], tuple], tta: bool, batch_size: int | None = None
    ) -> Iterator[list[tuple]]:
        """`load` of every item on a thread pool (Pillow releases the GIL), one forward's worth at a time, in order;
        chunk i+1 decodes during chunk i's forward (`overlap`) or right after it. At most two chunks are in memory."""
        n = self._per_batch(tta, batch_size)
        with ThreadPoolExecutor(self.decode_workers) as pool:

            def start(i: int) -> list[Future]:
                return [pool.submit(load, x) for x in items[i : i + n]]

            ahead = start(0)
            for i in range(0, len(items), n):
                current = ahead
                if self.overlap:
                    ahead = start(i + n)
                yield [f.result() for f in current]
                if not self.overlap:
                    ahead = start(i + n)

    def logits_for(self, src: DataSource, samples: list[Sample], batch_size: int | None = None, tta: bool = False):
        """(logits, samples kept, skipped [(key, reason)]) for samples of a DataSource.

        Raw logits (no temperature). With tta=True the logits are (N, views, K); `evaluation.tta` combines them.
        """
        logits, kept, skipped, i = [self._forward([], tta)], [], [], 0
        for chunk in self._decoded(samples, lambda s: self.pre.decode(src, s.key), tta, batch_size):
            for s, (_, err) in zip(samples[i : i + len(chunk)], chunk):
                if err is None:
                    kept.append(s)
                else:
                    skipped.append((s.key, err))
            logits.append(self._forward([a for a, _ in chunk if a is not None], tta, batch_size))
            i += len(chunk)
        return torch.cat(logits), kept, skipped

    def probabilities(self, images: list[np.ndarray], tta: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the task's outputs, the plain ones when tta else None) for decoded images, as tensors: calibrated class
        probabilities, values in the target's units, per-label probabilities. With tta, the mean of the views'."""
        logits = self._forward(images, tta)
        if not tta:
            return torch.as_tensor(self.task.probabilities(logits, self.temperature)), None
        plain = torch.as_tensor(self.task.probabilities(logits[:, 0], self.temperature))
        return torch.as_tensor(self.task.average_views(logits.numpy(), self.temperature)).float(), plain

    def outputs(self, images: list[np.ndarray], tta: bool = False) -> np.ndarray:
        """The task's outputs for decoded images as a numpy array: what an export's graph returns for them."""
        return np.asarray(self.probabilities(images, tta)[0], dtype=np.float32)

    def predict(self, inputs: Any, top_k: int = TOP_K, tta: bool = False) -> dict | list[dict]:
        """One dict for one image (path, PIL image, bytes, array or tensor); a list for a folder, a batch
        (N, H, W, 3) / (N, 3, H, W) or a list of inputs (`ACCEPTED`). An image whose short side is under half the
        model's input gains a "warning" (doctor's too-small rule).

        Probabilities are calibrated (the bundle's temperature). tta=True averages 5 crops and their mirrors (10x the
        compute; no mirrors for models trained without flips): class probabilities, values, per-label probabilities,
        as the task has them; each result gains `without_tta` (the plain answer: label and probability, value, or
        labels).
        """
        from .errors import ConfigError

        if tta and not self.task.tta:
            raise ConfigError(f"--tta averages the views' outputs; {self.task.name} models do not take it.")
        if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:  # 0, -1: 1 answer, unsaid
            raise ConfigError(f"top_k={top_k!r}: give a whole number of answers to list, 1 or more.")
        items, single = user_inputs(inputs)
        results: list[dict] = []

        def load(x: Any) -> tuple[np.ndarray | None, str | None, str | None]:
            a, err = self.pre.load(x)
            return a, err, None if a is None else tiny_warning(source_size(x), self.pre.image_size, self.data_side)

        for chunk in self._decoded(items, load, tta):
            good = [a for a, _, _ in chunk if a is not None]
            probs, plain = self.probabilities(good, tta) if good else (torch.empty(0), None)
            answers = self.task.answers(probs, self.classes, top_k)
            plain_answers = self.task.answers(plain, self.classes, top_k) if plain is not None else None
            gi = 0
            for x, (a, err, warning) in zip(items[len(results) : len(results) + len(chunk)], chunk):
                name = str(x) if isinstance(x, Path) else None
                if a is None:
                    results.append({"path": name, "error": err or "unreadable"})
                    continue
                results.append({"path": name, **answers[gi], **({"warning": warning} if warning else {})})
                if plain_answers is not None:
                    results[-1]["without_tta"] = self.task.short_answer(plain_answers[gi])
                gi += 1
        return results[0] if single and len(results) == 1 else results
