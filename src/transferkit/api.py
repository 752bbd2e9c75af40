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
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RunConfig
from .errors import ConfigError, TransferkitError


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

    @property
    def best(self) -> Path:
        return self.path / "best"

    def load(self) -> "Predictor":
        return load(self.best)

    def evaluate(self, data: str | os.PathLike | None = None, split: str = "auto") -> dict[str, Any]:
        return evaluate(self.best, data or self.config.data.path, split=split)


def _apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """fit(..., epochs=3, backbone="timm:resnet18") -> the matching field of whichever sub-config has it."""
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("out", "name", "quiet"):
            setattr(cfg, key, value)
            continue
        for part in (cfg.data, cfg.model, cfg.train, cfg.runtime):
            if key in {f.name for f in dataclasses.fields(part)}:
                setattr(part, key, tuple(value) if isinstance(value, list) else value)
                break
        else:
            names = sorted(f.name for p in (cfg.data, cfg.model, cfg.train, cfg.runtime) for f in dataclasses.fields(p))
            from .errors import unknown_choice

            raise unknown_choice("option", key, names + ["out", "name", "quiet"])
    return cfg


def validate(cfg: RunConfig) -> None:
    """Every option checked before any data is read or any model is built."""
    from .backbones import check_backbone_name
    from .backbones.heads import parse_head
    from .data.split import parse_split
    from .errors import unknown_choice
    from .strategies import parse_strategy

    parse_strategy(cfg.train.strategy)
    parse_head(cfg.model.head)
    cfg.data.split = parse_split(cfg.data.split)
    check_backbone_name(cfg.model.backbone)
    for name, value, choices in (
        ("--optimizer", cfg.train.optimizer, ("adamw", "sgd")),
        ("--schedule", cfg.train.schedule, ("cosine", "onecycle", "constant")),
        ("--balance", cfg.data.balance, ("none", "weights", "sampler")),
        ("--decode-store", cfg.data.decode_store, ("auto", "memory", "disk")),
        ("--device", cfg.runtime.device, ("auto", "cpu", "cuda")),
        ("--mixed-precision", cfg.runtime.mixed_precision, ("auto", "no", "bf16", "fp16")),
        ("--feature-precision", cfg.runtime.feature_precision, ("auto", "fp32", "bf16", "fp16")),
        ("--head-solver", cfg.train.head_solver, ("auto", "lbfgs", "adamw")),
    ):
        if value not in choices:
            raise unknown_choice(name, value, choices)
    if cfg.train.head_solver == "lbfgs" and parse_head(cfg.model.head)[0] != "linear":
        raise ConfigError(f"--head-solver lbfgs fits a logistic regression, so it needs --head linear (not "
                          f"'{cfg.model.head}'); use --head-solver adamw or auto for an mlp head.")
    if cfg.train.aug_views < 0:
        raise ConfigError(f"--aug-views {cfg.train.aug_views}: give 0 (the plain centre crop only) or more views.")
    if cfg.train.epochs < 1:
        raise ConfigError(f"--epochs {cfg.train.epochs}: train for at least 1 epoch.")
    if cfg.data.image_size is not None and cfg.data.image_size < 16:
        raise ConfigError(f"--image-size {cfg.data.image_size}: use at least 16 pixels (64 or more is typical).")


