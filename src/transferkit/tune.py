"""`tune`: search the run's options with Optuna, on cached features where the strategy allows.

    result = tune("data/eurosat", trials=20, budget=10, space="lr,weight_decay,head")
    result.best_params, result.best_value       # {'lr': 0.0031, ...}, 0.943: the mean val score of the best trial
    result.path / "best.json"                    # `transferkit train DATA --config runs/tune-eurosat/best.json`

The search space is declared with the options (config.py: `opt(..., tune=(1e-4, 1e-1, "log"))`): `space` picks
among the options that carry a range. The objective is a trial's mean val score:
- `linear` (and `auto`, which is tuned as `linear`): K heads (core.fit_head) over K folds of train+val, on features
  extracted once into the feature store: a trial costs seconds, a new --image-size one more extraction;
- any other strategy: `repeats` real trainings (api.fit, quiet), each on its own seeded split; the first one's
  epochs are reported to the pruner.
The study is Optuna's (TPE sampler seeded by --seed and the trials already made, a median pruner on the folds' or
epochs' running score) in `<out>/<name>/study.db` (SQLite): a killed study resumes where it stopped (the trial it
left running marked failed), and one made on other data or with other fixed settings (--image-size, --space, ...)
is refused. With no --space, the task's default (default_space: no label_smoothing for regression).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import OptionField, RunConfig, comma_names, option_fields
from .errors import ConfigError
from .options import apply_overrides, validate

CACHED_STRATEGIES = ("linear", "auto")  # objectives on stored features; `auto` would measure the data each trial
# A head's fit on cached features, counted: ~100 passes x (forward + backward = 3 x forward) x 2 FLOPs per
# multiply-add x rows x features x outputs, for each of the 2 solvers `auto` fits. 850 x 1,280 x 10: 0.2 s nominal.
HEAD_PASSES = 100
STUDY_NAME = "tune"
DEFAULT_SPACE = "lr,weight_decay,label_smoothing,head"
# Options that say how a trial runs, not what it measures: a study may resume with other values of these
NOT_SETTINGS = {"path", "workers", "decode_store", "device", "threads", "cache_dir", "channels_last", "compile"}
NOT_SETTINGS |= {"strict", "force", "budget", "cv"}


@dataclass
class TuneResult:
    path: Path  # the study's folder
    best_params: dict[str, Any]
    best_value: float
    trials: list[dict] = field(default_factory=list)  # number, state, value, params, per-step scores
    objective: str = ""  # how a trial was scored, in words
    stopped: str = ""  # why the search ended
    files: dict[str, Path] = field(default_factory=dict)  # best.json, trials.csv, report.html, plots


def tunable() -> dict[str, OptionField]:
    """The run's options that carry a search range (config.py's `tune=`), by name."""
    return {f.name: f for f in option_fields() if f.opt.tune is not None}


def parse_space(space: str | list[str] | None) -> list[OptionField]:
    """'lr,weight_decay' -> their fields; a name without a range (or no option at all) is refused with the list."""
    fields = tunable()
    names = comma_names(space)
    if not names:
        raise ConfigError(f"--space names no option: give comma-separated options from: {', '.join(fields)}.")
    for name in names:
        key = name.replace("-", "_").lstrip("_")
        if key not in fields:
            known = {f.name for f in option_fields()}
            what = "has no search range" if key in known else "is not an option"
            raise ConfigError(f"--space: '{name}' {what}. Options that can be tuned: {', '.join(fields)}.")
    return [fields[n.replace("-", "_").lstrip("_")] for n in names]


def default_space(task: str) -> str:
    """The options searched when --space is not given: the common ones less those `task` ignores."""
    return ",".join(n for n in DEFAULT_SPACE.split(",") if n not in _ignored(task))


def _ignored(task: str) -> set[str]:
    """Options `task` ignores, each a dimension searched for nothing: label smoothing needs class labels to smooth
    (regression's MSE and Huber take a number)."""
    from .tasks import get_task

    return set() if get_task(task).labels_are_classes else {"label_smoothing"}


def _check_space_fits_task(fields: list[OptionField], task: str) -> None:
    ignored = [f.name for f in fields if f.name in _ignored(task)]
    if ignored:
        raise ConfigError(
            f"--space: {', '.join(ignored)} does nothing for --task {task} (its loss ignores it): every trial would "
            f"differ by a value with no effect. Leave it out of --space (default there: {default_space(task)})."
        )


def is_range(values: tuple) -> bool:
    """(low, high) or (low, high, "log") of numbers; anything else is a tuple of choices."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return len(nums) == 2 and len(values) in (2, 3) and (len(values) == 2 or values[2] == "log")


def suggest(trial, f: OptionField):
    """The trial's value for option `f`, from the range declared with it."""
    spec = f.opt.tune
    if not is_range(spec):
        return trial.suggest_categorical(f.name, list(spec))
    lo, hi = spec[0], spec[1]
    log = len(spec) == 3
    if isinstance(lo, int) and isinstance(hi, int) and f.type is int:
        return trial.suggest_int(f.name, lo, hi, log=log)
    return trial.suggest_float(f.name, float(lo), float(hi), log=log)


def uses_cached_features(cfg: RunConfig, space: list[OptionField]) -> bool:
    """Whether each trial can be a head on stored features: a frozen strategy, and no option that needs training."""
    training = {"strategy", "epochs", "backbone_lr_mult", "layer_decay", "augment"}
    return cfg.train.strategy in CACHED_STRATEGIES and not training & {f.name for f in space}


def tune(
    data,
    *,
    trials: int = 20,
    budget: float = 10.0,
    space: str | list[str] | None = None,  # None: default_space(task)
    folds: int = 5,
    repeats: int = 2,
    out: str | os.PathLike = "runs",
    name: str | None = None,
    reporter=None,
    **overrides,
) -> TuneResult:
    """Run (or resume) the study on `data` (a path); `overrides` are the run's options (fit's) that stay fixed."""
    import optuna

    from .api import _data_name
    from .progress import QuietReporter
    from .selection.frozen import open_data

    reporter = reporter or QuietReporter()
    cfg = apply_overrides(RunConfig(), {**overrides, "quiet": True})
    cfg.data.path = str(data)
    validate(cfg)
    fields = parse_space(default_space(cfg.train.task) if space is None else space)
    _check_space_fits_task(fields, cfg.train.task)
    cached = uses_cached_features(cfg, fields)
    if cached and cfg.train.strategy == "auto":
        cfg.train.strategy = "linear"  # `auto` measures the data in each trial: on stored features it is linear
    opened = open_data(data, cfg)
    identity = opened.fingerprint
    # named as train names runs: houses/labels.csv -> tune-labels (a folder keeps its name)
    folder = Path(out) / (name or f"tune-{_data_name(str(Path(str(data)).resolve()))}")
    estimate, what = _estimate(opened, cfg, fields, cached, folds, repeats)
    if estimate > budget * 60:
        raise ConfigError(
            f"--budget {budget:g} min is too small for one trial: {what} is reckoned at ~{_minutes(estimate)} "
            f"(counted work, selection/cost.py). Give --budget {math.ceil(estimate / 60 * 1.2 * 10) / 10:g} or more"
            + (", fewer --folds" if cached else ", fewer --repeats or --epochs")
            + "."
        )
    folder.mkdir(parents=True, exist_ok=True)  # after the refusals: a study refused leaves no folder behind
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = _settings(cfg, fields, cached, folds, repeats)
    study = _open_study(folder, identity, settings, data, reporter)
    objective, objective_text = (
        _cached_objective(opened, cfg, fields, folds, reporter)
        if cached
        else _training_objective(data, cfg, overrides, fields, repeats, folder, reporter)
    )
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = [t for t in study.trials if t.state in finished]  # a failed (killed) trial is made again
    left = max(0, trials - len(done))
    if done:
        reporter.message(f"Resuming the study in {folder}: {len(done)} trials done, {left} to go.")
    stopped = f"{trials} trials"
    if left:
        before = len(study.trials)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
            # The budget is the people's minutes: a wall-clock limit on the search, checked between trials
            study.optimize(objective, n_trials=left, timeout=budget * 60, catch=())
        if len(study.trials) - before < left:
            stopped = f"--budget {budget:g} min ({len(study.trials) - before} of {left} trials run)"
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError(f"No trial of the study in {folder} completed: give --budget more minutes or more --trials.")
    best = study.best_trial
    result = TuneResult(
        folder, dict(best.params), float(best.value), _rows(study), objective_text, stopped, {"db": folder / "study.db"}
    )
    result.files.update(_write(result, study, cfg, fields))
    return result


def _open_study(folder: Path, identity: str, settings: dict, data, reporter):
    """The study in `folder` (made, or loaded after checking its data and settings), with a sampler that goes on
    from the trials it has."""
    import optuna

    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=f"sqlite:///{(folder / 'study.db').resolve()}",
        direction="maximize",  # every task's score is higher-better (accuracy, R², mAP)
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
        load_if_exists=True,
    )
    _check_same_data(study, identity, data, folder)
    _check_same_settings(study, settings, folder, reporter)
    _fail_left_running(study, reporter)
    # A sampler seeded by --seed alone restarts its sequence on resume and proposes trials 0, 1, ... again;
    # seeded by (--seed, trials so far) a resumed study explores on, and the same commands give the same study.
    seed = int(np.random.SeedSequence([settings["seed"], len(study.trials)]).generate_state(1)[0])
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    return study


