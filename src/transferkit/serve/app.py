"""The HTTP server: a bundle or an ONNX export behind FastAPI, with a web page.

    app = create_app("runs/ants-linear/best/model.onnx")          # or the bundle folder itself
    uvicorn.run(app, host="127.0.0.1", port=8000)                 # what `transferkit serve` does

    curl -F file=@bee.jpg -F file=@ant.jpg http://127.0.0.1:8000/predict     # one result per image, as predict --json
    curl -H 'content-type: application/json' -d '{"images": [{"name": "bee.jpg", "data": "<base64>"}]}' .../predict

Endpoints: GET / (the page), POST /predict, GET /health, GET /model, GET /docs (OpenAPI).
Uploads are checked before they reach the model: request bytes, pixels per image and images per request are
limited (`Limits`); an empty, non-image, oversized, truncated or damaged upload is answered 4xx with what was
wrong, never 5xx. Images are decoded as `predict` decodes files (same resize), so the answers are the same.
Concurrent requests are micro-batched: one model call takes every image waiting, up to `max_batch`, after waiting
at most `max_wait_ms` for more; calls run one at a time on one thread, so the model is never run concurrently.
An .onnx model needs only onnxruntime: serving it imports no torch.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image, UnidentifiedImageError

from .. import __version__
from ..data.images import open_rgb
from ..errors import TransferkitError
from ..export.runner import Preprocess
from ..tasks import Task


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 20 * 2**20  # per request: 20 MiB holds a few phone photos (3-6 MB each)
    max_pixels: int = 50_000_000  # per image: a 50 MP camera; decoding one costs ~150 MB as RGB
    max_images: int = 16  # per request
    max_batch: int = 32  # images per model call
    max_wait_ms: float = 5.0  # how long the first image of a batch waits for more (adds at most this to latency)


@dataclass
class Served:
    """What the server needs of a model, whichever runtime runs it."""

    runtime: str
    classes: list[str]
    preprocess: Preprocess
    probabilities: Callable[[list[np.ndarray]], np.ndarray]  # decoded images -> the task's outputs
    info: dict[str, Any]
    task: Task  # its answers: a class, a value or a set of labels, with the bundle's thresholds or target statistics


def load_served(path: str | os.PathLike, precision: str = "auto", trust_torchscript: bool = False) -> Served:
    """A bundle folder (PyTorch), an .onnx export (ONNX Runtime), or a TorchScript export (only with trust)."""
    path = Path(path)
    if path.suffix in (".pt", ".pth", ".ts"):
        if not trust_torchscript:
            raise TransferkitError(
                f"'{path}' is TorchScript: loading it runs the code inside it, so it is not served "
                f"by default. Serve the .onnx export (`transferkit export BUNDLE`), or pass "
                f"--trust-torchscript for a file you made yourself."
            )
        from ..export.onnx import TorchScriptRunner

        return _from_runner(TorchScriptRunner(path))
    if path.suffix == ".onnx":
        from ..export.runner import OnnxRunner

        return _from_runner(OnnxRunner(path))
    from ..predict import Predictor

    p = Predictor(path, precision=precision)
    pre = {**p.meta["preprocessing"], "short_side": p.short_side}
    info = {
        **_task_info(p.task, p.classes, p.meta.get("metrics", {})),
        "preprocessing": pre,
        "temperature": p.temperature,
        "runtime": f"torch ({p.precision})",
        "model": "/".join(Path(p.meta["_path"]).parts[-2:]),  # runs/<name>/best -> <name>/best: no server paths
        "version": {"transferkit": __version__, "trained_with": p.meta.get("versions", {}).get("transferkit")},
    }
    return Served("torch", p.classes, Preprocess(p.short_side, p.interpolation), p.outputs, info, p.task)


def _task_info(task: Task, classes: list[str], metrics: dict) -> dict[str, Any]:
    """What /model says of the task: its name, what it answers (for the page's first line), the bundle's headline
    score in words, and the state its answers use (thresholds, target statistics)."""
    return {
        "task": task.name,
        "classes": classes,
        "outputs": task.describe_outputs(classes),
        "headline": task.score_line(metrics),
        "task_state": task.export_state(classes),
        "metrics": metrics,
    }


def _from_runner(runner) -> Served:
    c = runner.contract
    task = c.model_task
    info = {
        **_task_info(task, c.classes, c.metrics),
        "preprocessing": c.preprocessing(),
        "temperature": c.temperature,
        "runtime": f"{runner.runtime} ({c.precision})",
        "model": runner.path.name,
        "version": {"transferkit": __version__, "trained_with": c.version},
    }
    return Served(
        runner.runtime, c.classes, Preprocess(c.short_side, c.interpolation), runner.probabilities, info, task
    )


class UploadError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def decode_upload(data: bytes, name: str, pre: Preprocess, limits: Limits) -> np.ndarray:
    """Bytes -> HWC uint8 at the model's short side, exactly as `predict` decodes a file; UploadError (4xx) else."""
    if not data:
        raise UploadError(400, f"'{name}' is empty.")
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only: the size is known before any decoding
            w, h = img.size
    except Image.DecompressionBombError as e:
        raise UploadError(413, f"'{name}' is too large to decode ({e}).") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UploadError(
            415, f"'{name}' is not an image this server can read (JPEG, PNG, WebP, BMP, GIF, TIFF, ...)."
        ) from e
    if w * h > limits.max_pixels:
        raise UploadError(
            413,
            f"'{name}' is {w}x{h} = {w * h / 1e6:.1f} megapixels; this server takes at most "
            f"{limits.max_pixels / 1e6:.1f} per image (--max-pixels). Send a smaller image.",
        )
    try:
        return np.array(open_rgb(io.BytesIO(data), pre.short_side, pre.interpolation))
    except Exception as e:  # noqa: BLE001 - a truncated or damaged file: the client's to fix, never a 5xx
        raise UploadError(
            422, f"'{name}' could not be decoded ({type(e).__name__}: {e}): it is truncated or damaged."
        ) from e


class MicroBatcher:
    """Requests' images queue up; one worker takes up to max_batch of them (waiting at most max_wait for the first
    batch to fill) and runs the model on its own thread. One model call at a time: the model needs no lock."""

    def __init__(self, fn: Callable[[list[np.ndarray]], np.ndarray], max_batch: int, max_wait_ms: float):
        self.fn, self.max_batch, self.max_wait = fn, max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="model")
        self.task: asyncio.Task | None = None
        self.batches = 0

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        while not self.queue.empty():
            _, fut = self.queue.get_nowait()
            if not fut.done():
                fut.set_exception(HTTPException(503, "The server is shutting down; try again."))
        self.pool.shutdown(wait=True)

    async def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((images, fut))
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            waiting = [await self.queue.get()]
            n, deadline = len(waiting[0][0]), loop.time() + self.max_wait
            while n < self.max_batch:
                try:
                    item = await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    break
                waiting.append(item)
                n += len(item[0])
            images = [a for imgs, _ in waiting for a in imgs]
            try:
                probs = await loop.run_in_executor(self.pool, self.fn, images)
            except Exception as e:  # noqa: BLE001 - handed to the requests, which answer 500 with the reason
                for _, fut in waiting:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self.batches += 1
            i = 0
            for imgs, fut in waiting:
                if not fut.done():
                    fut.set_result(probs[i : i + len(imgs)])
                i += len(imgs)