def unique_run_dir(out: str | os.PathLike, name: str) -> Path:
    """out/name, or out/name-2, -3, ... : an existing run is never overwritten."""
    base = Path(out)
    base.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        path = base / (name if i == 1 else f"{name}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise TransferkitError(f"Too many runs named '{name}' in '{base}'; pick another --name.")


def median_short_side(src, samples, limit: int = 200) -> float:
    step = max(1, len(samples) // limit)
    keys = [s.key for s in samples[::step]]

    def side(key):
        try:
            return min(src.image_size(key))
        except Exception:  # noqa: BLE001 - unreadable files are reported by decoding, not here
            return None

    with ThreadPoolExecutor(4) as pool:
        sides = [s for s in pool.map(side, keys) if s]
    return float(statistics.median(sides)) if sides else 224.0


def fit(data=None, config: RunConfig | None = None, resume: str | os.PathLike | None = None, reporter=None, **overrides) -> Run:
    """Train a classifier on `data` (a path or a DataSource) and return the `Run`.

    Keyword arguments set config fields by name: backbone, strategy, epochs, head, split, seed, lr, out, name, ...
    `resume=RUN_DIR` continues an interrupted run from its last.ckpt with its saved config and split.
    """
    import torch

    from .backbones import create_backbone
    from .backbones.model import TransferModel
    from .bundle import load_bundle, versions
    from .data.dataset import DecodedImages
    from .data.decode import decode_samples, store_dir
    from .data.doctor import preflight
    from .data.sources import DataSource, open_source
    from .data.split import load_splits, make_splits, save_splits
    from .data.transforms import choose_image_size, eval_transform, resize_size, train_transform
    from .engine.runtime import set_threads, tune_malloc
    from .engine.trainer import PreparedData, Trainer
    from .evaluation.metrics import classification_metrics
    from .progress import make_reporter
    from .strategies import parse_strategy

    started = time.perf_counter()
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.json").is_file() or not (run_dir / "last.ckpt").is_file():
            raise TransferkitError(
                f"--resume '{run_dir}': not a run directory with config.json and last.ckpt (nothing finished an epoch?)."
            )
        saved = json.loads((run_dir / "config.json").read_text())
        cfg = RunConfig.from_dict(saved["config"])
        _apply_overrides(cfg, {k: v for k, v in overrides.items() if k in ("epochs", "quiet")})
    else:
        cfg = _apply_overrides(config or RunConfig(), dict(overrides))
        if data is not None and not isinstance(data, DataSource):
            cfg.data.path = str(data)
        elif isinstance(data, DataSource):
            cfg.data.path = str(data.root)
    validate(cfg)
    reporter = reporter or make_reporter(cfg.quiet)
    tune_malloc()
    set_threads(cfg.runtime.threads)

    src = data if isinstance(data, DataSource) else open_source(cfg.data.path, cfg.data.layout, **cfg.data.source_options())
    if resume is not None:
        splits = load_splits(run_dir / "split.csv")
    else:
        splits = make_splits(src, cfg.data.split, cfg.train.seed)
    if not splits.get("val"):
        raise TransferkitError("The validation split is empty: add images, or give --split a larger val fraction.")
    checked = preflight(src, splits, reporter, strict=cfg.train.strict, image_size=cfg.data.image_size, balance=cfg.data.balance)

    # Strategy and input size follow the data (recorded with the reason, so nothing is a mystery later).
    strategy = parse_strategy(cfg.train.strategy)
    side = median_short_side(src, splits["train"])
    reason = "chosen with --strategy"
    measured = None  # what the advisor decoded, reused below instead of decoding train and val a second time
    if strategy.name == "auto":  # measured: images per class, shift from ImageNet, frozen-feature accuracy
        from .selection.advise import advise_opened
        from .selection.frozen import Data

        measured = Data(src, splits, side, src.fingerprint())
        advice = advise_opened(measured, cfg, reporter)
        strategy, reason = advice.to_strategy(), advice.reason
    from accelerate.utils import set_seed

    set_seed(cfg.train.seed)  # python, numpy and torch: the new head (and scratch weights) start the same every time
    net, bcfg = create_backbone(cfg.model.backbone, pretrained=strategy.pretrained, arch=cfg.model.arch)
    size = cfg.data.image_size or choose_image_size(side, bcfg.input_size)
    model = TransferModel(net, bcfg, num_outputs=len(src.classes), head=cfg.model.head, dropout=cfg.model.dropout)

    if resume is None:
        name = cfg.name or f"{Path(cfg.data.path).name or 'data'}-{strategy.label}"
        run_dir = unique_run_dir(cfg.out, name)
        save_splits(run_dir / "split.csv", splits, src.classes)
    fingerprint = src.fingerprint()
    (run_dir / "config.json").write_text(json.dumps({
        "config": cfg.to_dict(),
        "resolved": {"strategy": strategy.label, "strategy_reason": reason, "image_size": size,
                     "median_short_side": side, "backbone_cfg": bcfg.to_dict(), "layout": src.layout},
        "data_fingerprint": fingerprint,
        "split_sizes": {k: len(v) for k, v in splits.items()},
        "classes": src.classes,
        "versions": versions(),
        "platform": platform.platform(),
    }, indent=2, default=str))
    checked.save(run_dir / "doctor.json")

    reporter.message(
        f"Data: {src.layout} layout, {len(src.classes)} classes, "
        + ", ".join(f"{k} {len(v)}" for k, v in splits.items())
        + f". Backbone {bcfg.name} at {size}px. Strategy: {strategy.label} ({reason})."
    )

    # Decode every image once, at the size the transforms need.
    short = resize_size(size, bcfg.crop_pct)
    decoded, skipped = {}, []
    total = sum(len(v) for v in splits.values())
    reuse = measured.decoded.get((short, bcfg.interpolation), {}) if measured else {}
    with reporter.task("Decoding images", total) as advance:
        for split, samples in splits.items():
            if split in reuse:
                (imgs, labels), bad = reuse[split], measured.skipped[(short, bcfg.interpolation)][split]
                advance(len(samples))
            else:
                imgs, labels, bad = decode_samples(src, samples, short, bcfg.interpolation, progress=advance,
                                                   store=cfg.data.decode_store, store_dir=store_dir(cfg.runtime.cache_dir))
            decoded[split] = (imgs, labels)
            skipped += [(split, k, why) for k, why in bad]
    if skipped:
        with open(run_dir / "skipped.csv", "w", encoding="utf-8") as f:
            f.write("split,key,reason\n")
            for split, k, why in skipped:
                f.write(f"{split},\"{k}\",\"{why.replace(chr(34), chr(39))}\"\n")
        listing = "; ".join(f"{k} ({why})" for _, k, why in skipped[:5])
        if cfg.train.strict:
            raise TransferkitError(
                f"{len(skipped)} file(s) could not be read and --strict is on: {listing}. Nothing was trained; "
                f"the full list is in {run_dir / 'skipped.csv'}."
            )
        reporter.message(f"Skipped {len(skipped)} unreadable file(s) (listed in skipped.csv): {listing}")

    ev = eval_transform(size, bcfg.crop_pct, bcfg.mean, bcfg.std, bcfg.interpolation)
    tr = train_transform(size, bcfg.mean, bcfg.std, bcfg.interpolation, crop_scale=cfg.data.crop_scale,
                         flip=cfg.data.flip, rotate=cfg.data.rotate, color_jitter=cfg.data.color_jitter)
    prepared = PreparedData(
        classes=src.classes,
        train=DecodedImages(*decoded["train"], tr),
        train_plain=DecodedImages(*decoded["train"], ev),
        val=DecodedImages(*decoded["val"], ev),
        test=DecodedImages(*decoded["test"], ev) if decoded.get("test", ([], []))[0] else None,
        image_size=size,
        cache_key=feature_cache_key(cfg, bcfg, fingerprint, size, splits, [len(v[0]) for v in decoded.values()]),
    )
    if len(prepared.train) == 0 or len(prepared.val) == 0:
        raise TransferkitError("No readable images are left in the train or val split; see skipped.csv.")

    trainer = Trainer(model, strategy, cfg, prepared, run_dir, reporter)
    try:
        history = trainer.fit(resume=resume is not None)
    except KeyboardInterrupt:
        reporter.message(f"Interrupted. The last finished epoch is in {run_dir / 'last.ckpt'}; continue with: "
                         f"transferkit train --resume {run_dir}")
        raise

    # Test metrics from the best checkpoint (val if there is no test split).
    best_model, _ = load_bundle(run_dir / "best")
    trainer.plain_model().load_state_dict(best_model.state_dict())
    eval_split = "test" if prepared.test is not None else "val"
    logits, labels = trainer.split_logits(eval_split, prepared.test or prepared.val)
    metrics = classification_metrics(logits, labels, src.classes)
    report = {"split": eval_split, "metrics": metrics, "strategy": strategy.label, "strategy_reason": reason,
              "best_epoch": _best_epoch(history), "seconds": time.perf_counter() - started,
              "skipped": len(skipped), "image_size": size, "backbone": bcfg.name}
    if trainer.head_solvers:  # both head solvers' val results, and which was kept
        report["head_solvers"] = trainer.head_solvers
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    _add_metrics_to_bundle(run_dir / "best", eval_split, metrics)
    from .evaluation.finish import finish_run  # calibration, plots, report.html

    finish_run(run_dir, trainer, prepared, eval_split, splits[eval_split], skipped, (logits, labels), reporter)
    return Run(run_dir, cfg, src.classes, strategy.label, reason, history, metrics, eval_split,
               [(k, why) for _, k, why in skipped], time.perf_counter() - started)


def feature_cache_key(cfg: RunConfig, bcfg, fingerprint: str, size: int, splits, decoded_counts: list[int]) -> dict:
    """What identifies a run's decoded images in the feature cache. `rank` and `advise` build the same key, so the
    features they extract are the ones `linear` and `two-phase` would compute, and are computed once."""
    return {"data": fingerprint, "backbone": bcfg.name, "weights": _weights_id(cfg), "size": size,
            "crop": bcfg.crop_pct, "keys": _keys_hash(splits), "decoded": list(decoded_counts)}


def _weights_id(cfg: RunConfig) -> str:
    if cfg.model.backbone.startswith("file:"):
        p = Path(cfg.model.backbone[5:]).expanduser()
        st = p.stat() if p.exists() else None
        return f"{p.resolve()}|{st.st_size if st else 0}|{int(st.st_mtime) if st else 0}|{cfg.model.arch}"
    return cfg.model.backbone


def _keys_hash(splits) -> str:
    import hashlib

    h = hashlib.sha256()
    for split in sorted(splits):
        for s in splits[split]:
            h.update(f"{split}|{s.key}|{s.label}\n".encode())
    return h.hexdigest()[:16]


def _best_epoch(history: list[dict]) -> int | None:
    best = [r["epoch"] for r in history if r.get("best")]
    return best[-1] if best else None


def _add_metrics_to_bundle(bundle: Path, split: str, metrics: dict) -> None:
    meta_path = bundle / "transferkit.json"
    meta = json.loads(meta_path.read_text())
    meta["metrics"] = {"split": split, "accuracy": metrics["accuracy"], "loss": metrics["loss"],
                       "macro_f1": metrics.get("macro_f1")}
    meta_path.write_text(json.dumps(meta, indent=2))


def load(path: str | os.PathLike) -> "Predictor":
    """A Predictor for a saved bundle (a run's best/ folder, or the run folder itself)."""
    from .predict import Predictor

    return Predictor(path)


def evaluate(bundle: str | os.PathLike, data: str | os.PathLike, split: str = "auto", batch_size: int = 64,
             tta: bool = False) -> dict[str, Any]:
    """Metrics of a saved model on `data`. tta=True: of the average over crops and mirrors, and `metrics["tta"]`
    says what that changed against the plain prediction.

    split="auto": the run's own test split when `data` is the data it was trained on (read from the run's split.csv),
    else the data's test/ part, else its val/ part, else every image.
    """
    from .data.sources import open_source
    from .data.split import load_splits
    from .evaluation.metrics import classification_metrics
    from .predict import Predictor

    predictor = Predictor(bundle)
    run_dir = Path(predictor.meta["_path"]).parent
    options: dict[str, Any] = {}
    if (run_dir / "config.json").is_file():  # the run's own layout, list columns and HDF5 keys, if it is its data
        saved_data = json.loads((run_dir / "config.json").read_text())["config"]["data"]
        if Path(saved_data.get("path", "")).resolve() == Path(data).resolve():
            options = {k: saved_data.get(k) for k in ("path_column", "label_column", "h5_x", "h5_y")}
            options["layout"] = saved_data.get("layout", "auto")
    src = open_source(data, **options)
    run_split = run_dir / "split.csv"
    splits = dict(src.splits)
    if run_split.is_file() and "all" in splits:
        saved = load_splits(run_split)
        keys = {s.key for s in splits["all"]}
        if all(s.key in keys for v in saved.values() for s in v):
            splits = saved
    if split == "auto":
        split = next((s for s in ("test", "val", "all", "train") if splits.get(s)), "all")
    if split not in splits:
        raise ConfigError(f"--split '{split}': the data has no such part. It has: {', '.join(splits)}.")
    missing = [c for c in src.classes if c not in predictor.classes]
    if missing:
        raise TransferkitError(
            f"The data has classes the model does not know: {', '.join(missing)}. The model knows: {', '.join(predictor.classes)}."
        )
    # The model's class order decides the label index; the data's names are mapped onto it.
    remap = [predictor.classes.index(c) for c in src.classes]
    samples = splits[split]
    logits, kept, skipped = predictor.logits_for(src, samples, batch_size=batch_size, tta=tta)
    labels = [remap[s.label] for s in kept]
    if tta:
        from .evaluation.tta import averaged_logits, tta_summary

        logits, summary = averaged_logits(logits), tta_summary(logits, labels)
    metrics = classification_metrics(logits, labels, predictor.classes)
    if tta:
        metrics["tta"] = summary
    metrics["split"] = split
    metrics["skipped"] = [{"key": k, "reason": why} for k, why in skipped]
    return metrics
