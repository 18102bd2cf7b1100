"""Test-time augmentation, evaluation side: combine the predictions of several views of each clip,
choose the views on validation, compare with and without TTA, and measure the cost per clip.

The views themselves are the transforms that serve "tta" in ``nexara_lib.transforms``
(frame level: re-extracted from transformed frames; feature level: applied to cached features).
Which views to use is chosen on validation only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np

from nexara_lib.evaluation.metrics import LOWER_IS_BETTER, metric_function
from nexara_lib.evaluation.predictions import (
    Predictions,
    check_probabilities,
    logit,
    require_same_clips,
    require_validation,
    sigmoid,
)
from nexara_lib.evaluation.stats import compare_paired

AGGREGATIONS = ("mean_prob", "mean_logit", "max")


def aggregate(probs_by_view, method: str = "mean_prob") -> np.ndarray:
    """Combine per-view probabilities of the violent class into one per clip.

    Args:
        probs_by_view: (V, N) probabilities, one row per view.
        method: "mean_prob", "mean_logit" (geometric-style, less swayed by one
            extreme view) or "max" (violent if any view says so: raises recall and FPR).

    Returns:
        (N,) aggregated probabilities.
    """
    p = np.asarray(probs_by_view, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"probs_by_view must be (V, N) with V >= 1 views, got shape {p.shape}")
    check_probabilities(p.ravel(), "probs_by_view")
    if method == "mean_prob":
        return p.mean(axis=0)
    if method == "mean_logit":
        return sigmoid(logit(p).mean(axis=0))
    if method == "max":
        return p.max(axis=0)
    raise ValueError(f"unknown aggregation {method!r}; use one of {AGGREGATIONS}")


def choose_tta_views(
    val_probs_by_view: Mapping[str, Predictions],
    method: str = "mean_prob",
    metric: str = "balanced_accuracy",
    threshold: float = 0.5,
    min_gain: float = 0.0,
) -> list[str]:
    """Greedy forward selection of TTA views on validation, starting from identity.

    At each step the view whose addition improves the validation metric of the
    aggregate most is added; selection stops when no view improves it by more
    than ``min_gain``.

    Args:
        val_probs_by_view: {view name: Predictions(split="val")}, must include "identity".
        method: aggregation (see ``aggregate``).
        metric: a name from ``evaluation.METRIC_NAMES`` (lower-is-better ones are minimized).
        threshold: threshold for threshold-based metrics.
        min_gain: smallest improvement that justifies one more view (and its latency).

    Returns:
        the chosen view names, "identity" first.
    """
    names = list(val_probs_by_view)
    require_validation([val_probs_by_view[n] for n in names], "the TTA view set")
    if "identity" not in val_probs_by_view:
        raise ValueError(
            f"choose_tta_views: 'identity' must be one of the views (got {names}); selection starts from it"
        )
    y = require_same_clips([val_probs_by_view[n] for n in names], "choose_tta_views")
    fn = metric_function(metric, threshold)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0

    def score(views):
        return sign * fn(y, aggregate(np.stack([val_probs_by_view[v].prob for v in views]), method))

    chosen, best = ["identity"], score(["identity"])
    while True:
        candidates = [(score(chosen + [v]), v) for v in names if v not in chosen]
        if not candidates:
            break
        top_score, top = max(candidates, key=lambda c: c[0])  # ties: the earlier-listed view
        if not top_score > best + min_gain:
            break
        chosen.append(top)
        best = top_score
    return chosen


def compare_with_without(
    y_true, prob_without, prob_with, threshold: float = 0.5, n_bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict:
    """Per-class comparison of predictions without and with TTA on the same clips.

    Args:
        y_true: (N,) 0/1 labels (usually test).
        prob_without: (N,) probabilities of the identity view alone.
        prob_with: (N,) aggregated TTA probabilities.
        threshold: operating threshold chosen on validation.
        n_bootstrap, seed, alpha: paired bootstrap settings.

    Returns:
        dict with "without", "with" metrics, "delta" (with - without), "mcnemar",
        and "accuracy_diff_ci" / "balanced_accuracy_diff_ci" = [diff, low, high].
    """
    return compare_paired(
        y_true, prob_without, prob_with, threshold, n_bootstrap, seed, alpha, names=("without", "with")
    )


def latency_per_clip(predict_fn: Callable[[], object], n_clips: int, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall-clock seconds per clip of ``predict_fn()``, which scores ``n_clips`` clips.

    Warm-up calls are discarded (graph tracing, caches); the median resists outliers.
    """
    if n_clips < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need n_clips >= 1, repeats >= 1, warmup >= 0; got {n_clips}, {repeats}, {warmup}")
    for _ in range(warmup):
        predict_fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict_fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) / n_clips)
