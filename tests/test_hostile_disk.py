"""A run stopped by SIGTERM, and a full disk under `train --out` and `export --out` (issue 21, items 9 and 11).

A full disk is simulated: the write path raises OSError(ENOSPC) (or, as torch.save does, an error without its errno
while almost nothing is free). What is checked is what the user sees (`Error: disk full at <path>, needs N MB`, exit
2, no traceback) and that nothing half-written is left."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import write_folder
from .deploy_models import run_cli, tiny_bundle

ROOT = Path(__file__).resolve().parents[1]


def leftovers(root: Path) -> list[str]:
    """Temporary files of atomic writes and export's temporary folders: what a half-done write leaves."""
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith("tmp")
    )


TRAIN = textwrap.dedent(
    """
    import os, signal, sys, time
    sys.argv = ["transferkit", *sys.argv[1:]]
    import transferkit.core.train as core_train

    real = core_train.train_prepared

    def stopped(model, strategy, cfg, prepared, run_dir, *args, **kwargs):
        decoded = os.path.join(os.environ["TRANSFERKIT_CACHE"], "decoded")
        print("RUN", run_dir, "DECODED", sorted(os.listdir(decoded)), flush=True)
        os.kill(os.getpid(), signal.SIGTERM)  # a scheduler stops the job before the first epoch
        time.sleep(30)
        return real(model, strategy, cfg, prepared, run_dir, *args, **kwargs)

    core_train.train_prepared = stopped
    from transferkit.cli.app import main
    main()
    """
)


def test_sigterm_during_train_cleans_up_as_ctrl_c(tmp_path):
    """Before: the process died at once, leaving the run directory (no last.ckpt: `--resume` refuses it) and the
    decoded images in the cache. Now: both removed, a line says why it stopped, exit status 143 (128 + SIGTERM)."""
    data = write_folder(tmp_path / "data", per_class=6, size=32)
    out, cache = tmp_path / "runs", tmp_path / "cache"
    env = {**os.environ, "TRANSFERKIT_CACHE": str(cache), "PYTHONPATH": str(ROOT / "src")}
    args = [data, "--out", out, "--strategy", "finetune", "--epochs", "1", "--image-size", "32"]
    proc = subprocess.run(
        [sys.executable, "-c", TRAIN, "train", *map(str, args), "--decode-store", "disk"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    before = [line for line in proc.stdout.splitlines() if line.startswith("RUN ")]
    assert before and ".u8" in before[0], proc.stdout + proc.stderr  # the run dir and the decoded file existed
    assert proc.returncode == 128 + 15, proc.stderr
    assert "Stopped by SIGTERM" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() or list(out.iterdir()) == []  # no run directory that --resume would refuse
    assert [p.name for p in (cache / "decoded").iterdir()] == []  # the decoded images went with the process


def _full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_train_on_a_full_disk_says_so_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    """Before: a safetensors (or torch.save) traceback. Now: the file, what it needs, exit 2; the temporary file gone
    and the run directory removed (it has no checkpoint to resume from)."""
    import safetensors.torch

    real = safetensors.torch.save_file

    def half_then_full(state, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 1000)  # the disk filled part-way through
        _full()

    monkeypatch.setattr(safetensors.torch, "save_file", half_then_full)
    data = write_folder(tmp_path / "data", per_class=6, size=32)
    out = tmp_path / "runs"
    code, _, err = run_cli("train", data, "--out", out, "--strategy", "linear", "--image-size", "32", "--quiet")
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    assert code == 2, err
    assert "disk full at " in err and "model.safetensors, needs " in err and " MB" in err and "Traceback" not in err
    assert leftovers(tmp_path) == []
    assert not any(p.name == "model.safetensors" for p in out.rglob("*"))  # no bundle that loading would refuse


def test_a_write_that_fails_without_its_errno_on_a_full_disk(tmp_path, monkeypatch):
    """torch.save says only "file write failed": with under 1 MiB free that is a full disk; with space it is not."""
    from transferkit import faults

    def torch_save(tmp):
        tmp.write_bytes(b"\0" * 3_000_000)
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(faults, "free_bytes", lambda _folder: 4096)
    with pytest.raises(
        faults.DiskFull,
        match=r"disk full at .*last\.ckpt, needs more than 3\.0 MB \(0\.0 MB free; the system said: Pytorch",
    ):
        with faults.atomic_path(tmp_path / "last.ckpt") as tmp:
            torch_save(tmp)
    with pytest.raises(faults.DiskFull, match=r"config\.json, needs 0\.0 MB"):  # the size is known: "needs N MB"
        with faults.atomic_path(tmp_path / "config.json", size=12) as tmp:
            _full()
    monkeypatch.setattr(faults, "free_bytes", lambda _folder: 10**12)
    with pytest.raises(RuntimeError, match="file write failed"):  # plenty of space: not a full disk, left as it was
        with faults.atomic_path(tmp_path / "last.ckpt") as tmp:
            torch_save(tmp)
    assert list(tmp_path.iterdir()) == []


def test_export_on_a_full_disk_says_so_and_leaves_nothing(tmp_path, monkeypatch):
    """Before: `OSError: [Errno 28]` with a traceback. Now: the export's path and what it needs, exit 2, nothing in
    the --out folder (the temporary folder removed)."""
    import onnx

    bundle = tiny_bundle("regression")
    weights = (bundle / "model.safetensors").stat().st_size

    def half_then_full(model, path, *args, **kwargs):
        Path(path).write_bytes(b"\0" * 1000)
        _full()

    monkeypatch.setattr(onnx, "save", half_then_full)
    target = tmp_path / "exports" / "m.onnx"
    code, _, err = run_cli("export", bundle, "--out", target)
    assert code == 2, err
    assert f"disk full at {target}, needs {2 * weights / 1e6:.1f} MB" in err and "Traceback" not in err
    assert list((tmp_path / "exports").iterdir()) == []
