"""Every command's flags, made from dataclass fields in config.py: one declaration per option.

    @command("predict")     # COMMANDS["predict"]: PredictOptions, none of the run's options
    def predict(bundle: Path = typer.Argument(...), *, options: PredictOptions) -> None: ...

    @command("train")       # TrainCommandOptions, and every RunConfig option in --help panels by group
    def train(data: Path = typer.Argument(...), *, options, overrides: dict, typed: set) -> None: ...

`options` is the command's dataclass filled from the command line and checked against the fields' choices and
bounds (a wrong value: exit 2, with the valid ones); `overrides` is {field: value} for every RunConfig option the
command takes, defaults included; `typed` holds the names given on the command line. A field that defaults to True
appears as its negative flag (`--no-flip`), so every flag is one word and `--help` keeps its width for the help text.
Positional arguments (BUNDLE, DATA, ...) stay `typer.Argument`s of the command.

    python -m transferkit.cli.options        # prints the README's option tables (a test keeps them in step)
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from ..config import (
    GROUPS,
    AdviseOptions,
    CompareOptions,
    DemoOptions,
    DoctorOptions,
    EmbedOptions,
    EvaluateOptions,
    ExportOptions,
    LabelOptions,
    OptionField,
    PredictOptions,
    RankOptions,
    ReviewOptions,
    ServeOptions,
    SimilarOptions,
    SuggestOptions,
    TrainCommandOptions,
    TuneOptions,
    fields_of,
    option_fields,
)
from ..options import check_cache_dir, check_values

Select = Callable[[OptionField], bool]
OWN_PANEL = "Options"  # typer's first panel, where --help is: a command's own options go there unless they say


def everything(f: OptionField) -> bool:
    return f.opt.cli


def data_source(f: OptionField) -> bool:
    """How the data is read: every command that reads data takes these."""
    return f.opt.cli and f.opt.source


MEASURING = (
    "arch",  # a file: candidate's architecture
    "task",
    "split",
    "seed",
    "image_size",
    "batch_size",
    "device",
    "feature_precision",
    "threads",
    "cache_dir",
    "decode_store",
)


def measuring(f: OptionField) -> bool:
    """What `rank` and `advise` need: how the data is read and split, and how the frozen features are computed."""
    return data_source(f) or f.name in MEASURING


def all_but(*names: str) -> Select:
    return lambda f: everything(f) and f.name not in names


# What each command takes besides its arguments: its own options (a dataclass of config.py) and which of the run's
# (RunConfig's) options, None for none. The commands' flags and the README's tables are made from this table.
COMMANDS: dict[str, tuple[type, Select | None]] = {
    "train": (TrainCommandOptions, everything),
    "demo": (DemoOptions, None),
    "evaluate": (EvaluateOptions, data_source),
    "predict": (PredictOptions, None),
    "export": (ExportOptions, None),
    "serve": (ServeOptions, None),
    "doctor": (DoctorOptions, lambda f: data_source(f) or f.name in ("image_size", "task", "split", "seed")),
    "rank": (RankOptions, measuring),
    "advise": (AdviseOptions, lambda f: measuring(f) or f.name in ("backbone", "backbones", "budget")),  # auto's own
    # compare varies the strategy, the backbone and the seed itself, and names its own folder
    "compare": (CompareOptions, all_but("strategy", "backbone", "backbones", "seed", "out", "name", "quiet")),
    "review": (ReviewOptions, lambda f: measuring(f) or f.name == "backbone"),
    "embed": (EmbedOptions, lambda f: f.name in ("backbone", "arch", "image_size", "device", "cache_dir")),
    "similar": (SimilarOptions, lambda f: f.name in ("backbone", "image_size", "device", "cache_dir")),
    "label": (LabelOptions, lambda f: f.name in ("backbone", "device", "cache_dir")),  # how the pool is embedded
    # suggest embeds the pool (and --labelled) as rank does: the backbone and how its features are computed
    "suggest": (SuggestOptions, lambda f: f.name in ("backbone", "image_size", "device", "cache_dir", "seed")),
    # tune searches options itself (--space), keeps its own --budget and folder, and scores on val, not --cv
    "tune": (TuneOptions, all_but("budget", "out", "name", "quiet", "cv")),
}


def repeatable(f: OptionField) -> bool:
    """`tuple[Path, ...]`: a flag given once per value (`--check a --check b`)."""
    return typing.get_origin(f.type) is tuple and typing.get_args(f.type)[-1] is Ellipsis


def _cli_type(f: OptionField) -> Any:
    """The annotation typer sees: choices and patterns stay strings (check_values answers a wrong one with the valid
    choices, exit 2), the split is one comma-separated word, None-able numbers stay optional."""
    if f.name == "split" and f.part == "data":
        return str
    if repeatable(f):
        return Optional[list[typing.get_args(f.type)[0]]]  # noqa: UP045 - typer reads typing.Optional
    optional = type(None) in typing.get_args(f.type)
    if f.choices is not None:
        return Optional[str] if optional else str  # noqa: UP045 - typer reads typing.Optional
    if typing.get_origin(f.type) is tuple or not optional:
        return f.type
    return Optional[typing.get_args(f.type)[0]]  # noqa: UP045 - typer reads typing.Optional


def _metavar(f: OptionField) -> str | None:
    """Only where typer's own would read as Python: a pair of numbers, a repeatable path (not `<list[Path]>`)."""
    cli = _cli_type(f)
    if typing.get_origin(cli) is tuple:
        return "LO HI"
    if repeatable(f):
        item = typing.get_args(f.type)[0]
        return "<path>" if item is Path else f"<{item.__name__}>"
    return None


