"""Transfer strategies: small named objects in one table (`TABLE`); a new strategy is one more row.

    s = parse_strategy("freeze:2")
    for phase in s.phases(epochs=10, head_epochs=3):
        apply_phase(model, phase)          # requires_grad per parameter
        set_train_mode(model)              # frozen BatchNorm layers stay in eval mode
        groups = param_groups(model, lr=1e-3, backbone_lr_mult=0.1)  # layer_decay=0.8: lower stages slower

| name       | what trains                                  | seed 004's chart                 |
|------------|----------------------------------------------|----------------------------------|
| linear     | the head only, on cached backbone features   | small data, similar to ImageNet  |
| freeze:K   | everything after the stem and first K stages | small data, different domain     |
| finetune   | everything; backbone at a lower LR           | large data, similar domain       |
| scratch    | everything, random initialisation            | large data, different domain     |
| two-phase  | head first (cached), then everything         | fastai's fine_tune               |
| auto       | one of the above, measured by selection.advise |                                |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ConfigError, unknown_choice

if TYPE_CHECKING:
    from .backbones.model import TransferModel

ALL = "all"  # a phase's `frozen` value meaning the whole pretrained network is frozen


@dataclass(frozen=True)
class Phase:
    name: str  # shown in logs and saved in checkpoints ("head", "finetune", ...)
    epochs: int
    frozen: int | str | None  # None: nothing frozen; K: stem + first K stages; ALL: the whole backbone
    cached: bool = False  # the backbone is frozen and deterministic: train the head on features computed once
    backbone_lr_mult: float | None = None  # None: the config's value
    keeps_head: bool = False  # follows a phase that fitted the head on frozen features (--bn-stats auto keeps them)


@dataclass(frozen=True)
class Strategy:
    name: str  # a key of TABLE
    pretrained: bool = True
    frozen_stages: int | None = None  # freeze:K only
    backbone_lr_mult: float | None = (
        None  # set by `auto` (finetune, freeze:K) for data far from ImageNet: pretrained layers must move more
    )

    def phases(self, epochs: int, head_epochs: int = 3) -> list[Phase]:
        make = TABLE[self.name].phases
        if make is None:
            raise ConfigError(f"strategy '{self.name}' must be resolved before training")
        return make(self, epochs, head_epochs)

    @property
    def label(self) -> str:
        return f"{self.name}:{self.frozen_stages}" if TABLE[self.name].takes_k else self.name


@dataclass(frozen=True)
class Kind:
    """One row of the table: how it is written, what trains, and its phases (None: resolved before training)."""

    spelling: str
    trains: str
    phases: Callable[[Strategy, int, int], list[Phase]] | None
    pretrained: bool = True
    takes_k: bool = False  # written name:K (K a whole number)


def _two_phase(s: Strategy, epochs: int, head_epochs: int) -> list[Phase]:
    head = max(1, min(head_epochs, epochs - 1))
    return [Phase("head", head, ALL, cached=True), Phase("finetune", max(1, epochs - head), None, keeps_head=True)]


TABLE: dict[str, Kind] = {
    "linear": Kind(
        "linear", "the head only, on cached backbone features", lambda s, e, h: [Phase("head", e, ALL, cached=True)]
    ),
    "freeze": Kind(
        "freeze:K",
        "everything after the stem and the first K stages",
        lambda s, e, h: [Phase(f"freeze:{s.frozen_stages}", e, s.frozen_stages, backbone_lr_mult=s.backbone_lr_mult)],
        takes_k=True,
    ),
    "finetune": Kind(
        "finetune",
        "everything; the backbone at a lower learning rate than the head",
        lambda s, e, h: [Phase("finetune", e, None, backbone_lr_mult=s.backbone_lr_mult)],
    ),
    # nothing is pretrained, so no reason to slow any layer down
    "scratch": Kind(
        "scratch",
        "the same architecture from random initialisation",
        lambda s, e, h: [Phase("scratch", e, None, backbone_lr_mult=1.0)],
        pretrained=False,
    ),
    "two-phase": Kind("two-phase", "the head first (cached features), then everything", _two_phase),
    "auto": Kind("auto", "one of the above, measured on the data (selection/advise.py)", None),
}
STRATEGIES = tuple(k.spelling for k in TABLE.values())


def parse_strategy(spec: str) -> Strategy:
    """'freeze:2' -> Strategy('freeze', frozen_stages=2). Errors name the option and list the valid ones."""
    spec = spec.strip().lower().replace("_", "-")
    name, sep, arg = spec.partition(":")
    kind = TABLE.get(name)
    if kind is None or bool(sep) != kind.takes_k:
        raise unknown_choice("--strategy", spec, STRATEGIES)
    k = None
    if kind.takes_k:
        k = int(arg) if arg.isdigit() else -1
        if k < 0:
            raise ConfigError(f"--strategy '{spec}': K must be a whole number of stages >= 0, e.g. {name}:2.")
    return Strategy(name, pretrained=kind.pretrained, frozen_stages=k)


def is_frozen(stage: int, frozen: int | str | None, n_stages: int) -> bool:
    if frozen is None:
        return False
    if frozen == ALL:
        return True
    return stage < int(frozen)  # the stem is stage -1, so freeze:0 freezes the stem alone


def apply_phase(model: TransferModel, phase: Phase) -> None:
    n = len(model.cfg.stages)
    if isinstance(phase.frozen, int) and phase.frozen > n:
        raise ConfigError(
            f"--strategy freeze:{phase.frozen}: backbone '{model.cfg.name}' has only {n} stages; use 0..{n}."
        )
    for name, p in model.named_parameters():
        if name.startswith("head."):
            p.requires_grad_(True)
        else:
            p.requires_grad_(not is_frozen(model.stage_of(name), phase.frozen, n))


def set_train_mode(model: TransferModel, freeze_bn: bool = False) -> None:
    """model.train(), except BatchNorm layers whose parameters are frozen (or all of them, `freeze_bn`): their
    running statistics stay put and they normalise with them."""
    from torch.nn.modules.batchnorm import _BatchNorm

    model.train()
    for m in model.net.modules():
        if isinstance(m, _BatchNorm) and (freeze_bn or not any(p.requires_grad for p in m.parameters(recurse=False))):
            m.eval()


def param_groups(
    model: TransferModel, lr: float, backbone_lr_mult: float, weight_decay: float, layer_decay: float = 1.0
) -> list[dict]:
    """Head at `lr`, trainable backbone at `lr * backbone_lr_mult`; no weight decay on biases and norm weights.

    layer_decay < 1 (BEiT/ELECTRA's layer-wise decay) splits the backbone by stage: stage i of n trains at
    lr * backbone_lr_mult * layer_decay ** (n - 1 - i), the stem (stage -1) at layer_decay ** n, and the layers
    after the last stage (stage n, e.g. conv_head) as the last stage: 7 stages and 0.8 give the stem 0.8 ** 7 = 0.21
    of the last stage's LR. Those groups are named "backbone.s<i>", "backbone.stem" and "backbone.top" (plus
    "_no_decay") and carry their factor as "layer_scale"."""
    n = len(model.cfg.stages)
    split = layer_decay < 1
    groups: dict[tuple[bool, int, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = name.startswith("head.")
        stage = model.stage_of(name) if split and not is_head else 0
        groups.setdefault((is_head, stage, p.ndim > 1), []).append(p)
    out = []
    for (is_head, stage, decays), params in groups.items():
        # the stem's exponent: n - 1 - (-1) = n; the top's: 0, as the last stage's
        scale = layer_decay ** max(0, n - 1 - stage) if split and not is_head else 1.0
        where = "head" if is_head else f"backbone.{_stage_label(stage, n)}" if split else "backbone"
        group = {
            "params": params,
            "lr": lr if is_head else lr * backbone_lr_mult * scale,
            "weight_decay": weight_decay if decays else 0.0,
            "name": where + ("" if decays else "_no_decay"),
        }
        if split:
            group["layer_scale"] = scale  # metrics.csv's lr column shows the first group at 1 (trainer.py)
        out.append(group)
    return out


def _stage_label(stage: int, n: int) -> str:
    return "stem" if stage < 0 else "top" if stage >= n else f"s{stage}"
