"""`torchvision:<name>`: torchvision's classification zoo, pretrained from torchvision's hub for users with a network."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import unknown_choice
from .cfg import BackboneCfg
from .hub import offline_error
from .registry import register_scheme

if TYPE_CHECKING:  # registering on import costs no torch import
    from torch import nn

# name -> (classifier path: the last Linear/Conv that maps to 1000 classes, stage container or None)
TORCHVISION_MODELS: dict[str, tuple[str, str | None]] = {
    **{f"resnet{d}": ("fc", None) for d in (18, 34, 50, 101, 152)},
    "resnext50_32x4d": ("fc", None),
    "wide_resnet50_2": ("fc", None),
    "vgg16": ("classifier.6", "features"),
    "vgg16_bn": ("classifier.6", "features"),
    "vgg19": ("classifier.6", "features"),
    "alexnet": ("classifier.6", "features"),
    "densenet121": ("classifier", "features"),
    "densenet169": ("classifier", "features"),
    "squeezenet1_0": ("classifier.1", "features"),
    "squeezenet1_1": ("classifier.1", "features"),
    "inception_v3": ("fc", None),
    "googlenet": ("fc", None),
    "shufflenet_v2_x1_0": ("fc", None),
    "mobilenet_v2": ("classifier.1", "features"),
    "mobilenet_v3_small": ("classifier.3", "features"),
    "mobilenet_v3_large": ("classifier.3", "features"),
    **{f"efficientnet_b{i}": ("classifier.1", "features") for i in range(8)},
    "convnext_tiny": ("classifier.2", "features"),
    "regnet_y_400mf": ("fc", None),
}
_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")
_AUX = ("AuxLogits", "aux1", "aux2")


@register_scheme(
    "torchvision",
    "torchvision's classification zoo; pretrained weights with a network",
    names=lambda: list(TORCHVISION_MODELS),
)
def build_torchvision(model_name: str, pretrained: bool, arch: str | None = None) -> tuple[nn.Module, BackboneCfg]:
    import torchvision.models as tvm

    from .modules import child_stages, in_features

    if model_name not in TORCHVISION_MODELS:
        raise unknown_choice("torchvision model", model_name, TORCHVISION_MODELS)
    classifier, container = TORCHVISION_MODELS[model_name]
    weights = tvm.get_model_weights(model_name).DEFAULT
    kwargs = {}
    if model_name in ("inception_v3", "googlenet"):
        kwargs = {"aux_logits": True, "init_weights": False}  # the pretrained checkpoints include the aux heads
    try:
        net = tvm.get_model(model_name, weights=weights if pretrained else None, **kwargs)
    except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError
        raise offline_error("torchvision:" + model_name, e) from e
    for aux in _AUX:  # auxiliary heads only matter for training from scratch on ImageNet; they complicate outputs
        if hasattr(net, aux):
            setattr(net, aux, None)
    if hasattr(net, "aux_logits"):
        net.aux_logits = False
    preset = weights.transforms()
    size = int(preset.crop_size[0])
    resize = int(preset.resize_size[0])
    if container:
        stages = child_stages(net, container)
    elif model_name.startswith(("resnet", "resnext", "wide_resnet")):
        stages = _RESNET_STAGES
    else:
        stages = child_stages(net, skip=(classifier.split(".")[0], *_AUX))
    cfg = BackboneCfg(
        name="torchvision:" + model_name,
        arch="torchvision:" + model_name,
        input_size=size,
        crop_pct=round(size / resize, 4),
        interpolation=str(preset.interpolation.value),
        mean=tuple(preset.mean),
        std=tuple(preset.std),
        classifier=classifier,
        num_features=in_features(net.get_submodule(classifier)),
        stages=stages,
        imagenet_top1=weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1"),
        offline=False,
        min_input=int(max(weights.meta.get("min_size", (0, 0)))),  # inception_v3: 75 px
    )
    return net, cfg
