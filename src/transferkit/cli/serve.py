"""`transferkit serve BUNDLE_OR_ONNX`: an HTTP API and a web page for a model (needs `pip install transferkit[serve]`).

transferkit serve runs/ants-linear/best                   # PyTorch, the bundle itself
transferkit serve runs/ants-linear/best/model.onnx        # ONNX Runtime: no torch imported
curl -F file=@bee.jpg http://127.0.0.1:8000/predict
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import typer

from ..config import ServeOptions
from .options import command


@command("serve")
def serve(
    model: Path = typer.Argument(..., help="A run's best/ folder, or an .onnx export (`transferkit export`)."),
    *,
    options: ServeOptions,
) -> None:
    """Serve a model over HTTP: POST /predict, GET /health, GET /model, /docs, and a web page at /."""
    try:
        import uvicorn

        from ..serve.app import Limits, create_app
    except ImportError as e:
        from ..errors import TransferkitError

        raise TransferkitError(
            f"`transferkit serve` needs FastAPI and uvicorn ({e.name} is missing): pip install 'transferkit[serve]'."
        ) from e
    o = options  # every limit was checked against its bounds (config.py) before this ran
    limits = Limits(
        max_bytes=int(o.max_upload_mb * 2**20),
        max_pixels=o.max_pixels,
        max_images=o.max_images,
        max_batch=o.max_batch,
        max_wait_ms=o.max_wait_ms,
    )
    app = create_app(model, limits, precision=o.precision, trust_torchscript=o.trust_torchscript)
    print(f"Serving {model} on http://{o.host}:{o.port}/ (API docs: /docs). Ctrl-C or SIGTERM stops it.", flush=True)
    # uvicorn stops on SIGTERM/SIGINT: it stops accepting, finishes the requests in flight, runs the app's shutdown
    # (the micro-batcher drains), then re-raises the signal to the handler it found. This one makes that a normal
    # exit (status 0): a requested stop, not a crash. limit_concurrency bounds the requests held in memory.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(
            app,
            host=o.host,
            port=o.port,
            log_level="warning",
            limit_concurrency=o.max_connections,
            timeout_graceful_shutdown=10,
        )
    finally:
        print("Stopped.", flush=True)


def register(app: typer.Typer) -> None:
    app.command()(serve)
