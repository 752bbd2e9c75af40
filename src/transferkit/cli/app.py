"""`transferkit` command line. Each command is a thin wrapper over the Python API; heavy imports happen inside them,
so `transferkit --help` stays fast and imports no torch.

    transferkit demo
    transferkit train data/ --strategy auto --epochs 10
    transferkit evaluate runs/data-linear/best data/ --json
    transferkit predict runs/data-linear/best photo.jpg --top-k 3
    transferkit rank data/ && transferkit advise data/ && transferkit compare data/ --strategies linear,finetune
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

from ..errors import TransferkitError
from . import (
    advise,
    backbones,
    compare,
    demo,
    doctor,
    embed,
    env,
    evaluate,
    export,
    label,
    predict,
    rank,
    report,
    review,
    serve,
    similar,
    suggest,
    train,
    tune,
)

# `transferkit --help` lists the commands in this order: a run's life, then labels and images, then the helpers
COMMAND_MODULES = [demo, train, evaluate, predict, export, serve, report, doctor, rank, advise, compare]
COMMAND_MODULES += [review, embed, similar, suggest, label, tune, backbones, env]


class PlainHelp:
    """--help, like every other flag here, shows no value type (typer would show `<bool>`)."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class Paths(TyperArgument):
    """IMAGES... : one or more paths. typer shows such an argument's type as the Python `<list[Path]>`."""

    def display_type_rich(self, ctx) -> str:
        return "<path>"


class Command(PlainHelp, TyperCommand):
    """A command's --help: flags without value types, arguments of several paths as `images... <path>`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument and param.nargs == -1:
                param.__class__ = Paths  # typer builds its own arguments; only the help's type column changes


class Group(PlainHelp, TyperGroup):
    pass


app = typer.Typer(
    name="transferkit",
    help="Turn a small folder of images into an accurate model by transfer learning, and find and fix its labels.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=Group,
)
for module in COMMAND_MODULES:
    module.register(app)

for info in app.registered_commands:
    if info.cls in (None, TyperCommand):
        info.cls = Command


def main() -> None:
    try:
        app()
    except TransferkitError as e:
        from rich.console import Console
        from rich.markup import escape

        # escaped: a message's own brackets ('transferkit[serve]', a file named img[1].jpg) are text, not markup
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]Error:[/bold red] {escape(str(e))}", highlight=False
        )  # no hard breaks inside paths
        sys.exit(2)
