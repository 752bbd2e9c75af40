"""`transferkit embed DATA --backbone X --out emb/`: every image's features, for your own tools.

    transferkit embed data/hymenoptera --out emb/
    python -c "import numpy as np, csv; x = np.load('emb/features.npy'); keys = list(csv.DictReader(open('emb/keys.csv')))"

Format: emb/features.npy is an (N, F) float32 NumPy array, row i the pooled backbone features of image i;
emb/keys.csv has a header `row,key,label`: the row index, the image's key (absolute path, or "<file>#<split>[<i>]"
for an HDF5 row) and its label where DATA has labels (empty otherwise). Images that cannot be read have no row.
The features come from the feature store: `train --strategy linear` with the same backbone reuses them.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..config import DEFAULT_BACKBONE, EmbedOptions
from .options import command


@command("embed")
def embed(
    data: Path = typer.Argument(..., help="Image folder (labelled or not), list file or HDF5."),
    *,
    options: EmbedOptions,
    overrides: dict,
    typed: set,
) -> None:
    """Write DATA's features (features.npy, N x F float32) and their keys (keys.csv: row,key,label) to --out."""
    import csv

    import numpy as np

    from ..core.embed import embed as run_embed
    from ..core.similar import _labels_by_key
    from ..errors import ConfigError
    from ..faults import atomic_path
    from ..progress import make_reporter

    out = Path(options.out)
    if out.exists() and not out.is_dir():  # before the features are computed, not after
        raise ConfigError(
            f"--out '{out}' is a file: give a folder (it is made if missing) for features.npy and keys.csv."
        )
    emb = run_embed(
        data,
        overrides.get("backbone") or DEFAULT_BACKBONE,
        image_size=overrides.get("image_size"),
        device=overrides.get("device") or "auto",
        cache_dir=overrides.get("cache_dir"),
        reporter=make_reporter(options.json),
        arch=overrides.get("arch"),
    )
    labels = _labels_by_key(data)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "features.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, emb.features)
    with atomic_path(out / "keys.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["row", "key", "label"])
        w.writerows([i, k, labels.get(k, "")] for i, k in enumerate(emb.keys))
    summary = {
        "features": str(out / "features.npy"),
        "keys": str(out / "keys.csv"),
        "shape": list(emb.features.shape),
        "backbone": emb.backbone,
        "image_size": emb.image_size,
        "computed": emb.computed,
        "skipped": [list(s) for s in emb.skipped],
    }
    if options.json:
        print(json.dumps(summary))
        return
    n, f = emb.features.shape
    print(f"{n} images x {f} features ({emb.backbone}, {emb.image_size} px; {emb.computed} computed, the rest stored)")
    for key, why in emb.skipped:
        print(f"skipped {key}: {why}")
    print(out)


def register(app: typer.Typer) -> None:
    app.command()(embed)
