"""The real-data models the deploy tests share (export, serve, browser): trained and exported once per test session.

One linear bundle on hymenoptera at 64 px (~45 s on 2 cores) and its fp32 ONNX export; each test file asks for them
through these functions, so the three files pay for one training, not three.
"""

from __future__ import annotations

import atexit
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path
from unittest import mock

from .conftest import shared

_made: dict[str, Path] = {}
IMAGE_SIZE = 64  # small enough to train in seconds; 73 px short side, so the graph's crop offsets are not all 0


def _workdir() -> Path:
    if "dir" not in _made:
        _made["dir"] = Path(tempfile.mkdtemp(prefix="transferkit-deploy-"))
        atexit.register(shutil.rmtree, _made["dir"], True)
    return _made["dir"]


def hymenoptera_bundle() -> Path:
    """A run's best/ folder, its run folder beside it (split.csv, config.json): export finds the val images."""
    data = shared("hymenoptera")
    if "bundle" not in _made:
        import transferkit

        run = transferkit.fit(data, strategy="linear", image_size=IMAGE_SIZE, quiet=True, out=_workdir() / "runs")
        _made["bundle"] = run.best
    return _made["bundle"]


def hymenoptera_onnx() -> Path:
    if "onnx" not in _made:
        from transferkit.export import export

        _made["report"] = export(hymenoptera_bundle())
        _made["onnx"] = Path(_made["report"]["export"])
    return _made["onnx"]


def export_report() -> dict:
    hymenoptera_onnx()
    return _made["report"]  # type: ignore[return-value]


def val_images(n_per_class: int = 4) -> list[Path]:
    """A few real photos of each class, of several aspect ratios."""
    root = shared("hymenoptera") / "val"
    return [p for c in ("ants", "bees") for p in sorted((root / c).iterdir())[:n_per_class]]


def run_cli(*args) -> tuple[int, str, str]:
    """`transferkit ARGS` in this process (no second torch import): (exit code, stdout, stderr)."""
    from transferkit.cli.app import main

    out, err = StringIO(), StringIO()
    with (
        mock.patch.object(sys, "argv", ["transferkit", *map(str, args)]),
        redirect_stdout(out),
        mock.patch.object(sys, "stderr", err),
    ):
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """`transferkit serve MODEL` on a free port of 127.0.0.1; returns once /health answers."""
    import httpx

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "transferkit", "serve", str(model), "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited ({proc.returncode}):\n{proc.stdout.read()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not answer /health within 120 s")


def stop_server(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
