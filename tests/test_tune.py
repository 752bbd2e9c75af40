"""`tune`: an Optuna study over the options that carry a range, on cached features of tiny generated images."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import shared, write_folder
from transferkit.config import read_config_file
from transferkit.errors import ConfigError
from transferkit.progress import QuietReporter
from transferkit.tune import STUDY_NAME, parse_space, tunable, tune

FAST = {"image_size": 32, "strategy": "linear", "head_solver": "lbfgs"}  # a trial: 3 L-BFGS heads, a second


def test_ranges_are_declared_with_the_options_and_parse():
    fields = tunable()
    assert fields["lr"].opt.tune == (1e-4, 1e-1, "log")
    assert "mlp:256" in fields["head"].opt.tune
    assert [f.name for f in parse_space("lr, weight-decay")] == ["lr", "weight_decay"]


@pytest.mark.parametrize("name, said", [("seed", "has no search range"), ("lrr", "is not an option")])
def test_a_field_without_a_range_is_refused_by_name_with_the_tunable_ones(name, said):
    with pytest.raises(ConfigError) as e:
        parse_space(f"lr,{name}")
    assert f"'{name}' {said}" in str(e.value)
    assert "label_smoothing" in str(e.value) and "weight_decay" in str(e.value)


def test_a_study_resumes_keeps_its_trials_and_writes_what_train_reads(tiny_folder, tmp_path):
    out = tmp_path / "studies"
    first = tune(tiny_folder, trials=2, budget=5, space="label_smoothing", folds=3, out=out, name="s", **FAST)
    assert [r["state"] for r in first.trials] == ["complete", "complete"]
    again = tune(tiny_folder, trials=3, budget=5, space="label_smoothing", folds=3, out=out, name="s", **FAST)
    assert len(again.trials) == 3  # the two from before, and one more
    assert [r["params"] for r in again.trials[:2]] == [r["params"] for r in first.trials[:2]]
    assert 0 <= again.best_value <= 1
    # best.json is read as `train --config FILE` reads it: flat options for fit(**options)
    options = read_config_file(again.files["best"])
    assert options["label_smoothing"] == pytest.approx(again.best_params["label_smoothing"])
    assert options["strategy"] == "linear"
    assert {"history", "report"} <= set(again.files)
    assert "<img" in again.files["report"].read_text()


def test_a_study_made_on_other_data_is_refused(tiny_folder, tmp_path):
    out = tmp_path / "studies"
    tune(tiny_folder, trials=1, budget=5, space="label_smoothing", folds=3, out=out, name="s", **FAST)
    other = write_folder(tmp_path / "other", seed=7)
    with pytest.raises(ConfigError, match="made on other data"):
        tune(other, trials=2, budget=5, space="label_smoothing", folds=3, out=out, name="s", **FAST)


class Messages(QuietReporter):
    def __init__(self):
        self.said = []

    def message(self, text: str) -> None:
        self.said.append(text)


def test_a_resumed_study_explores_on_instead_of_repeating_its_first_trials(tiny_folder, tmp_path):
    first = tune(tiny_folder, trials=2, budget=5, space="lr", folds=3, out=tmp_path, name="s", **FAST)
    again = tune(tiny_folder, trials=4, budget=5, space="lr", folds=3, out=tmp_path, name="s", **FAST)
    seen = [r["params"]["lr"] for r in first.trials]
    assert [r["params"]["lr"] for r in again.trials[:2]] == seen
    assert not {r["params"]["lr"] for r in again.trials[2:]} & set(seen)  # a seeded sampler restarted: the same two


def test_a_trial_left_running_by_a_killed_process_is_marked_failed_and_made_again(tiny_folder, tmp_path):
    import optuna

    tune(tiny_folder, trials=1, budget=5, space="lr", folds=3, out=tmp_path, name="s", **FAST)
    storage = f"sqlite:///{tmp_path / 's' / 'study.db'}"
    optuna.load_study(study_name=STUDY_NAME, storage=storage).ask()  # as a process killed mid-trial leaves it
    said = Messages()
    again = tune(tiny_folder, trials=2, budget=5, space="lr", folds=3, out=tmp_path, name="s", reporter=said, **FAST)
    assert [r["state"] for r in again.trials] == ["complete", "fail", "complete"]  # 2 done: the failed one not counted
    assert any("Trial 1 was left running" in m and "marked failed" in m for m in said.said)


@pytest.mark.parametrize(
    "changed, option",
    [({"image_size": 40}, "--image-size 32 there, 40 here"), ({"folds": 2}, "--folds 3 there, 2 here")]
    + [({"space": "lr,head"}, "--space lr there, head,lr here"), ({"seed": 1}, "--seed 0 there, 1 here")],
)
def test_a_resume_with_other_fixed_settings_is_refused_naming_them(tiny_folder, tmp_path, changed, option):
    given = {"trials": 1, "budget": 5, "space": "lr", "folds": 3, "out": tmp_path, "name": "s", **FAST}
    first = tune(tiny_folder, **given)
    best = first.files["best"].read_text()
    with pytest.raises(ConfigError, match="made with other settings") as e:
        tune(tiny_folder, **{**given, "trials": 2, **changed})
    assert option in str(e.value) and "--name" in str(e.value)
    assert first.files["best"].read_text() == best  # still the settings its value was measured with
    assert read_config_file(first.files["best"])["image_size"] == 32


def test_a_regression_study_leaves_label_smoothing_out_and_is_named_as_train_names_runs(tmp_path):
    from tests.test_regression import write_csv

    csv, _ = write_csv(tmp_path / "houses", n=30)
    data = {"task": "regression", "target_column": "brightness", **FAST}
    result = tune(csv, trials=1, budget=5, folds=3, out=tmp_path / "runs", **data)
    assert result.path == tmp_path / "runs" / "tune-labels"  # as runs/labels-linear: the list file's suffix dropped
    assert set(result.best_params) == {"lr", "weight_decay", "head"}
    with pytest.raises(ConfigError, match="label_smoothing does nothing for --task regression"):
        tune(csv, trials=1, budget=5, space="lr,label_smoothing", folds=3, out=tmp_path / "runs", **data)


def test_the_command_searches_the_tasks_default_space_unless_space_is_given(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from transferkit.cli.app import app

    seen = []
    monkeypatch.setattr("transferkit.tune.tune", lambda data, space, **kw: seen.append(space) or 1 / 0)
    CliRunner().invoke(app, ["tune", str(tmp_path), "--task", "regression"])
    CliRunner().invoke(app, ["tune", str(tmp_path), "--space", "lr"])
    assert seen == [None, "lr"]  # None: tune.default_space(task)


def test_a_budget_too_small_for_one_trial_is_refused_before_any_work(tiny_folder, tmp_path):
    with pytest.raises(ConfigError, match="too small for one trial") as e:
        tune(tiny_folder, trials=2, budget=1e-6, space="lr", folds=3, out=tmp_path, **FAST)
    assert "Give --budget" in str(e.value)
    assert not (tmp_path / f"tune-{tiny_folder.name}").exists()  # no study, and no empty folder either


def test_train_config_file_gives_defaults_that_typed_options_override(tmp_path, monkeypatch):
    from transferkit.cli import train as train_cli

    best = tmp_path / "best.json"
    best.write_text(json.dumps({"config": {"train": {"lr": 0.02, "epochs": 4}, "model": {"head": "mlp:256"}}}))
    seen = {}

    def fake_fit(data, resume=None, reporter=None, **overrides):
        seen.update(overrides)
        raise SystemExit(0)

    monkeypatch.setattr("transferkit.api.fit", fake_fit)
    from typer.testing import CliRunner

    from transferkit.cli.app import app

    CliRunner().invoke(app, ["train", str(tmp_path), "--config", str(best), "--epochs", "7"])
    assert seen["lr"] == 0.02 and seen["head"] == "mlp:256"
    assert seen["epochs"] == 7  # typed on the command line: wins over the file
    assert train_cli is not None


def test_a_config_file_that_is_not_json_is_named(tmp_path):
    bad = tmp_path / "best.json"
    bad.write_text("{lr: ")
    with pytest.raises(ConfigError, match="--config .*best.json"):
        read_config_file(bad)


@pytest.mark.slow
def test_five_trials_on_eurosat(tmp_path):
    data = shared("eurosat")
    start = time.perf_counter()
    result = tune(data, trials=5, budget=10, out=tmp_path, **{"strategy": "linear"})
    assert len(result.trials) == 5 and result.best_value > 0.8
    assert time.perf_counter() - start < 600
