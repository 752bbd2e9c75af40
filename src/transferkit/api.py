"""The Python API under the CLI: `fit`, `evaluate`, `load`.

import transferkit
run = transferkit.fit("data/hymenoptera", strategy="auto")       # a run directory, trained and evaluated
run.test_metrics["accuracy"]
model = transferkit.load(run.path / "best")
model.predict("bee.jpg")                                          # [{'label': 'bees', 'probability': ...}]
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .config import RunConfig
from .errors import ConfigError, DataError, TransferkitError
from .options import RESUMABLE, apply_overrides, validate
from .rundir import RunDir

if TYPE_CHECKING:
    from .predict import Predictor


@dataclass
class Run:
    """A finished (or interrupted) training run and what it left in `path`."""

    path: Path
    config: RunConfig
    classes: list[str]
    strategy: str
    strategy_reason: str
    history: list[dict] = field(default_factory=list)
    test_metrics: dict[str, Any] = field(default_factory=dict)
    eval_split: str = "test"
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    cv: dict | None = None  # --cv K: each fold's metrics and their mean with its 95% interval (crossval.py)

    @property
    def best(self) -> Path:
        return self.path / "best"

    def load(self) -> Predictor:
        return load(self.best)

    def evaluate(self, data: str | os.PathLike | None = None, split: str = "auto") -> dict[str, Any]:
        if data is None and not Path(self.config.data.path).exists():  # from_arrays' data has no path to reopen
            raise ConfigError(
                f"run.evaluate(): the run's data '{self.config.data.path}' is not a file or folder here (in-memory "
                "arrays, or moved): pass the data, e.g. run.evaluate(transferkit.from_arrays(x, y)) or a path."
            )
        return evaluate(self.best, data or self.config.data.path, split=split)


def fit(
    data=None, config: RunConfig | None = None, resume: str | os.PathLike | None = None, reporter=None, **overrides
) -> Run:
    """Train a model (a classifier, a multi-label tagger or a regressor: --task) on `data` (a path or a DataSource)
    and return the `Run`.

    Keyword arguments set config fields by name: backbone, strategy, epochs, head, split, seed, lr, out, name, ...
    `resume=RUN_DIR` continues an interrupted run from its last.ckpt with its saved config and split; only
    `epochs`, `patience` and `quiet` may be given with it (anything else is refused by name).
    A run that fails before its first checkpoint leaves no run directory; one that fails later keeps its
    checkpoint (for --resume) and says why in failed.json.
    Under torchrun or accelerate launch every process calls this and gets the same Run; process 0 alone writes
    and prints (docs/distributed.md).
    """
    started = time.perf_counter()
    cfg, run = _settings(data, config, resume, overrides)  # every option checked, before torch is imported
    from .progress import QuietReporter, make_reporter

    procs = _processes(cfg)  # one, or those torchrun / accelerate launch started: only the main one writes and prints
    reporter = (reporter or make_reporter(cfg.quiet)) if procs.is_main_process else QuietReporter()
    opened = _open_data(data, cfg, run, reporter)  # read, split, check the files (doctor)
    folds = _cv_folds(opened, cfg)  # --cv K: the folds are made (and a too-rare class refused) before training
    strategy, reason, measured, advice = _resolve_strategy(opened, cfg, reporter, run)
    if advice:  # `auto` chose the backbone and input size too: the run goes on with them (config.json says so)
        from types import SimpleNamespace

        from .selection.choose import with_candidate

        cfg = with_candidate(cfg, SimpleNamespace(**advice))
        from .selection.advise import Advice

        reporter.message(Advice(**advice).summary())  # what it chose and why, in a line (the whole account: report)
    net, bcfg, size = _backbone(cfg, strategy, opened)
    prepared, skipped = _decode(opened, cfg, bcfg, size, measured, reporter, strategy)
    new = run is None
    if new:
        name = cfg.name or f"{_data_name(cfg.data.path)}-{strategy.label}"
        run = procs.on_main(lambda: RunDir.create(cfg.out, name))  # one directory, named by the main process
    # A resume that is refused (the run already finished, a checkpoint that does not fit) leaves the run as it was:
    # what _write_start and the trainer rewrite before they can tell is put back while last.ckpt is unchanged
    kept = {} if new else _snapshot(run, (RunDir.CONFIG, RunDir.DOCTOR, RunDir.METRICS))
    ckpt = _stamp(run / RunDir.LAST)
    try:
        if procs.is_main_process:
            _write_start(run, cfg, opened, strategy, reason, bcfg, size, skipped, new)
            if advice:  # what `auto` measured to decide: report.html shows it
                run.update_json(RunDir.CONFIG, advice=advice)
        history, trainer = _train(run, cfg, net, bcfg, strategy, prepared, reporter, resume=not new)
        metrics, eval_split = _finish(
            run, trainer, prepared, opened, strategy, reason, bcfg, size, skipped, history, started, reporter
        )
    except BaseException as e:
        if not procs.is_main_process:
            raise
        if new and not (run / RunDir.LAST).is_file():
            run.discard()  # nothing worth keeping: no half-made run directory is left behind
            if isinstance(e, KeyboardInterrupt):
                reporter.message(f"Interrupted before the first epoch finished: nothing was kept ({run.path} removed).")
        elif kept and isinstance(e, TransferkitError) and _stamp(run / RunDir.LAST) == ckpt:
            for name, content in kept.items():  # refused before it trained: the run's files as they were
                if content is not None:
                    (run / name).write_bytes(content)
        elif new or not isinstance(e, (KeyboardInterrupt, TransferkitError)):
            run.mark_failed(e)  # kept for --resume; failed.json says why it stopped (Ctrl-C on a resume: as it was)
        raise
    if procs.is_main_process:
        (run / RunDir.FAILED).unlink(missing_ok=True)  # a resumed run that finished is no longer a failed one
    procs.wait()  # every process returns once the main one has written the run (the caller may read or move it)
    cv = _cross_validate(run, opened, folds, cfg, reporter, trainer, prepared) if folds else None
    return Run(
        run.path,
        cfg,
        opened.classes,
        strategy.label,
        reason,
        history,
        metrics,
        eval_split,
        [(k, why) for _, k, why in skipped],
        time.perf_counter() - started,
        cv,
    )


def _snapshot(run: RunDir, names: tuple[str, ...]) -> dict[str, bytes | None]:
    """The run's files by name, as bytes (None: absent): what a refused --resume puts back."""
    return {n: (run / n).read_bytes() if (run / n).is_file() else None for n in names}


