"""`bundle:<path>`: a model transferkit trained, as the backbone of a new one, from any task to any task.

    transferkit train houses/ --task regression --backbone bundle:runs/proxy/best --strategy finetune
    net, cfg = create_backbone("bundle:runs/digits/best")   # cfg.input_size: the size the bundle was trained at

The bundle's body keeps its trained weights and its preprocessing: image size, crop, interpolation and mean/std are
the ones it learnt its features at, so they replace the architecture's defaults (`--image-size` still overrides).
Its head sits where the architecture's classifier sat, so the new model drops it as it drops an ImageNet head, and
`rank` reads a classification bundle's class probabilities for LEEP/NCE as it reads ImageNet's. `cfg.arch` stays the
bundle's own architecture, so a model trained from a bundle is rebuilt without it.

`--strategy scratch` builds the bundle's architecture, at the bundle's preprocessing, with random weights: the
control that tells what the bundle's weights bring (the bundle is still read and checked).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, TransferkitError
from .depth import depth_of, detach, without_depth
from .registry import create_backbone, register_scheme

if TYPE_CHECKING:  # registering on import costs no torch import
    from torch import nn

    from .cfg import BackboneCfg


def _folder(path_str: str) -> Path:
    path = Path(path_str).expanduser()
    if not path.exists():
        raise ConfigError(
            f"--backbone bundle:{path_str}: '{path}' does not exist. Give a trained model's folder: a run's best/ "
            "folder (model.safetensors + transferkit.json) or the run folder."
        )
    if path.is_file():
        raise ConfigError(
            f"--backbone bundle:{path_str}: '{path}' is a file; give the folder that holds model.safetensors and "
            f"transferkit.json (here: bundle:{path.parent})."
        )
    return path


def _written_by(path: Path) -> str:
    """' (written by transferkit X; this is Y)' when the bundle says another version wrote it, else ''."""
    from ..bundle import META, versions

    for file in (path / META, path / "best" / META):
        try:
            theirs = json.loads(file.read_text(encoding="utf-8"))["versions"]["transferkit"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        ours = versions().get("transferkit")
        return f" (written by transferkit {theirs}; this is {ours})" if theirs != ours else ""
    return ""


def _refused(path_str: str, path: Path, e: TransferkitError) -> ConfigError:
    return ConfigError(f"--backbone bundle:{path_str} cannot be used: {e}{_written_by(path)}")


def check_bundle(path_str: str) -> None:
    """The option check: the folder exists and its transferkit.json is one this transferkit reads (no torch)."""
    from ..bundle import read_meta

    path = _folder(path_str)
    try:
        read_meta(path)
    except TransferkitError as e:
        raise _refused(path_str, path, e) from e


def _weights_key(folder: Path, meta: dict) -> str:
    """What the feature cache knows the weights by: the file, its size and mtime, and the id its save wrote in both
    files. A retrained or replaced bundle at the same path gets new features."""
    from ..bundle import WEIGHTS

    file = (folder / WEIGHTS).resolve()
    st = file.stat()
    return f"bundle|{file}|{st.st_size}|{st.st_mtime_ns}|{meta.get('weights_id', '')}"


def _attach_head(net: nn.Module, classifier: str, head: nn.Module) -> None:
    """Put the bundle's head where the classifier was (timm's reset_classifier left an Identity there)."""
    from .modules import set_submodule

    try:
        set_submodule(net, classifier, head)
    except AttributeError:  # a classifier path the reset removed: no source head for LEEP, nothing else changes
        pass


def _identity() -> nn.Module:
    from torch import nn

    return nn.Identity()


@register_scheme(
    "bundle",
    "a model transferkit trained (a run's best/ folder): its body and preprocessing, its head dropped",
    check=check_bundle,
)
def build_from_bundle(path_str: str, pretrained: bool, arch: str | None = None) -> tuple[nn.Module, BackboneCfg]:
    """`arch` is ignored: a bundle knows its architecture."""
    from ..bundle import load_bundle

    path = _folder(path_str)
    try:
        model, meta = load_bundle(path)  # every check of a bundle (JSON, weights, the two matching)
    except TransferkitError as e:
        raise _refused(path_str, path, e) from e
    folder = Path(meta["_path"])
    pre = meta["preprocessing"]
    base = without_depth(model.cfg)  # its body's last layer: the new run chooses its own --features
    if depth_of(model.cfg):
        detach(model.net)
    cfg = replace(
        base,
        name="bundle:" + path_str,
        input_size=pre["image_size"],  # the size its features were trained at: new runs default to at most it
        crop_pct=pre["crop_pct"],
        interpolation=pre["interpolation"],
        mean=tuple(pre["mean"]),
        std=tuple(pre["std"]),
        imagenet_top1=None,  # its features are no longer ImageNet's: the prior says nothing about them
        offline=True,
        extra={
            **{k: v for k, v in base.extra.items() if k not in ("bundle", "weights_key", "load_report")},
            "bundle": {
                "path": str(folder.resolve()),
                "task": meta.get("task", "classification"),
                "outputs": len(meta["classes"]),
                "backbone": meta.get("backbone"),  # what it was trained from (itself a bundle: a chain)
                "strategy": meta.get("strategy"),
                "weights_id": meta.get("weights_id"),
            },
            "weights_key": _weights_key(folder, meta),
        },
    )
    if not pretrained:  # scratch: the architecture alone, with the architecture's own classifier
        net, _ = create_backbone(base.arch, pretrained=False)
        return net, cfg
    net = model.net.train()  # load_bundle returns eval mode; a fresh backbone is in train mode
    # Its head where the classifier was, whatever its task: dropped as an ImageNet head is; `rank` reads it for
    # LEEP/NCE only where the task's head gives class logits (Task.class_logits, selection/frozen.py).
    # A head on features from several depths cannot read the last layer's alone: an Identity, no LEEP/NCE.
    _attach_head(net, base.classifier, model.head if not depth_of(model.cfg) else _identity())
    return net, cfg
