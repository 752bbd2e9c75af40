"""Run an exported model with ONNX Runtime: the preprocessing contract, a checked loader, the task's answers.

    p = OnnxPredictor("runs/ants-linear/best/model.onnx")
    p.predict("bee.jpg")            # {'path': 'bee.jpg', 'label': 'bees', 'probability': 0.97, 'top_k': [...]}
    p.predict(["photos/"], top_k=2)  # a list, as `Predictor.predict` (a value, or a set of labels, for those tasks)

The pieces are apart so that a Predictor can be preprocessing + a runner (torch or onnx) + the task's
post-processing: `Preprocess` (decode as training did), `OnnxRunner` (uint8 crops -> the task's outputs) and
`Task.results` (outputs -> the dicts `predict --json` prints, tasks/, numpy only). No torch is imported here.

The contract of an exported graph (also in its metadata, key "contract"):
  input  "images": uint8 (N, H, W, 3) RGB, each image already resized by the caller with Pillow so that its short
         side is `short_side` (the bundle's filter, e.g. bicubic; JPEGs decoded in draft mode as open_rgb does), any
         H, W >= image_size. The graph takes the centre image_size crop (torchvision's offsets), scales to [0, 1],
         normalises with the bundle's mean/std, runs the model and ends with the task's post-processing:
  output "probabilities": float32 (N, K) = softmax(logits / temperature) (classification), as `Predictor.predict`;
         sigmoid(logits) (multi-label; each label's threshold in the metadata, key "thresholds");
         "values": float32 (N, 1) in the target's units (regression; the target's mean and std in "target_stats").
The resize stays outside the graph because no in-graph resize reproduces Pillow's antialiased filter to the pixel
(see BENCHMARKS.md, Deploy): outside, the pixels are the ones training saw, and parity is exact.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TOP_K
from ..data.images import array_to_image, image_inputs, open_rgb, resize_short, to_rgb
from ..errors import ConfigError, TransferkitError
from ..tasks import Task, get_task

INPUT, OUTPUT = "images", "probabilities"  # OUTPUT: classification's and multi-label's; `Task.export_output`
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
# Sizes an export may ask for; beyond them the metadata was edited or damaged (as bundle.py's caps).
MAX_IMAGE_SIZE, MAX_SHORT_SIDE, MAX_CLASSES = 2048, 4096, 1 << 20
MAX_FILE_BYTES = 2 << 30  # protobuf's own limit for one .onnx file; larger ones need external data, never loaded here
REQUIRED = ("task", "classes", "preprocessing", "temperature", "transferkit_version", "sha256")
INPUT_CONTRACT = (
    "input 'images': uint8 (N, H, W, 3) RGB, decoded as metadata 'decode' says (a JPEG with Pillow's "
    "Image.draft('RGB', (short_side, short_side)) before loading, then EXIF rotation; reference: "
    "examples/onnx_client.py load()), short side already resized to preprocessing.short_side with "
    "Pillow's preprocessing.interpolation filter (H, W >= image_size); the graph centre-crops image_size "
    "(offsets round((H - image_size) / 2), half to even), scales to [0, 1], normalises with mean/std and returns "
)


def contract(task) -> str:
    """The contract written into an export of `task` (a Task): the input, then what the task's output holds."""
    return INPUT_CONTRACT + task.export_contract + "."


CONTRACT = contract(get_task())  # a classification export's, as exports have always said


def centre_offsets(h: int, w: int, size: int) -> tuple[int, int]:
    """Top and left of the centre size x size crop, as torchvision's CenterCrop (and the exported graph) take them."""
    return int(round((h - size) / 2.0)), int(round((w - size) / 2.0))


def centre_crop(a: np.ndarray, size: int) -> np.ndarray:
    top, left = centre_offsets(a.shape[0], a.shape[1], size)
    return a[top : top + size, left : left + size]


