"""`transferkit train DATA`: fit a classifier; the run directory's path is printed last."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def train(
    data: Optional[Path] = typer.Argument(None, help="Image folder (class sub-folders), pre-split folder, list file or HDF5."),
    backbone: str = typer.Option("efficientnet_lite0", help="Built-in name, timm:<name>, torchvision:<name> or file:<path>."),
    arch: Optional[str] = typer.Option(None, help="With --backbone file:<path>: the architecture of the weights."),
    strategy: str = typer.Option("auto", help="linear | freeze:K | finetune | scratch | two-phase | auto."),
    head: str = typer.Option("linear", help="linear | mlp:<hidden> (e.g. mlp:460)."),
    dropout: float = typer.Option(0.0, help="Dropout before the head's last layer."),
    epochs: int = typer.Option(10, help="Maximum epochs; early stopping usually ends sooner."),
    head_epochs: int = typer.Option(3, help="two-phase: head-only epochs before unfreezing."),
    head_solver: str = typer.Option("auto", help="Heads on cached features: lbfgs | adamw | auto (both; the more accurate on val)."),
    aug_views: int = typer.Option(0, help="Heads on cached features: also use features of V augmented views per training image."),
    lr: float = typer.Option(1e-3, help="Head learning rate (the backbone gets lr x --backbone-lr-mult)."),
    backbone_lr_mult: float = typer.Option(0.1, help="Backbone LR as a fraction of the head's."),
    optimizer: str = typer.Option("adamw", help="adamw | sgd."),
    schedule: str = typer.Option("cosine", help="cosine | onecycle | constant (after warm-up)."),
    warmup_epochs: float = typer.Option(0.5, help="Linear LR warm-up, in epochs."),
    label_smoothing: float = typer.Option(0.0, help="Cross-entropy label smoothing."),
    weight_decay: float = typer.Option(0.01, help="Weight decay."),
    patience: int = typer.Option(3, help="Early stopping patience in epochs (0 = off)."),
    batch_size: int = typer.Option(32, help="Images per batch."),
    image_size: Optional[int] = typer.Option(None, help="Input size in pixels (default: follow the data)."),
    split: str = typer.Option("0.7,0.15,0.15", help="train,val,test fractions for data that is not pre-split."),
    layout: str = typer.Option("auto", help="auto | folders | presplit | list | hdf5."),
    path_column: Optional[str] = typer.Option(None, help="List files: the column with image paths (name or 0-based index)."),
    label_column: Optional[str] = typer.Option(None, help="List files: the column with labels (name or 0-based index)."),
    h5_x: Optional[str] = typer.Option(None, help="HDF5: the images' key; {split} stands for train/val/test (X_{split})."),
    h5_y: Optional[str] = typer.Option(None, help="HDF5: the labels' key; {split} stands for train/val/test (y_{split})."),
    balance: str = typer.Option("none", help="none | weights | sampler: counter class imbalance."),
    flip: bool = typer.Option(True, help="Random horizontal flips during training."),
    rotate: float = typer.Option(0.0, help="Random rotation in degrees during training."),
    color_jitter: float = typer.Option(0.0, help="Colour jitter strength during training."),
    seed: int = typer.Option(0, help="Seed for the split, initialisation, augmentation and batch order."),
    out: Path = typer.Option(Path("runs"), help="Folder for run directories."),
    name: Optional[str] = typer.Option(None, help="Run name (default <data>-<strategy>); a taken name gets a suffix."),
    resume: Optional[Path] = typer.Option(None, help="Continue an interrupted run directory from its last.ckpt."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    mixed_precision: str = typer.Option("auto", help="auto | no | bf16 | fp16."),
    channels_last: bool = typer.Option(True, help="NHWC memory format (faster for convnets)."),
    feature_precision: str = typer.Option("auto", help="auto | fp32 | bf16 | fp16: frozen feature extraction (auto: bf16 where the CPU/GPU has it)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model (pays off only on long runs)."),
    decode_store: str = typer.Option("auto", help="Decoded images: memory | disk (a memory-mapped file in the cache dir) | auto (disk when they would not fit in memory)."),
    workers: int = typer.Option(0, help="DataLoader workers (images are decoded once up front)."),
    strict: bool = typer.Option(False, help="Stop before training on any file problem doctor finds (error or warning) or any unreadable file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors and the run's path."),
    log_json: bool = typer.Option(False, "--log-json", help="Events as JSON lines on stdout (for tools), ending with a "
                                  "'done' event that holds the run's path; human output stays on stderr."),
) -> None:
    """Train a classifier on DATA and save the run (config, metrics, best model) in OUT/NAME."""
    from ..api import fit

    if data is None and resume is None:
        raise typer.BadParameter("give DATA (an image folder), or --resume RUN_DIR", param_hint="DATA")
    kwargs = dict(
        backbone=backbone, arch=arch, strategy=strategy, head=head, dropout=dropout, epochs=epochs,
        head_epochs=head_epochs, head_solver=head_solver, aug_views=aug_views, lr=lr, backbone_lr_mult=backbone_lr_mult, optimizer=optimizer, schedule=schedule,
        warmup_epochs=warmup_epochs, label_smoothing=label_smoothing, weight_decay=weight_decay, patience=patience,
        batch_size=batch_size, image_size=image_size, split=split, layout=layout, path_column=path_column,
        label_column=label_column, h5_x=h5_x, h5_y=h5_y, balance=balance, flip=flip,
        rotate=rotate, color_jitter=color_jitter, seed=seed, out=str(out), name=name, device=device,
        mixed_precision=mixed_precision, channels_last=channels_last, feature_precision=feature_precision,
        compile=compile, decode_store=decode_store, workers=workers, strict=strict, quiet=quiet,
    )
    if resume is not None:
        kwargs = {"quiet": quiet}
    from ..progress import make_reporter

    reporter = make_reporter(quiet, log_json)
    run = fit(data, resume=resume, reporter=reporter, **kwargs)
    if log_json:
        m = run.test_metrics
        reporter.emit("done", path=str(run.path), split=run.eval_split, strategy=run.strategy, seconds=round(run.seconds, 3),
                      metrics={k: m.get(k) for k in ("n", "accuracy", "loss", "macro_f1")})
        return
    summarize(run, quiet)


def summarize(run, quiet: bool) -> None:
    if not quiet:
        from rich.console import Console

        m = run.test_metrics
        Console(stderr=True).print(
            f"[bold]{run.eval_split} accuracy {m['accuracy']:.4f}[/bold] (loss {m['loss']:.4f}, macro F1 {m['macro_f1']:.4f}) "
            f"on {m['n']} images; strategy {run.strategy}; {run.seconds:.0f} s. Model: {run.best}",
            highlight=False,
        )
    print(run.path)


def register(app: typer.Typer) -> None:
    app.command()(train)
