"""Build the exported graph (uint8 images in, the task's outputs out) and write it as ONNX or TorchScript.

    write_onnx(model, meta, Path("runs/x/best/model.onnx"))
    quantize_int8(Path("model.onnx"), Path("model.int8.onnx"), meta, calibration_images)
    write_torchscript(model, meta, Path("runs/x/best/model.torchscript.pt"))

The contract (what the caller does, what the graph does) is in runner.py and in every export's metadata.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..data.sizes import resize_size
from ..tasks import Task, get_task, task_of
from .runner import INPUT, centre_crop, contract, fingerprint

OPSET = 17  # onnxruntime >= 1.14 runs it; nothing in these graphs needs a newer op
# How the caller decodes a file, as data/images.open_rgb does (metadata "decode"; examples/onnx_client.py load() is
# the reference). Draft mode is part of it because it changes pixels: libjpeg's DCT downscaling is not Pillow's
# resize, and a client that decoded JPEGs in full flipped 5 of 153 hymenoptera val labels against `predict` (|dp| up
# to 0.26, issue 21). Other formats have no draft mode.
DECODE = {
    "jpeg_draft": True,  # Image.draft("RGB", (short_side, short_side)) before loading a JPEG
    "exif_transpose": True,  # then ImageOps.exif_transpose: the camera's orientation tag
    "to_rgb": "alpha dropped; palette via RGBA; 16-bit and float greyscale scaled to 8 bits",
    "resize": "short side to preprocessing.short_side, Pillow, preprocessing.interpolation",
    "reference": "examples/onnx_client.py load()",
}


class ExportGraph(nn.Module):
    """uint8 (N, H, W, 3), short side already resized -> centre crop -> [0, 1] -> normalise -> model -> the task's
    post-processing (`Task.export_head`: softmax(z / T), sigmoid(z), z * std + mean).

    The float steps are the ones `Predictor` runs (ToDtype(scale=True), then Normalize), in the same order, so the
    numbers agree to float rounding.
    """

    def __init__(
        self,
        model: nn.Module,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        temperature: float,
        task: Task | None = None,
    ):
        super().__init__()
        self.model, self.size, self.temperature = model, int(image_size), float(temperature)
        self.task = task or get_task()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # torchvision's centre-crop offsets, round((H - size) / 2) with Python's half-to-even, in integer shape
        # arithmetic the tracer records: d = 5 -> 2, d = 7 -> 4. narrow() keeps the crop's size static.
        dh, dw = images.shape[1] - self.size, images.shape[2] - self.size
        top = dh // 2 + (dh % 2) * ((dh // 2) % 2)
        left = dw // 2 + (dw % 2) * ((dw // 2) % 2)
        x = images.narrow(1, top, self.size).narrow(2, left, self.size).permute(0, 3, 1, 2).float() / 255.0
        x = (x - self.mean) / self.std
        return self.task.export_head(self.model(x), self.temperature)


def export_graph(model: nn.Module, meta: dict[str, Any]) -> ExportGraph:
    pre = meta["preprocessing"]
    temperature = float(meta.get("calibration", {}).get("temperature", 1.0))
    return ExportGraph(model, pre["image_size"], pre["mean"], pre["std"], temperature, task_of(meta)).eval()


def example_input(meta: dict[str, Any]) -> torch.Tensor:
    """A batch of 2 non-square images at the short side: traced with a non-zero crop offset, so that the offsets are
    recorded as shape arithmetic (a square input of exactly image_size would trace them as the constant 0)."""
    pre = meta["preprocessing"]
    side = resize_size(pre["image_size"], pre["crop_pct"])
    return torch.zeros((2, side, side + 5, 3), dtype=torch.uint8)


def metadata(meta: dict[str, Any], precision: str) -> dict[str, str]:
    """What the runner and any other client need, as ONNX metadata_props (strings; JSON where structured). The task's
    own entries (multi-label "thresholds", regression "target_stats") are what its answers need beside the graph."""
    pre = meta["preprocessing"]
    task = task_of(meta)
    return {
        "task": task.name,
        "classes": json.dumps(meta["classes"]),
        "preprocessing": json.dumps(
            {
                **{k: pre[k] for k in ("image_size", "crop_pct", "interpolation", "mean", "std")},
                "short_side": resize_size(pre["image_size"], pre["crop_pct"]),
            }
        ),
        "temperature": repr(float(meta.get("calibration", {}).get("temperature", 1.0))),
        "transferkit_version": __version__,
        "precision": precision,
        "backbone": str(meta.get("backbone", "")),
        "metrics": json.dumps(meta.get("metrics", {})),
        "contract": contract(task),
        "decode": json.dumps(DECODE),
        **{k: json.dumps(v) for k, v in task.export_state(meta["classes"]).items()},
    }


def stamp(path: Path, props: dict[str, str]) -> None:
    """Write the metadata, plus the fingerprint of graph and metadata, into the .onnx file at `path` (one rename)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in {**props, "sha256": fingerprint(model.graph.SerializeToString(), props)}.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name, model.producer_version, model.doc_string = "transferkit", __version__, props["contract"]
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)