def _fail_left_running(study, reporter) -> None:
    """A trial still `running` when the study is opened was left by a process that stopped (killed): it will never
    end, so it is marked failed (one process per study; a failed trial is not counted as done)."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)  # Optuna has no public call for this
        reporter.message(f"Trial {t.number} was left running by a process that stopped: marked failed, made again.")


def _settings(cfg: RunConfig, fields, cached: bool, folds: int, repeats: int) -> dict[str, Any]:
    """What a trial's score depends on besides the searched options: the fixed options, --space, and the
    objective's --folds or --repeats, as JSON values (as the study stores them)."""
    searched = {f.name for f in fields}
    fixed = {
        f.name: f.get(cfg) for f in option_fields() if f.part and f.name not in NOT_SETTINGS and f.name not in searched
    }
    own = {"space": sorted(searched), **({"folds": folds} if cached else {"repeats": repeats})}
    return json.loads(json.dumps({**own, **fixed}, default=str))


def _check_same_settings(study, settings: dict, folder: Path, reporter) -> None:
    """A study remembers the settings its trials were measured with: trials measured under others (another
    --image-size, --space, ...) would be ranked with them, and best.json would give settings the best never had."""
    saved = study.user_attrs.get("settings")
    if saved is None:  # a new study (or one made before studies kept them): these are its settings
        if study.trials:
            reporter.message(f"The study in {folder} predates stored settings: this command's are taken as its own.")
        study.set_user_attr("settings", settings)
        return
    # A name in one --space only is searched there: --space says it, its fixed value is not compared
    names = ["space", *(k for k in settings if k in saved and k != "space")]
    differ = [k for k in names if saved[k] != settings[k]]
    if differ:
        said = "; ".join(
            f"--{k.replace('_', '-')} {_shown(saved[k])} there, {_shown(settings[k])} here" for k in differ
        )
        raise ConfigError(
            f"The study in {folder} was made with other settings ({said}): its trials' scores would be ranked with "
            "scores measured otherwise. Give --name for a new study, or the study's options to resume it."
        )


