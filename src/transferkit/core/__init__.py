"""The core: plain functions on images, features and labels, with no files of a run and no printing.

    from transferkit.core import embed, fit_head, oof_predict
    emb = embed("data/hymenoptera")                      # (N, F) features through the feature store, and their keys
    head = fit_head(emb.features[train], y[train])        # a head in a second (L-BFGS / ridge / AdamW, the better kept)
    scores = oof_predict(emb.features, y, k=5)            # out-of-fold probabilities for every labelled image

`fit`, `--cv`, `compare`, `advise`, `rank` and the data tools stand on these. Nothing here is imported until used:
`import transferkit` stays free of torch.
"""

from __future__ import annotations

__all__ = ["embed", "fit_head", "oof_predict"]


def __getattr__(name: str):
    if name == "embed":
        from .embed import embed

        return embed
    if name == "fit_head":
        from .heads import fit_head

        return fit_head
    if name == "oof_predict":
        from .oof import oof_predict

        return oof_predict
    raise AttributeError(name)
