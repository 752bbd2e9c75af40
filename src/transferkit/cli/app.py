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
from typer.core import TyperCommand

from ..errors import TransferkitError
from . import advise, backbones, compare, demo, doctor, env, evaluate, export, predict, rank, report, serve, train

app = typer.Typer(
    name="transferkit",
    help="Turn a small folder of labelled images into an accurate classifier by transfer learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for module in (demo, train, evaluate, predict, export, serve, report, doctor, rank, advise, compare, backbones, env):
    module.register(app)


class Command(TyperCommand):
    """A typer command whose --help flag, like every other flag here, shows no value type."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


for info in app.registered_commands:
    if info.cls in (None, TyperCommand):
        info.cls = Command


def main() -> None:
    try:
        app()
    except TransferkitError as e:
        from rich.console import Console

        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]Error:[/bold red] {e}", highlight=False
        )  # no hard breaks inside paths
        sys.exit(2)