def _stamp(path: Path) -> tuple[int, int] | None:
    """(size, modification time in ns) of a file, None if absent: whether a checkpoint was written since."""
    return (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else None


def _data_name(path: str) -> str:
    """What a default run name starts with: the folder's name, or a list or HDF5 file's without its suffix
    (houses/labels.csv -> 'labels', so runs/labels-linear)."""
    from .data.base import H5_SUFFIXES, LIST_SUFFIXES

    p = Path(path)
    return (p.stem if p.suffix.lower() in LIST_SUFFIXES + H5_SUFFIXES else p.name) or "data"


@dataclass
class _Opened:
    """The data as training sees it: the source, its split, its classes (those with readable training images)."""

    src: Any  # DataSource
    splits: dict  # split -> [Sample]
    classes: list[str]
    checked: Any  # the preflight DoctorReport
    side: float  # median short side of the training images (px)
    aspect: float  # median long/short side ratio
    fingerprint: str  # of the source's files and labels (stats every file: computed once)


def _settings(data, config, resume, overrides) -> tuple[RunConfig, RunDir | None]:
    """The run's config and, for --resume, its RunDir. Only options that change what is left to train may be
    given with --resume; the rest were fixed when the run started and are refused by name, never dropped."""
    from .data.sources import DataSource

    given = {k: v for k, v in overrides.items() if v is not None}
    if config is not None and not isinstance(config, RunConfig):
        raise ConfigError(
            f"config={type(config).__name__}: give a RunConfig (transferkit.RunConfig, or RunConfig.from_dict of a "
            "run's config.json), or the options as keyword arguments: fit(data, epochs=3, strategy='linear')."
        )
    if resume is None:
        cfg = apply_overrides(config or RunConfig(), given)
        if data is not None:
            cfg.data.path = str(data.root if isinstance(data, DataSource) else data)
        validate(cfg)
        RunDir.check_out(cfg.out)
        return cfg, None
    run = RunDir.for_resume(resume)
    saved = run.read_json(RunDir.CONFIG)
    cfg = RunConfig.from_dict(_complete_saved_config(run, saved))
    started = saved.get("cwd")  # DATA as typed, relative to where the run started, not to where it resumes
    if cfg.data.path and started and not Path(cfg.data.path).is_absolute() and not Path(cfg.data.path).exists():
        cfg.data.path = str(Path(started) / cfg.data.path)
    refused = sorted(k for k in given if k not in RESUMABLE) + (["config"] if config is not None else [])
    if refused:
        raise ConfigError(
            f"--resume continues '{run.path}' with the settings it started with, so "
            f"{', '.join('--' + k.replace('_', '-') for k in refused)} cannot change. With --resume you may give: "
            f"{', '.join('--' + k for k in RESUMABLE)}. To change the others, start a new run."
        )
    if data is not None and not isinstance(data, DataSource) and Path(data).resolve() != Path(cfg.data.path).resolve():
        raise ConfigError(
            f"--resume '{run.path}' was trained on '{cfg.data.path}', not '{data}': leave DATA out "
            "(the run knows its data), or start a new run on the new data."
        )
    apply_overrides(cfg, given)
    validate(cfg)
    return cfg, run


# A key missing from a resumed run's config.json (an older or edited run) is taken from what the run recorded about
# itself: config.json's "resolved" block (the size and strategy it actually used), or best/'s transferkit.json. Never
# from today's default: a run trained at 64 px must not continue at 224 px. Keys with no record stop the resume.
_RECORDED = {
    ("data", "image_size"): lambda saved, meta: (
        saved.get("resolved", {}).get("image_size") or meta.get("preprocessing", {}).get("image_size")
    ),
    ("data", "layout"): lambda saved, meta: saved.get("resolved", {}).get("layout"),
    ("train", "strategy"): lambda saved, meta: (
        "auto" if saved.get("advice") else saved.get("resolved", {}).get("strategy") or meta.get("strategy")
    ),
    ("train", "task"): lambda saved, meta: meta.get("task"),
    ("model", "dropout"): lambda saved, meta: meta.get("dropout"),
}
_RESUME_FREE = ("out", "name", "quiet")  # where the run is, what it is called, how much it prints: not its settings


def _complete_saved_config(run: RunDir, saved: dict) -> dict:
    """config.json's "config", every key present: a missing one from the run's own record (_RECORDED), else a
    ConfigError naming each missing key (config.data.path, ...) and what to do."""
    import dataclasses

    from .bundle import read_meta
    from .config import DataConfig, ModelConfig, RuntimeConfig, TrainConfig

    config = saved.get("config")
    if not isinstance(config, dict):
        raise ConfigError(
            f"--resume '{run.path}': {run / RunDir.CONFIG} has no \"config\" section (edited or damaged), so the "
            "settings the run was trained with are unknown. Start a new run."
        )
    try:
        meta = read_meta(run / RunDir.BEST) if (run / RunDir.BEST).is_dir() else {}
    except TransferkitError:
        meta = {}
    config = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    missing = []
    parts = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "runtime": RuntimeConfig}
    for part, kind in parts.items():
        section = config.setdefault(part, {})
        for f in dataclasses.fields(kind):
            if f.name in section:
                continue
            recorded = _RECORDED.get((part, f.name), lambda s, m: None)(saved, meta)
            if recorded is None:
                missing.append(f"config.{part}.{f.name}")
            else:
                section[f.name] = recorded
    if missing:
        raise ConfigError(
            f"--resume '{run.path}': {run / RunDir.CONFIG} lacks {', '.join(missing)}, and the run recorded "
            "no other trace of the value it used (an older or edited run). transferkit will not continue with "
            "today's default in its place, which may differ from what the run was trained with. Put the missing "
            "key(s) back in config.json with the value the run used, or start a new run."
        )
    return config