def fingerprint(graph_bytes: bytes, props: dict[str, str]) -> str:
    """sha256 of the graph and of every other metadata entry, stored as metadata "sha256" at export: a graph or a
    metadata value changed afterwards (weights, nodes, classes, temperature) no longer matches it. It detects edits
    and damage, not a forger, who can recompute it: an export from elsewhere is as trustworthy as its source."""
    rest = json.dumps({k: v for k, v in props.items() if k != "sha256"}, sort_keys=True).encode()
    return hashlib.sha256(graph_bytes + b"\0" + rest).hexdigest()


@dataclass(frozen=True)
class Contract:
    """What an export's metadata promises; checked on load (`read_contract`)."""

    task: str
    classes: list[str]
    image_size: int
    short_side: int
    crop_pct: float
    interpolation: str
    mean: list[float]
    std: list[float]
    temperature: float
    version: str
    precision: str
    metrics: dict
    sha256: str
    state: dict = field(default_factory=dict)  # the task's (tasks/: thresholds, target statistics), JSON-decoded

    @property
    def output(self) -> str:
        return self.model_task.export_output

    @property
    def model_task(self) -> Task:
        """The task with the state the export was made with: its answers are the bundle's."""
        return get_task(self.task, self.state)

    def preprocessing(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "short_side": self.short_side,
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "mean": self.mean,
            "std": self.std,
        }


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_contract(props: dict[str, str], where: str) -> Contract:
    """The metadata_props of an export -> Contract; anything missing, malformed or absurd raises TransferkitError."""

    def bad(what: str) -> TransferkitError:
        return TransferkitError(
            f"'{where}' {what}: it is not a transferkit export, or its metadata was edited. Export "
            f"the bundle again with `transferkit export BUNDLE`."
        )

    missing = [k for k in REQUIRED if k not in props]
    if missing:
        raise bad(f"misses the metadata {', '.join(missing)}")
    try:
        classes, pre = json.loads(props["classes"]), json.loads(props["preprocessing"])
        metrics = json.loads(props.get("metrics", "{}"))
        temperature = float(props["temperature"])
    except (ValueError, TypeError) as e:
        raise bad(f"has metadata that is not valid JSON or numbers ({e})") from e
    try:
        task = get_task(props["task"])
    except ConfigError as e:
        raise bad(f"is for task '{props['task']}', which this transferkit does not know") from e
    try:
        state = {k: json.loads(props[k]) for k in task.state_keys if k in props}
    except ValueError as e:
        raise bad(f"has task metadata that is not valid JSON ({e})") from e
    if not (
        isinstance(classes, list)
        and classes
        and all(isinstance(c, str) for c in classes)
        and len(set(classes)) == len(classes)
        and len(classes) <= MAX_CLASSES
    ):
        raise bad("has 'classes' that are not a list of distinct names")
    if not isinstance(pre, dict):
        raise bad("has 'preprocessing' that is not an object")
    size, side = pre.get("image_size"), pre.get("short_side")
    if not (isinstance(size, int) and 16 <= size <= MAX_IMAGE_SIZE):
        raise bad(f"asks for image_size {size!r} (16 to {MAX_IMAGE_SIZE} px allowed)")
    if not (isinstance(side, int) and size <= side <= MAX_SHORT_SIDE):
        raise bad(f"asks for short_side {side!r} (image_size to {MAX_SHORT_SIDE} px allowed)")
    if pre.get("interpolation") not in INTERPOLATIONS:
        raise bad(f"asks for interpolation {pre.get('interpolation')!r} (one of {', '.join(INTERPOLATIONS)})")
    for key in ("mean", "std"):
        v = pre.get(key)
        if not (isinstance(v, list) and len(v) == 3 and all(_number(x) for x in v)) or (key == "std" and min(v) <= 0):
            raise bad(f"has preprocessing.{key} {v!r} (three numbers{', each above 0' if key == 'std' else ''})")
    if not (math.isfinite(temperature) and temperature > 0):
        raise bad(f"has temperature {props['temperature']!r} (a positive number)")
    if task.state_keys and set(task.state_keys) - set(state):
        raise bad(
            f"misses the metadata {', '.join(sorted(set(task.state_keys) - set(state)))} a {task.name} export needs"
        )
    return Contract(
        task=task.name,
        classes=classes,
        image_size=size,
        short_side=side,
        crop_pct=float(pre.get("crop_pct", size / side)),
        interpolation=pre["interpolation"],
        mean=[float(x) for x in pre["mean"]],
        std=[float(x) for x in pre["std"]],
        temperature=temperature,
        version=props["transferkit_version"],
        precision=props.get("precision", "fp32"),
        metrics=metrics if isinstance(metrics, dict) else {},
        sha256=props["sha256"],
        state=state,
    )


