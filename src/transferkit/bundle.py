"""The model bundle: `model.safetensors` + `transferkit.json`. Self-contained (no weights file or hub needed to
load it) and safe (loading executes no pickle).

    save_bundle("runs/x/best", model, meta)
    model, meta = load_bundle("runs/x/best")
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any

from .errors import TransferkitError
from .faults import atomic_path, write_atomic

FORMAT_VERSION = 1
WEIGHTS, META = "model.safetensors", "transferkit.json"
# Caps on the sizes a bundle asks for, so that an edited or damaged transferkit.json is refused instead of making
# every prediction resize to, or allocate, something absurd (image_size 100000 is 10^10 pixels per image). The
# largest input of a common backbone is 600 px (EfficientNet-B7) or 518 px (DINOv2); 2048 px is 3.4x that side.
MAX_IMAGE_SIZE = 2048
MAX_RESIZE = 2 * MAX_IMAGE_SIZE  # image_size / crop_pct: the side images are resized to before the centre crop
MAX_WIDTH = 1 << 16  # feature width and mlp hidden units: the widest backbones pool 4096 features (65536 is 16x)
MAX_CLASSES = 1 << 20  # ImageNet-21k has 21,841 classes
REQUIRED = {"arch": str, "backbone_cfg": dict, "classes": list, "head": str, "preprocessing": dict}


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("transferkit", "torch", "torchvision", "timm", "accelerate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def bundle_meta(
    model, classes: list[str], image_size: int, strategy: str, task: str = "classification", **extra
) -> dict[str, Any]:
    cfg = model.cfg
    return {
        "format_version": FORMAT_VERSION,
        "task": task,  # a key of tasks.TASKS: `load` post-processes and formats answers by it
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
    """Write the weights, then transferkit.json, each replaced in one rename. Both carry the same `weights_id`, so a
    kill between the two renames (new weights, old JSON) is told apart from a bundle at load time."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights_id = uuid.uuid4().hex
    with atomic_path(path / WEIGHTS, size=sum(t.nbytes for t in state.values())) as tmp:  # for a full disk
        save_file(state, str(tmp), metadata={"format": "pt", "weights_id": weights_id})
    write_meta(path, {**meta, "weights_id": weights_id})
    return path


def write_meta(path: str | os.PathLike, meta: dict[str, Any]) -> None:
    """(Re)write a bundle's transferkit.json in one rename (keys starting with '_', added by read_meta, are left out):
    for whatever adds to it after training (test metrics, calibration)."""
    meta = {k: v for k, v in meta.items() if not k.startswith("_")}
    write_atomic(Path(path) / META, json.dumps(meta, indent=2, default=str))


def update_meta(path: str | os.PathLike, **fields) -> dict[str, Any]:
    """Set top-level fields of a bundle's transferkit.json (test metrics, calibration), written in one rename."""
    from .rundir import RunDir

    return RunDir(path).update_json(META, **fields)


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """A bundle's transferkit.json, checked: a file that is not JSON, lacks what loading needs or asks for absurd
    sizes raises TransferkitError naming the file."""
    path = Path(path)
    if (path / "best").is_dir() and not (path / META).is_file():  # a run directory: its best model
        path = path / "best"
    file = path / META
    if not file.is_file():
        cut = (
            " It has model.safetensors without it: a run killed while saving its first best model? Continue the run "
            "with `transferkit train --resume RUN_DIR`, or train again."
            if (path / WEIGHTS).is_file()
            else " An ONNX export is read by `predict --runtime onnx` or `serve`."
            if path.suffix.lower() == ".onnx"
            else ""
        )
        raise TransferkitError(
            f"'{path}' is not a transferkit model: it has no {META}. Give a run's best/ folder (or the run folder).{cut}"
        )
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TransferkitError(
            f"'{file}' is not valid JSON ({e}). It was edited or cut short: put back the bundle's "
            f"own copy (it is written with {WEIGHTS}), or train again."
        ) from e
    _check_meta(meta, file)
    meta["_path"] = str(path)
    return meta


