"""The model bundle: `model.safetensors` + `transferkit.json`. Self-contained (no weights file or hub needed to
load it) and safe (loading executes no pickle).

    save_bundle("runs/x/best", model, meta)
    model, meta = load_bundle("runs/x/best")
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
WEIGHTS, META = "model.safetensors", "transferkit.json"


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("transferkit", "torch", "torchvision", "timm", "accelerate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def bundle_meta(model, classes: list[str], image_size: int, strategy: str, task: str = "classification", **extra) -> dict[str, Any]:
    cfg = model.cfg
    return {
        "format_version": FORMAT_VERSION,
        "task": task,  # the head's job; "classification" today, the bundle format leaves room for others
        "backbone": cfg.name,
        "arch": cfg.arch,
        "backbone_cfg": cfg.to_dict(),
        "head": model.head_spec,
        "dropout": extra.pop("dropout", 0.0),
        "classes": list(classes),
        "preprocessing": {
            "image_size": image_size,
            "crop_pct": cfg.crop_pct,
            "interpolation": cfg.interpolation,
            "mean": list(cfg.mean),
            "std": list(cfg.std),
        },
        "strategy": strategy,
        "versions": versions(),
        **extra,
    }


def save_bundle(path: str | os.PathLike, model, meta: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / (WEIGHTS + ".tmp")), metadata={"format": "pt"})
    os.replace(path / (WEIGHTS + ".tmp"), path / WEIGHTS)
    (path / META).write_text(json.dumps(meta, indent=2, default=str))
    return path


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    from .errors import TransferkitError

    path = Path(path)
    if (path / "best" / META).is_file():  # a run directory: its best model
        path = path / "best"
    if not (path / META).is_file():
        raise TransferkitError(
            f"'{path}' is not a transferkit model: it has no {META}. Give a run's best/ folder (or the run folder)."
        )
    meta = json.loads((path / META).read_text())
    meta["_path"] = str(path)
    return meta


def load_bundle(path: str | os.PathLike):
    """(TransferModel in eval mode, meta). Builds the architecture without pretrained weights, then loads the bundle's."""
    from dataclasses import fields

    from safetensors.torch import load_file

    from .backbones import create_backbone
    from .backbones.model import TransferModel
    from .backbones.registry import BackboneCfg

    meta = read_meta(path)
    net, _ = create_backbone(meta["arch"], pretrained=False)
    names = {f.name for f in fields(BackboneCfg)}
    stored = {k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["backbone_cfg"].items() if k in names}
    cfg = BackboneCfg(**stored)
    model = TransferModel(net, cfg, num_outputs=len(meta["classes"]), head=meta["head"], dropout=meta.get("dropout", 0.0))
    model.load_state_dict(load_file(str(Path(meta["_path"]) / WEIGHTS)), strict=True)
    return model.eval(), meta
