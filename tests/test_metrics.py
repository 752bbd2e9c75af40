"""The hand-counted metrics (numpy, to keep scikit-learn's import off every run) agree with scikit-learn's."""

import numpy as np
import pytest

from transferkit.evaluation.metrics import classification_metrics


@pytest.mark.parametrize("n_classes,n,seed", [(2, 50, 0), (5, 200, 1), (7, 30, 2)])
def test_metrics_match_sklearn(n_classes, n, seed):
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)).astype(np.float32)
    logits[np.arange(n), labels] += rng.uniform(0, 2, n)  # better than chance, with mistakes left
    if n_classes == 7:
        logits[:, 6] = -10  # a class never predicted: precision 0 by convention, not a division by zero
    m = classification_metrics(logits, labels, [f"c{i}" for i in range(n_classes)])
    pred = logits.argmax(1)
    idx = list(range(n_classes))
    p, r, f1, s = precision_recall_fscore_support(labels, pred, labels=idx, zero_division=0)
    assert m["confusion_matrix"] == confusion_matrix(labels, pred, labels=idx).tolist()
    for i in idx:
        c = m["per_class"][f"c{i}"]
        assert c["precision"] == pytest.approx(p[i]) and c["recall"] == pytest.approx(r[i])
        assert c["f1"] == pytest.approx(f1[i]) and c["support"] == s[i]
    assert m["macro_f1"] == pytest.approx(f1.mean())
    assert m["accuracy"] == pytest.approx((pred == labels).mean())


def test_printed_tables_show_class_names_as_written():
    """A class folder named like rich markup ("[red]", "x[bold]") is shown as text in the per-class table and the
    confusion matrix (it styled the rest of the row and vanished)."""
    from io import StringIO

    from rich.console import Console

    from transferkit.evaluation.metrics import print_metrics

    classes = ["[red]", "x[bold]"]
    m = classification_metrics(np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]), np.array([0, 1, 1]), classes)
    out = StringIO()
    print_metrics(m, classes, console=Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    assert text.count("[red]") == 3 and text.count("x[bold]") == 3  # the per-class row, the matrix's row and column


def test_macro_means_leave_out_a_class_with_no_image_and_no_answer():
    """scikit-learn's macro F1 (its labels: the truth's and the predictions'); a class absent from the split and
    never predicted is not an F1 of 0, while a class only predicted (a false alarm) still counts as one."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    y = np.array([0, 0, 1, 1, 1, 0, 1, 1])
    pred = np.array([0, 1, 1, 1, 0, 0, 1, 1])
    m = classification_metrics(np.eye(3)[pred] * 5, y, ["ants", "bees", "wasps"])  # wasps: no image, no answer
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["macro_precision"] == pytest.approx(precision_score(y, pred, average="macro"))
    assert m["macro_recall"] == pytest.approx(recall_score(y, pred, average="macro"))
    assert m["per_class"]["wasps"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    alarm = np.array([0, 2, 1, 1, 0, 0, 1, 1])  # one bee answered as a wasp: the wasp's F1 of 0 counts now
    m = classification_metrics(np.eye(3)[alarm] * 5, y, ["ants", "bees", "wasps"])
    assert m["macro_f1"] == pytest.approx(f1_score(y, alarm, average="macro", zero_division=0))
