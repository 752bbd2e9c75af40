"""The CLI's config options, made from the fields of config.py: one declaration per option.

    @config_command(select=lambda f: True)            # every RunConfig option, in --help panels by group
    def train(data: Path = typer.Argument(...), *, overrides: dict, typed: set) -> None: ...

The command gets its own parameters by name, `overrides` ({field: value} for every generated option, defaults
included) and `typed` (the field names given on the command line). A field that defaults to True appears as its
negative flag (`--no-flip`), so every flag is one word and `--help` keeps its width for the help text.

    python -m transferkit.cli.options        # prints the README's option tables (the test keeps them in step)
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, Optional

import typer

from ..config import GROUPS, OptionField, option_fields

Select = Callable[[OptionField], bool]


def everything(f: OptionField) -> bool:
    return f.opt.cli


def data_source(f: OptionField) -> bool:
    """How the data is read: every command that reads data takes these."""
    return f.opt.cli and f.opt.source


MEASURING = (
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


def _cli_type(f: OptionField) -> Any:
    """The annotation typer sees: choices and patterns stay strings (validate() answers a wrong one with the valid
    choices, exit 2), the split is one comma-separated word, None-able numbers stay optional."""
    if f.name == "split":
        return str
    optional = type(None) in typing.get_args(f.type)
    if f.choices is not None:
        return Optional[str] if optional else str  # noqa: UP045 - typer reads typing.Optional
    if typing.get_origin(f.type) is tuple or not optional:
        return f.type
    return Optional[typing.get_args(f.type)[0]]  # noqa: UP045 - typer reads typing.Optional


def _help(f: OptionField) -> str:
    text = f.opt.help
    if f.choices is not None:
        text += f" One of: {', '.join(map(str, f.choices))}."
    return text


def parameter(f: OptionField) -> inspect.Parameter:
    default = f.default
    if f.name == "split":
        default = ",".join(f"{x:g}" for x in default)
    if f.type is bool:
        # One flag a field: `--strict` sets True; `--no-flip` sets flip to False (default False means "not given").
        info = typer.Option(
            False, *f.flags, help=f.opt.help, rich_help_panel=f.opt.group, metavar="", show_default=False
        )
        return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=bool)
    metavar = "LO HI" if typing.get_origin(f.type) is tuple else None
    info = typer.Option(
        default, *f.flags, help=_help(f), rich_help_panel=f.opt.group, show_default=default is not None, metavar=metavar
    )
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=_cli_type(f))


def negated(f: OptionField) -> bool:
    return f.type is bool and f.default is True


def config_command(select: Select = everything, exclude: tuple[str, ...] = ()) -> Callable:
    """Decorate a command: its signature gains one typer option per selected config field (those in `exclude`
    left out, e.g. options the command takes as its own)."""

    def wrap(fn: Callable) -> Callable:
        chosen = [f for f in option_fields() if select(f) and f.name not in exclude]
        chosen.sort(key=lambda f: GROUPS.index(f.opt.group))  # panels in a fixed order; fields keep theirs inside
        own = [p for p in inspect.signature(fn).parameters.values() if p.name not in ("overrides", "typed")]
        names = {f.name for f in chosen}
        if names & {p.name for p in own}:
            raise TypeError(f"{fn.__name__}: options declared twice: {names & {p.name for p in own}}")
        ctx_param = inspect.Parameter("_ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)

        @functools.wraps(fn)
        def command(_ctx: typer.Context, **kwargs):
            overrides = {f.name: (not kwargs.pop(f.name) if negated(f) else kwargs.pop(f.name)) for f in chosen}
            typed = {n for n in names if (s := _ctx.get_parameter_source(n)) is not None and s.name != "DEFAULT"}
            return fn(**kwargs, overrides=overrides, typed=typed)

        params = [
            ctx_param,
            *[p for p in own if p.kind != p.KEYWORD_ONLY],
            *[p for p in own if p.kind == p.KEYWORD_ONLY],
        ]
        params += [parameter(f) for f in chosen]
        # Positional-or-keyword parameters cannot follow keyword-only ones; typer reads names, not positions.
        command.__signature__ = inspect.Signature(
            [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if i else p for i, p in enumerate(params)]
        )
        command.config_fields = chosen  # for tests and docs
        return command

    return wrap


def markdown_tables() -> str:
    """One table per --help panel: flag, default, what it does. The README holds this between its markers."""
    out = []
    for group in GROUPS:
        rows = [f for f in option_fields() if f.opt.cli and f.opt.group == group]
        if not rows:
            continue
        out += [f"**{group}**", "", "| option | default | |", "|---|---|---|"]
        for f in rows:
            default = (
                ""
                if negated(f) or f.type is bool
                else (
                    ",".join(f"{x:g}" for x in f.default)
                    if isinstance(f.default, tuple)
                    else "–"
                    if f.default is None
                    else f"`{f.default}`"
                )
            )
            out.append(f"| `{f.flag}` | {default} | {_help(f).replace('|', '&#124;')} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(markdown_tables(), end="")