def write_onnx(model: nn.Module, meta: dict[str, Any], out: Path) -> Path:
    graph = export_graph(model, meta)
    # The TorchScript-based exporter (dynamo=False): the torch.export one turns the crop's symbolic offsets into
    # sympy expressions through every layer and had not finished after 10 minutes here; this one traces in ~2 s.
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    tmp = out.with_name(out.name + ".tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # its deprecation notice and tracer warnings say nothing about this graph
        torch.onnx.export(
            graph,
            (example_input(meta),),
            str(tmp),
            input_names=[INPUT],
            output_names=[graph.task.export_output],
            dynamic_axes={INPUT: {0: "batch", 1: "height", 2: "width"}, graph.task.export_output: {0: "batch"}},
            opset_version=OPSET,
            **legacy,
        )
    stamp(tmp, metadata(meta, "fp32"))
    os.replace(tmp, out)
    return out


def quantize_int8(fp32: Path, out: Path, meta: dict[str, Any], calibration: Sequence[np.ndarray]) -> Path:
    """Static int8 (QDQ, per-channel weights, activation ranges from `calibration` images at the short side) of the
    convolutions and the head; preprocessing and the task's post-processing stay float."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    size = meta["preprocessing"]["image_size"]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.images = iter(calibration)

        def get_next(self):
            a = next(self.images, None)
            return None if a is None else {INPUT: centre_crop(a, size)[None]}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)  # folds constants, infers shapes
        quantize_static(
            str(prepared),
            str(Path(tmp) / "int8.onnx"),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            op_types_to_quantize=["Conv", "Gemm", "MatMul"],
        )
        stamp(Path(tmp) / "int8.onnx", metadata(meta, "int8"))
        os.replace(Path(tmp) / "int8.onnx", out)
    return out


def write_torchscript(model: nn.Module, meta: dict[str, Any], out: Path) -> Path:
    """The same graph traced to TorchScript; the metadata is the archive's transferkit.json. A TorchScript file is a
    zip of code that torch.jit.load runs: load only files you made or trust."""
    graph = export_graph(model, meta)
    tmp = out.with_name(out.name + ".tmp")
    with warnings.catch_warnings(), torch.no_grad():
        # Tracer warnings about the shape arithmetic (traced on purpose) and torch.jit's deprecation notice.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, (example_input(meta),), check_trace=False)
        torch.jit.save(
            traced, str(tmp), _extra_files={"transferkit.json": json.dumps({**metadata(meta, "fp32"), "sha256": ""})}
        )
    os.replace(tmp, out)
    return out


class TorchScriptRunner:
    """Runs a TorchScript export (trusted files only: loading one runs its code). Same interface as OnnxRunner."""

    runtime = "torchscript"

    def __init__(self, path: str | os.PathLike, batch_size: int = 32):
        from ..errors import TransferkitError
        from .runner import read_contract

        extra = {"transferkit.json": ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit's deprecation notice
                self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
            props = json.loads(extra["transferkit.json"] or "{}")
        except Exception as e:  # noqa: BLE001 - any failure means the archive is not a usable export
            raise TransferkitError(
                f"'{path}' is not a TorchScript export transferkit can load ({type(e).__name__}: {e})."
            ) from e
        self.contract = read_contract(props, str(path))
        self.path, self.batch_size = Path(path), batch_size

    @torch.no_grad()
    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        size, out = self.contract.image_size, []
        for i in range(0, len(images), self.batch_size):
            batch = np.stack(
                [centre_crop(np.asarray(a, dtype=np.uint8), size) for a in images[i : i + self.batch_size]]
            )
            out.append(self.module(torch.from_numpy(batch)).numpy())
        return np.concatenate(out) if out else np.empty((0, self.width), np.float32)

    @property
    def width(self) -> int:
        return self.contract.model_task.num_outputs(self.contract.classes)