def _help(f: OptionField) -> str:
    text = f.opt.help
    if f.choices is not None:
        text += f" One of: {', '.join(map(str, f.choices))}."
    return text


def parameter(f: OptionField) -> inspect.Parameter:
    default = f.default
    if f.name == "split" and f.part == "data":
        default = ",".join(f"{x:g}" for x in default)
    panel = f.opt.group
    if f.type is bool:
        # One flag a field: `--strict` sets True; `--no-flip` sets flip to False (default False means "not given").
        info = typer.Option(False, *f.flags, help=f.opt.help, rich_help_panel=panel, metavar="", show_default=False)
        return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=bool)
    if repeatable(f):
        default = None  # typer gives () or the values; no default to show
    info = typer.Option(
        default,
        *f.flags,
        help=_help(f),
        rich_help_panel=panel,
        show_default=default is not None,
        metavar=_metavar(f),
    )
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=_cli_type(f))


def negated(f: OptionField) -> bool:
    return f.type is bool and f.default is True


def _from_cli(f: OptionField, value: Any) -> Any:
    """What typer gives -> the field's value: `--no-flip` given -> flip False; repeated flags -> a tuple."""
    if negated(f):
        return not value
    if repeatable(f):
        return tuple(value or ())
    return value


def _given(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def _own_fields(options: type | None) -> list[OptionField]:
    """A command's own options, the first panel (OWN_PANEL) first, then the others in the order they appear."""
    own = fields_of(options) if options is not None else []
    panels = list(dict.fromkeys([OWN_PANEL] + [f.opt.group for f in own]))
    return sorted(own, key=lambda f: panels.index(f.opt.group))


def _run_fields(config: Select | None) -> list[OptionField]:
    """The run's options a command takes, in panels in a fixed order (fields keep theirs inside)."""
    chosen = [f for f in option_fields() if config is not None and config(f)]
    return sorted(chosen, key=lambda f: GROUPS.index(f.opt.group))


def command(name: str) -> Callable:
    """Decorate the command `name` with the options COMMANDS gives it."""
    return with_options(*COMMANDS[name])


def with_options(options: type | None = None, config: Select | None = None) -> Callable:
    """Decorate a command: its signature gains one typer option per field of `options` (handed to it, filled and
    checked, as `options`) and per RunConfig field that `config` selects (handed to it as `overrides` and
    `typed`)."""
    own, chosen = _own_fields(options), _run_fields(config)
    generated = own + chosen
    names = [f.name for f in generated]

    def wrap(fn: Callable) -> Callable:
        signature = inspect.signature(fn)
        takes = {"options", "overrides", "typed"} & set(signature.parameters)
        if (options is not None) != ("options" in takes) or (config is not None) != ("overrides" in takes):
            raise TypeError(
                f"{fn.__name__} takes {sorted(takes)}: it takes `options` when it has its own options, and "
                "`overrides` (and `typed`, if it needs them) when it takes the run's"
            )
        given = [p for p in signature.parameters.values() if p.name not in takes]
        twice = {n for n in names if names.count(n) > 1 or n in {p.name for p in given}}
        if twice:
            raise TypeError(f"{fn.__name__}: options declared twice: {sorted(twice)}")

        @functools.wraps(fn)
        def run(_ctx: typer.Context, **kwargs):
            values = {f.name: _from_cli(f, kwargs.pop(f.name)) for f in generated}
            extra: dict[str, Any] = {}
            if options is not None:
                extra["options"] = options(**{f.name: values[f.name] for f in own})
                check_values(own, extra["options"])  # a ConfigError: the CLI prints it and exits with 2
            if config is not None:
                extra["overrides"] = {f.name: values[f.name] for f in chosen}
                if "cache_dir" in extra["overrides"]:  # embed, similar, ...: they do not all go through `validate`
                    check_cache_dir(extra["overrides"]["cache_dir"])
            if "typed" in takes:
                extra["typed"] = {n for n in names if _given(_ctx, n)}
            return fn(**kwargs, **extra)

        ctx_param = inspect.Parameter("_ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
        params = [ctx_param, *given, *[parameter(f) for f in generated]]
        # Positional-or-keyword parameters cannot follow keyword-only ones; typer reads names, not positions.
        run.__signature__ = inspect.Signature(
            [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if i else p for i, p in enumerate(params)]
        )
        run.option_fields = own  # for tests and docs
        run.config_fields = chosen
        return run

    return wrap


def _default(f: OptionField) -> str:
    if f.type is bool:
        return ""
    if isinstance(f.default, tuple) and f.default:
        # As the command line takes it: a pair is two values (--crop-scale 0.35 1), --split one comma-separated word
        sep = " " if typing.get_origin(_cli_type(f)) is tuple else ","
        return f"`{sep.join(f'{x:g}' for x in f.default)}`"
    if isinstance(f.default, tuple):
        return "–"  # a repeatable flag, given no times
    return "–" if f.default is None else f"`{f.default}`"


def _rows(fields: list[OptionField]) -> list[str]:
    out = ["| option | default | |", "|---|---|---|"]
    for f in fields:
        flags = " ".join(f"`{flag}`" for flag in f.flags)
        out.append(f"| {flags} | {_default(f)} | {_help(f).replace('|', '&#124;')} |")
    return out


def _also(chosen: list[OptionField]) -> str:
    """Which of the run's options (the panels' tables) a command takes too, in words."""
    every = [f for f in option_fields() if f.opt.cli]
    flags = [f"`{f.flag}`" for f in every if f not in chosen]
    if not flags:
        return "It takes every option in the tables above."
    if len(flags) < len(every) / 2:
        return f"It takes every option in the tables above but {', '.join(flags)}."
    return f"It takes, from the tables above: {', '.join(f'`{f.flag}`' for f in chosen)}."


def markdown_tables() -> str:
    """One table per --help panel of the run's options (train's), then one per command of its own options (COMMANDS)
    and which of the run's it takes. The README holds this between its markers."""
    out = []
    for group in GROUPS:
        rows = [f for f in option_fields() if f.opt.cli and f.opt.group == group]
        if rows:
            out += [f"**{group}**", "", *_rows(rows), ""]
    for name, (options, config) in COMMANDS.items():
        out += [f"**`transferkit {name}`**", "", *_rows(_own_fields(options)), ""]
        out += [_also(_run_fields(config)), ""] if config is not None else []
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(markdown_tables(), end="")