def _processes(cfg: RunConfig):
    """This run's processes (engine/runtime.py): one for a plain run; under torchrun or accelerate launch, the
    group they joined, checked against the options that need GPUs before any work."""
    from .engine.runtime import processes, resolve_device

    procs = processes(cfg.runtime.device)
    if cfg.runtime.sync_bn and procs.num_processes > 1 and resolve_device(cfg.runtime.device) != "cuda":
        raise ConfigError(
            "--sync-bn synchronises BatchNorm statistics across GPU processes (torch's SyncBatchNorm runs on CUDA "
            "only), and these processes run on the CPU: leave --sync-bn out."
        )
    return procs


def _open_data(data, cfg: RunConfig, run, reporter) -> _Opened:
    from .data.doctor import preflight
    from .data.sizes import survey_sides
    from .data.sources import DataSource, open_source
    from .data.split import make_splits
    from .engine.runtime import set_threads, tune_malloc
    from .tasks import get_task

    tune_malloc()
    set_threads(cfg.runtime.threads)
    src = (
        data
        if isinstance(data, DataSource)
        else open_source(cfg.data.path, cfg.data.layout, task=cfg.train.task, **cfg.data.source_options())
    )
    get_task(cfg.train.task).check_data(src)  # data of another kind (class folders for a regression, ...)
    classes = list(src.classes)
    if run is not None:
        classes = run.read_json(RunDir.CONFIG).get("classes", classes)  # classes dropped at the start stay dropped
        splits = _saved_splits(run, src, classes)
    else:
        splits = make_splits(src, cfg.data.split, cfg.train.seed)
    if not splits.get("val"):
        raise TransferkitError("The validation split is empty: add images, or give --split a larger val fraction.")
    checked = preflight(
        src,
        splits,
        reporter,
        strict=cfg.train.strict,
        force=cfg.train.force,
        image_size=cfg.data.image_size,
        balance=cfg.data.balance,
        doctor_command=_doctor_command(cfg, src),
    )
    side, aspect = survey_sides(src, splits["train"])
    return _Opened(src, splits, classes, checked, side, aspect, src.fingerprint())


def _doctor_command(cfg: RunConfig, src) -> str:
    """The doctor command that checks what this run checked: the same task, and the same split where train makes
    one (data that is not pre-split), so that doctor finds what the training line reported."""
    import shlex

    words = ["transferkit", "doctor", shlex.quote(str(cfg.data.path or src.root)), "--task", cfg.train.task]
    if "all" in src.splits or "val" not in src.splits:  # train carves the parts: doctor must carve the same ones
        words += ["--split", ",".join(f"{f:g}" for f in cfg.data.split), "--seed", str(cfg.train.seed)]
    return " ".join(words)


