"""Decision thresholds: vectorized sweeps, candidate thresholds, and the choice on validation only."""

from __future__ import annotations

import numpy as np

from nexara_lib.evaluation.predictions import Predictions, check_pair, check_probabilities, require_validation


def sweep_thresholds(y_true, prob, thresholds) -> dict:
    """Confusion counts and rates at many thresholds at once (vectorized).

    Returns:
        dict of (M,) arrays: threshold, tn, fp, fn, tp, tpr, fpr, tnr, accuracy,
        balanced_accuracy, precision (NaN where nothing is predicted violent).
    """
    y, p = check_pair(y_true, prob)
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    pos, neg = np.sort(p[y == 1]), np.sort(p[y == 0])
    tp = len(pos) - np.searchsorted(pos, t, side="left")  # prob >= t
    fp = len(neg) - np.searchsorted(neg, t, side="left")
    fn, tn = len(pos) - tp, len(neg) - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.where(len(pos) > 0, tp / max(len(pos), 1), np.nan)
        tnr = np.where(len(neg) > 0, tn / max(len(neg), 1), np.nan)
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
    return {
        "threshold": t,
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
        "tpr": tpr,
        "fpr": 1 - tnr,
        "tnr": tnr,
        "accuracy": (tp + tn) / len(y),
        "balanced_accuracy": (tpr + tnr) / 2,
        "precision": precision,
    }


def candidate_thresholds(prob) -> np.ndarray:
    """Every distinct decision: the lowest prob, midpoints between distinct probs, and just above the highest."""
    u = np.unique(check_probabilities(prob))
    # Midpoints rather than the observed values: the same decisions on this data,
    # with the largest margin to the clips on either side.
    return np.concatenate([u[:1], (u[:-1] + u[1:]) / 2, [np.nextafter(u[-1], np.inf)]])


def choose_threshold(val_preds: Predictions, objective: str = "balanced_accuracy", max_fpr: float = 0.03) -> float:
    """Choose the operating threshold on validation predictions.

    Args:
        val_preds: ``Predictions(split="val", ...)``; other splits are refused.
        objective: "balanced_accuracy" (highest; ties -> closest to 0.5) or
            "max_fpr" (highest violent recall with validation FPR <= max_fpr;
            ties -> the highest threshold, i.e. the lowest FPR).
        max_fpr: the false-positive-rate cap for objective "max_fpr".

    Returns:
        threshold: predict violent when ``prob >= threshold``.
    """
    require_validation(val_preds, "the decision threshold")
    y = val_preds.y_true
    if y.min() == y.max():
        raise ValueError(
            "choose_threshold needs both classes in the validation predictions; "
            f"got only label {int(y[0])} ({len(y)} clips)"
        )
    sweep = sweep_thresholds(y, val_preds.prob, candidate_thresholds(val_preds.prob))
    t = sweep["threshold"]
    if objective == "balanced_accuracy":
        score = sweep["balanced_accuracy"]
        best = np.flatnonzero(score >= score.max() - 1e-12)
        return float(t[best[np.argmin(np.abs(t[best] - 0.5))]])
    if objective == "max_fpr":
        if not 0 <= max_fpr < 1:
            raise ValueError(f"max_fpr must be in [0, 1), got {max_fpr!r}")
        feasible = np.flatnonzero(sweep["fpr"] <= max_fpr + 1e-12)  # never empty: the top threshold has FPR 0
        tpr = sweep["tpr"][feasible]
        best = feasible[tpr >= tpr.max() - 1e-12]
        return float(t[best].max())
    raise ValueError(f"unknown objective {objective!r}; use 'balanced_accuracy' or 'max_fpr'")