def _shown(value) -> str:
    if value is None:
        return "unset"
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _check_same_data(study, identity: str, data, folder: Path) -> None:
    """A study remembers its data; another data set's trials would mislead TPE and the best settings."""
    saved = study.user_attrs.get("data")
    if saved is None:
        study.set_user_attr("data", identity)
        study.set_user_attr("data_path", str(Path(str(data)).resolve()))
        return
    if saved != identity:
        raise ConfigError(
            f"The study in {folder} was made on other data ({study.user_attrs.get('data_path', '?')}); "
            f"'{data}' is not the same images and labels. Give --name for a new study, or --out another folder."
        )


def _features(opened, cfg: RunConfig, size: int | None, cache: dict, reporter):
    """(x, y) train+val features at `size` (None: the run's) from the feature store, extracted once per size."""
    from .selection.frozen import frozen_features

    if size not in cache:
        at = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=size or cfg.data.image_size))
        ff = frozen_features(opened, cfg.model.backbone, at, reporter)
        cache[size] = (np.concatenate([ff.train, ff.val]), np.concatenate([ff.train_labels, ff.val_labels]))
    return cache[size]


def _cached_objective(opened, cfg: RunConfig, fields, folds: int, reporter):
    """A head per fold on stored features; each fold's held-out score is reported, the mean is the trial's value."""
    import optuna
    import torch

    from .core.heads import fit_head, run_settings
    from .data.folds import fold_indices
    from .tasks import get_task

    cache: dict = {}
    task = get_task(cfg.train.task)

    def objective(trial) -> float:
        params = {f.name: suggest(trial, f) for f in fields}
        trial_cfg = apply_overrides(copy.deepcopy(cfg), dict(params))  # sub-configs are shared by replace()
        x, y = _features(opened, cfg, params.get("image_size"), cache, reporter)
        fold = fold_indices(y, folds, cfg.train.seed)
        t = task.prepare(y)
        s = run_settings(trial_cfg)
        scores = []
        for k in range(folds):
            train, held = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
            fitted = fit_head(x[train], y[train], t, settings=dataclasses.replace(s, seed=s.seed + k))
            scores.append(float(t.score(fitted.logits(x[held]), torch.as_tensor(y[held]))))
            trial.report(float(np.mean(scores)), k)
            if trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr("folds", scores)
        return float(np.mean(scores))

    return objective, f"mean held-out {task.score_label} of a head in each of {folds} folds of train+val (cached)"