def _saved_splits(run: RunDir, src, classes: list[str]) -> dict:
    """The run's own split (split.csv), checked against its data: a damaged or edited file is refused by name."""
    import csv

    from .data.split import load_splits

    path = run / RunDir.SPLIT
    try:
        splits = load_splits(path)
    except (OSError, UnicodeDecodeError, KeyError, ValueError, IndexError, csv.Error) as e:
        raise TransferkitError(
            f"'{path}' cannot be read ({type(e).__name__}: {e}); it was damaged or edited. The run "
            "cannot be continued without the split it was trained on: start a new run."
        ) from None
    from .data.base import label_classes

    known = {s.key for v in src.splits.values() for s in v}
    started = run.read_json(RunDir.CONFIG).get("cwd")  # keys of DATA given relative: relative to where it started
    if started:
        moved = {s.key: os.path.join(started, s.key) for v in splits.values() for s in v if not os.path.isabs(s.key)}
        if moved and not any(k in known for k in moved) and all(m in known for m in moved.values()):
            splits = {k: [dataclasses.replace(s, key=moved.get(s.key, s.key)) for s in v] for k, v in splits.items()}
    kind = type(next((s.label for v in src.splits.values() for s in v), 0))  # int, float or tuple, by the task
    bad = [
        s
        for v in splits.values()
        for s in v
        if s.key not in known
        or not isinstance(s.label, kind)
        or (kind is not float and not all(0 <= i < len(classes) for i in label_classes(s.label)))
    ]
    if bad or not splits.get("train"):
        what = f"e.g. '{bad[0].key}' (label {bad[0].label})" if bad else "no training rows"
        raise TransferkitError(
            f"'{path}' does not match the run's data or classes ({what}): it was edited, or the "
            "data changed. Start a new run."
        )
    return splits


def _resolve_strategy(opened: _Opened, cfg: RunConfig, reporter, run: RunDir | None = None):
    """(Strategy, why, what the advisor decoded or None, what it measured or None). `auto` measures the data (see
    selection/advise.py); a resumed run keeps what it measured when it started (timings would not repeat)."""
    from .strategies import parse_strategy

    strategy = parse_strategy(cfg.train.strategy)
    if strategy.name != "auto":
        return strategy, "chosen with --strategy", None, None
    from .engine.runtime import processes
    from .selection.advise import Advice, advise_opened
    from .selection.frozen import Data

    saved = run.read_json(RunDir.CONFIG).get("advice") if run is not None else None
    if saved:
        advice = Advice(**saved)
        return advice.to_strategy(), advice.reason, None, advice.to_dict()
    measured = Data(opened.src, opened.splits, opened.side, opened.fingerprint)
    advice = advise_opened(measured, cfg, reporter)  # images per class, shift from ImageNet, frozen-feature accuracy
    advice = processes().from_main(advice)  # launched: every process measured (features sharded); main's decides
    return advice.to_strategy(), advice.reason, measured, advice.to_dict()


def _cv_folds(opened: _Opened, cfg: RunConfig) -> list[dict] | None:
    if not cfg.train.cv:
        return None
    from .crossval import make_folds

    return make_folds(opened.src, opened.splits, cfg.train.cv, cfg.data.split, cfg.train.seed)


def _cross_validate(run: RunDir, opened: _Opened, folds: list[dict], cfg: RunConfig, reporter, trainer, prepared):
    """The K folds (crossval.py), their summary in report.json and the summary line, report.html remade. A strategy
    that trains only a head on cached features is cross-validated on those features (K heads, seconds); the others
    train K runs."""
    from .crossval import cross_validate, cross_validate_heads
    from .engine.runtime import processes
    from .evaluation.report import build_report

    folded = "train+val" if opened.splits.get("test") else "all images"
    reporter.message(f"Cross-validation: {len(folds)} folds of {folded} in {run / 'cv'}")
    if all(p.cached for p in trainer.phases) and processes().num_processes == 1:
        cv = cross_validate_heads(run.path, folds, trainer, prepared, opened.classes, reporter, folded)
    else:
        cv = cross_validate(run.path, opened.src, folds, cfg, reporter, fit, folded)  # every process: collective
    main = processes().is_main_process
    if main:
        run.update_json(RunDir.REPORT, cv=cv)
    reporter.emit("cv", **{k: v for k, v in cv.items() if k != "folds"})
    if main:
        build_report(run.path, redraw=False)
    return cv


def _backbone(cfg: RunConfig, strategy, opened: _Opened):
    from accelerate.utils import set_seed

    from .backbones import create_backbone
    from .backbones.cfg import check_input_size
    from .backbones.depth import frozen_input_size
    from .data.transforms import choose_image_size

    set_seed(cfg.train.seed)  # python, numpy and torch: the new head (and scratch weights) start the same every time
    net, bcfg = create_backbone(
        cfg.model.backbone, pretrained=strategy.pretrained, arch=cfg.model.arch, features=cfg.model.features
    )
    # a frozen head on --features stages follows a larger side than the data's (backbones/depth.py: STAGES_UPSCALE;
    # measured for `linear` only: a fine-tune at 3x the side costs ~9x)
    frozen = strategy.name == "linear"
    size = (
        frozen_input_size(opened.side, bcfg)
        if frozen
        else choose_image_size(opened.side, bcfg.input_size, bcfg.min_input)
    )
    check_input_size(cfg.data.image_size, bcfg, cfg.model.backbone)
    return net, bcfg, cfg.data.image_size or size


