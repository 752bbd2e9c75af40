"""Epochs, phases, schedule, early stopping and checkpoints around the loop in `loop.py`.

    trainer = Trainer(model, strategy, cfg, data, run_dir, reporter)
    history = trainer.fit()            # or fit(resume=True) to continue from run_dir/last.ckpt

Per phase of the strategy: a cached phase trains the head on features computed once; a loop phase trains through
the accelerator. After every epoch: a row in metrics.csv, `last.ckpt`, and `best/` when val loss improved
(ties broken by accuracy).
"""

from __future__ import annotations

import copy
import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler

from ..bundle import bundle_meta, save_bundle
from ..data.dataset import DecodedImages
from ..strategies import Phase, Strategy, apply_phase, param_groups, set_train_mode
from . import features as feats
from .loop import predict, train_epoch
from .runtime import autocast_for, feature_precision, make_accelerator, memory_format

METRIC_FIELDS = ("epoch", "phase", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "train_seconds",
                 "train_images", "best", "solver")
CACHED_HEAD_EPOCHS = 60  # epochs over cached features cost milliseconds; early stopping (patience 10) ends most runs sooner


@dataclass
class PreparedData:
    classes: list[str]
    train: DecodedImages  # train transform (augmentation)
    train_plain: DecodedImages  # the same images with the eval transform, for feature extraction
    val: DecodedImages
    test: DecodedImages | None
    image_size: int
    cache_key: dict  # what identifies these images for the feature cache (fingerprint, split, preprocessing)


def class_weights(labels: list[int], n_classes: int) -> torch.Tensor:
    counts = torch.bincount(torch.tensor(labels), minlength=n_classes).float().clamp(min=1)
    return counts.sum() / (n_classes * counts)  # balanced: each class contributes equally to the loss


def lr_lambda(schedule: str, warmup_steps: int, total_steps: int):
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


