"""Typed run configuration. Every CLI flag maps to one field here; the whole config is saved with each run.

    from transferkit.config import RunConfig
    cfg = RunConfig.from_dict(json.load(open("runs/x/config.json"))["config"])

Nothing here imports torch: the CLI builds these before deciding whether heavy work is needed.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class DataConfig:
    path: str = ""  # an image folder, a pre-split folder, a list file (.txt/.tsv/.csv) or an HDF5 file/folder
    layout: str = "auto"  # auto | folders | presplit | list | hdf5: auto looks at what is there
    path_column: str | None = None  # list files: column with image paths (header name or 0-based index); None: path/filename/...
    label_column: str | None = None  # list files: column with labels; None: label/class/category/...
    h5_x: str | None = None  # HDF5: key of the images ("{split}" = train/val/test, e.g. "X_{split}"); None: found automatically
    h5_y: str | None = None  # HDF5: key of the labels, like h5_x
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train/val/test fractions, used only where the data is not pre-split
    image_size: int | None = None  # None: follow the data (tiny images do not need 224 px), capped at the backbone's size
    flip: bool = True  # horizontal flip during training; off for data where left/right matters (digits, text)
    crop_scale: tuple[float, float] = (0.35, 1.0)  # RandomResizedCrop area range; timm's (0.08, 1) is too harsh for a few hundred images
    rotate: float = 0.0  # max rotation in degrees during training (0 = off)
    color_jitter: float = 0.0  # brightness/contrast/saturation jitter strength (0 = off)
    batch_size: int = 32  # 32 keeps BatchNorm statistics sane and fits a laptop's memory at 224 px
    decode_store: str = "auto"  # memory | disk (one memory-mapped file in the cache dir) | auto: disk when the decoded images would take over half the free memory
    workers: int = 0  # DataLoader workers; images are decoded once up front, so 0 is enough on a CPU
    balance: str = "none"  # none | weights | sampler: counter class imbalance with a weighted loss or sampler

    def source_options(self) -> dict[str, str | None]:
        """What `open_source` takes besides path and layout."""
        return {"path_column": self.path_column, "label_column": self.label_column, "h5_x": self.h5_x, "h5_y": self.h5_y}


@dataclass
class ModelConfig:
    backbone: str = "efficientnet_lite0"  # a registry name: built-in, timm:<name>, torchvision:<name> or file:<path>
    arch: str | None = None  # with file:<path>, the architecture the weights belong to (a registry name)
    head: str = "linear"  # linear | mlp:<hidden>: the new classifier on top of the pooled features
    dropout: float = 0.0  # dropout before the head's last layer (mlp heads default to 0.4 when this is 0)


@dataclass
class TrainConfig:
    strategy: str = "auto"  # linear | freeze:K | finetune | scratch | two-phase | auto
    epochs: int = 10  # upper bound; early stopping usually ends sooner
    head_epochs: int = 3  # two-phase: epochs of head-only training before unfreezing
    head_solver: str = "auto"  # cached heads: lbfgs (logistic regression, L2 picked on val) | adamw (minibatch) | auto: both, keep the more accurate on val
    aug_views: int = 0  # cached heads: also extract features of this many augmented views of each training image (V extra forward passes)
    lr: float = 1e-3  # head learning rate; the backbone gets lr * backbone_lr_mult
    backbone_lr_mult: float = 0.1  # discriminative LRs: pretrained layers move 10x slower than the new head
    optimizer: str = "adamw"  # adamw | sgd
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.01  # AdamW's decoupled decay; 1e-4 is typical for sgd
    schedule: str = "cosine"  # cosine | onecycle | constant, each after `warmup_epochs` of linear warm-up
    warmup_epochs: float = 0.5  # linear warm-up; half an epoch is enough to protect pretrained weights from the new head's gradients
    label_smoothing: float = 0.0  # cross-entropy label smoothing (0.1 is common for fine-tuning)
    patience: int = 3  # early stopping: epochs without a better val loss before stopping (0 = never stop early)
    seed: int = 0  # one seed drives the split, initialisation, augmentation and batch order
    strict: bool = False  # stop before training on any error or warning about a file (doctor), or any unreadable file, instead of skipping


@dataclass
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda: handed to accelerate; the loop never names a device
    mixed_precision: str = "auto"  # auto | no | bf16 | fp16: auto is bf16 on a GPU that has it, off on a CPU
    feature_precision: str = "auto"  # auto | fp32 | bf16: precision of frozen feature extraction (bf16 is 2-3x faster on a CPU)
    channels_last: bool = True  # convnets run 1.5-2x faster in NHWC on CPUs and tensor cores
    compile: bool = False  # torch.compile the model (opt-in: minutes of compile time pay off only on long runs)
    threads: int = 0  # torch threads; 0 = one per core
    cache_dir: str | None = None  # where feature caches go; None = ~/.cache/transferkit


def cache_home(cache_dir: str | None = None) -> Path:
    """The cache folder: `cache_dir`, else $TRANSFERKIT_CACHE, else ~/.cache/transferkit (features/, decoded/)."""
    return Path(cache_dir or os.environ.get("TRANSFERKIT_CACHE") or Path.home() / ".cache" / "transferkit")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    out: str = "runs"  # the run lands in out/name
    name: str | None = None  # None: <data folder>-<strategy>; a taken name gets a -2, -3, ... suffix
    quiet: bool = False  # no progress bars or tables, only errors and the final path

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        def build(kind, values):
            names = {f.name: f for f in dataclasses.fields(kind)}
            kw = {}
            for k, v in values.items():
                if k not in names:
                    continue  # a field from a newer version: ignore rather than refuse an old run
                kw[k] = tuple(v) if isinstance(v, list) else v
            return kind(**kw)

        return cls(
            data=build(DataConfig, d.get("data", {})),
            model=build(ModelConfig, d.get("model", {})),
            train=build(TrainConfig, d.get("train", {})),
            runtime=build(RuntimeConfig, d.get("runtime", {})),
            out=d.get("out", "runs"),
            name=d.get("name"),
            quiet=d.get("quiet", False),
        )
