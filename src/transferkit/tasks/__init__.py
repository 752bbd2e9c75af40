"""Tasks: what the head predicts and how it is judged, one class per task in its own module, one table (`TASKS`).

    task = get_task(meta["task"], meta)            # classification | regression | multilabel, with the bundle's state
    task = task.prepare(train_targets, loss="mse") # fitted to the training targets (regression: their mean and std)
    task.num_outputs(classes)                      # the head's width
    task.loss(weights, label_smoothing)            # what training minimises
    task.fit_head(head, train, val, ...)           # the head on cached features in one convex solve (L-BFGS, ridge)
    task.score(logits, targets)                    # the epoch's headline number, higher is better (accuracy, R², mAP)
    task.better(a, b)                              # "is result a better than b" (sort_key: smaller keys win)
    task.tune(val_logits, val_targets)             # after training: multi-label thresholds picked on val
    task.metrics(logits, targets, classes)         # what evaluate and report.json show
    task.calibrate(val_logits, val_targets, ...)   # post-hoc calibration, stored in the bundle (None: none)
    task.state()                                   # what the bundle stores for `get_task(name, meta)` to rebuild it
    task.answers(task.probabilities(logits), classes, top_k)   # what predict and serve return per image
    task.export_head(logits)                       # the post-processing an export's graph ends with
    task.report_sections()                         # its parts of report.html

The trainer, the finishing steps, `evaluate`, `predict`, export, serve and compare ask the task; none of them tests
which task it is. What all tasks share is in base.py; torch is imported inside the methods, so the table costs
nothing to import.
"""

from __future__ import annotations

from ..errors import unknown_choice
from .base import Task
from .classification import Classification
from .multilabel import Multilabel
from .regression import Regression

TASKS: dict[str, Task] = {"classification": Classification(), "regression": Regression(), "multilabel": Multilabel()}

DEFAULT = "classification"  # what a bundle or report from before tasks were stored was trained for
__all__ = ["DEFAULT", "TASKS", "Classification", "Multilabel", "Regression", "Task", "get_task", "task_of"]


def get_task(name: str = DEFAULT, meta: dict | None = None) -> Task:
    """The task `name`; with a bundle's `meta`, as the bundle stored it (target statistics, thresholds)."""
    if name not in TASKS:
        raise unknown_choice(
            "task",
            name,
            TASKS,
            hint="This transferkit knows the tasks above; a bundle from a newer version may need a newer transferkit.",
        )
    return TASKS[name].from_meta(meta) if meta is not None else TASKS[name]


def task_of(meta: dict) -> Task:
    """The task a bundle's (or an export's) metadata names, with the state it stored."""
    return get_task(meta.get("task", DEFAULT), meta)
