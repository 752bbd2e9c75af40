"""The frozen-feature probe per task: a closed-form ridge (LogME's) on pooled features, scored on held-out rows.

    score, knowing_nothing = probe_for(task)(ff)   # ff: .train, .train_labels, .val, .val_labels (numpy)
    probe_name(task)                                # what the score is, for people: accuracy, R², mAP

Which probe a task uses is the task's (`Task.probe`, a key of PROBES); its score's name is `Task.score_label`.

`advise` reads the score against what knowing nothing scores (the weak-probe rule); `choose` cross-validates it to
rank backbones and input sizes. Milliseconds per call on a few thousand rows.
"""

from __future__ import annotations


def class_probe(ff) -> tuple[float, float]:
    """(val accuracy of LogME's ridge probe, of always answering the commonest class)."""
    import numpy as np

    from .estimators import logme_fit

    probe = float((logme_fit(ff.train, ff.train_labels).predict(ff.val) == ff.val_labels).mean())
    return probe, float(np.bincount(ff.val_labels).max() / len(ff.val_labels))


def regression_probe(ff) -> tuple[float, float]:
    """(val R² of LogME's ridge probe, 0: the R² of always answering the mean). The weak-probe rule reads R² as it
    reads accuracy: frozen features that leave more than a quarter of the mean's squared error get fine-tuned."""
    from ..evaluation.regression import r2
    from .estimators import logme_regression

    return r2(logme_regression(ff.train, ff.train_labels).predict(ff.val), ff.val_labels), 0.0


def multilabel_probe(ff) -> tuple[float, float]:
    """(val mAP of LogME's ridge probe, the mAP of scoring every image alike: each label's share of positives)."""
    import numpy as np

    from ..evaluation.multilabel import mean_average_precision
    from .estimators import logme_regression

    probe = mean_average_precision(
        logme_regression(ff.train, ff.train_labels).predict(ff.val).reshape(len(ff.val), -1), ff.val_labels
    )
    y = np.asarray(ff.val_labels)
    present = y.any(0)
    return probe, float(y[:, present].mean(0).mean()) if present.any() else 0.0


# The frozen-feature probes, by what they predict: (its val score, the score of knowing nothing), as accuracy is to
# chance. A task names its probe (`Task.probe`).
PROBES = {"classes": class_probe, "values": regression_probe, "label_sets": multilabel_probe}


def probe_for(task: str):
    """The probe of the task named `task`."""
    from ..tasks import get_task

    return PROBES[get_task(task).probe]


def probe_name(task: str) -> str:
    """What the probe of `task` scores, for people: accuracy, R², mAP."""
    from ..tasks import get_task

    return get_task(task).score_label