def check_onnx(path: str | os.PathLike) -> tuple[bytes, Contract]:
    """(the model's bytes, its Contract) after every check a tampered or foreign file fails: size, no external data,
    metadata, the fingerprint of graph and metadata, one uint8 NHWC input and one (N, outputs) output named as the
    task's, onnx.checker."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise TransferkitError(f"'{path}' does not exist (export a bundle with `transferkit export BUNDLE`).")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise TransferkitError(f"'{path}' is {path.stat().st_size / 2**30:.1f} GiB: larger than one .onnx file can be.")
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as e:  # noqa: BLE001 - DecodeError and friends: all mean "not an ONNX model"
        raise TransferkitError(f"'{path}' is not an ONNX model ({type(e).__name__}: {e}).") from e
    # External data would make the runtime open files named inside the model: never for a file from elsewhere.
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise TransferkitError(
            f"'{path}' keeps tensors in external files; transferkit exports never do, and such "
            f"files are not loaded. Export the bundle again."
        )
    props = {p.key: p.value for p in model.metadata_props}
    contract = read_contract(props, str(path))
    if fingerprint(model.graph.SerializeToString(), props) != contract.sha256:
        raise TransferkitError(
            f"'{path}': the graph and its metadata do not match the sha256 written at export: the "
            f"weights, nodes or metadata were changed afterwards. Export the bundle again."
        )
    ins = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    outs = list(model.graph.output)

    def dims(v) -> list:
        return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]

    if (
        len(ins) != 1
        or ins[0].name != INPUT
        or ins[0].type.tensor_type.elem_type != onnx.TensorProto.UINT8
        or len(dims(ins[0])) != 4
        or dims(ins[0])[3] != 3
    ):
        raise TransferkitError(
            f"'{path}' has inputs {[(i.name, dims(i)) for i in ins]}; a transferkit export has one, "
            f"'{INPUT}': uint8 (N, H, W, 3). Export the bundle again."
        )
    width = contract.model_task.num_outputs(contract.classes)
    if len(outs) != 1 or outs[0].name != contract.output or len(dims(outs[0])) != 2 or dims(outs[0])[1] != width:
        raise TransferkitError(
            f"'{path}' has outputs {[(o.name, dims(o)) for o in outs]} but its metadata lists "
            f"{len(contract.classes)} classes; a transferkit {contract.task} export has one output, "
            f"'{contract.output}': (N, {width}). Export the bundle again."
        )
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise TransferkitError(
            f"'{path}' is not a valid ONNX model ({str(e).splitlines()[0]}). Export the bundle again."
        ) from e
    return data, contract


class OnnxRunner:
    """uint8 images at the contract's short side -> (N, K) outputs of the task (calibrated probabilities, values),
    on ONNX Runtime's CPU provider."""

    runtime = "onnx"

    def __init__(self, path: str | os.PathLike, batch_size: int = 32, threads: int | None = None):
        import onnxruntime as ort

        data, self.contract = check_onnx(path)
        self.path = Path(path)
        self.batch_size = batch_size
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own types for graphs it cannot run
            raise TransferkitError(
                f"ONNX Runtime cannot run '{path}' ({type(e).__name__}: {e}). Export the bundle again."
            ) from e

    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Each image is cropped here with the graph's own offsets, so images of any aspect ratio share a batch (the
        in-graph crop is then a no-op): same pixels, same numbers."""
        size, out = self.contract.image_size, []
        for i in range(0, len(images), self.batch_size):
            batch = np.stack(
                [centre_crop(np.asarray(a, dtype=np.uint8), size) for a in images[i : i + self.batch_size]]
            )
            out.append(self.session.run([self.contract.output], {INPUT: batch})[0])
        return np.concatenate(out) if out else np.empty((0, self.width), np.float32)

    @property
    def width(self) -> int:
        return self.contract.model_task.num_outputs(self.contract.classes)


@dataclass(frozen=True)
class Preprocess:
    """Decoding as training and `Predictor` do it: EXIF rotation, RGB, short side resized with the bundle's filter."""

    short_side: int
    interpolation: str

    def file(self, path) -> tuple[np.ndarray | None, str | None]:
        """(HWC uint8, None), or (None, why) with the same text `Predictor` reports for an unreadable file."""
        try:
            return np.array(open_rgb(path, self.short_side, self.interpolation)), None
        except Exception as e:  # noqa: BLE001 - an unreadable file is reported, never fatal
            return None, f"{type(e).__name__}: {e}"

    def item(self, x: Any) -> tuple[np.ndarray | None, str | None]:
        if isinstance(x, Path):
            return self.file(x)
        img = to_rgb(x) if hasattr(x, "mode") else array_to_image(np.asarray(x))
        return np.array(resize_short(img, self.short_side, self.interpolation)), None