def _training_objective(data, cfg: RunConfig, overrides: dict, fields, repeats: int, folder: Path, reporter):
    """`repeats` real trainings per trial, each on its own seeded split; the first one's epochs feed the pruner."""
    import optuna

    from .api import fit
    from .progress import QuietReporter
    from .tasks import get_task

    task = get_task(cfg.train.task)

    class Pruning(QuietReporter):
        """Reports each epoch's val score to the trial; raises TrialPruned where the median pruner says so."""

        def __init__(self, trial):
            super().__init__()
            self.trial, self.step = trial, 0

        def end_epoch(self, row: dict) -> None:
            score = row.get("val_acc")
            if score is None or not math.isfinite(score):
                return
            self.trial.report(float(score), self.step)
            self.step += 1
            if self.trial.should_prune():
                raise optuna.TrialPruned()

    fixed = {k: v for k, v in overrides.items() if k not in ("out", "name", "quiet", "seed")}

    def objective(trial) -> float:
        params = {f.name: suggest(trial, f) for f in fields}
        scores = []
        for r in range(repeats):
            run = fit(
                data,
                reporter=Pruning(trial) if r == 0 else QuietReporter(),
                **{**fixed, **params},
                seed=cfg.train.seed + r,
                out=str(folder / "trials"),
                name=f"trial-{trial.number}-{r}",
                quiet=True,
            )
            rows = [h for h in run.history if h.get("val_acc") is not None and h.get("val_loss") is not None]
            scores.append(float(task.best(rows, by=cfg.train.select)["val_acc"]))
        trial.set_user_attr("repeats", scores)
        return float(np.mean(scores))

    text = f"mean best val {task.score_label} of {repeats} training(s), each on its own split (strategy trained)"
    return objective, text


def _estimate(opened, cfg: RunConfig, fields, cached: bool, folds: int, repeats: int) -> tuple[float, str]:
    """(seconds, what) one trial is reckoned at from counted work (selection/cost.py), extraction included."""
    from .selection.choose import Candidate, estimate_training
    from .selection.cost import estimate_seconds, forward_gflops
    from .selection.frozen import frozen_backbone
    from .strategies import parse_strategy

    net, bcfg, _, _ = frozen_backbone(cfg.model.backbone, cfg)
    from .data.transforms import choose_image_size

    sizes = [cfg.data.image_size or choose_image_size(opened.median_side, bcfg.input_size, bcfg.min_input)]
    sizes += [v for f in fields if f.name == "image_size" for v in f.opt.tune[:1]]  # a trial may need a size more
    gflops = max(forward_gflops(net, s) for s in sizes)
    n_train, n_val = len(opened.splits["train"]), len(opened.splits["val"])
    if cached:
        extract = estimate_seconds((n_train + n_val) * gflops, cfg.runtime.device)
        outputs = max(1, len(opened.classes))
        heads = folds * 2 * HEAD_PASSES * 3 * 2 * (n_train + n_val) * 1280 * outputs / 1e9
        return extract + estimate_seconds(heads, cfg.runtime.device), (
            f"extracting {n_train + n_val} images' features once and {folds} heads on them"
        )
    strategies = [f.opt.tune for f in fields if f.name == "strategy"]
    names = list(strategies[0]) if strategies else [cfg.train.strategy]
    epochs = max([cfg.train.epochs] + [f.opt.tune[0] for f in fields if f.name == "epochs"])
    at = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))
    c = Candidate(cfg.model.backbone, sizes[0], gflops)
    per = min(estimate_training(c, parse_strategy("linear" if n == "auto" else n), at, n_train, n_val) for n in names)
    extract = estimate_seconds((n_train + n_val) * gflops, cfg.runtime.device)
    return repeats * (per + extract), f"{repeats} training(s) of {n_train} images at {sizes[0]} px"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _rows(study) -> list[dict]:
    rows = []
    for t in study.trials:
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "params": dict(t.params),
                "steps": [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
                # a trial marked failed on resume "lasted" until then: its time says nothing
                "seconds": t.duration.total_seconds() if t.duration and t.state.name != "FAIL" else None,
            }
        )
    return rows