def _decode(opened: _Opened, cfg: RunConfig, bcfg, size: int, measured, reporter, strategy):
    """Every image decoded once at the size the transforms need; classes left with no readable training image are
    refused (or dropped with --drop-empty-classes). Returns (PreparedData, skipped [(split, key, why)]).

    A strategy that trains only a head (`linear`) needs pixels only for features the store lacks: a split whose
    every image (and view) is stored is not decoded; its few images a report shows are decoded when shown."""
    from .core.train import prepare
    from .data.decode import LazyImages, decode_splits, store_dir
    from .data.resources import check_decode_fits
    from .data.transforms import resize_size
    from .tasks import get_task

    short = resize_size(size, bcfg.crop_pct)
    splits = opened.splits
    stored = _stored_splits(opened, cfg, bcfg, size, strategy)
    todo = {k: v for k, v in splits.items() if k not in stored}
    total = sum(len(v) for v in todo.values())
    check_decode_fits(total, short, opened.aspect, cfg.data.decode_store, store_dir(cfg.runtime.cache_dir), size)
    key = (short, bcfg.interpolation)
    done = (measured.decoded.get(key, {}), measured.skipped.get(key, {})) if measured else None
    if stored:
        reporter.message(
            f"Features of {', '.join(sorted(stored))} ({sum(len(splits[k]) for k in stored)} images) are all in the "
            "feature store: those images are not decoded."
        )
    import contextlib

    counting = reporter.task("Decoding images", total) if total else contextlib.nullcontext(lambda n=1: None)
    with counting as advance:
        decoded, bad = decode_splits(
            opened.src,
            todo,
            short,
            bcfg.interpolation,
            store=cfg.data.decode_store,
            store_dir=store_dir(cfg.runtime.cache_dir),
            progress=advance,
            done=done,
        )
    for split in stored:  # every feature stored: nothing to decode, nothing unreadable (stored rows decoded once)
        keys_ = [x.key for x in splits[split]]
        decoded[split], bad[split] = (
            (LazyImages(opened.src, keys_, short, bcfg.interpolation), [x.label for x in splits[split]]),
            [],
        )
    decoded = {k: decoded[k] for k in splits if k in decoded}  # the splits' own order
    skipped = [(split, k, why) for split, found in bad.items() for k, why in found]
    unread = {k for _, k, _ in skipped}
    keys = {split: [s.key for s in splits[split] if s.key not in unread] for split in decoded}
    if skipped:
        listing = "; ".join(f"{k} ({why})" for _, k, why in skipped[:5])
        if cfg.train.strict:
            raise TransferkitError(
                f"{len(skipped)} file(s) could not be read and --strict is on: {listing}. Nothing was trained."
            )
        reporter.message(f"Skipped {len(skipped)} unreadable file(s) (listed in the run's skipped.csv): {listing}")
    _drop_empty_classes(opened, decoded, keys, skipped, cfg.data.drop_empty_classes, reporter)

    ids = {split: [opened.src.identity(k) for k in ks] for split, ks in keys.items()}
    prepared = prepare(decoded, keys, ids, opened.classes, get_task(cfg.train.task), cfg, bcfg, size, opened.side)
    if len(prepared.train) == 0 or len(prepared.val) == 0:
        raise TransferkitError(
            "No readable images are left in the train or val split: run `transferkit doctor "
            f"{cfg.data.path}` to see what is wrong with the files."
        )
    return prepared, skipped


def _stored_splits(opened: _Opened, cfg: RunConfig, bcfg, size: int, strategy) -> set[str]:
    """The splits whose features (every image, every --aug-views view of train) the feature store holds, for a
    strategy that trains only a head; none for the others, which need every image's pixels."""
    from .engine.features import open_store, store_config, view_config
    from .engine.runtime import feature_precision, processes, resolve_device

    if not all(p.cached for p in strategy.phases(cfg.train.epochs, cfg.train.head_epochs)):
        return set()
    if processes().num_processes > 1:  # each process would have to agree: launched runs decode as before
        return set()
    config = store_config(cfg, bcfg, size)
    precision = feature_precision(cfg.runtime, resolve_device(cfg.runtime.device))
    stores = [
        open_store(cfg.runtime.cache_dir, config, precision, view_config(cfg, v))
        for v in range(cfg.train.aug_views + 1)
    ]
    out = set()
    for split, samples in opened.splits.items():
        ids = [opened.src.identity(x.key) for x in samples]
        views = stores if split == "train" else stores[:1]  # augmented views are drawn of the training images only
        if ids and all((store.verified(ids) >= 0).all() for store in views):
            out.add(split)
    return out


