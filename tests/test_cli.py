"""The command line: light --help, the run's path printed last, JSON outputs, errors without tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import write_folder


def cli(*args, check=True):
    r = subprocess.run(
        [sys.executable, "-m", "transferkit", *map(str, args)], capture_output=True, text=True, timeout=600
    )
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def test_import_and_help_do_not_import_torch():
    code = (
        "import sys, transferkit, transferkit.cli.app; "
        "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, [m for m in sys.modules if m.startswith(('torch', 'matplotlib'))]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    r = cli("--help")
    assert "train" in r.stdout and "predict" in r.stdout and "demo" in r.stdout


def test_train_evaluate_predict(tmp_path):
    data = write_folder(tmp_path / "colours", per_class=10)
    r = cli("train", data, "--strategy", "linear", "--image-size", "32", "--out", tmp_path / "runs", "--name", "cli")
    run_dir = tmp_path / "runs" / "cli"
    assert r.stdout.strip().splitlines()[-1] == str(run_dir)  # the path is printed last, on stdout
    assert "Epoch 1/1 [head]" in r.stderr and "accuracy" in r.stderr
    ev = json.loads(cli("evaluate", run_dir / "best", data, "--json").stdout)
    assert {"accuracy", "loss", "per_class", "confusion_matrix"} <= set(ev)
    assert len(ev["confusion_matrix"]) == 3 and sum(map(sum, ev["confusion_matrix"])) == ev["n"]
    pr = json.loads(cli("predict", run_dir / "best", data / "red", "--json", "--top-k", "2").stdout)
    assert len(pr) == 10 and set(pr[0]) == {"path", "label", "probability", "top_k"} and len(pr[0]["top_k"]) == 2
    table = cli("evaluate", run_dir / "best", data).stdout
    assert "Confusion matrix" in table and "precision" in table
    # file names are text, not rich markup: "[b]" and "[bold]" were eaten (and styled) in the table and the errors
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "a[b].png").write_bytes(next((data / "red").iterdir()).read_bytes())
    env = {**os.environ, "COLUMNS": "400"}
    run = [sys.executable, "-m", "transferkit"]
    shown = subprocess.run([*run, "predict", run_dir / "best", odd], capture_output=True, text=True, env=env)
    assert "a[b].png" in shown.stdout, shown.stdout
    (odd / "x[bold]").mkdir()
    said = subprocess.run([*run, "train", odd / "x[bold]"], capture_output=True, text=True, env=env)
    assert said.returncode == 2 and "x[bold]' has no class sub-folders" in said.stderr, said.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backbone", "efficientnet_lite9"], "Did you mean"),
        (["--strategy", "freeze:two"], "--strategy"),
        (["--split", "0.5,0.1"], "--split"),
        (["--head", "mlp"], "--head"),
    ],
)
def test_bad_options_are_explained_without_traceback(tmp_path, args, message):
    data = write_folder(tmp_path / "d", per_class=3)
    r = cli("train", data, *args, "--out", tmp_path / "runs", check=False)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_missing_data_and_bundle_are_explained(tmp_path):
    r = cli("train", tmp_path / "nope", check=False)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = cli("predict", tmp_path, tmp_path, check=False)
    assert r.returncode == 2 and "transferkit.json" in r.stderr