def best_config(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"train": {"lr": ...}, "model": {...}}: the tuned values in the parts of RunConfig that hold them, the
    shape of a run's config.json, which `train --config FILE` reads (config.read_config_file)."""
    fields = {f.name: f for f in option_fields()}
    nested: dict[str, dict[str, Any]] = {}
    for k, v in params.items():
        nested.setdefault(fields[k].part, {})[k] = v
    return nested


def _write(result: TuneResult, study, cfg: RunConfig, fields) -> dict[str, Path]:
    """best.json, trials.csv, the plots and report.html in the study's folder, each written atomically."""
    import csv
    import io

    from .faults import atomic_path

    folder = result.path
    # the options the trials ran with besides the tuned ones (the strategy, a fixed --epochs, ...): what was scored
    default = RunConfig()
    fixed = {
        f.name: f.get(cfg)
        for f in option_fields()
        if f.part and f.name != "path" and f.get(cfg) != f.get(default) and f.name not in result.best_params
    }
    nested = best_config({**fixed, **result.best_params})
    best = {
        "config": nested,
        "value": result.best_value,
        "objective": result.objective,
        "trial": study.best_trial.number,
        "data": study.user_attrs.get("data_path"),
    }
    files = {}
    with atomic_path(folder / "best.json") as tmp:
        tmp.write_text(json.dumps(best, indent=2))
    files["best"] = folder / "best.json"
    buf = io.StringIO()
    names = [f.name for f in fields]
    w = csv.writer(buf)
    w.writerow(["number", "state", "value", "seconds", *names])
    for r in result.trials:
        w.writerow([r["number"], r["state"], r["value"], r["seconds"], *(r["params"].get(n, "") for n in names)])
    with atomic_path(folder / "trials.csv") as tmp:
        tmp.write_text(buf.getvalue())
    files["trials"] = folder / "trials.csv"
    files.update(_plots(study, folder))
    files["report"] = _report_page(result, folder, files)
    return files


def _plots(study, folder: Path) -> dict[str, Path]:
    """The study's history, parameter importances (from 2 completed trials and 2 parameters) and slice, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as vis

    from .faults import atomic_path

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    wanted = {"history": vis.plot_optimization_history, "slice": vis.plot_slice}
    if len(complete) >= 2 and len(study.best_trial.params) >= 2:
        wanted["importances"] = vis.plot_param_importances
    out = {}
    for key, plot in wanted.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = plot(study)
            figure = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            figure.set_size_inches(max(6.0, figure.get_size_inches()[0]), 4.0)
            with atomic_path(folder / f"{key}.png") as tmp:
                figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
            plt.close(figure)
            out[key] = folder / f"{key}.png"
        except (ValueError, RuntimeError) as e:  # too few trials for a plot: the page says so
            out[key + "_missing"] = Path(str(e)[:200])
    return out


def _report_page(result: TuneResult, folder: Path, files: dict) -> Path:
    from html import escape

    from .faults import atomic_path

    def value(v) -> str:
        return "" if v is None else f"{v:.4f}"

    rows = "".join(
        f"<tr><td>{r['number']}</td><td>{r['state']}</td><td>{value(r['value'])}</td>"
        f"<td>{escape(json.dumps(r['params']))}</td></tr>"
        for r in result.trials
    )
    images = "".join(
        f'<h2>{k}</h2><img src="{p.name}" alt="{k}">' if not k.endswith("_missing") else f"<p>{escape(str(p))}</p>"
        for k, p in files.items()
        if k in ("history", "importances", "slice") or k.endswith("_missing")
    )
    page = (
        "<!doctype html><meta charset='utf-8'><title>transferkit tune</title>"
        "<style>body{font:14px sans-serif;max-width:60em;margin:2em auto}td,th{padding:2px 8px}</style>"
        f"<h1>Tuning: best {result.best_value:.4f}</h1><p>{escape(result.objective)}; stopped after "
        f"{escape(result.stopped)}.</p><p>Best settings: <code>{escape(json.dumps(result.best_params))}</code> "
        "(best.json: <code>transferkit train DATA --config best.json</code>)</p>"
        f"{images}<h2>Trials</h2><table><tr><th>#</th><th>state</th><th>value</th><th>params</th></tr>{rows}</table>"
    )
    with atomic_path(folder / "report.html") as tmp:
        tmp.write_text(page)
    return folder / "report.html"