def _drop_empty_classes(opened: _Opened, decoded: dict, keys: dict, skipped: list, drop: bool, reporter) -> None:
    """A class with no readable training image cannot be learnt: a model that keeps it in its outputs answers it
    with probability ~0 for ever and reports metrics over a class it never saw. Refuse, naming its files; or, with
    --drop-empty-classes, take it out of the classes, the splits and the decoded images (in place)."""
    from .data.base import label_classes
    from .data.sources import Sample

    counts = [0] * len(opened.classes)
    for label in decoded["train"][1]:
        for c in label_classes(label):  # a class, each label of a set, or the one regression target
            counts[c] += 1
    empty = [c for c, n in enumerate(counts) if n == 0]
    if not empty:
        return
    why = {k: reason for split, k, reason in skipped if split == "train"}
    described = []
    for c in empty:
        files = [s.key for s in opened.splits["train"] if c in label_classes(s.label)]
        shown = "; ".join(f"{k} ({why.get(k, 'unreadable')})" for k in files[:3]) + (" ..." if len(files) > 3 else "")
        described.append(
            f"'{opened.classes[c]}' ({len(files)} file(s): {shown})" if files else f"'{opened.classes[c]}' (no files)"
        )
    if not drop:
        raise DataError(
            f"{len(empty)} class(es) have no readable training image: {', '.join(described)}. A model cannot learn a "
            "class it never sees. Replace or remove those files (see `transferkit doctor DATA`), or give "
            "--drop-empty-classes to train without the class(es)."
        )
    keep = [c for c in range(len(opened.classes)) if c not in empty]
    remap = {old: new for new, old in enumerate(keep)}
    if len(keep) < 2:
        raise DataError(f"After dropping {', '.join(described)}, fewer than two classes are left: nothing to classify.")
    for split, (imgs, labels) in decoded.items():
        idx = [i for i, y in enumerate(labels) if y in remap]
        decoded[split] = ([imgs[i] for i in idx], [remap[labels[i]] for i in idx])
        keys[split] = [keys[split][i] for i in idx]
    opened.splits = {
        k: [Sample(s.key, remap[s.label]) for s in v if s.label in remap] for k, v in opened.splits.items()
    }
    reporter.message(
        f"Dropped {len(empty)} class(es) with no readable training image (--drop-empty-classes): "
        f"{', '.join(described)}. They are not in the model; their val/test images are left out."
    )
    opened.classes = [opened.classes[c] for c in keep]


def _write_start(
    run: RunDir, cfg: RunConfig, opened: _Opened, strategy, reason, bcfg, size, skipped, new: bool
) -> None:
    from .bundle import versions
    from .data.split import save_splits

    if new:
        save_splits(run / RunDir.SPLIT, opened.splits, opened.classes, identity=opened.src.identity)
    run.write_json(
        RunDir.CONFIG,
        {
            "config": cfg.to_dict(),
            "resolved": {
                "strategy": strategy.label,
                "strategy_reason": reason,
                "image_size": size,
                "median_short_side": opened.side,
                "backbone_cfg": bcfg.to_dict(),
                "layout": opened.src.layout,
            },
            "data_fingerprint": opened.fingerprint,
            "split_sizes": {k: len(v) for k, v in opened.splits.items()},
            "classes": opened.classes,
            "versions": versions(),
            "platform": platform.platform(),
            "cwd": os.getcwd(),  # where relative paths (DATA, --out) were given from: --resume finds them from anywhere
        },
    )
    run.write_json(RunDir.DOCTOR, opened.checked.to_dict())
    if skipped:
        run.write_skipped(skipped)


def _train(run: RunDir, cfg: RunConfig, net, bcfg, strategy, prepared, reporter, resume: bool):
    from .backbones.model import TransferModel
    from .core.train import train_prepared
    from .tasks import get_task

    outputs = get_task(cfg.train.task).num_outputs(prepared.classes)
    model = TransferModel(net, bcfg, num_outputs=outputs, head=cfg.model.head, dropout=cfg.model.dropout)
    try:
        return train_prepared(model, strategy, cfg, prepared, run.path, reporter, resume=resume)
    except KeyboardInterrupt:
        if (run / RunDir.LAST).is_file():
            reporter.message(
                f"Interrupted. The last finished epoch is in {run / RunDir.LAST}; continue with: "
                f"transferkit train --resume {run.path}"
            )
        raise


