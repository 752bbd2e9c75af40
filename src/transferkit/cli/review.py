"""`transferkit review DATA`: what is wrong with the labels and the images, ranked; nothing of DATA is changed.

transferkit review data/hymenoptera                  # table; review-hymenoptera/review.json + issues.csv
transferkit review labels.csv --task regression --target-column price --json
transferkit review data/ --serve                     # the page: keep, relabel, exclude; exports cleaned.csv
transferkit train review-data/cleaned.csv            # train on the fixed list
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import typer

from ..config import ReviewOptions
from .options import command

SHOWN = 10  # rows printed per kind; issues.csv has them all


@command("review")
def review(
    data: Path = typer.Argument(
        ..., help="Image folder (class sub-folders or none), pre-split folder, list file or HDF5."
    ),
    *,
    options: ReviewOptions,
    overrides: dict,
    typed: set,
) -> None:
    """Find label errors, near-duplicates, conflicts, train/test leaks and outliers in DATA, from cached features."""
    from ..core.review import check_fix_list_path, check_review_out, save_review, suggested_decisions, write_fix_list
    from ..core.review import review as run_review
    from ..progress import make_reporter

    # what can be wrong in a second is found before the review runs (minutes on a large set), writing nothing: a file
    # as --out or someone else's files in it, a --fix-out that cannot be written, the page's port or host
    out = options.out or Path(f"review-{Path(data).resolve().name.rsplit('.', 1)[0]}")
    check_review_out(out)
    if options.fix_out is not None:
        check_fix_list_path(options.fix_out)
    with _page_socket(options) if options.serve else nullcontext() as sock:
        quiet = options.json
        result = run_review(
            data,
            k=options.k,
            model=options.model,
            rank_by=options.rank_by,
            features=options.features,
            reporter=make_reporter(quiet),
            **{k: v for k, v in overrides.items() if k != "quiet"},
        )
        paths = save_review(result, out)
        fixed = None
        if options.fix_out is not None and result.labelled:
            fixed = write_fix_list(result, suggested_decisions(result), options.fix_out)
        elif options.fix_out is not None:
            result.notes.append(f"--fix-out {options.fix_out}: not written, the images have no labels to list.")
        if options.json:
            print(json.dumps({**result.to_dict(), "files": {k: str(v) for k, v in paths.items()}}, ensure_ascii=False))
        else:
            print_result(result, paths, fixed, options.fix_out)
        if sock is not None:
            from ..pages.review import serve_review

            serve_review(
                result, out, options.host, options.port, not options.no_browser, images=result.loader, sock=sock
            )


def _page_socket(options):
    """The page's listening socket, bound before the review: a port in use or a --host that is not this machine's
    is a ConfigError in a second, not after the whole review ran and wrote its files."""
    from ..errors import needs_serve_extra

    try:
        from ..pages.server import bind  # the page's web stack loads only with --serve
    except ImportError as e:
        raise needs_serve_extra("review --serve", e) from e
    return bind(options.host, options.port)


def print_result(result, paths: dict, fixed: dict | None, fix_out) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    for note in result.notes:
        console.print(f"[yellow]note[/]: {escape(note)}")
    for kind, n in result.counts().items():
        if not n:
            continue
        table = Table(title=f"{kind}: {n}", title_justify="left")
        for col in ("score", "image", "given", "suggested", "group", "why"):
            table.add_column(col, overflow="fold")
        for it in result.by_kind(kind)[:SHOWN]:
            table.add_row(
                f"{it.score:.3g}",
                escape(_short(it.key, result.data)),
                escape(it.given or ""),
                escape(it.suggested or ""),
                "" if it.group is None else str(it.group),
                escape(it.reason),
            )
        console.print(table)
        if n > SHOWN:
            console.print(f"    ... and {n - SHOWN} more ({escape(str(paths['csv']))})")
    counts = ", ".join(f"{n} {k}" for k, n in result.counts().items() if n) or "nothing suspect"
    console.print(
        f"Checked: {', '.join(result.checks)} on {len(result.images)} images in {result.seconds:.0f} s: {counts}."
    )
    if "label" in result.checks:  # which scores the label check read; duplicates and outliers: the last layer's
        console.print(f"Label scores: {escape(result.scores_from)}; duplicates and outliers: last-layer features.")
    console.print(f"Files: {escape(str(paths['json']))}, {escape(str(paths['csv']))}")
    if fixed is not None:
        console.print(
            f"Fix list: {escape(str(fix_out))} ({fixed['written']} images; {fixed['exclude']} left out). "
            f"Train on it: transferkit train {escape(str(fix_out))}"
        )


def _short(key: str, root: str) -> str:
    """The key relative to DATA where it lies inside it (full paths are in issues.csv)."""
    base = str(Path(root).resolve())
    return key[len(base) + 1 :] if key.startswith(base + "/") else key


def register(app: typer.Typer) -> None:
    app.command()(review)
