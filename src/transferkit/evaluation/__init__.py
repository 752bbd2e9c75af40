"""Evaluation: metrics (accuracy, per-class report, confusion matrix) and their terminal tables."""
