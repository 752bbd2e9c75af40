"""`RunDir`: every file a run leaves, by name, written atomically; a run that fails before training leaves nothing.

    run = RunDir.create("runs", "ants-linear")     # runs/ants-linear, or ants-linear-2, ... : never overwritten
    run.write_json(RunDir.CONFIG, {...})           # temp file + rename: a kill never leaves half a file
    run = RunDir.for_resume("runs/ants-linear")    # says which file is missing, and why that matters

The trainer writes `metrics.csv`, `last.ckpt` and `best/` through the names here; reports add `report.json`,
`predictions.csv`, `plots/` and `report.html`. Nothing here imports torch.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from .errors import TransferkitError
from .faults import disk_full, write_atomic


def portable_name(name: str) -> str:
    """A run name that is a valid folder name everywhere: 'small-freeze:99' -> 'small-freeze-99'.
    Windows and macOS's Finder refuse ':' and friends; spaces survive shells badly."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-.")
    return cleaned or "run"


class RunDir:
    CONFIG, SPLIT, DOCTOR, SKIPPED = "config.json", "split.csv", "doctor.json", "skipped.csv"
    METRICS, LAST, BEST, REPORT = "metrics.csv", "last.ckpt", "best", "report.json"
    FAILED = "failed.json"  # written when a run stops with an error after training began: listings can tell

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:
        return str(self.path)

    @staticmethod
    def check_out(out: str | os.PathLike) -> None:
        """Whether runs can be made in `out`, creating nothing: checked before any work, so that a wrong --out
        fails in a second, not after decoding."""
        from .faults import check_folder

        base = Path(out).expanduser()
        check_folder(
            base, f"--out '{base}'", "give a folder for the run directories (it is made if missing)", writable=True
        )

    @staticmethod
    def prepare_out(out: str | os.PathLike) -> Path:
        """The folder runs go in, created when missing."""
        base = Path(out).expanduser()
        try:
            base.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise TransferkitError(
                f"--out '{base}' is a file, not a folder: give a folder for the run directories "
                "(it is created when missing)."
            ) from None
        except OSError as e:
            raise TransferkitError(
                f"--out '{base}' cannot be created ({e.strerror or e}): give a folder you can write to."
            ) from None
        if not base.is_dir():
            raise TransferkitError(f"--out '{base}' is not a folder: give a folder for the run directories.")
        return base

    @classmethod
    def create(cls, out: str | os.PathLike, name: str) -> RunDir:
        """out/name, or out/name-2, -3, ...: an existing run is never overwritten."""
        base, name = cls.prepare_out(out), portable_name(name)
        for i in range(1, 10_000):
            path = base / (name if i == 1 else f"{name}-{i}")
            try:
                path.mkdir()
                return cls(path)
            except FileExistsError:
                continue
            except OSError as e:
                if (full := disk_full(e, path)) is not None:
                    raise full from None
                raise TransferkitError(
                    f"--out '{base}' is not writable ({e.strerror or e}): give a folder you can "
                    "write to, e.g. --out ./runs."
                ) from None
        raise TransferkitError(f"Too many runs named '{name}' in '{base}'; pick another --name.")

    @classmethod
    def for_resume(cls, path: str | os.PathLike) -> RunDir:
        run = cls(path)
        if not run.path.is_dir():
            raise TransferkitError(
                f"--resume '{run.path}': no such folder. Give a run directory (the path "
                "`transferkit train` printed last)."
            )
        if not (run / cls.CONFIG).is_file():
            raise TransferkitError(
                f"--resume '{run.path}': not a run directory (it has no {cls.CONFIG}). Give the "
                "folder `transferkit train` printed, not its best/ folder."
            )
        if not (run / cls.LAST).is_file():
            epochs = len(run.metrics_rows())
            why = (
                f"{cls.METRICS} lists {epochs} finished epoch(s), so the checkpoint was deleted or moved"
                if epochs
                else "the run stopped before its first epoch finished"
            )
            raise TransferkitError(
                f"--resume '{run.path}': there is no {cls.LAST} to continue from ({why}). Start a new run instead."
            )
        return run

    def write_text(self, name: str, text: str) -> Path:
        write_atomic(self / name, text)
        return self / name

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_text(name, json.dumps(obj, indent=2, default=str, ensure_ascii=False))

    def read_json(self, name: str) -> dict:
        path = self / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise TransferkitError(
                f"'{path}' cannot be read as JSON ({e}); it may have been edited or cut short. "
                "Start a new run, or restore the file."
            ) from None

    def update_json(self, name: str, **fields) -> dict:
        data = self.read_json(name) if (self / name).exists() else {}
        data.update(fields)
        self.write_json(name, data)
        return data

    def metrics_rows(self) -> list[dict]:
        path = self / self.METRICS
        if not path.is_file():
            return []
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def write_skipped(self, skipped: list[tuple[str, str, str]]) -> None:
        """skipped.csv: split, key, reason of every file that could not be read."""
        lines = ["split,key,reason"]
        lines += [f'{split},"{k}","{why.replace(chr(34), chr(39))}"' for split, k, why in skipped]
        self.write_text(self.SKIPPED, "\n".join(lines) + "\n")

    def discard(self) -> None:
        """Remove a run that failed before anything worth keeping was written (no checkpoint)."""
        shutil.rmtree(self.path, ignore_errors=True)

    def mark_failed(self, error: BaseException) -> None:
        try:
            self.write_json(self.FAILED, {"error": type(error).__name__, "message": str(error)})
        except OSError:
            pass
