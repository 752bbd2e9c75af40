"""Progress output: plain lines off a terminal, a JSON-lines stream for tools, nothing per batch in either."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from transferkit.progress import JsonReporter, QuietReporter, Reporter, TeeReporter, make_reporter

ROW = {
    "epoch": 2,
    "epochs": 5,
    "phase": "finetune",
    "train_loss": 0.41,
    "train_acc": 0.8,
    "val_loss": float("nan"),
    "val_acc": 0.9,
    "lr": 1e-3,
    "seconds": 1.5,
    "best": True,
}


def drive(reporter) -> None:
    """What the engine does in one short run: a message, a feature pass of 100 batches, an epoch of 50 batches."""
    reporter.message("Data: 2 classes")
    with reporter.task("Features (train)", 3200) as advance:
        for _ in range(100):
            advance(32)
    with reporter.epoch("Epoch 2 [finetune]", 50) as advance:
        for _ in range(50):
            advance(1, loss=0.4)
    reporter.end_epoch(ROW)


def test_json_lines_one_per_event_never_per_batch():
    out = io.StringIO()
    r = JsonReporter(out)
    drive(r)
    r.emit("done", path="runs/x")
    events = [json.loads(line) for line in out.getvalue().splitlines()]  # every line is strict JSON
    assert [e["event"] for e in events] == ["message", "task_start", "task_end", "epoch", "done"]
    assert events[2]["total"] == 3200 and events[2]["seconds"] >= 0
    epoch = events[3]
    assert epoch["epoch"] == 2 and epoch["best"] is True and epoch["val_loss"] is None  # nan -> null, still JSON
    assert all(e["t"] >= 0 for e in events)


def test_plain_lines_nothing_per_batch():
    out = io.StringIO()
    drive(Reporter(out))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # the message, the feature pass's summary, the epoch row
    assert lines[1].startswith("Features (train): 3200 done") and lines[2].startswith("Epoch 2/5 [finetune]")


def test_tee_sends_every_event_to_each_reporter():
    plain, stream = io.StringIO(), io.StringIO()
    tee = TeeReporter(Reporter(plain), JsonReporter(stream))
    drive(tee)
    tee.emit("done", path="runs/x")
    assert len(plain.getvalue().splitlines()) == 3
    assert [json.loads(x)["event"] for x in stream.getvalue().splitlines()][-1] == "done"


def test_make_reporter_choices(capsys):
    assert isinstance(make_reporter(quiet=True), QuietReporter)
    assert isinstance(make_reporter(quiet=True, log_json=True), JsonReporter)
    tee = make_reporter(quiet=False, log_json=True)
    assert isinstance(tee, TeeReporter)
    assert type(tee.reporters[0]) is Reporter  # pytest's stderr is not a terminal: plain lines, no bars


def test_cli_help_imports_no_torch_or_matplotlib():
    code = (
        "import sys; from transferkit.cli.app import app; import transferkit, transferkit.progress, "
        "transferkit.cli.report; bad = [m for m in ('torch', 'matplotlib') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_failed_train_with_log_json_ends_its_stream_with_an_error_event(tmp_path, monkeypatch, capsys):
    """A tool reading --log-json saw the stream end without "done" and without a reason (it was on stderr only)."""
    import sys

    from transferkit.cli.app import main

    monkeypatch.setattr(sys, "argv", ["transferkit", "train", str(tmp_path / "missing"), "--log-json"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    last = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert last["event"] == "error" and last["kind"] == "DataError" and "does not exist" in last["text"]
    (tmp_path / "c.json").write_text("{not json")  # refused before any run starts: said on the stream too
    monkeypatch.setattr(sys, "argv", ["transferkit", "train", str(tmp_path), "--config", "c.json", "--log-json"])
    with pytest.raises(SystemExit):
        main()
    last = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert last["event"] == "error" and "c.json" in last["text"]