class Trainer:
    def __init__(self, model, strategy: Strategy, cfg, data: PreparedData, run_dir: Path, reporter):
        self.model, self.strategy, self.cfg, self.data = model, strategy, cfg, data
        self.run_dir, self.reporter = Path(run_dir), reporter
        self.accelerator = make_accelerator(cfg.runtime)
        self.memory_format = memory_format(cfg.runtime)
        self.history: list[dict] = []
        self.head_solvers: dict[str, dict] = {}  # cached phases: what each head solver reached on val (report.json)
        self.best: tuple[float, float] | None = None  # (val loss, -val acc): smaller is better
        self.global_epoch = 0
        t = cfg.train
        self.phases = strategy.phases(t.epochs, t.head_epochs)
        weights = class_weights(data.train.labels, len(data.classes)) if cfg.data.balance == "weights" else None
        self.class_weights = weights
        self.loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=t.label_smoothing)

    def plain_model(self):
        """The TransferModel itself, without accelerate's wrappers or torch.compile's (whose keys gain `_orig_mod.`)."""
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False)

    # ---- bookkeeping -------------------------------------------------------------------------------------------
    def _record(self, row: dict) -> None:
        self.history.append(row)
        path = self.run_dir / "metrics.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    def _is_best(self, val_loss: float, val_acc: float) -> bool:
        score = (val_loss, -val_acc)
        if self.best is None or score < self.best:
            self.best = score
            return True
        return False

    def save_best(self) -> None:
        meta = bundle_meta(
            self.plain_model(), self.data.classes, self.data.image_size, self.strategy.label,
            dropout=self.cfg.model.dropout,
            val_metrics={"loss": self.best[0], "accuracy": -self.best[1]} if self.best else {},
            epoch=self.global_epoch,
        )
        save_bundle(self.run_dir / "best", self.plain_model(), meta)

    def save_last(self, phase_index: int, epoch_in_phase: int, phase_done: bool, optimizer=None, scheduler=None, bad=0):
        state = {
            "model": self.plain_model().state_dict(),
            "phase_index": phase_index,
            "epoch_in_phase": epoch_in_phase,
            "phase_done": phase_done,
            "global_epoch": self.global_epoch,
            "best": list(self.best) if self.best else None,
            "bad_epochs": bad,
            "history": self.history,
        }
        if optimizer is not None:
            state["optimizer"] = optimizer.state_dict()
            state["scheduler"] = scheduler.state_dict()
        tmp = self.run_dir / "last.ckpt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.run_dir / "last.ckpt")  # atomic: Ctrl-C mid-save never corrupts the last good checkpoint

    # ---- training ----------------------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> list[dict]:
        self.model.to(self.accelerator.device, memory_format=self.memory_format)
        state = None
        if resume:
            state = torch.load(self.run_dir / "last.ckpt", map_location="cpu", weights_only=True)
            self.model.load_state_dict(state["model"])
            self.history = state["history"]
            self.best = tuple(state["best"]) if state["best"] else None
            self.global_epoch = state["global_epoch"]
        for pi, phase in enumerate(self.phases):
            if state and (pi < state["phase_index"] or (pi == state["phase_index"] and state["phase_done"])):
                continue
            apply_phase(self.model, phase)
            if phase.cached:
                self._cached_phase(pi, phase)
            else:
                self._loop_phase(pi, phase, state if state and state["phase_index"] == pi else None)
            state = None
        return self.history

    def features(self, split: str, dataset: DecodedImages, view: int = 0) -> torch.Tensor:
        """Backbone features of a split, from the on-disk cache when this data was seen with these settings.

        view 0 is the plain eval crop; view v >= 1 runs `dataset`'s own (augmenting) transform under a seed fixed by
        the run's seed and v, so the same view is the same pixels in every run and its features can be cached too.
        """
        device = self.accelerator.device
        precision = feature_precision(self.cfg.runtime, device.type)
        extra = {}
        if view:
            d = self.cfg.data
            extra = {"view": view, "view_seed": self.cfg.train.seed, "augment": [d.crop_scale, d.flip, d.rotate, d.color_jitter]}
        key = feats.feature_key(split=split, precision=precision, **self.data.cache_key, **extra)
        path = feats.cache_root(self.cfg.runtime.cache_dir) / f"{key}.safetensors"
        cached = feats.load_cached(path)
        if cached is not None and cached["features"].shape[0] == len(dataset):
            return cached["features"]
        net = self.plain_model().net
        bs = self.cfg.data.batch_size
        label = f"{split}, view {view}" if view else split
        with self.reporter.task(f"Features ({label}, {precision})", len(dataset)) as advance, \
                torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.train.seed * 1_000_003 + view)  # the view's crops and flips; global RNG untouched
            out = feats.extract(
                net, dataset, bs, device, autocast_for(precision, device.type), self.memory_format,
                on_batch=lambda n=1: advance(bs),
            )
        try:
            feats.save_cached(path, {"features": out})
        except OSError as e:  # a read-only or full cache dir slows the next run, nothing more
            self.reporter.message(f"note: could not write the feature cache at {path}: {e}")
        return out

    def _train_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of the plain training images, plus `aug_views` augmented views of each (labels repeated)."""
        labels = torch.tensor(self.data.train_plain.labels)
        xs = [self.features("train", self.data.train_plain)]
        xs += [self.features("train", self.data.train, view=v) for v in range(1, self.cfg.train.aug_views + 1)]
        return torch.cat(xs), labels.repeat(len(xs))

    def _cached_phase(self, pi: int, phase: Phase) -> None:
        t = self.cfg.train
        start = time.perf_counter()
        xtr, ytr = self._train_features()
        xva = self.features("val", self.data.val)
        yva = torch.tensor(self.data.val.labels)
        features_seconds = time.perf_counter() - start
        head = self.plain_model().head.cpu()
        fitted: dict[str, tuple[nn.Module, dict]] = {}
        if t.head_solver in ("auto", "lbfgs"):
            t0, h = time.perf_counter(), copy.deepcopy(head)
            res = feats.fit_logistic(h, (xtr, ytr), (xva, yva), label_smoothing=t.label_smoothing,
                                     class_weights=self.class_weights)
            if res is not None:  # None: not a logistic-regression head (mlp), which only AdamW trains
                fitted["lbfgs"] = (h, {**{k: res[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc")},
                                       "l2": res["l2"], "seconds": time.perf_counter() - t0})
        if t.head_solver in ("auto", "adamw") or not fitted:
            t0, h = time.perf_counter(), copy.deepcopy(head)
            rows = feats.train_head(
                h, (xtr, ytr), (xva, yva), epochs=max(CACHED_HEAD_EPOCHS, phase.epochs), lr=t.lr,
                weight_decay=t.weight_decay, label_smoothing=t.label_smoothing, seed=t.seed,
                batch_size=self.cfg.data.batch_size, class_weights=self.class_weights,
            )
            best_row = min(rows, key=lambda r: (r["val_loss"], -r["val_acc"]))
            fitted["adamw"] = (h, {**{k: best_row[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc")},
                                   "passes": len(rows), "seconds": time.perf_counter() - t0})
        # The more accurate on val; equal accuracy (common on a few hundred images): the lower val loss.
        solver = max(fitted, key=lambda k: (fitted[k][1]["val_acc"], -fitted[k][1]["val_loss"]))
        head.load_state_dict(fitted[solver][0].state_dict())
        head.to(self.accelerator.device)
        self.head_solvers = {k: {**v, "kept": k == solver} for k, (_, v) in fitted.items()}
        elapsed = time.perf_counter() - start
        self.global_epoch += 1
        row = {**fitted[solver][1], "epoch": self.global_epoch, "phase": phase.name, "lr": t.lr, "seconds": elapsed,
               "epochs": self._total_epochs(), "solver": solver, "features_seconds": features_seconds}
        row["best"] = self._is_best(row["val_loss"], row["val_acc"])
        self._record(row)
        summary = "; ".join(
            f"{k}{' (L2 %.0e)' % v['l2'] if 'l2' in v else ''} val acc {v['val_acc']:.4f} loss {v['val_loss']:.4f} "
            f"in {v['seconds']:.2f} s" for k, (_, v) in fitted.items()
        )
        self.reporter.message(
            f"Head on cached features of {len(self.data.train_plain)} training images{f' ({t.aug_views + 1} views each)' if t.aug_views else ''}: "
            f"{summary}" + (f" -> kept {solver}" if len(fitted) > 1 else "")
        )
        self.reporter.end_epoch(row)
        if row["best"]:
            self.save_best()
        self.save_last(pi, 1, True)

    def _total_epochs(self) -> int:
        return sum(1 if p.cached else p.epochs for p in self.phases)

    def _loop_phase(self, pi: int, phase: Phase, state: dict | None) -> None:
        t, d = self.cfg.train, self.cfg.data
        acc = self.accelerator
        sampler = None
        if d.balance == "sampler":
            w = class_weights(self.data.train.labels, len(self.data.classes))[torch.tensor(self.data.train.labels)]
            sampler = WeightedRandomSampler(w.double(), num_samples=len(w), generator=torch.Generator().manual_seed(t.seed))
        train_loader = DataLoader(
            self.data.train, batch_size=d.batch_size, shuffle=sampler is None, sampler=sampler, num_workers=d.workers,
            drop_last=len(self.data.train) > d.batch_size,  # a last batch of 1 breaks BatchNorm
            pin_memory=acc.device.type == "cuda", persistent_workers=d.workers > 0,
        )
        val_loader = DataLoader(self.data.val, batch_size=d.batch_size * 2, num_workers=d.workers)
        mult = phase.backbone_lr_mult if phase.backbone_lr_mult is not None else t.backbone_lr_mult
        groups = param_groups(self.plain_model(), t.lr, mult, t.weight_decay)
        if t.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, nesterov=True)
        else:
            optimizer = torch.optim.AdamW(groups, lr=t.lr)
        steps = phase.epochs * max(1, len(train_loader))
        warmup = int(t.warmup_epochs * len(train_loader))
        if t.schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=[g["lr"] for g in groups], total_steps=steps, pct_start=max(0.05, warmup / steps)
            )
        else:
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(t.schedule, max(1, warmup), steps))
        model, optimizer, train_loader, val_loader, scheduler = acc.prepare(
            self.model, optimizer, train_loader, val_loader, scheduler
        )
        self.model = model
        start_epoch, bad = 0, 0
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch, bad = state["epoch_in_phase"], state["bad_epochs"]
        val_loss_fn = nn.CrossEntropyLoss()
        for e in range(start_epoch, phase.epochs):
            t0 = time.perf_counter()
            self.global_epoch += 1
            torch.manual_seed(t.seed * 10_007 + self.global_epoch)  # augmentation: same per epoch, also after resume
            if hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(self.global_epoch)
            with self.reporter.epoch(f"Epoch {self.global_epoch} [{phase.name}]", len(train_loader)) as advance:
                tr_loss, tr_acc = train_epoch(
                    model, train_loader, optimizer, scheduler, self.loss_fn, acc, on_batch=advance,
                    memory_format=self.memory_format, before_epoch=lambda: set_train_mode(self.plain_model()),
                )
            train_seconds = time.perf_counter() - t0  # the benchmark's fine-tune throughput: train images / this
            logits, labels = predict(model, val_loader, acc, self.memory_format)
            val_loss = val_loss_fn(logits, labels).item()
            val_acc = (logits.argmax(1) == labels).float().mean().item()
            row = {
                "epoch": self.global_epoch, "epochs": self._total_epochs(), "phase": phase.name, "train_loss": tr_loss,
                "train_acc": tr_acc, "val_loss": val_loss, "val_acc": val_acc,
                "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0,
                "train_seconds": train_seconds, "train_images": len(train_loader) * d.batch_size,
            }
            row["best"] = self._is_best(val_loss, val_acc)
            bad = 0 if row["best"] else bad + 1
            self._record(row)
            self.reporter.end_epoch(row)
            if row["best"]:
                self.save_best()
            stop = bool(t.patience) and bad >= t.patience
            self.save_last(pi, e + 1, stop or e + 1 == phase.epochs, optimizer, scheduler, bad)
            if stop:
                self.reporter.message(f"Early stopping: val loss has not improved for {bad} epochs.")
                break

    # ---- evaluation --------------------------------------------------------------------------------------------
    def logits(self, dataset: DecodedImages) -> tuple[torch.Tensor, torch.Tensor]:
        loader = self.accelerator.prepare(DataLoader(dataset, batch_size=self.cfg.data.batch_size * 2))
        return predict(self.model, loader, self.accelerator, self.memory_format)

    def split_logits(self, split: str, dataset: DecodedImages) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's logits on a split. When no phase trained the backbone (`linear`), its features are the cached
        ones and only the head runs: milliseconds instead of a forward pass. Only at fp32, so that the numbers are
        exactly what `predict` (always fp32) gives."""
        device = self.accelerator.device
        if all(p.cached for p in self.phases) and feature_precision(self.cfg.runtime, device.type) == "fp32":
            head = self.plain_model().head.eval()
            with torch.no_grad():
                logits = head(self.features(split, dataset).to(device)).float().cpu()
            return logits, torch.tensor(dataset.labels)
        return self.logits(dataset)
