"""`timm:<name>`: any timm model, pretrained from its usual hub for users with a network."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import unknown_choice
from .cfg import BackboneCfg
from .hub import cached_hf_file, offline_error, reachable
from .registry import register_scheme

if TYPE_CHECKING:  # registering on import costs no torch import
    from torch import nn


def _stages(net: nn.Module) -> tuple[str, ...]:
    from torch import nn

    from .modules import child_stages

    for container in ("blocks", "stages", "layers", "features"):
        mod = getattr(net, container, None)
        if isinstance(mod, (nn.Sequential, nn.ModuleList)) and len(mod) > 1:
            return child_stages(net, container)
    names = [f["module"] for f in getattr(net, "feature_info", [])]
    names = [n for n in names if any(True for _ in net.get_submodule(n).parameters())]
    return tuple(names) or child_stages(net)


def _timm_names() -> list[str]:
    import timm

    return timm.list_models()


@register_scheme("timm", "any timm model; pretrained weights from its hub, with a network", names=_timm_names)
def build_timm(model_name: str, pretrained: bool, arch: str | None = None) -> tuple[nn.Module, BackboneCfg]:
    import timm

    if not timm.is_model(model_name):
        raise unknown_choice("timm model", model_name, timm.list_models(), hint="`timm.list_models()` lists them all.")
    overlay = {}
    if pretrained:
        hub_id = getattr(timm.models.get_pretrained_cfg(model_name), "hf_hub_id", None)
        cached = cached_hf_file(hub_id) if hub_id else None
        if cached:  # already downloaded: load it without touching the network
            overlay = {"pretrained_cfg_overlay": {"file": cached}}
        elif not reachable("huggingface.co"):
            raise offline_error("timm:" + model_name, OSError("huggingface.co cannot be reached"))
    try:
        net = timm.create_model(model_name, pretrained=pretrained, **overlay)
    except (OSError, RuntimeError, ValueError) as e:  # hub errors are OSError subclasses; no weights -> RuntimeError
        raise offline_error("timm:" + model_name, e) from e
    pc = net.pretrained_cfg
    classifier = pc.get("classifier") or "classifier"
    if isinstance(classifier, (list, tuple)):  # distilled models have two heads; the first is the one used
        classifier = classifier[0]
    cfg = BackboneCfg(
        name="timm:" + model_name,
        arch="timm:" + model_name,
        input_size=int(pc.get("input_size", (3, 224, 224))[-1]),
        crop_pct=float(pc.get("crop_pct", 0.875)),
        interpolation=str(pc.get("interpolation", "bicubic")),
        mean=tuple(pc.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(pc.get("std", (0.229, 0.224, 0.225))),
        classifier=classifier,
        num_features=int(
            getattr(net, "head_hidden_size", None) or net.num_features
        ),  # after a pre-logits layer (MobileNetV3) they differ
        stages=_stages(net),
        imagenet_top1=None,
        offline=False,
        # a fixed input size (ViTs' position embeddings) is the only one; else timm's stated minimum, if any
        min_input=int(pc.get("input_size", (3, 224, 224))[-1])
        if pc.get("fixed_input_size")
        else int((pc.get("min_input_size") or (3, 0, 0))[-1]),
        extra={"timm_reset": True},
    )
    return net, cfg
