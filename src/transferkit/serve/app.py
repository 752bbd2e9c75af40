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
from ..config import TOP_K
from ..data.images import ImageTooLarge, check_size, open_rgb
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
    # Requests answered at once (their body received, not yet answered); the next one gets 503 with the reason.
    # A client still sending holds no such slot: 150 connections trickling a byte a second cannot deny the server.
    max_connections: int = 64
    header_timeout_s: float = 10.0  # a client has this long to send a request's headers (request line included)
    body_timeout_s: float = 60.0  # ... and this long for its body: 20 MiB in 60 s is 2.8 Mbit/s, a slow phone upload
    # Connections one address may hold while they send (or idle between requests); past it its oldest is closed.
    # Behind a proxy every client has the proxy's address: raise it there.
    max_per_client: int = 32
    max_open: int = 1024  # sockets at once, every client together (file descriptors); past it a new one is refused


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
    try:  # what resizing makes of it, from the header too: a 1x60000 PNG would be 73 x 4.4 M px after the resize
        check_size(w, h, pre.short_side, limits.max_pixels)
    except ImageTooLarge as e:
        raise UploadError(413, f"'{name}' is {e}") from e
    try:
        return np.array(open_rgb(io.BytesIO(data), pre.short_side, pre.interpolation, limits.max_pixels))
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


class Guard:
    """ASGI middleware in front of the app. The body: over max_bytes is 413 before anything parses it (Content-Length
    first; a chunked body is counted as it arrives), slower than body_timeout_s is 408, and memory per request stays
    under max_bytes. Then the gate: at most max_connections requests are answered at once, the next gets 503 with the
    reason. The body is read before the gate, so a client still sending holds no slot (`guarded_protocol` bounds
    those: timeouts, per-client and total limits)."""

    def __init__(self, app, limits: Limits):
        self.app, self.limits, self.active = app, limits, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] in ("POST", "PUT", "PATCH"):
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.limits.max_bytes):
                return await self._too_large(scope, receive, send)
            try:
                body = await asyncio.wait_for(self._body(receive), self.limits.body_timeout_s)
            except asyncio.TimeoutError:
                return await _reply(
                    scope,
                    send,
                    408,
                    f"The request body did not arrive within {self.limits.body_timeout_s:g} s; the upload was cut. "
                    "Send it again over a faster connection, or send fewer or smaller images.",
                )
            if body is None:  # the client went away
                return
            if len(body) > self.limits.max_bytes:
                return await self._too_large(scope, receive, send)
            receive = _replay(body, receive)
        if self.active >= self.limits.max_connections:
            return await _reply(
                scope,
                send,
                503,
                f"The server is busy: {self.active} requests are being answered at once, its limit "
                f"(--max-connections {self.limits.max_connections}). Try again in a moment.",
                {"retry-after": "1"},
            )
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1

    async def _body(self, receive) -> bytes | None:
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            more = message.get("more_body", False)
            if total > self.limits.max_bytes:
                break  # stop reading: the caller answers 413
        return b"".join(chunks)

    async def _too_large(self, scope, receive, send):
        mib = self.limits.max_bytes / 2**20
        await _reply(
            scope, send, 413, f"The request is over {mib:.3g} MiB (--max-upload-mb): send fewer or smaller images."
        )


def _replay(body: bytes, receive):
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reply(scope, send, status: int, detail: str, headers: dict | None = None) -> None:
    """A JSON error, and the connection closed after it: the client may still be sending a body nobody will read."""

    async def nothing():
        return {"type": "http.disconnect"}

    await JSONResponse({"detail": detail}, status, headers={"connection": "close", **(headers or {})})(
        scope, nothing, send
    )


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
    async def predict(request: Request, top_k: int = TOP_K) -> list[dict]:
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

    app.add_middleware(Guard, limits=limits)
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


# ---- the HTTP connection: what uvicorn leaves open ---------------------------------------------------------------
# uvicorn (0.55, h11) times a connection out only between requests (timeout_keep_alive): one that trickles its headers
# a byte a second is held forever, and its limit_concurrency counts such connections, the new one included (a limit of
# 64 admitted 63) and answers the rest 503 with no reason. On SIGTERM it closes every connection that has not yet
# sent a whole request and stops listening, which resets requests already on their way.
DRAIN_QUIET_S = 0.2  # on SIGTERM, listening goes on until no connection arrived for this long...
DRAIN_MAX_S = 2.0  # ...but no longer than this: then the requests that arrived are answered and the server stops


