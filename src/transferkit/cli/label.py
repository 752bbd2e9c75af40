"""`transferkit label POOL --classes a,b,c`: a local page that asks for the labels the model needs next.

    transferkit label photos/ --classes ant,bee                 # http://127.0.0.1:<free port>/ opens
    transferkit label photos/ --labelled some.csv --no-browser  # go on from a partly labelled list
    transferkit train labelling/labels.csv                      # the page's export (or its train button)

Keys on the page: a number per class, s skip, u undo. Every answer is in labelling/label.sqlite at once: stop the
server (Ctrl-C) and start it again with the same --out to go on where you were.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..config import LabelOptions, comma_names
from .options import command


@command("label")
def label(
    pool: Path = typer.Argument(..., help="The images to label: a folder (any layout), a list file or HDF5."),
    *,
    options: LabelOptions,
    overrides: dict,
    typed: set,
) -> None:
    """Label images on a local page that asks for the most useful ones next and retrains after each answer."""
    from ..core.suggest import STRATEGIES
    from ..errors import ConfigError, needs_serve_extra, unknown_choice

    if options.strategy not in STRATEGIES:  # before the pool is embedded (minutes on a CPU)
        raise unknown_choice("--strategy", options.strategy, STRATEGIES)
    classes = comma_names(options.classes)
    if len(set(classes)) != len(classes):
        raise ConfigError(f"--classes names a class twice: {options.classes}. Give each class once.")
    if not classes and options.labelled is None:
        raise ConfigError(
            "Name the classes: --classes cat,dog (or give --labelled LIST, whose labels are the classes)."
        )
    try:
        from ..pages.label import LabelSession, check_label_paths, serve_label
        from ..pages.server import bind
    except ImportError as e:
        raise needs_serve_extra("transferkit label", e) from e
    from functools import partial

    from ..backbones.depth import standardises
    from ..core.embed import embed
    from ..core.suggest import pool_settings
    from ..data.sources import open_images

    # what can be wrong in a second is found before the pool is embedded (minutes), and before label.sqlite is made:
    # a file as --out, a --labelled that is not there, then a port in use or a --host this machine is not
    check_label_paths(options.out, options.labelled)
    with bind(options.host, options.port) as sock:
        # the pool decides the features (auto: stages for tiny images) and the size; the labelled list gets the same
        features, size = pool_settings(open_images(pool), overrides["backbone"], options.features)
        print(f"Embedding {pool} with {overrides['backbone']} ({features} features at {size} px; once: the feature "
              "store keeps them) ...", flush=True)  # fmt: skip
        session = LabelSession.open(
            pool,
            classes or None,
            options.labelled,
            out_dir=options.out,
            backbone=overrides["backbone"],
            strategy=options.strategy,
            embed_fn=partial(
                embed, image_size=size, features=features, device=overrides["device"], cache_dir=overrides["cache_dir"]
            ),
            standardise=standardises(features),
        )
        for note in session.notes:
            print(note)
        s = session.state()
        print(f"{s['images']} images, {s['labelled']} labelled; answers are saved in {session.journal.path}.")
        serve_label(session, options.host, options.port, open_browser=not options.no_browser, sock=sock)


def register(app: typer.Typer) -> None:
    app.command()(label)