def _check_meta(meta: Any, file: Path) -> None:
    def bad(what: str) -> TransferkitError:
        return TransferkitError(
            f"'{file}' {what}, so the model cannot be loaded. The file was edited or damaged: put "
            f"back the bundle's own copy (it is written with {WEIGHTS}), or train again."
        )

    if not isinstance(meta, dict):
        raise bad(f"holds a JSON {type(meta).__name__}, not the object transferkit writes")
    version = meta.get("format_version", FORMAT_VERSION)
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise TransferkitError(
            f"'{file}' is bundle format {version}, written by a newer transferkit (this one reads "
            f"format {FORMAT_VERSION}). Upgrade: pip install -U transferkit."
        )
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise bad(f"misses {', '.join(repr(k) for k in missing)}")
    for key, kind in REQUIRED.items():
        if not isinstance(meta[key], kind):
            raise bad(f"has '{key}' as a JSON {type(meta[key]).__name__}, where a {kind.__name__} belongs")
    classes = meta["classes"]
    if not classes or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
        raise bad("has 'classes' that are not a list of distinct names")
    if len(classes) > MAX_CLASSES:
        raise bad(f"lists {len(classes):,} classes (more than the {MAX_CLASSES:,} allowed)")
    pre = meta["preprocessing"]
    for key in ("image_size", "crop_pct", "interpolation", "mean", "std"):
        if key not in pre:
            raise bad(f"misses 'preprocessing.{key}'")
    size, crop = pre["image_size"], pre["crop_pct"]
    if not _is_int(size) or not 16 <= size <= MAX_IMAGE_SIZE:
        raise bad(
            f"asks for image_size {size!r}: it must be a whole number of pixels from 16 to {MAX_IMAGE_SIZE} "
            f"(larger inputs would take minutes and gigabytes per image)"
        )
    if not _is_number(crop) or not crop > 0 or math.floor(size / crop) > MAX_RESIZE:
        raise bad(
            f"asks for crop_pct {crop!r}: images would be resized to image_size / crop_pct, which must be a "
            f"positive fraction giving at most {MAX_RESIZE} px"
        )
    for key in ("mean", "std"):
        v = pre[key]
        if not (isinstance(v, list) and len(v) == 3 and all(_is_number(x) for x in v)) or (
            key == "std" and min(v) <= 0
        ):
            raise bad(
                f"has preprocessing.{key} {v!r}: three numbers (one per RGB channel{', each above 0' if key == 'std' else ''}) belong there"
            )
    width = meta["backbone_cfg"].get("num_features")
    if not _is_int(width) or not 0 < width <= MAX_WIDTH:
        raise bad(f"has backbone_cfg.num_features {width!r}: a feature width from 1 to {MAX_WIDTH} belongs there")
    kind, _, hidden = meta["head"].partition(":")
    if not (
        meta["head"] in ("linear", "prototypes")
        or (kind == "mlp" and hidden.isdigit() and 0 < int(hidden) <= MAX_WIDTH)
    ):
        raise bad(
            f"has head {meta['head']!r}: 'linear', 'prototypes' or 'mlp:<hidden units, 1 to {MAX_WIDTH}>' belongs there"
        )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _read_weights(file: Path) -> tuple[dict, dict[str, str]]:
    """(tensors, the safetensors header's metadata) of a bundle's weights; a damaged file raises TransferkitError."""
    from safetensors import safe_open

    if not file.is_file():
        raise TransferkitError(
            f"'{file.parent}' has {META} but no {WEIGHTS}: copy the bundle folder whole, or train again."
        )
    try:
        with safe_open(str(file), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError, ...: all mean the file cannot be used
        raise TransferkitError(
            f"'{file}' is not a readable safetensors file ({e}): it is cut short or damaged (a copy "
            f"that did not finish?). Copy the bundle again, or train again."
        ) from e


def _mismatch(model, state: dict, meta: dict[str, Any]) -> str | None:
    """What differs between the tensors the model built from transferkit.json needs and those in the weights file."""
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    wrong = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    if not (missing or extra or wrong):
        return None
    parts = []
    head_bias = [k for k in want if k.startswith("head.") and k.endswith(".bias")]
    if head_bias and head_bias[-1] in wrong:  # the usual case: the class list and the head disagree
        parts.append(
            f"its head has {state[head_bias[-1]].shape[0]} outputs but {META} lists {len(meta['classes'])} classes"
        )
    elif wrong:
        k = wrong[0]
        parts.append(
            f"{k} is {tuple(state[k].shape)} in it but {tuple(want[k].shape)} in the model {META} describes"
            + (f" ({len(wrong)} tensors differ)" if len(wrong) > 1 else "")
        )
    if missing:
        parts.append(f"{len(missing)} tensor(s) the model needs are not in it (e.g. {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} tensor(s) in it belong to no part of the model (e.g. {extra[0]})")
    return "; ".join(parts)


def load_bundle(path: str | os.PathLike):
    """(TransferModel in eval mode, meta). Builds the architecture without pretrained weights, then loads the bundle's.
    Every way the two files can be unusable (damaged, from different saves, not matching each other) raises
    TransferkitError naming the file."""
    from dataclasses import fields

    from .backbones.cfg import BackboneCfg
    from .backbones.model import TransferModel

    # The registry, not the package: backbones/bundles.py (the `bundle:` scheme) imports this module. Importing the
    # registry runs backbones/__init__.py all the same, so every scheme is registered.
    from .backbones.registry import create_backbone

    meta = read_meta(path)
    folder = Path(meta["_path"])
    state, header = _read_weights(folder / WEIGHTS)
    if "weights_id" in meta and header.get("weights_id") != meta["weights_id"]:
        raise TransferkitError(
            f"'{folder}' holds {WEIGHTS} and {META} from two different saves (a run killed while saving its best "
            f"model?). Continue the run with `transferkit train --resume {folder.parent}`, which saves it again, or "
            f"train again."
        )
    net, _ = create_backbone(meta["arch"], pretrained=False)
    names = {f.name for f in fields(BackboneCfg)}
    stored = {k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["backbone_cfg"].items() if k in names}
    try:
        cfg = BackboneCfg(**stored)
    except TypeError as e:  # a required field is missing
        raise TransferkitError(
            f"'{folder / META}' has an incomplete backbone_cfg ({e}): put back the bundle's own copy, or train again."
        ) from e
    # One output per name in `classes` (the classes; for every task the names of the head's outputs).
    model = TransferModel(
        net, cfg, num_outputs=len(meta["classes"]), head=meta["head"], dropout=meta.get("dropout", 0.0)
    )
    why = _mismatch(model, state, meta)
    if why:
        raise TransferkitError(
            f"'{folder / WEIGHTS}' does not fit '{folder / META}': {why}. The two files come from "
            f"different models (one was replaced or edited): put back the pair saved together, "
            f"or train again."
        )
    model.load_state_dict(state, strict=True)
    return model.eval(), meta
