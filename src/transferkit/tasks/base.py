"""What every task shares: the defaults a task module overrides only where it differs, and the steps that are the
same for all of them (which result is better, test-time augmentation, export parity, the short forms of answers).

    class Counting(Task):                      # a new task is one class in one module, and one row of TASKS
        name, score_name = "counting", "mae"
        def probabilities(self, logits, temperature=1.0): ...   # head outputs -> what is answered
        def output_score(self, outputs, targets): ...           # how it is judged (higher is better)
        def answers(self, outputs, classes, top_k): ...         # what predict returns per image

`probabilities` is the name of the one step every runner shares (logits -> the task's outputs): class probabilities,
a value in the target's units, or per-label probabilities. Torch is imported inside the methods; numpy where a
torch-free runner (ONNX Runtime, serve) shares the step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..data.targets import CLASSES, Classes


@dataclass(frozen=True)
class Task:
    """The shared defaults. Class attributes say what the task is; dataclass fields (in subclasses) are its state,
    fitted to the training targets (`prepare`, `tune`) and stored in the bundle (`state`, `from_meta`)."""

    name: ClassVar[str] = "task"
    labels: ClassVar[Classes] = CLASSES  # what the data's labels are and how readers parse them (data/targets.py)
    title: ClassVar[str] = "Image model"  # what serve's page and its OpenAPI description call it
    calibrates: ClassVar[bool] = False  # temperature scaling after training (finish.py skips the val pass without it)
    tta: ClassVar[bool] = True  # evaluate/predict --tta: the mean of the views' outputs
    score_name: ClassVar[str] = "score"  # the key of the headline metric in metrics (higher is better)
    score_label: ClassVar[str] = "score"  # the same for people: "accuracy", "R²", "mAP"
    score_column: ClassVar[str] = "score"  # metrics.csv's val_<column> and the epoch line's "val <column>"
    proportion: ClassVar[bool] = False  # the score is a share of images: shown as %, Wilson intervals, McNemar
    headline: ClassVar[tuple[str, ...]] = ()  # the metrics a run's summary line and bundle show
    probe: ClassVar[str] = ""  # the frozen-feature probe (a key of selection/probes.PROBES)
    data_needs: ClassVar[str] = ""  # what data the task reads, for "--task X needs ..."
    data_kind: ClassVar[str] = "labels"  # what the data holds, for "... is read as list data with <kind>"
    labels_are_classes: ClassVar[bool] = True  # the data's classes must be the model's (regression: a target name)
    class_logits: ClassVar[bool] = False  # the head gives logits of one class among K (softmax): LEEP/NCE read it
    folder_labels: ClassVar[bool] = False  # images in a folder named after a class are of that class (--check)
    state_keys: ClassVar[tuple[str, ...]] = ()  # what `state` writes, in bundles and export metadata
    export_output: ClassVar[str] = "probabilities"  # the output's name in an export's graph
    export_contract: ClassVar[str] = ""  # what the export's output holds, for its metadata
    # export parity, in words: what "the same answer" is, and the differences' units
    agreement_words: ClassVar[str] = "agreement"
    difference_words: ClassVar[str] = "max |Δ|"
    parity_aliases: ClassVar[dict[str, str]] = {}  # parity report keys also written under older names

    # ---- state: fitted to the data, stored with the model -------------------------------------------------------
    def prepare(self, targets, loss: str = "mse"):
        """The task fitted to the training targets (regression: their mean and std)."""
        return self

    def state(self) -> dict[str, Any]:
        """What the bundle stores for `get_task(name, meta)` to rebuild the task."""
        return {}

    def from_meta(self, meta: Mapping):
        return self

    def tune(self, val_logits, val_targets):
        """After training: anything picked on val (multi-label: each label's threshold)."""
        return self

    # ---- labels and the head ---------------------------------------------------------------------------------
    def strata(self, y):
        """What folds and splits keep in proportion, one value per row of targets `y`: the class by default."""
        return y

    def targets(self, labels, classes: list[str]):
        """Sample labels -> what the DataLoader collates."""
        return list(labels)

    def relabel(self, label, remap: Mapping[int, int]):
        """A data label in the model's class order (`remap`: data class index -> model class index); None for a
        class the model does not know."""
        return remap.get(label)

    def num_outputs(self, classes: list[str]) -> int:
        return len(classes)

    def loss_weights(self, targets, classes: list[str]):
        """--balance weights; None: the task has none."""
        return None

    def calibrate(self, *args, **kwargs):
        return None  # post-hoc calibration: none unless the task has one

    # ---- which result is better ------------------------------------------------------------------------------
    def sort_key(self, loss: float, score: float, by: str = "loss") -> tuple[float, float]:
        """Smaller keys win. by="loss": the lower val loss, equal losses: the higher score; by="score"
        (--select score): the higher score, equal scores: the lower loss."""
        return (loss, -score) if by == "loss" else (-score, loss)

    def better(self, a: Mapping, b: Mapping | None, by: str = "loss") -> bool:
        """Whether result `a` beats result `b` (None: nothing yet, `a` wins). Results are rows with "val_loss" and
        "val_acc" (the task's score), as epochs and head solvers report them."""
        return b is None or self.sort_key(a["val_loss"], a["val_acc"], by) < self.sort_key(
            b["val_loss"], b["val_acc"], by
        )

    def best(self, results, by: str = "loss"):
        """The best of `results` (rows as `better` reads them; the first of equals)."""
        return min(results, key=lambda r: self.sort_key(r["val_loss"], r["val_acc"], by))

    # ---- judging -----------------------------------------------------------------------------------------------
    def probabilities(self, logits, temperature: float = 1.0):
        """Head outputs -> the task's outputs (class probabilities, values, per-label probabilities)."""
        raise NotImplementedError

    def output_score(self, outputs, targets) -> float:
        """The headline score of outputs (what `probabilities` gives) against targets; higher is better."""
        raise NotImplementedError

    def score(self, logits, targets) -> float:
        return self.output_score(self.probabilities(logits), targets)

    def format_score(self, value: float) -> str:
        """91.3% for a share of images, 0.512 otherwise."""
        return f"{value:.1%}" if self.proportion else f"{value:.3f}"

    def score_line(self, metrics: Mapping, split: str = "test") -> str:
        """'test accuracy 91.3%' (what serve's page shows of the bundle); '' when the metrics lack the score."""
        value = metrics.get(self.score_name)
        if not isinstance(value, (int, float)):
            return ""
        return f"{metrics.get('split', split)} {self.score_label} {self.format_score(float(value))}"

    def describe_outputs(self, classes: list[str]) -> str:
        """'2 classes: ants, bees' (serve's page)."""
        shown = ", ".join(classes[:12]) + (", …" if len(classes) > 12 else "")
        return f"{len(classes)} classes: {shown}"

    def check_data(self, src, model: bool = False) -> None:
        """The data must hold what the task predicts: a class folder tree has no numbers for regression. model: the
        task is a saved model's (evaluate), which no --task changes: the message asks for other data only."""
        if src.task == self.name:
            return
        from ..errors import DataError
        from . import get_task

        read_as = get_task(src.task).data_kind if src.task else "labels"
        who, fix = (f"This {self.name} model", "Give data of that kind") if model else (
            f"--task {self.name}", f"Give --task {src.task}, or data of that kind"
        )  # fmt: skip
        raise DataError(
            f"{who} needs {self.data_needs}; '{src.root}' is read as {src.layout} data with "
            f"{read_as} ({len(src.classes)}: {', '.join(src.classes[:5])}{', ...' if len(src.classes) > 5 else ''}). "
            f"{fix}. Nothing was written."
        )

    def restricted(self, keep: list[int]):
        """The task scoring the model's outputs `keep` alone (its per-label state cut to them); as it is here."""
        return self

    def target_warnings(self, targets, column: str, trained_on: str) -> list[str]:
        """What `evaluate` should say about the targets it scores against (regression: on another scale than the
        model learned); none for classes and label sets, which are matched by name."""
        return []

    # ---- test-time augmentation (views: (N, V, K) logits, view 0 the plain centre crop) ---------------------
    def average_views(self, view_logits, temperature: float = 1.0):
        """(N, V, K) logits of the views -> (N, K) outputs: the mean of the views' outputs."""
        import numpy as np

        return np.asarray(self.probabilities(view_logits, temperature), dtype=np.float64).mean(axis=1)

    def tta_logits(self, view_logits):
        """(N, V, K) -> (N, K) logits whose outputs are the views' mean output: what evaluate --tta scores."""
        raise NotImplementedError

    def tta_summary(self, view_logits, targets) -> dict:
        """What TTA changed against the plain centre crop, on labelled images: the score and loss without and with,
        and (tasks with a discrete answer) how many answers it changed."""
        import numpy as np
        import torch

        v = torch.as_tensor(np.asarray(view_logits), dtype=torch.float32)
        plain, tta = v[:, 0], self.tta_logits(v)
        out = {
            "views": int(v.shape[1]),
            "score": self.score_name,
            f"{self.score_name}_without": self.score(plain, targets),
            f"{self.score_name}_with": self.score(tta, targets),
            "loss_without": self.val_loss(plain, targets),
            "loss_with": self.val_loss(tta, targets),
        }
        before, after = self.decisions(self.probabilities(plain)), self.decisions(self.probabilities(tta))
        if before is not None:
            out["changed"] = int((~self._same(before, after)).sum())  # images whose answer TTA changed
        return out

    # ---- answers: what predict and serve return ------------------------------------------------------------
    def decisions(self, outputs):
        """(N, ...) the discrete answer per image (a class index, a set of labels as a 0/1 row); None: the task's
        answer is a number, which any change moves."""
        return None

    @staticmethod
    def _same(a, b):
        import numpy as np

        a, b = np.asarray(a), np.asarray(b)
        return (a == b).reshape(len(a), -1).all(axis=1)

    def short_answer(self, answer: dict) -> dict:
        """The answer without its detail: what `without_tta` holds beside a TTA answer."""
        return dict(answer)

    def answer_key(self, answer: dict):
        """What two answers must share to be the same answer (None: a number, never counted as changed)."""
        return None

    def answer_text(self, answer: dict) -> str:
        """One cell of predict's table."""
        return " ".join(self.answer_cells(answer))

    def results(self, outputs, classes: list[str], top_k: int, paths) -> list[dict]:
        """(N, K) outputs -> the dicts `predict --json` prints: path, then the task's answer."""
        return [{"path": path, **a} for path, a in zip(paths, self.answers(outputs, classes, top_k))]

    # ---- export: the task's post-processing inside the graph ------------------------------------------------
    def export_head(self, logits, temperature: float = 1.0):
        """Torch ops from logits to the export's output, traced into the graph: the same numbers as `probabilities`."""
        raise NotImplementedError

    def export_state(self, classes: list[str]) -> dict[str, Any]:
        """What an export's metadata carries for the task (JSON values under `state_keys`)."""
        return self.state()

    def parity_units(self, outputs):
        """Outputs in the units their differences are bounded in (probabilities as they are)."""
        import numpy as np

        return np.asarray(outputs, dtype=np.float64)

    def agree(self, reference, exported):
        """Per image: whether two runtimes give the same answer (tasks with decisions: the same decision)."""
        return self._same(self.decisions(reference), self.decisions(exported))

    # ---- report.html ---------------------------------------------------------------------------------------
    def report_sections(self) -> dict:
        """The task's parts of report.html: headline, results, mistakes (and redraw: plots from the run's files)."""
        from ..evaluation import sections

        return sections.GENERIC