def _raw_reply(transport, status: int, reason: str, detail: str) -> None:
    """A JSON error written straight to the socket, then closed: for a connection that h11 has no request for yet."""
    import json

    body = json.dumps({"detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    transport.write(head.encode() + body)
    transport.close()


def guarded_protocol(limits: Limits):
    """uvicorn's h11 protocol with: a header timeout, at most `max_per_client` sending connections per address (its
    oldest closed beyond), at most `max_open` sockets, and a SIGTERM that lets a connection which has just been made
    send its request (answered, then closed) instead of closing it unanswered."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    by_client: dict[str, list] = {}  # address -> its connections, oldest first

    class Guarded(H11Protocol):
        made = 0  # connections accepted so far: the server's drain watches it

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            Guarded.made += 1
            self.timer, self.draining, self.answered = None, False, 0
            if len(self.connections) > limits.max_open:
                return _raw_reply(
                    transport,
                    503,
                    "Service Unavailable",
                    f"The server holds {limits.max_open} connections, its limit; try again in a moment.",
                )
            self.arm(limits.header_timeout_s)
            mine = by_client.setdefault(self.client[0] if self.client else "", [])
            mine.append(self)
            sending = [c for c in mine if c.sending()]
            for old in sending[: max(0, len(sending) - limits.max_per_client)]:
                _raw_reply(
                    old.transport,
                    429,
                    "Too Many Requests",
                    f"This address holds more than {limits.max_per_client} connections that are still sending; "
                    "the oldest was closed.",
                )

        def connection_lost(self, exc) -> None:
            if self.timer:
                self.timer.cancel()
            mine = by_client.get(self.client[0] if self.client else "", [])
            if self in mine:
                mine.remove(self)
                if not mine:
                    by_client.pop(self.client[0] if self.client else "", None)
            super().connection_lost(exc)

        def sending(self) -> bool:
            """Still sending its request (or idle before the next): holds no slot of the app, only a socket."""
            return not self.transport.is_closing() and self.conn.their_state in (h11.IDLE, h11.SEND_BODY)

        def arm(self, seconds: float) -> None:
            if self.timer:
                self.timer.cancel()
            self.timer = self.loop.call_later(seconds, self.headers_late)

        def headers_late(self) -> None:
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return  # the headers came: the body has its own timeout (Guard), the answer none
            if self.draining:
                return _raw_reply(self.transport, 503, "Service Unavailable", "The server is shutting down.")
            _raw_reply(
                self.transport,
                408,
                "Request Timeout",
                f"The request headers did not arrive within {limits.header_timeout_s:g} s; the connection was closed.",
            )

        def handle_events(self) -> None:
            super().handle_events()
            if self.draining and self.cycle is not None and not self.cycle.response_complete:
                self.cycle.keep_alive = False  # answered, then closed: the server is stopping

        def on_response_complete(self) -> None:
            self.answered += 1
            super().on_response_complete()
            if not self.transport.is_closing():
                self.arm(limits.header_timeout_s)  # the next request's headers have the same time

        def shutdown(self) -> None:
            idle = self.cycle is None or self.cycle.response_complete
            fresh = self.answered == 0 or bool(self.conn.trailing_data[0])  # a request is on its way
            if idle and fresh and not self.transport.is_closing():
                self.draining = True  # its request is answered (then closed); none within the grace: closed
                self.arm(min(limits.header_timeout_s, DRAIN_MAX_S))
                return
            super().shutdown()

    return Guarded


def run_server(app: FastAPI, host: str, port: int, limits: Limits, log_level: str = "warning", sock=None) -> None:
    """What `transferkit serve` runs: `make_server(...).run()` on `sock` (default: listen.listen(host, port)), until
    SIGTERM or Ctrl-C."""
    from .listen import listen

    make_server(app, host, port, limits, log_level).run(sockets=[sock or listen(host, port)])


def make_server(app: FastAPI, host: str, port: int, limits: Limits, log_level: str = "warning"):
    """A uvicorn.Server with `guarded_protocol`, the concurrency limit left to `Guard` (exact, with a reason), and a
    SIGTERM that first lets in the connections queued in the kernel's backlog, then finishes every request."""
    import uvicorn

    protocol = guarded_protocol(limits)

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            loop = asyncio.get_running_loop()
            end = loop.time() + DRAIN_MAX_S
            while loop.time() < end:  # closing the listening socket would reset what waits in its backlog
                seen = protocol.made
                await asyncio.sleep(DRAIN_QUIET_S)
                if protocol.made == seen:
                    break
            await super().shutdown(sockets)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=protocol,
        limit_concurrency=None,  # Guard's gate, after the body: uvicorn's counts sockets, slow ones included
        timeout_keep_alive=5,
        timeout_graceful_shutdown=max(10.0, limits.body_timeout_s),
    )
    return Server(config)
