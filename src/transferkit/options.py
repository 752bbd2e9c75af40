"""Options checked once, before any data is read or model built: `fit(**overrides)` and every command go through here.

    cfg = apply_overrides(RunConfig(), {"epochs": 3, "backbone": "timm:resnet18"})
    validate(cfg)                     # ConfigError naming the option, the value and the valid choices
    check_values(fields_of(PredictOptions), options)   # a command's own options: choices and bounds

Imports no torch (the registry check reads names only), so a wrong option fails in well under a second.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any, Literal

from .config import OptionField, RunConfig, cache_home, comma_names, option_fields
from .errors import ConfigError, unknown_choice
from .faults import check_folder

# Options `--resume` may change: they lengthen or shorten what is left, never what was already trained.
RESUMABLE = ("epochs", "patience", "quiet")
# Options read by their own parser, which names what is wrong in any form given ('0.7,0.15,0.15' or a list)
PARSED = ("split",)
# Columns of a list file, named or given as a 0-based index (an int from Python, text from the CLI)
INDEXED = ("path_column", "label_column", "target_column")


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """fit(..., epochs=3, backbone="timm:resnet18") -> the matching field of whichever sub-config has it.
    None leaves a field as it is (an option that was not given)."""
    fields = {f.name: f for f in option_fields()}
    for key, value in overrides.items():
        if key not in fields:
            raise unknown_choice("option", key, sorted(fields))
        if value is not None:
            fields[key].set(cfg, value)
    return cfg


def check_values(fields: list[OptionField], obj: Any) -> None:
    """Each field's value against its declaration: one of its `Literal` choices, within its min/max. `obj` is a
    RunConfig or a command's options (config.py); a ConfigError names the flag, the value and what is allowed."""
    for f in fields:
        value = f.get(obj)
        index = f.name in INDEXED and isinstance(value, numbers.Integral) and not isinstance(value, bool)
        wrong = None if f.name in PARSED or index else type_mismatch(f.type, value)
        if wrong:  # a --config file or fit(epochs="1") reaches here unparsed: refused before any work, not mid-run
            raise ConfigError(f"{f.flag} {value!r} ({type(value).__name__}): give {wrong}. ({f.opt.help})")
        if f.choices is not None and value not in f.choices and value is not None:
            raise unknown_choice(f.flag, value, f.choices)
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            lo, hi = f.opt.min, f.opt.max
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                bounds = (
                    f"at least {lo:g}" if hi is None else f"{lo:g} to {hi:g}" if lo is not None else f"at most {hi:g}"
                )
                raise ConfigError(f"{f.flag} {value}: give {bounds}. ({f.opt.help})")


def type_mismatch(kind: Any, value: Any) -> str | None:
    """What `value` should have been, or None when it fits the declared type `kind` (config.py's annotations: bool,
    int, float, str, Path, `X | None`, Literal[...], tuple[float, ...]). A bool is not a number (True would train 1
    epoch), an int is a float, a str is a Path; a tuple's length is checked (--crop-scale takes two numbers)."""
    import typing

    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union or type(kind).__name__ == "UnionType":  # `int | None`
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return type_mismatch(options[0], value) if len(options) == 1 else None
    if origin is Literal:
        return None  # the choices are checked by name, with the valid ones listed
    if origin is tuple:
        each, many = (args[0], True) if len(args) == 2 and args[1] is Ellipsis else (args[0], False)
        n = "" if many else f"{len(args)} "
        what = f"{n}{'numbers' if each is float else 'paths'}"
        if not isinstance(value, (tuple, list)) or (not many and len(value) != len(args)):
            return what
        return what if any(type_mismatch(each, v) for v in value) else None
    number = isinstance(value, numbers.Real) and not isinstance(value, bool)  # NumPy's numbers too
    checks = {
        bool: (isinstance(value, bool), "true or false"),
        int: (number and isinstance(value, numbers.Integral), "a whole number"),
        float: (number, "a number"),
        # text: also a path (out=tmp_path) or a list of names (backbones=["a", "b"], as comma_names reads them)
        str: (isinstance(value, (str, os.PathLike)) or _names(value), "text"),
        Path: (isinstance(value, (str, os.PathLike)), "a path"),
    }
    ok, what = checks.get(kind, (True, ""))
    return None if ok else what


