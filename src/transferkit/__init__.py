"""transferkit: a small folder of labelled images -> an accurate classifier, by transfer learning.

    import transferkit
    run = transferkit.fit("data/", backbone="efficientnet_lite0", strategy="auto")
    model = transferkit.load(run.best)
    model.predict("img.jpg")

    emb = transferkit.embed("photos/")                      # features of any images, each extracted once, ever
    head = transferkit.fit_head(emb.features, labels)        # a head on them in a second
    oof = transferkit.oof_predict(emb.features, labels, k=5) # out-of-fold scores for every labelled image

Importing this package is light: torch and friends load only when a function needs them.
"""

import typing as _typing

__version__ = "0.1.0"

# name -> module that defines it; resolved on first use (PEP 562), so `import transferkit` imports no torch.
_LAZY = {
    "fit": "transferkit.api",
    "load": "transferkit.api",
    "feature_extractor": "transferkit.api",
    "evaluate": "transferkit.api",
    "Run": "transferkit.api",
    "list_backbones": "transferkit.backbones.registry",
    "open_source": "transferkit.data.sources",
    "from_arrays": "transferkit.data.sources",
    "from_dataset": "transferkit.data.sources",
    "doctor": "transferkit.data.doctor",
    "rank": "transferkit.selection.rank",
    "advise": "transferkit.selection.advise",
    "compare": "transferkit.comparison",
    "RunConfig": "transferkit.config",
    "Predictor": "transferkit.predict",
    "embed": "transferkit.core.embed",
    "fit_head": "transferkit.core.heads",
    "oof_predict": "transferkit.core.oof",
    "open_images": "transferkit.data.sources",
    "review": "transferkit.core.review",
    "similar": "transferkit.core.similar",
}
__all__ = [  # the public API; `_LAZY` says where each lives
    "fit",
    "load",
    "feature_extractor",
    "evaluate",
    "Run",
    "list_backbones",
    "open_source",
    "from_arrays",
    "from_dataset",
    "doctor",
    "rank",
    "advise",
    "compare",
    "RunConfig",
    "Predictor",
    "embed",
    "fit_head",
    "oof_predict",
    "open_images",
    "review",
    "similar",
    "__version__",
]

if _typing.TYPE_CHECKING:
    from .api import Run, evaluate, feature_extractor, fit, load
    from .backbones.registry import list_backbones
    from .comparison import compare
    from .config import RunConfig
    from .core.embed import embed
    from .core.heads import fit_head
    from .core.oof import oof_predict
    from .core.review import review
    from .core.similar import similar
    from .data.doctor import doctor
    from .data.sources import from_arrays, from_dataset, open_images, open_source
    from .predict import Predictor
    from .selection.advise import advise
    from .selection.rank import rank


def __getattr__(name: str) -> _typing.Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'transferkit' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)
