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


# ---- tiny bundles of the other tasks: seconds, not real data -----------------------------------------------------
TINY_SIZE = 32  # px: a linear head on 32 px images trains in seconds


def tiny_bundle(task: str) -> Path:
    """A `linear` bundle of `task` ("regression": brightness; "multilabel": coloured stripes) at 32 px, trained on a
    list file of generated PNGs; its run folder is beside it (split.csv, config.json), so export finds its test
    images and labels. One per task per test session."""
    key = f"bundle-{task}"
    if key not in _made:
        import transferkit

        root = _workdir() / task
        if task == "regression":
            from .test_regression import write_csv

            labels, _ = write_csv(root, n=40)
            options = {"label_column": "brightness"}
        else:
            from .test_multilabel import write_csv

            labels, _ = write_csv(root, n=45)
            options = {}
        run = transferkit.fit(
            labels,
            task=task,
            strategy="linear",
            image_size=TINY_SIZE,
            quiet=True,
            out=_workdir() / "runs",
            name=f"tiny-{task}",
            **options,
        )
        _made[key] = run.best
    return _made[key]


def tiny_export(task: str) -> dict:
    """The fp32 ONNX export of `tiny_bundle(task)` and its parity report (checked on the run's test images)."""
    key = f"report-{task}"
    if key not in _made:
        from transferkit.export import export

        _made[key] = export(tiny_bundle(task))
    return _made[key]  # type: ignore[return-value]


def tiny_images(task: str, n: int = 4) -> list[Path]:
    """A few of the generated images the tiny bundle of `task` was trained on (and tested on)."""
    tiny_bundle(task)
    return sorted((_workdir() / task).glob("*.png"))[:n]


def tiny_data(task: str) -> Path:
    """The list file `tiny_bundle(task)` was trained on."""
    tiny_bundle(task)
    return _workdir() / task / "labels.csv"
