"""`transferkit backbones`: what --backbone accepts."""

from __future__ import annotations

import typer


def backbones() -> None:
    """List the built-in (offline) backbones and the other accepted names."""
    from rich.console import Console
    from rich.table import Table

    from ..backbones import DEFAULT_BACKBONE, describe_backbones

    t = Table("name", "description")
    for name, desc in describe_backbones():
        t.add_row(name + (" (default)" if name == DEFAULT_BACKBONE else ""), desc)
    c = Console()
    c.print(t)
    c.print(
        "Also: timm:<any timm model>, torchvision:<model> (pretrained weights need a network on first use), "
        "file:<weights.pth|.safetensors> with --arch <architecture>, "
        "bundle:<a model transferkit trained, e.g. runs/x/best> (its body and preprocessing, its head dropped)."
    )


def register(app: typer.Typer) -> None:
    app.command()(backbones)
