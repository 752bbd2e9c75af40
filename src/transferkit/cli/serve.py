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
        import uvicorn  # noqa: F401 - only to say what is missing

        from ..serve.app import Limits, create_app, run_server
        from ..serve.listen import listen
    except ImportError as e:
        from ..errors import needs_serve_extra

        raise needs_serve_extra("transferkit serve", e) from e
    o = options  # every limit was checked against its bounds (config.py) before this ran
    limits = Limits(
        max_bytes=int(o.max_upload_mb * 2**20),
        max_pixels=o.max_pixels,
        max_images=o.max_images,
        max_batch=o.max_batch,
        max_wait_ms=o.max_wait_ms,
        max_connections=o.max_connections,
        body_timeout_s=o.body_timeout,
        max_per_client=o.max_per_client,
    )
    app = create_app(model, limits, precision=o.precision, trust_torchscript=o.trust_torchscript)
    sock = listen(o.host, o.port)  # a port in use or a wrong --host: said now, not after "Serving"
    port = sock.getsockname()[1]  # --port 0: the one the system gave
    print(f"Serving {model} on http://{o.host}:{port}/ (API docs: /docs). Ctrl-C or SIGTERM stops it.", flush=True)
    # uvicorn stops on SIGTERM/SIGINT: it lets in what waits in the listen backlog, stops accepting, finishes the
    # requests in flight, runs the app's shutdown (the micro-batcher drains), then re-raises the signal to the
    # handler it found. This one makes that a normal exit (status 0): a requested stop, not a crash.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run_server(app, o.host, port, limits, sock=sock)
    finally:
        print("Stopped.", flush=True)


def register(app: typer.Typer) -> None:
    app.command()(serve)
