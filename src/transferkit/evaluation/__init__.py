"""Evaluation: metrics (accuracy, per-class report, confusion matrix), calibration (temperature scaling, ECE),
test-time augmentation, the plots, and the run's report.html (`finish.py` is what `fit` calls at the end)."""