class BodyLimit:
    """ASGI middleware: a request body over max_bytes is answered 413 before anything parses it (Content-Length is
    checked first; a chunked body is counted as it arrives). Memory per request stays under max_bytes."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._too_large(scope, receive, send)
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            more = message.get("more_body", False)
            if total > self.max_bytes:
                return await self._too_large(scope, receive, send)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send):
        mib = self.max_bytes / 2**20
        await JSONResponse(
            {"detail": f"The request is over {mib:.3g} MiB (--max-upload-mb): send fewer or smaller images."},
            status_code=413,
        )(scope, receive, send)


PREDICT_BODY = {  # /predict reads the body itself (multipart or JSON), so its OpenAPI schema is written out here
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "One or more images; repeat the field for more.",
                    }
                },
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["images"],
                "properties": {
                    "images": {
                        "type": "array",
                        "description": "Base64 images: strings, or {name, data} objects.",
                        "items": {
                            "oneOf": [
                                {"type": "string"},
                                {
                                    "type": "object",
                                    "properties": {
                                        "name": {"type": "string"},
                                        "data": {"type": "string", "format": "byte"},
                                    },
                                },
                            ]
                        },
                    }
                },
            }
        },
    },
}


def create_app(
    model: str | os.PathLike | Served,
    limits: Limits = Limits(),
    precision: str = "auto",
    trust_torchscript: bool = False,
) -> FastAPI:
    served = model if isinstance(model, Served) else load_served(model, precision, trust_torchscript)
    batcher = MicroBatcher(served.probabilities, limits.max_batch, limits.max_wait_ms)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        batcher.start()
        yield
        await batcher.close()  # uvicorn has stopped taking requests and finished the ones in flight (SIGTERM)

    app = FastAPI(
        title="transferkit",
        version=__version__,
        lifespan=lifespan,
        description=f"{served.task.title}: {', '.join(served.classes[:20])}"
        + (" ..." if len(served.classes) > 20 else ""),
    )
    app.state.served, app.state.batcher, app.state.limits = served, batcher, limits
    page = resources.files("transferkit.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "runtime": served.runtime}

    @app.get("/model")
    async def model_info() -> dict:
        return {**served.info, "limits": asdict(limits)}

    @app.post(
        "/predict",
        openapi_extra={"requestBody": PREDICT_BODY},
        summary="Predict images (the class, the value or the labels): multipart field `file` (repeatable), or JSON "
        "with base64 images.",
    )
    async def predict(request: Request, top_k: int = 5) -> list[dict]:
        uploads = await _uploads(request, limits)
        if not uploads:
            raise HTTPException(
                400,
                "No image in the request: send multipart field 'file' (one or more), or JSON "
                '{"images": [base64, ...]}.',
            )
        if len(uploads) > limits.max_images:
            raise HTTPException(
                413,
                f"{len(uploads)} images in one request; this server takes at most "
                f"{limits.max_images} (--max-images). Split them over several requests.",
            )
        try:
            images = await run_in_threadpool(
                lambda: [decode_upload(d, n, served.preprocess, limits) for n, d in uploads]
            )
        except UploadError as e:
            raise HTTPException(e.status, e.message) from e
        outputs = await batcher(images)
        return served.task.results(outputs, served.classes, max(1, top_k), [n for n, _ in uploads])

    app.add_middleware(BodyLimit, max_bytes=limits.max_bytes)
    return app


async def _uploads(request: Request, limits: Limits) -> list[tuple[str, bytes]]:
    """(name, bytes) of every image in the body: multipart `file` fields, or JSON base64."""
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        try:  # one more than allowed, so that "too many" is answered by the check above, with its message
            form = await request.form(max_files=limits.max_images + 1, max_fields=limits.max_images + 16)
        except HTTPException as e:
            raise HTTPException(
                413 if "Too many" in str(e.detail) else 400, f"The multipart body cannot be read: {e.detail}"
            ) from e
        files = form.getlist("file")
        out = []
        for i, f in enumerate(files):
            if isinstance(f, str):
                raise HTTPException(400, "Field 'file' must carry a file upload, not text.")
            out.append((f.filename or f"image-{i}", await f.read()))
        return out
    if kind.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError as e:
            raise HTTPException(400, f"The body is not valid JSON ({e}).") from e
        items = body.get("images") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise HTTPException(400, 'JSON body must be {"images": [base64 string or {"name", "data"}, ...]}.')
        if len(items) > limits.max_images:
            raise HTTPException(
                413,
                f"{len(items)} images in one request; this server takes at most "
                f"{limits.max_images} (--max-images). Split them over several requests.",
            )
        out = []
        for i, item in enumerate(items):
            name, data = (
                (item.get("name") or f"image-{i}", item.get("data")) if isinstance(item, dict) else (f"image-{i}", item)
            )
            if not isinstance(data, str):
                raise HTTPException(400, f"images[{i}] has no base64 'data' string.")
            try:  # a data: URL (what a browser's FileReader gives) is accepted as well
                out.append(
                    (
                        str(name),
                        base64.b64decode(data.split(",", 1)[1] if data.startswith("data:") else data, validate=True),
                    )
                )
            except (binascii.Error, ValueError) as e:
                raise HTTPException(400, f"images[{i}] ('{name}') is not valid base64 ({e}).") from e
        return out
    raise HTTPException(
        415,
        f"Content-Type '{kind or 'none'}': send multipart/form-data (field 'file') or "
        f'application/json ({{"images": [base64, ...]}}).',
    )
