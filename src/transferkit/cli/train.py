"""`transferkit train DATA`: fit a classifier; the run directory's path is printed last.

Every option comes from config.py (cli/options.py turns the fields into flags, grouped in --help panels).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from ..config import TrainCommandOptions
from ..errors import ConfigError, TransferkitError
from .options import command


@command("train")
def train(
    data: Path | None = typer.Argument(
        None, help="Image folder (class sub-folders), pre-split folder, list file or HDF5."
    ),
    *,
    options: TrainCommandOptions,
    overrides: dict,
    typed: set,
) -> None:
    """Train a model on DATA (classes, several labels or a number: --task) and save the run (config, metrics, best
    model) in OUT/NAME."""
    from ..api import fit
    from ..progress import JsonReporter, make_reporter
    from ..tasks import get_task

    resume, log_json = options.resume, options.log_json
    if data is None and resume is None:
        raise typer.BadParameter("give DATA (an image folder), or --resume RUN_DIR", param_hint="DATA")
    try:
        overrides = _with_config_file(options, overrides, typed)
    except TransferkitError as e:  # --log-json: the stream says why it ends, as for a failing run
        if log_json:
            JsonReporter().emit("error", kind=type(e).__name__, text=str(e))
        raise
    quiet = bool(overrides.get("quiet"))
    reporter = make_reporter(quiet, log_json)
    try:
        if options.review and data is not None:  # counts only: labels are the user's to change (transferkit review)
            from ..core.review import review_counts

            reporter.message(review_counts(data, reporter=reporter, **overrides))
        with sigterm_as_interrupt():
            run = fit(data, resume=resume, reporter=reporter, **overrides)
    except BaseException as e:  # a tool reading --log-json sees why the stream ends without "done"
        reporter.emit("error", kind=type(e).__name__, text=str(e) or type(e).__name__)
        if not isinstance(e, Terminated):
            raise
        # fit cleaned up as for Ctrl-C: no run directory before the first checkpoint (and said how to resume after
        # one); the decoded images' file goes as the process exits. 128 + 15: a shell's status for a SIGTERM.
        print("Stopped by SIGTERM (cleaned up as Ctrl-C does).", file=sys.stderr, flush=True)
        raise SystemExit(128 + signal.SIGTERM) from None
    from ..engine.runtime import processes

    if not processes().is_main_process:  # launched on several (torchrun): the main process reports the run, once
        return
    if log_json:
        m = run.test_metrics
        reporter.emit(
            "done",
            path=str(run.path),
            split=run.eval_split,
            strategy=run.strategy,
            seconds=round(run.seconds, 3),
            metrics={k: m.get(k) for k in ("n", *get_task(run.config.train.task).headline, "interval")},
            **({"cv": {k: v for k, v in run.cv.items() if k != "folds"}} if run.cv else {}),
        )
        return
    summarize(run, quiet)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, `kill`, a container stopping), raised where Ctrl-C raises KeyboardInterrupt, so that the
    same cleanup runs. Without it the process died at once and left a run directory that `--resume` refuses (no
    last.ckpt) and the decoded images (153 MB on hymenoptera) in the cache."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return

    def stop(_signum, _frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def summarize(run, quiet: bool) -> None:
    if not quiet:
        from rich.console import Console

        Console(stderr=True).print(summary_lines(run), highlight=False)
    print(run.path)


def summary_lines(run) -> str:
    """The result with its 95% interval; when the split is too small to separate two strategies, a line saying what
    difference it can resolve; the --cv estimate when there is one."""
    from ..crossval import cv_text
    from ..evaluation.intervals import interval_text
    from ..tasks import get_task

    m = run.test_metrics
    iv = m.get("interval")
    shown = f" ({interval_text(iv)})" if iv else ""
    line = get_task(run.config.train.task).summary(m, run.eval_split, shown)
    lines = [f"{line}; strategy {run.strategy}; {run.seconds:.0f} s. Model: {run.best}"]
    if iv and not iv["separates"]:
        lines.append(iv["note"] + ".")
    if run.cv:
        lines.append(cv_text(run.cv, get_task(run.config.train.task)) + f"; the folds are in {run.path / 'cv'}.")
    return "\n".join(lines)


def _with_config_file(options: TrainCommandOptions, overrides: dict, typed: set) -> dict:
    """The options fit gets: --config FILE's under the typed flags; with --resume, only what was typed."""
    if options.config is not None and options.resume is not None:  # a resumed run keeps the settings it started with
        raise ConfigError(
            f"--config {options.config} with --resume: a resumed run continues with its own config.json; give the "
            "options --resume may change (--epochs, --patience, --quiet) as flags, or start a new run with --config."
        )
    if options.config is not None:  # the file's options (tune's best.json, a run's config.json); typed ones win
        from ..config import read_config_file

        typed_values = {k: v for k, v in overrides.items() if k in typed}
        overrides = {**overrides, **read_config_file(options.config), **typed_values}
    if options.resume is not None:  # only what was typed: fit refuses, by name, what --resume cannot change
        overrides = {k: v for k, v in overrides.items() if k in typed}
    return overrides


def register(app: typer.Typer) -> None:
    app.command()(train)
