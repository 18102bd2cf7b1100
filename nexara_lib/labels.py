"""The two classes: their names, and per-class accuracy with one tie rule for the whole library.

Label 1 is violent, label 0 non-violent. A clip is predicted violent when its probability
of violence is ``>= threshold`` (the same rule in training logs, diagnostics, TTA and
ensembles).
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES = ("non-violent", "violent")  # what people read (index = label); the manifest's class_name
CLASS_KEYS = ("nonviolent", "violent")  # the same classes inside metric names: acc_nonviolent, f1_violent


def predict_labels(prob, threshold: float = 0.5) -> np.ndarray:
    """0/1 predictions: violent when ``prob >= threshold``."""
    return (np.asarray(prob, dtype=np.float64) >= threshold).astype(np.int64)


def per_class_accuracy(y_true, prob, threshold: float = 0.5) -> tuple[float, float]:
    """(accuracy on non-violent clips, accuracy on violent clips); NaN for a class with no clip."""
    y = np.asarray(y_true).ravel()
    pred = predict_labels(np.asarray(prob).ravel(), threshold)
    nonviolent, violent = (float(np.mean(pred[y == c] == c)) if np.any(y == c) else float("nan") for c in (0, 1))
    return nonviolent, violent
