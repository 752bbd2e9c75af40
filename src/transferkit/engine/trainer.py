"""Epochs, phases, schedule, early stopping and checkpoints around the loop in `loop.py`.

    trainer = Trainer(model, strategy, cfg, data, run_dir, reporter)
    history = trainer.fit()            # or fit(resume=True) to continue from run_dir/last.ckpt

Per phase of the strategy: a cached phase trains the head on features computed once; a loop phase trains through
the accelerator. After every epoch: `best/` when val loss improved (ties broken by accuracy; --select score: the
other way round), `last.ckpt`, then the epoch's row in metrics.csv, in that order, so that after a kill at any point
the run directory agrees with itself. With --ema, loop phases evaluate and save a moving average of the weights.

Under torchrun / accelerate launch every process runs this same code on its share of the batches; val metrics are
gathered, so all of them take the same decisions (best, early stop), and only the main process writes. Checkpoints
hold the unwrapped model and optimizer, so a run saved by N processes resumes on any number. Each process keeps its
own --ema average: of identical weights (DDP syncs them every step), so the averages are identical too.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler

from ..bundle import bundle_meta, save_bundle
from ..core.heads import HeadSettings, fit_head, run_settings
from ..data.dataset import DecodedImages
from ..errors import TransferkitError
from ..faults import atomic_path, fault_point, write_atomic
from ..strategies import Phase, Strategy, apply_phase, param_groups, set_train_mode
from ..tasks import get_task
from . import features as feats
from .loop import predict, train_epoch
from .optim import OPTIMIZERS, SCHEDULES, make_ema
from .runtime import feature_precision, make_accelerator, memory_format, processes

# metrics.csv's columns; train_acc/val_acc hold the task's score and are written under its name (`score_columns`):
# train_acc, val_acc (accuracy), train_r2, val_r2 (regression), train_map, val_map (multi-label)
METRIC_FIELDS = (
    "epoch",
    "phase",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "seconds",
    "train_seconds",
    "train_images",
    "best",
    "solver",
)


def score_columns(column: str) -> dict[str, str]:
    """The rows' score keys -> metrics.csv's names for them: {"val_acc": "val_r2", ...} ("acc": unchanged)."""
    return {"train_acc": f"train_{column}", "val_acc": f"val_{column}"}


@dataclass
class PreparedData:
    classes: list[str]
    train: DecodedImages  # train transform (augmentation)
    train_plain: DecodedImages  # the same images with the eval transform, for feature extraction
    val: DecodedImages
    test: DecodedImages | None
    image_size: int
    keys: dict[str, list[str]]  # split -> the readable images' keys, in the datasets' order
    ids: dict[str, list[str]]  # split -> each image's identity (data/imageset.py): the feature store's keys
    store_config: dict  # the backbone's weights and preprocessing (engine/features.store_config)
    data_side: float | None = None  # median short side of the training images (px): predict's too-small warning


class Trainer:
    def __init__(self, model, strategy: Strategy, cfg, data: PreparedData, run_dir: Path, reporter, accelerator=None):
        self.model, self.strategy, self.cfg, self.data = model, strategy, cfg, data
        self.run_dir, self.reporter = Path(run_dir), reporter
        # the how: created once per run, by the caller
        self.accelerator = accelerator or make_accelerator(cfg.runtime, cfg.train.grad_accum, cfg.train.seed)
        self.procs = processes(cfg.runtime.device)  # who writes (the main process) and what is gathered
        self._split_out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # split_logits of the current weights
        self.memory_format = memory_format(cfg.runtime)
        self.history: list[dict] = []
        self.head_solvers: dict[str, dict] = {}  # cached phases: what each head solver reached on val (report.json)
        self.best: tuple[float, float] | None = None  # (val loss, -val score) of the best epoch; _is_best compares
        self.ema = None  # --ema in a loop phase: the AveragedModel that is evaluated and saved instead of the model
        self.global_epoch = 0
        t = cfg.train
        self.phases = strategy.phases(t.epochs, t.head_epochs)
        # the loss, the epoch's score and what "better" means; fitted to the training targets (regression's mean/std)
        self.task = get_task(t.task).prepare(data.train_plain.labels, loss=t.loss)
        weights = self.task.loss_weights(data.train.labels, data.classes) if cfg.data.balance == "weights" else None
        self.class_weights = weights
        self.loss_fn = self.task.loss(weights, t.label_smoothing)

    def plain_model(self):
        """The TransferModel itself, without accelerate's wrappers or torch.compile's (whose keys gain `_orig_mod.`)."""
        return self.accelerator.unwrap_model(self.model, keep_torch_compile=False)

    # ---- bookkeeping -------------------------------------------------------------------------------------------
    def _record(self, row: dict) -> None:
        """Add an epoch to the history; its metrics.csv row is written by `save_last`, once the checkpoint that holds
        the epoch is on disk, so a kill in between never leaves a row that a resume would train and write again."""
        row.setdefault("score", self.task.score_column)  # what val_acc holds: the epoch line names it (val r2)
        self.history.append(row)
        self._unwritten.append(row)

    def _write_metrics(self, rows: list[dict], rewrite: bool = False) -> None:
        if not self.procs.is_main_process:
            return
        path = self.run_dir / "metrics.csv"
        buf = io.StringIO()
        named = score_columns(self.task.score_column)
        w = csv.DictWriter(buf, fieldnames=[named.get(f, f) for f in METRIC_FIELDS], extrasaction="ignore")
        if rewrite or not path.exists():
            w.writeheader()
        w.writerows(
            {named.get(k, k): (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows
        )
        if rewrite:
            write_atomic(path, buf.getvalue())
        else:
            with open(path, "a", newline="", encoding="utf-8") as f:
                f.write(buf.getvalue())

    def _is_best(self, val_loss: float, val_acc: float) -> bool:
        """Whether the epoch beats the best so far, in the task's order for --select (loss or score)."""
        by = self.cfg.train.select
        if self.best is None or self.task.sort_key(val_loss, val_acc, by=by) < self.task.sort_key(
            self.best[0], -self.best[1], by=by
        ):
            self.best = (val_loss, -val_acc)  # always this form: save_best's val_metrics and last.ckpt read it
            return True
        return False

    def _selected(self) -> str:
        """What --select compares, for messages: "loss" or the task's score ("accuracy", "r2", "map")."""
        return "loss" if self.cfg.train.select == "loss" else self.task.score_name

    def _eval_model(self):
        """The weights that are evaluated and saved: the moving average under --ema (loop phases), else the model."""
        return self.ema.module if self.ema is not None else self.plain_model()

    def save_best(self) -> None:
        if not self.procs.is_main_process:
            return
        model = self._eval_model()
        meta = bundle_meta(
            model,
            self.data.classes,
            self.data.image_size,
            self.strategy.label,
            task=self.task.name,
            dropout=self.cfg.model.dropout,
            tta={"flip": self.cfg.data.flip},  # all predict needs travels in the bundle
            val_metrics={"loss": self.best[0], self.task.score_name: -self.best[1]} if self.best else {},
            epoch=self.global_epoch,
            **({"data_side": round(float(self.data.data_side), 1)} if self.data.data_side else {}),
            **self.task.state(),  # regression: the target's mean and std, which predict needs to give values
        )
        save_bundle(self.run_dir / "best", model, meta)

    def save_last(self, phase_index: int, epoch_in_phase: int, phase_done: bool, optimizer=None, scheduler=None, bad=0):
        if not self.procs.is_main_process:
            self._unwritten = []
            return
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
        if self.ema is not None:  # optional: a checkpoint of a run without --ema has none and stays valid
            state["ema"] = self.ema.state_dict()
        with atomic_path(self.run_dir / "last.ckpt") as tmp:  # a kill mid-save keeps the last good checkpoint
            torch.save(state, tmp)
        fault_point("metrics.csv")  # checkpointed, row not yet written: a resume writes it from the checkpoint
        self._write_metrics(self._unwritten)
        self._unwritten = []

    def _load_last(self) -> dict:
        """last.ckpt, checked: a damaged file, or one that does not fit this run, raises TransferkitError."""
        path = self.run_dir / "last.ckpt"

        def broken(why: str) -> TransferkitError:
            return TransferkitError(
                f"'{path}' cannot be resumed from: {why}. transferkit replaces it in one step, so it was changed or "
                f"copied incompletely after the run wrote it. Start the run again without --resume (best/ is a "
                f"separate file and still loads)."
            )

        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - zip, pickle, EOF errors: all mean the file cannot be used
            with open(path, "rb") as f:
                head = f.read(4)
            # torch's own wording, first sentence only: the rest of it suggests weights_only=False, i.e. running pickle
            why = (
                "it is empty (0 bytes)"
                if not head
                else "it is not a torch checkpoint (those are zip archives)"
                if head != b"PK\x03\x04"
                else f"it is cut short or damaged ({str(e).split('. ')[0][:120]})"
            )
            raise broken(why) from e
        need = ("model", "phase_index", "epoch_in_phase", "phase_done", "global_epoch", "best", "history")
        missing = [k for k in need if k not in state] if isinstance(state, dict) else list(need)
        if missing:
            raise broken(f"it lacks {', '.join(missing)}")
        pi = state["phase_index"]
        if not isinstance(pi, int) or not 0 <= pi < len(self.phases):
            raise broken(f"it is from phase {pi!r} of a strategy that has {len(self.phases)}")
        if not state["phase_done"] and not self.phases[pi].cached and not {"optimizer", "scheduler"} <= state.keys():
            raise broken("it lacks the optimizer state its unfinished phase needs")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise broken(
                f"its weights do not fit the model in this run's config.json ({str(e).splitlines()[0]})"
            ) from e
        return state

    # ---- training ----------------------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> list[dict]:
        if self.cfg.runtime.sync_bn and self.procs.num_processes > 1:  # checked for GPUs by api.fit, before any work
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)  # the same parameters, synced statistics
        self.model.to(self.accelerator.device, memory_format=self.memory_format)
        self._split_out = {}
        state = None
        self._unwritten: list[dict] = []  # epochs recorded but not yet in metrics.csv (see _record)
        if resume:
            state = self._load_last()
            self.history = state["history"]
            self.best = tuple(state["best"]) if state["best"] else None
            self.global_epoch = state["global_epoch"]
            # metrics.csv as of the checkpoint: rows of epochs after it (to be trained again) go, rows the checkpoint
            # holds but a kill kept from the file come back. And the temporary files of writes a kill cut short.
            self._write_metrics(self.history, rewrite=True)
            for tmp in [*self.run_dir.glob(".*.tmp"), *(self.run_dir / "best").glob(".*.tmp")]:
                if self.procs.is_main_process:
                    tmp.unlink(missing_ok=True)
        # A run whose report exists is finished; one killed after its last checkpoint but before the report is
        # finished here (every phase skipped, then evaluated as usual).
        if (
            state
            and (self.run_dir / "report.json").is_file()
            and all(self._phase_finished(pi, phase, state) for pi, phase in enumerate(self.phases))
        ):
            from ..errors import ConfigError

            if all(p.cached for p in self.phases):  # a head fitted on cached features in one pass: no epochs to add
                raise ConfigError(
                    f"--resume {self.run_dir}: the run already finished: its head is fitted on cached features in one "
                    "pass, which more --epochs do not continue. To train further, start a new run (e.g. --strategy "
                    "two-phase, which fine-tunes after the head)."
                )
            raise ConfigError(
                f"--resume {self.run_dir}: the run already finished (epoch {self.global_epoch} of "
                f"{self.cfg.train.epochs}, patience {self.cfg.train.patience}). Give a larger --epochs "
                "(or --patience, if it stopped early) to train longer."
            )
        if state and all(self._phase_finished(pi, phase, state) for pi, phase in enumerate(self.phases)):
            # killed after its last checkpoint, or resumed with an --epochs its phases had already reached
            self.reporter.message(
                f"--resume: nothing left to train at --epochs {self.cfg.train.epochs} (epoch {self.global_epoch} "
                "reached); the checkpoint's best model is evaluated as it is."
            )
        for pi, phase in enumerate(self.phases):
            if state and self._phase_finished(pi, phase, state):
                continue
            apply_phase(self.plain_model(), phase)  # the model itself: a previous phase may have wrapped it (DDP)
            if phase.cached:
                self._cached_phase(pi, phase)
            else:
                self._loop_phase(pi, phase, state if state and state["phase_index"] == pi else None)
            state = None
        return self.history

    def _phase_finished(self, pi: int, phase: Phase, state: dict) -> bool:
        """Whether the checkpoint's phase `pi` is over under the current settings: --resume with a larger --epochs
        (or --patience, after an early stop) continues a loop phase that had ended."""
        if pi != state["phase_index"]:
            return pi < state["phase_index"]
        if not state["phase_done"] or phase.cached:
            return state["phase_done"]
        patience = self.cfg.train.patience
        return state["epoch_in_phase"] >= phase.epochs or (bool(patience) and state["bad_epochs"] >= patience)

    def features(self, split: str, dataset: DecodedImages, view: int = 0) -> torch.Tensor:
        """Backbone features of a split, from the on-disk cache when this data was seen with these settings.

        view 0 is the plain eval crop; view v >= 1 runs `dataset`'s own (augmenting) transform under a seed fixed by
        the run's seed, v and the image, so the same view is the same pixels in every run and is stored too.
        """
        device = self.accelerator.device
        out, _ = feats.cached_features(
            self.plain_model().net,
            dataset,
            ids=self.data.ids[split],
            config=self.data.store_config,
            cache_dir=self.cfg.runtime.cache_dir,
            batch_size=self.cfg.data.batch_size,
            device=device,
            precision=feature_precision(self.cfg.runtime, device.type),
            memory_format=self.memory_format,
            reporter=self.reporter,
            label=f"{split}, view {view}" if view else split,
            view=feats.view_config(self.cfg, view),
        )
        return out

    def _train_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of the plain training images, plus `aug_views` augmented views of each (labels repeated)."""
        labels = torch.tensor(self.data.train_plain.labels)
        xs = [self.features("train", self.data.train_plain)]
        xs += [self.features("train", self.data.train, view=v) for v in range(1, self.cfg.train.aug_views + 1)]
        x = xs[0] if len(xs) == 1 else torch.cat(xs)  # one view is not copied: 40,000 x 1,280 floats = 205 MB
        return x, labels.repeat(len(xs), *[1] * (labels.ndim - 1))  # (N,) or multi-label (N, K) rows

    def head_settings(self, epochs: int, class_weights=None) -> HeadSettings:
        """How this run fits a head on cached features (its options); `class_weights` for other training rows."""
        return run_settings(self.cfg, epochs, self.class_weights if class_weights is None else class_weights)

    def _cached_phase(self, pi: int, phase: Phase) -> None:
        t = self.cfg.train
        start = time.perf_counter()
        xtr, ytr = self._train_features()
        xva = self.features("val", self.data.val)
        yva = torch.tensor(self.data.val.labels)
        features_seconds = time.perf_counter() - start
        head = self.plain_model().head.cpu()
        fitted = fit_head(xtr, ytr, self.task, val=(xva, yva), module=head, settings=self.head_settings(phase.epochs))
        solver = fitted.solver
        head.load_state_dict(self.procs.from_main(head.state_dict()))  # launched: every process has the main one's
        head.to(self.accelerator.device)
        self.head_solvers = fitted.results
        elapsed = time.perf_counter() - start
        self.global_epoch += 1
        row = {
            **{k: v for k, v in fitted.results[solver].items() if k != "kept"},
            "epoch": self.global_epoch,
            "phase": phase.name,
            "lr": t.lr,
            "seconds": elapsed,
            "epochs": self._total_epochs(),
            "solver": solver,
            "features_seconds": features_seconds,
        }
        row["best"] = self._is_best(row["val_loss"], row["val_acc"])
        self.best = self.procs.from_main(self.best)  # so that every process stops early at the same epoch
        self._record(row)
        summary = "; ".join(
            f"{k}{' (L2 %.0e)' % v['l2'] if 'l2' in v else ''} val {self.task.score_name} {v['val_acc']:.4f} loss {v['val_loss']:.4f} "
            f"in {v.get('seconds', 0):.2f} s"
            for k, v in fitted.results.items()
        )
        self.reporter.message(
            f"Head on cached features of {len(self.data.train_plain)} training images{f' ({t.aug_views + 1} views each)' if t.aug_views else ''}: "
            f"{summary}" + (f" -> kept {solver}" if len(fitted.results) > 1 else "")
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
            w = self.task.loss_weights(self.data.train.labels, self.data.classes)[torch.tensor(self.data.train.labels)]
            sampler = WeightedRandomSampler(
                w.double(), num_samples=len(w), generator=torch.Generator().manual_seed(t.seed)
            )
        train_loader = DataLoader(
            self.data.train,
            batch_size=d.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            num_workers=d.workers,
            drop_last=len(self.data.train) > d.batch_size,  # a last batch of 1 breaks BatchNorm
            pin_memory=acc.device.type == "cuda",
            persistent_workers=d.workers > 0,
        )
        val_loader = DataLoader(self.data.val, batch_size=d.batch_size * 2, num_workers=d.workers)
        mult = phase.backbone_lr_mult if phase.backbone_lr_mult is not None else t.backbone_lr_mult
        groups = param_groups(self.plain_model(), t.lr, mult, t.weight_decay, t.layer_decay)
        # metrics.csv's lr: the first group's, as before --layer-decay; with it, the first one it does not scale down
        lr_group = next((i for i, g in enumerate(groups) if g.get("layer_scale", 1.0) == 1.0), 0)
        optimizer = OPTIMIZERS[t.optimizer](groups, t)
        # Schedule steps per epoch. Under N processes each takes every N-th batch (a short last round is dropped
        # with drop_last, else padded), and accelerate steps the schedule N times per optimizer step: 96 batches of
        # 8 -> 48 on each of 2 processes -> 2 x 48 = 96 steps. With --grad-accum K it steps on every K-th batch only
        # (and on an epoch's last): 2 x ceil(48 / K). One process, K = 1: the number of batches.
        n = acc.num_processes
        rounds = len(train_loader) // n if train_loader.drop_last else -(-len(train_loader) // n)
        per_epoch = n * -(-rounds // t.grad_accum)
        steps = phase.epochs * max(1, per_epoch)
        scheduler = SCHEDULES[t.schedule](
            optimizer, groups, total_steps=steps, warmup_steps=int(t.warmup_epochs * per_epoch)
        )
        # Prepared afresh in each phase, from the model itself: DDP all-reduces only the parameters that train
        # when it wraps the model, so a phase that unfreezes more needs a new wrapper (and a new optimizer).
        acc.free_memory()
        model, optimizer, train_loader, val_loader, scheduler = acc.prepare(
            self.plain_model(), optimizer, train_loader, val_loader, scheduler
        )
        self.model = model
        # from this phase's starting weights (those of a resumed epoch are replaced by the checkpoint's average)
        self.ema = make_ema(self.plain_model(), t.ema) if t.ema else None
        start_epoch, bad = 0, 0
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            inner = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps it
            if hasattr(inner, "total_steps"):  # OneCycleLR saves its length: a new --epochs on resume sets it
                inner.total_steps = steps
            start_epoch, bad = state["epoch_in_phase"], state["bad_epochs"]
            if self.ema is not None and "ema" in state:
                self.ema.load_state_dict(state["ema"])
        try:
            self._epochs(pi, phase, model, optimizer, scheduler, train_loader, val_loader, start_epoch, bad, lr_group)
        finally:
            self.ema = None  # later phases (and evaluation, which loads best/) use the model itself

    def _epochs(self, pi, phase, model, optimizer, scheduler, train_loader, val_loader, start_epoch, bad, lr_group):
        """A loop phase's epochs from `start_epoch`, with `bad` epochs without improvement so far."""
        t, d, acc = self.cfg.train, self.cfg.data, self.accelerator
        ema, plain = self.ema, self.plain_model()  # the average follows the unwrapped model's own parameters
        after_step = (lambda: ema.update_parameters(plain)) if ema is not None else (lambda: None)
        # Patience counts epochs that do not beat this phase's own best. two-phase's fine-tuning starts below the
        # head it follows (EuroSAT at 128 px: head 94.0% val, then fine-tune epochs 86.0, 91.3, 93.3%): judged
        # against the head, three rising epochs would stop it. best/ still keeps the best epoch of the whole run.
        by = t.select
        mine = [
            self.task.sort_key(r["val_loss"], r["val_acc"], by=by) for r in self.history if r["phase"] == phase.name
        ]
        phase_best = min(mine, default=None)  # a resumed phase: its epochs so far
        freeze_bn = {"frozen": True, "train": False}.get(t.bn_stats, phase.keeps_head)  # auto: keep the head's
        for e in range(start_epoch, phase.epochs):
            t0 = time.perf_counter()
            self.global_epoch += 1
            # augmentation: same per epoch, also after resume; each process its own draws (the batch order is seeded
            # apart, by the accelerator's data_seed)
            torch.manual_seed(t.seed * 10_007 + self.global_epoch + 1_000_003 * self.procs.process_index)
            if hasattr(train_loader, "set_epoch"):
                train_loader.set_epoch(self.global_epoch)
            with self.reporter.epoch(f"Epoch {self.global_epoch} [{phase.name}]", len(train_loader)) as advance:
                tr_loss, tr_acc = train_epoch(
                    model,
                    train_loader,
                    optimizer,
                    scheduler,
                    self.loss_fn,
                    acc,
                    on_batch=advance,
                    memory_format=self.memory_format,
                    before_epoch=lambda: set_train_mode(self.plain_model(), freeze_bn),
                    score_fn=self.task.score,
                    after_step=after_step,
                )
            tr_loss, tr_acc = self.procs.mean([tr_loss, tr_acc])  # each process's mean over its own batches
            train_seconds = time.perf_counter() - t0  # the benchmark's fine-tune throughput: train images / this
            logits, labels = predict(model if ema is None else ema.module, val_loader, acc, self.memory_format)
            val_loss, val_acc = self.task.val_loss(logits, labels), self.task.score(logits, labels)
            row = {
                "epoch": self.global_epoch,
                "epochs": self._total_epochs(),
                "phase": phase.name,
                "train_loss": tr_loss,
                "train_acc": tr_acc,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "lr": optimizer.param_groups[lr_group]["lr"],
                "seconds": time.perf_counter() - t0,
                "train_seconds": train_seconds,
                "train_images": len(train_loader) * d.batch_size * acc.num_processes,  # batches are per process
            }
            row["best"] = self._is_best(val_loss, val_acc)
            key = self.task.sort_key(val_loss, val_acc, by=by)
            improved, phase_best = phase_best is None or key < phase_best, min(key, phase_best or key)
            # An epoch that ends inside the LR warm-up (epochs 1-2 of --warmup-epochs 2; not epoch 1 of 0.5) is not a
            # bad one: the LR is still rising, and patience 1 would otherwise end a run before it trained at full LR.
            warming = e + 1 <= t.warmup_epochs
            bad = 0 if improved else bad if warming else bad + 1
            self._record(row)
            self.reporter.end_epoch(row)
            if row["best"]:
                self.save_best()
            stop = bool(t.patience) and bad >= t.patience
            self.save_last(pi, e + 1, stop or e + 1 == phase.epochs, optimizer, scheduler, bad)
            if stop:
                self.reporter.message(f"Early stopping: val {self._selected()} has not improved for {bad} epochs.")
                break

    # ---- evaluation --------------------------------------------------------------------------------------------
    def logits(self, dataset: DecodedImages) -> tuple[torch.Tensor, torch.Tensor]:
        loader = self.accelerator.prepare(DataLoader(dataset, batch_size=self.cfg.data.batch_size * 2))
        return predict(self.model, loader, self.accelerator, self.memory_format)

    def load_weights(self, state: dict) -> None:
        """Put `state` (e.g. best/'s weights) into the model; the logits of the weights before are forgotten."""
        self.plain_model().load_state_dict(state)
        self._split_out = {}

    def split_logits(self, split: str, dataset: DecodedImages) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's logits on a split, computed once per split for the current weights (`fit` and `load_weights`
        change them): under several processes the pass is a collective, so the main process's later uses (the
        calibration's val logits) must not start another one alone."""
        if split not in self._split_out:
            self._split_out[split] = self._split_logits(split, dataset)
        return self._split_out[split]

    def _split_logits(self, split: str, dataset: DecodedImages) -> tuple[torch.Tensor, torch.Tensor]:
        """When no phase trained the backbone (`linear`), its features are the cached ones and only the head runs:
        milliseconds instead of a second forward pass. The features are at the run's feature precision (bf16 on CPUs
        and GPUs that have it), which is also what `predict` and `evaluate` run at by default
        (`runtime.inference_precision`), so the run's test metrics are the ones they reproduce."""
        if all(p.cached for p in self.phases):
            device = self.accelerator.device
            head = self.plain_model().head.eval()
            with torch.no_grad():
                logits = head(self.features(split, dataset).to(device)).float().cpu()
            return logits, torch.tensor(dataset.labels)
        return self.logits(dataset)