class OnnxPredictor:
    """`Predictor.predict` on an ONNX export: Preprocess + OnnxRunner + the task's answers."""

    decode_workers = min(8, os.cpu_count() or 1)

    def __init__(self, path: str | os.PathLike, batch_size: int = 32):
        self.runner = OnnxRunner(path, batch_size)
        c = self.runner.contract
        self.classes, self.temperature, self.image_size, self.short_side = (
            c.classes,
            c.temperature,
            c.image_size,
            c.short_side,
        )
        self.preprocess = Preprocess(c.short_side, c.interpolation)

    @property
    def task(self) -> Task:
        """The task whose answers this export gives, with the bundle's thresholds or target statistics."""
        return self.runner.contract.model_task

    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.runner.probabilities(images)

    def predict(self, inputs: Any, top_k: int = TOP_K) -> dict | list[dict]:
        single = not isinstance(inputs, (list, tuple)) and not (
            isinstance(inputs, (str, Path)) and Path(inputs).is_dir()
        )
        items = image_inputs(inputs)
        results: list[dict] = []
        n = self.runner.batch_size
        with ThreadPoolExecutor(self.decode_workers) as pool:  # Pillow releases the GIL: decode on every core
            for i in range(0, len(items), n):
                chunk = items[i : i + n]
                decoded = list(pool.map(self.preprocess.item, chunk))
                good = [a for a, _ in decoded if a is not None]
                done = iter(
                    self.task.results(
                        self.probabilities(good),
                        self.classes,
                        top_k,
                        [str(x) if isinstance(x, Path) else None for x, (a, _) in zip(chunk, decoded) if a is not None],
                    )
                )
                for x, (a, err) in zip(chunk, decoded):
                    results.append(
                        next(done)
                        if a is not None
                        else {"path": str(x) if isinstance(x, Path) else None, "error": err or "unreadable"}
                    )
        return results[0] if single and len(results) == 1 else results


def find_onnx(path: str | os.PathLike) -> Path:
    """An .onnx file as given, or the model.onnx in a bundle (or run) folder."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "model.onnx", path / "best" / "model.onnx"):
            if candidate.is_file():
                return candidate
        raise TransferkitError(
            f"'{path}' holds no model.onnx: export it first with `transferkit export {path}`, or give the .onnx file."
        )
    return path
