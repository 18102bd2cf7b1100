"""Calibration: reliability bins, expected calibration error, and temperature scaling fit on validation only."""

from __future__ import annotations

import numpy as np
from scipy import optimize

from nexara_lib.evaluation.metrics import log_loss
from nexara_lib.evaluation.predictions import (
    Predictions,
    check_pair,
    check_probabilities,
    logit,
    require_validation,
    sigmoid,
)


def reliability_curve(y_true, prob, n_bins: int = 10) -> dict:
    """Equal-width reliability bins of the violent-class probability.

    Returns:
        dict of (n_bins,) arrays: bin_lower, bin_upper, mean_prob, frac_violent
        (NaN in empty bins) and count.
    """
    y, p = check_pair(y_true, prob)
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.searchsorted(edges[1:-1], p, side="right")  # bins [lo, hi); prob 1.0 lands in the last
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(which, weights=p, minlength=n_bins) / count
        frac = np.bincount(which, weights=y, minlength=n_bins) / count
    return {
        "bin_lower": edges[:-1],
        "bin_upper": edges[1:],
        "mean_prob": mean_prob,
        "frac_violent": frac,
        "count": count,
    }


def expected_calibration_error(y_true, prob, n_bins: int = 10) -> float:
    """ECE: clip-weighted mean |observed violent fraction - mean predicted prob| over equal-width bins."""
    curve = reliability_curve(y_true, prob, n_bins)
    used = curve["count"] > 0
    gaps = np.abs(curve["frac_violent"][used] - curve["mean_prob"][used])
    return float(np.sum(gaps * curve["count"][used]) / curve["count"].sum())


def apply_temperature(prob, temperature: float) -> np.ndarray:
    """Rescale probabilities by dividing their logits by ``temperature``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    return sigmoid(logit(check_probabilities(prob)) / temperature)


def fit_temperature(val_preds: Predictions, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature that minimizes validation log-loss of ``sigmoid(logit(prob) / T)``.

    T > 1 softens over-confident probabilities; the ranking (AUC) is unchanged.

    Args:
        val_preds: ``Predictions(split="val", ...)``; other splits are refused.
        bounds: search range of T.

    Returns:
        The temperature T.
    """
    require_validation(val_preds, "the calibration temperature")
    z, y = logit(val_preds.prob), val_preds.y_true

    def loss(log_t):
        return log_loss(y, sigmoid(z / np.exp(log_t)))

    # Search log T: the loss is much better conditioned there than in T.
    result = optimize.minimize_scalar(
        loss, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded", options={"xatol": 1e-6}
    )
    return float(np.exp(result.x))