def _finish(
    run: RunDir, trainer, prepared, opened: _Opened, strategy, reason, bcfg, size, skipped, history, started, reporter
):
    """Test metrics of the best checkpoint (val when there is no test split), report.json, then calibration, plots
    and report.html (evaluation/finish.py)."""
    from .bundle import load_bundle
    from .evaluation.finish import finish_run
    from .evaluation.intervals import accuracy_interval

    main = trainer.procs.is_main_process
    # best/ is read by the main process, which wrote it, and handed to the others: --out need not be shared by nodes
    trainer.load_weights(trainer.procs.on_main(lambda: load_bundle(run / RunDir.BEST)[0].state_dict()))
    eval_split = "test" if prepared.test is not None else "val"
    logits, labels = trainer.split_logits(eval_split, prepared.test or prepared.val)
    val_out = (logits, labels) if eval_split == "val" else trainer.split_logits("val", prepared.val)
    trainer.task = trainer.task.tune(*val_out)  # multi-label: each label's threshold, picked on val
    if main:
        _store_task_state(run / RunDir.BEST, trainer.task)
    metrics = trainer.task.metrics(logits, labels, opened.classes)
    interval = accuracy_interval(metrics)  # the 95% interval, and what differences this split can resolve
    if interval:
        metrics["interval"] = interval
    report = {
        "task": trainer.task.name,
        "split": eval_split,
        "metrics": metrics,
        "strategy": strategy.label,
        "strategy_reason": reason,
        "best_epoch": _best_epoch(history),
        "seconds": time.perf_counter() - started,
        "skipped": len(skipped),
        "image_size": size,
        "backbone": bcfg.name,
    }
    if trainer.head_solvers:  # both head solvers' val results, and which was kept
        report["head_solvers"] = trainer.head_solvers
    if not main:  # the same metrics on every process (gathered); one writes them
        return metrics, eval_split
    run.write_json(RunDir.REPORT, report)
    _add_metrics_to_bundle(run / RunDir.BEST, eval_split, metrics, trainer.task.headline)
    finish_run(run.path, trainer, prepared, eval_split, opened.splits[eval_split], skipped, (logits, labels), reporter)
    return metrics, eval_split


def _best_epoch(history: list[dict]) -> int | None:
    best = [r["epoch"] for r in history if r.get("best")]
    return best[-1] if best else None


def _store_task_state(bundle: Path, task) -> None:
    """What the task settled after training (multi-label thresholds) into the bundle, where `load` reads it."""
    from .bundle import update_meta

    if task.state():
        update_meta(bundle, **task.state())


def _add_metrics_to_bundle(
    bundle: Path, split: str, metrics: dict, headline: tuple[str, ...] = ("accuracy", "loss", "macro_f1")
) -> None:
    from .bundle import update_meta

    update_meta(bundle, metrics={"split": split, **{k: metrics.get(k) for k in headline}})


def load(path: str | os.PathLike, **options) -> Predictor:
    """A Predictor for a saved bundle (a run's best/ folder, or the run folder itself).
    options: device ("auto"), batch_size (32), precision ("auto": bf16 where the device runs it natively, else fp32)."""
    from .engine.runtime import set_threads, tune_malloc
    from .predict import Predictor

    tune_malloc()  # the process's allocator and threads: here, not inside the Predictor (a library object)
    set_threads()
    return Predictor(path, **options)


class FeatureExtractor(NamedTuple):
    """A backbone as plain PyTorch, for a network of your own (see `feature_extractor`)."""

    net: Any  # torch.nn.Module: (N, 3, S, S) float -> (N, cfg.num_features) pooled features; its classifier removed
    cfg: Any  # BackboneCfg: input_size (S), mean/std, interpolation, crop_pct, stages (freeze by their names)
    transform: Any  # uint8 (..., 3, H, W) tensor -> the float (..., 3, S, S) tensor `net` takes (eval preprocessing)


def feature_extractor(backbone: str, pretrained: bool = True, arch: str | None = None) -> FeatureExtractor:
    """Any --backbone name as a feature extractor and its preprocessing, e.g. a trained model's body:

        body, cfg, prep = transferkit.feature_extractor("bundle:runs/digits/best")
        features = body(prep(images))                # images: uint8 (N, 3, H, W) -> (N, cfg.num_features)

    `bundle:PATH` gives the body with the weights and preprocessing it was trained at, its head removed. The network
    comes in train mode, as a fresh one would; call `.eval()` to extract features. pretrained=False: random weights.
    """
    from .backbones import check_backbone_name, create_backbone
    from .backbones.model import remove_classifier
    from .data.transforms import eval_transform

    check_backbone_name(backbone)
    net, cfg = create_backbone(backbone, pretrained=pretrained, arch=arch)
    transform = eval_transform(cfg.input_size, cfg.crop_pct, cfg.mean, cfg.std, cfg.interpolation)
    return FeatureExtractor(remove_classifier(net, cfg), cfg, transform)