def _names(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def validate(cfg: RunConfig, backbones: list[str] = ()) -> None:
    """Every option checked before any data is read or any model is built: choices and bounds from the fields'
    declarations (config.py), then the options whose values are names or patterns. backbones: the ones a command
    builds beside the run's own (compare's rows, rank's candidates), which --arch may belong to."""
    from .backbones import check_backbone_name
    from .backbones.heads import parse_head
    from .data.split import parse_split
    from .strategies import parse_strategy

    check_values(option_fields(), cfg)
    if parse_strategy(cfg.train.strategy).name == "two-phase" and cfg.train.epochs < 2:
        # --epochs is the most in all; two-phase's head and fine-tune phases take at least one each
        raise ConfigError(
            f"--strategy two-phase --epochs {cfg.train.epochs}: two-phase trains the head, then everything, an epoch "
            "at least each: give --epochs 2 or more, or --strategy linear for the head alone."
        )
    parse_head(cfg.model.head)
    cfg.data.split = parse_split(cfg.data.split)
    check_backbone_name(cfg.model.backbone)
    if cfg.model.backbones is not None:
        names = comma_names(cfg.model.backbones)
        if not names:
            raise ConfigError(
                "--backbones names none: give comma-separated backbones, e.g. efficientnet_lite0,timm:resnet18."
            )
        for name in names:
            try:
                check_backbone_name(name)  # a typo fails here, before `auto` reads the data
            except ConfigError as e:
                raise ConfigError(f"--backbones: {e}") from None
    named = [cfg.model.backbone, *comma_names(cfg.model.backbones or ""), *backbones]
    if cfg.model.arch and not any(n.startswith("file:") for n in named):
        raise ConfigError(
            f"--arch {cfg.model.arch} says which architecture a weights file is (--backbone file:PATH); --backbone "
            f"{cfg.model.backbone} names its own. Leave --arch out, or give --backbone file:PATH --arch {cfg.model.arch}."
        )
    if cfg.train.head_solver == "lbfgs" and parse_head(cfg.model.head)[0] != "linear":
        raise ConfigError(
            f"--head-solver lbfgs fits a logistic regression, so it needs --head linear (not "
            f"'{cfg.model.head}'); use --head-solver adamw or auto for an mlp head."
        )
    lo, hi = cfg.data.crop_scale
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"--crop-scale {lo} {hi}: give two area fractions 0 < low <= high <= 1, e.g. 0.35 1.0.")
    check_task_options(cfg)
    check_cache_dir(cfg.runtime.cache_dir)
    if cfg.train.cv == 1:
        raise ConfigError("--cv 1: one fold holds out everything it trains on; give 0 (off) or K >= 2, e.g. --cv 5.")


def check_task_options(cfg: RunConfig) -> None:
    """Refuse, by name, an option the run's task cannot use (rather than ignore it). What each kind of label takes
    is said by the kind (data/targets.py), not by testing the task's name here."""
    from .data.targets import kind_of

    task = cfg.train.task
    kind = kind_of(task)
    if cfg.data.target_column and not kind.reads_target_column:
        raise ConfigError(
            f"--target-column is for --task regression; with --task {task} the labels' column is --label-column."
        )
    if cfg.data.target_column and cfg.data.label_column:
        raise ConfigError("Give the regression target's column once: --target-column (or --label-column), not both.")
    if cfg.train.loss != "mse" and not kind.picks_loss:
        raise ConfigError(f"--loss {cfg.train.loss} is for --task regression; {task} trains with its own loss.")
    for option, (allowed, why) in kind.option_limits.items():
        value = next(getattr(part, option) for part in (cfg.data, cfg.model, cfg.train) if hasattr(part, option))
        if not (allowed(value) if callable(allowed) else value in allowed):
            flag = "--" + option.replace("_", "-")
            raise ConfigError(f"{flag} {value} cannot be used with --task {task}: {why}.")


def check_cache_dir(cache_dir: str | None) -> None:
    """Refuse a cache folder that is a file (or lies under one), creating nothing. The feature store treats a folder
    it cannot write as no cache at all, so a file there would mean every run extracts every image again, unsaid."""
    path = cache_home(cache_dir)
    if cache_dir:
        given, fix = f"--cache-dir '{cache_dir}'", "give a folder (it is created if missing)"
    elif os.environ.get("TRANSFERKIT_CACHE"):
        given, fix = (
            f"$TRANSFERKIT_CACHE '{path}'",
            "set it to a folder (it is created if missing), or give --cache-dir",
        )
    else:
        given, fix = f"The cache folder '{path}'", "give --cache-dir FOLDER or set $TRANSFERKIT_CACHE"
    check_folder(path, given, fix)
