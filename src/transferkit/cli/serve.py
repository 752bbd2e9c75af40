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


def serve(
    model: Path = typer.Argument(..., help="A run's best/ folder, or an .onnx export (`transferkit export`)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every network this machine is on)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", help="Largest request body, in MiB."),
    max_pixels: int = typer.Option(50_000_000, "--max-pixels", help="Largest image, in pixels (width x height)."),
    max_images: int = typer.Option(16, "--max-images", help="Most images in one request."),
    max_batch: int = typer.Option(32, "--max-batch", help="Most images in one model call (micro-batching)."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="How long a request waits for others to batch with."),
    max_connections: int = typer.Option(64, "--max-connections", help="Most requests held at once; more get 503."),
    precision: str = typer.Option("auto", help="For a bundle: auto | fp32 | bf16 | fp16 (as predict)."),
    trust_torchscript: bool = typer.Option(
        False,
        "--trust-torchscript",
        metavar="",
        help="Serve a TorchScript export (loading one runs its code: only for files you made).",
    ),
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
    sizes = {
        "--max-upload-mb": max_upload_mb,
        "--max-pixels": max_pixels,
        "--max-images": max_images,
        "--max-batch": max_batch,
        "--max-connections": max_connections,
    }
    bad = next((f"{k} {v}" for k, v in sizes.items() if v <= 0), None) or (
        f"--max-wait-ms {max_wait_ms}" if max_wait_ms < 0 else None
    )
    if bad:
        from ..errors import ConfigError

        raise ConfigError(f"{bad}: limits are positive numbers (--max-wait-ms may be 0: no waiting for a batch).")
    limits = Limits(
        max_bytes=int(max_upload_mb * 2**20),
        max_pixels=max_pixels,
        max_images=max_images,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
    )
    app = create_app(model, limits, precision=precision, trust_torchscript=trust_torchscript)
    print(f"Serving {model} on http://{host}:{port}/ (API docs: /docs). Ctrl-C or SIGTERM stops it.", flush=True)
    # uvicorn stops on SIGTERM/SIGINT: it stops accepting, finishes the requests in flight, runs the app's shutdown
    # (the micro-batcher drains), then re-raises the signal to the handler it found. This one makes that a normal
    # exit (status 0): a requested stop, not a crash. limit_concurrency bounds the requests held in memory.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            limit_concurrency=max_connections,
            timeout_graceful_shutdown=10,
        )
    finally:
        print("Stopped.", flush=True)


def register(app: typer.Typer) -> None:
    app.command()(serve)
