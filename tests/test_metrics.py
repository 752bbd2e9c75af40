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