def evaluate(
    bundle: str | os.PathLike,
    data: str | os.PathLike,
    split: str = "auto",
    batch_size: int = 64,
    tta: bool = False,
    precision: str = "auto",
    **source_options,
) -> dict[str, Any]:
    """Metrics of a saved model on `data` (a path, or a DataSource). tta=True: of the average over crops and mirrors
    (of class probabilities, values or per-label probabilities, as the task has them), and `metrics["tta"]` says what
    that changed against the plain prediction.

    split="auto": the run's own test split when `data` is the data it was trained on (read from the run's split.csv),
    else the data's test/ part, else its val/ part, else every image. source_options (layout, path_column,
    label_column, h5_x, h5_y) say how to read `data`; by default the run's own when it is the run's data.
    """
    from .data.sources import DataSource, open_source

    predictor = load(bundle, precision=precision)
    run_dir = Path(predictor.meta["_path"]).parent
    options: dict[str, Any] = {}
    saved_data: dict[str, Any] = {}
    if (run_dir / "config.json").is_file():  # the run's own layout, list columns and HDF5 keys, if it is its data
        saved_data = json.loads((run_dir / "config.json").read_text()).get("config", {}).get("data", {})
        if not isinstance(data, DataSource) and Path(saved_data.get("path", "")).resolve() == Path(data).resolve():
            options = {k: saved_data.get(k) for k in ("path_column", "label_column", "target_column", "h5_x", "h5_y")}
            options["layout"] = saved_data.get("layout", "auto")
    options.update({k: v for k, v in source_options.items() if v is not None})  # given: layout, columns, HDF5 keys
    task = predictor.task
    if tta and not task.tta:
        raise ConfigError(f"--tta averages the views' outputs; {task.name} models do not take it.")
    src = data if isinstance(data, DataSource) else open_source(data, task=task.name, **options)
    task.check_data(src, model=True)
    splits, whose, unmatched = _evaluation_splits(run_dir / "split.csv", saved_data.get("path"), src)
    if split == "auto":
        split = next((s for s in ("test", "val", "all", "train") if splits.get(s)), "all")
    if split not in splits:
        raise ConfigError(f"--split '{split}': the data has no such part. It has: {', '.join(splits)}.")
    # A regression target may have another column name in other data; classes and labels must be the model's.
    missing = [c for c in src.classes if c not in predictor.classes] if task.labels_are_classes else []
    if missing:
        raise TransferkitError(
            f"The data has classes the model does not know: {', '.join(missing)}. The model knows: {', '.join(predictor.classes)}."
        )
    # The model's class order decides the label index; the data's names are mapped onto it.
    remap = {i: predictor.classes.index(c) for i, c in enumerate(src.classes) if c in predictor.classes}
    samples = splits[split]
    logits, kept, skipped = predictor.logits_for(src, samples, batch_size=batch_size, tta=tta)
    labels = task.targets([task.relabel(s.label, remap) for s in kept], predictor.classes)
    if tta:  # scored as logits whose outputs are the views' mean output (Task.tta_logits)
        logits, summary = task.tta_logits(logits), task.tta_summary(logits, labels)
    classes, unnamed = predictor.classes, [c for c in predictor.classes if c not in src.classes]
    if unnamed and task.labels.several:
        # A label the data does not name is unknown there, not absent from every image: scored on the data's labels
        # (`--label-column water,green` of a 5-label model counted every crop, road and urban answer as wrong)
        keep = [i for i, c in enumerate(classes) if c in src.classes]
        task, logits, labels, classes = (
            task.restricted(keep),
            logits[:, keep],
            labels[:, keep],
            [classes[i] for i in keep],
        )
    metrics = task.metrics(logits, labels, classes)
    if tta:
        metrics["tta"] = summary
    metrics["split"] = split
    metrics["images"] = len(kept)  # what was scored (unreadable files left out: see "skipped")
    metrics["scored"] = _scored_words(split, whose, len(kept), unmatched)
    metrics["precision"] = predictor.precision
    metrics["skipped"] = [{"key": k, "reason": why} for k, why in skipped]
    if not task.labels_are_classes and src.classes:  # the column scored against (another name than the model's)
        metrics["target"] = src.classes[0]
    metrics["warnings"] = task.target_warnings(labels, src.classes[0] if src.classes else "", predictor.classes[0])
    if unnamed and task.labels.several:
        metrics["warnings"].append(
            f"The data has no labels {', '.join(unnamed)} of the model's: scored on {', '.join(classes)} alone (a "
            "label the data does not name is unknown there, not absent)."
        )
    return metrics


def _evaluation_splits(run_split: Path, saved_root: str | None, src) -> tuple[dict, str, int]:
    """(the parts to score, whose they are: "run" or "data", rows of the run's split not found in the data). The
    run's own split when its split.csv's images are (mostly) in `src`, matched by image identity or by path inside
    the data folder, never by the path as written (data/x and /abs/data/x are the same data); else the data's own
    parts (test/, val/, or every image)."""
    from .data.split import match_splits

    if not run_split.is_file():
        return dict(src.splits), "data", 0
    matched = match_splits(run_split, saved_root, src)
    if matched.rows and matched.found * 2 >= matched.rows:  # at least half the run's images: the run's data
        return {k: v for k, v in matched.splits.items() if v}, "run", matched.rows - matched.found
    return dict(src.splits), "data", 0


def _scored_words(split: str, whose: str, n: int, unmatched: int) -> str:
    """What `evaluate` scored, in words: which split of whose, and how many images."""
    if whose == "run":
        missing = f"; {unmatched} of the run's images were not found in DATA" if unmatched else ""
        return f"{n} images: the run's {split} split (its split.csv, matched by image identity){missing}"
    if split == "all":
        return (
            f"{n} images: every image of DATA (not the run's data, or no split.csv beside the model), so images "
            "the model was trained on may be among them"
        )
    return f"{n} images: DATA's {split}/ part"
