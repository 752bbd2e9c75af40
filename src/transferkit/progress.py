"""What the user sees while a run works: rich bars and a table row per epoch on a terminal, plain lines otherwise.

The engine only calls a `Reporter`; it never prints. `make_reporter()` picks the right one for the output.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

EPOCH_COLUMNS = ("epoch", "phase", "train_loss", "val_loss", "val_acc", "seconds")


def format_row(row: dict) -> str:
    """One line per epoch, the classic format: 'Epoch 3/10 [finetune] train loss 0.4123 val loss 0.3011 val acc 0.9412 (12.3 s)'."""
    return (
        f"Epoch {row['epoch']}/{row.get('epochs', '?')} [{row['phase']}] "
        f"train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  val acc {row['val_acc']:.4f}"
        f"  ({row['seconds']:.1f} s){'  *best' if row.get('best') else ''}"
    )


class Reporter:
    """Plain lines, for pipes, CI and log files: nothing per batch."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr

    def message(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    @contextmanager
    def task(self, description: str, total: int):
        start = time.perf_counter()
        yield lambda n=1: None
        self.message(f"{description}: {total} done in {time.perf_counter() - start:.1f} s")

    @contextmanager
    def epoch(self, description: str, total: int):
        yield lambda n=1, loss=None: None

    def end_epoch(self, row: dict) -> None:
        self.message(format_row(row))


class QuietReporter(Reporter):
    def message(self, text: str) -> None:
        pass

    def end_epoch(self, row: dict) -> None:
        pass

    @contextmanager
    def task(self, description: str, total: int):
        yield lambda n=1: None


class RichReporter(Reporter):
    """A live bar per step (batches, ETA, running loss); a line per epoch that stays on screen."""

    def __init__(self):
        from rich.console import Console

        self.console = Console(stderr=True)

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def _progress(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        return Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True,
        )

    @contextmanager
    def task(self, description: str, total: int):
        start = time.perf_counter()
        with self._progress() as p:
            t = p.add_task(description, total=total, info="")
            yield lambda n=1: p.advance(t, n)
        self.message(f"{description}: {total} done in {time.perf_counter() - start:.1f} s")

    @contextmanager
    def epoch(self, description: str, total: int):
        with self._progress() as p:
            t = p.add_task(description, total=total, info="")
            state = {"sum": 0.0, "n": 0}

            def advance(n=1, loss=None):
                if loss is not None:
                    state["sum"] += loss
                    state["n"] += 1
                    p.update(t, info=f"loss {state['sum'] / state['n']:.4f}")
                p.advance(t, n)

            yield advance

    def end_epoch(self, row: dict) -> None:
        self.message(format_row(row))


def make_reporter(quiet: bool = False) -> Reporter:
    if quiet:
        return QuietReporter()
    return RichReporter() if sys.stderr.isatty() else Reporter()
