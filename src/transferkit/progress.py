"""What the user sees while a run works: rich bars and a table row per epoch on a terminal, plain lines otherwise,
and a JSON-lines stream for tools.

    reporter = make_reporter(quiet=False, log_json=True)   # bars on stderr (if a terminal) + JSON events on stdout
    with reporter.task("Features (train)", 244) as advance: ...   # advance(n) per batch
    reporter.end_epoch(row)

The engine only calls a `Reporter`; it never prints. Nothing is written per batch except by the live bars, which
exist only on a terminal: logs and pipes get one line per step and per epoch.
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import ExitStack, contextmanager

EPOCH_COLUMNS = ("epoch", "phase", "train_loss", "val_loss", "val_acc", "seconds")


def score_name(row: dict) -> str:
    """What the row's train_acc / val_acc hold, as the epoch line names it: the task's score column ("score" in the
    row: acc, r2, map; rows without it are a classification's)."""
    return str(row.get("score") or "acc")


def format_row(row: dict) -> str:
    """One line per epoch, the classic format: 'Epoch 3/10 [finetune] train loss 0.4123 val loss 0.3011 val acc 0.9412
    (12.3 s)'; the score is named as the task names it ('val r2 0.6120', 'val map 0.8731')."""
    return (
        f"Epoch {row['epoch']}/{row.get('epochs', '?')} [{row['phase']}] "
        f"train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  val {score_name(row)} {row['val_acc']:.4f}"
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

    def emit(self, event: str, **fields) -> None:
        """A structured event for tools; only the JSON reporter writes it (people get `message`s)."""


class QuietReporter(Reporter):
    def message(self, text: str) -> None:
        pass

    def end_epoch(self, row: dict) -> None:
        pass

    @contextmanager
    def task(self, description: str, total: int):
        yield lambda n=1: None


class JsonReporter(Reporter):
    """One JSON object per line and per event, for tools (`--log-json`); never one per batch.

        {"event": "message", "t": 0.41, "text": "Data: folders layout, 2 classes, ..."}
        {"event": "task_start", "t": 0.52, "task": "Features (train, fp32)", "total": 244}
        {"event": "task_end", "t": 3.90, "task": "Features (train, fp32)", "total": 244, "seconds": 3.38}
        {"event": "epoch", "t": 4.2, "epoch": 1, "phase": "head", "train_loss": 0.21, "val_acc": 0.94, "best": true, ...}

    `t` is seconds since the reporter was made. Floats that are not numbers (a nan loss) are written as null, so
    every line is strict JSON.
    """

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.start = time.perf_counter()

    def emit(self, event: str, **fields) -> None:
        record = {"event": event, "t": round(time.perf_counter() - self.start, 3), **fields}
        print(json.dumps(_finite(record), default=str), file=self.stream, flush=True)

    def message(self, text: str) -> None:
        self.emit("message", text=text)

    @contextmanager
    def task(self, description: str, total: int):
        start = time.perf_counter()
        self.emit("task_start", task=description, total=total)
        yield lambda n=1: None
        self.emit("task_end", task=description, total=total, seconds=round(time.perf_counter() - start, 3))

    def end_epoch(self, row: dict) -> None:
        self.emit("epoch", **row)


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


class TeeReporter(Reporter):
    """Several reporters at once: the human one on stderr and the JSON stream on stdout."""

    def __init__(self, *reporters: Reporter):
        self.reporters = reporters

    def message(self, text: str) -> None:
        for r in self.reporters:
            r.message(text)

    @contextmanager
    def _all(self, kind: str, description: str, total: int):
        with ExitStack() as stack:
            advances = [stack.enter_context(getattr(r, kind)(description, total)) for r in self.reporters]

            def advance(*args, **kwargs):
                for a in advances:
                    a(*args, **kwargs)

            yield advance

    def task(self, description: str, total: int):
        return self._all("task", description, total)

    def epoch(self, description: str, total: int):
        return self._all("epoch", description, total)

    def end_epoch(self, row: dict) -> None:
        for r in self.reporters:
            r.end_epoch(row)

    def emit(self, event: str, **fields) -> None:
        for r in self.reporters:
            r.emit(event, **fields)


class RichReporter(Reporter):
    """A live bar per step (batches, ETA, running loss); a table row per epoch that stays on screen."""

    @staticmethod
    def header(score: str = "acc") -> str:
        """The table's header, the score named as the task names it ('train acc', 'val r2', ...)."""
        train, val = f"train {score}", f"val {score}"
        return f"{'epoch':>7}  {'phase':<10} {'train loss':>10} {train:>9} {'val loss':>9} {val:>8} {'time':>8}"

    HEADER = header("acc")

    def __init__(self):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.header_shown = False

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def _progress(self):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
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
        if not self.header_shown:
            self.console.print(self.header(score_name(row)), style="bold", highlight=False)
            self.header_shown = True
        epoch = f"{row['epoch']}/{row.get('epochs', '?')}"
        train_acc = "" if row.get("train_acc") is None else f"{row['train_acc']:.4f}"
        line = (
            f"{epoch:>7}  {row['phase']:<10} {row['train_loss']:>10.4f} {train_acc:>9} {row['val_loss']:>9.4f} "
            f"{row['val_acc']:>8.4f} {row['seconds']:>7.1f}s"
        )
        self.console.print(line + ("  [bold green]* best[/bold green]" if row.get("best") else ""), highlight=False)


def make_reporter(quiet: bool = False, log_json: bool = False) -> Reporter:
    """Bars on a terminal, plain lines otherwise, nothing with quiet; plus JSON lines on stdout with log_json."""
    human = QuietReporter() if quiet else (RichReporter() if sys.stderr.isatty() else Reporter())
    if log_json:
        return JsonReporter() if quiet else TeeReporter(human, JsonReporter())
    return human
