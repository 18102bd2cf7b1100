"""Uncertainty and paired comparisons: bootstrap CIs, paired bootstrap differences, McNemar's test,
and the plain-language verdict written into reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import stats

from nexara_lib.evaluation.metrics import binary_metrics, metric_function
from nexara_lib.evaluation.predictions import check_labels, check_pair
from nexara_lib.labels import predict_labels


def _check_bootstrap_args(n, alpha):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (bootstrap resamples) must be a positive integer, got {n!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1) (0.05 gives a 95% interval), got {alpha!r}")


def _stratified_indices(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Resample within each class so every resample keeps the class balance
    # (and AUC stays defined even for small, imbalanced sets).
    parts = [
        rng.choice(np.flatnonzero(y == c), size=int((y == c).sum()), replace=True) for c in (0, 1) if (y == c).any()
    ]
    return np.concatenate(parts)


def bootstrap_ci(
    y_true, prob, metric_fn: Callable, n: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float, float]:
    """Percentile bootstrap confidence interval, resampling clips within each class.

    Args:
        y_true: (N,) 0/1 labels.
        prob: (N,) probability of the violent class.
        metric_fn: ``fn(y_true, prob) -> float``, e.g. ``metric_function("accuracy", t)``.
        n: number of resamples.
        seed: random seed of the resampling.
        alpha: 0.05 gives a 95% interval.

    Returns:
        (point estimate on all clips, lower bound, upper bound); NaN resamples are ignored.
    """
    y, p = check_pair(y_true, prob)
    _check_bootstrap_args(n, alpha)
    rng = np.random.default_rng(seed)
    point = float(metric_fn(y, p))
    values = np.empty(n)
    for i in range(n):
        idx = _stratified_indices(y, rng)
        values[i] = metric_fn(y[idx], p[idx])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return point, float("nan"), float("nan")
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return point, float(low), float(high)


def paired_bootstrap_diff(
    y_true,
    prob_a,
    prob_b,
    metric_fn: Callable,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    metric_fn_b: Callable | None = None,
) -> tuple[float, float, float]:
    """Bootstrap CI of ``metric(b) - metric(a)`` with the same resampled clips for both.

    Pairing removes the clip-to-clip variance both systems share, so the interval
    is much tighter than comparing two separate CIs.

    Args:
        y_true: (N,) 0/1 labels.
        prob_a, prob_b: (N,) probabilities of the two systems on the same clips.
        metric_fn: ``fn(y_true, prob) -> float``.
        n, seed, alpha: as in ``bootstrap_ci``.
        metric_fn_b: metric for system b when it differs from a's (e.g. its own threshold).

    Returns:
        (difference on all clips, lower bound, upper bound).
    """
    y, pa = check_pair(y_true, prob_a)
    _, pb = check_pair(y_true, prob_b)
    _check_bootstrap_args(n, alpha)
    rng = np.random.default_rng(seed)
    fn_b = metric_fn_b or metric_fn
    point = float(fn_b(y, pb) - metric_fn(y, pa))
    diffs = np.empty(n)
    for i in range(n):
        idx = _stratified_indices(y, rng)
        diffs[i] = fn_b(y[idx], pb[idx]) - metric_fn(y[idx], pa[idx])
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        return point, float("nan"), float("nan")
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return point, float(low), float(high)


def mcnemar_test(y_true, pred_a, pred_b, exact_below: int = 25) -> dict:
    """McNemar's test for two classifiers' hard predictions on the same clips.

    Args:
        y_true: (N,) 0/1 labels.
        pred_a, pred_b: (N,) 0/1 predictions.
        exact_below: use the exact binomial test when b + c is below this, else
            chi-square with continuity correction.

    Returns:
        dict(b = a right & b wrong, c = a wrong & b right, statistic, p_value, method).
    """
    y = check_labels(y_true)
    a = check_labels(pred_a, "pred_a")
    b_ = check_labels(pred_b, "pred_b")
    if not len(y) == len(a) == len(b_):
        raise ValueError(f"y_true, pred_a and pred_b must have the same length, got {len(y)}, {len(a)}, {len(b_)}")
    a_right, b_right = a == y, b_ == y
    b = int(np.sum(a_right & ~b_right))
    c = int(np.sum(~a_right & b_right))
    if b + c == 0:
        return {"b": 0, "c": 0, "statistic": 0.0, "p_value": 1.0, "method": "exact"}
    if b + c < exact_below:
        p_value = stats.binomtest(min(b, c), b + c, 0.5).pvalue
        return {"b": b, "c": c, "statistic": float(min(b, c)), "p_value": float(min(1.0, p_value)), "method": "exact"}
    statistic = (abs(b - c) - 1.0) ** 2 / (b + c)
    return {
        "b": b,
        "c": c,
        "statistic": float(statistic),
        "p_value": float(stats.chi2.sf(statistic, df=1)),
        "method": "chi2",
    }


def compare_paired(
    y_true,
    prob_a,
    prob_b,
    threshold: float = 0.5,
    n_bootstrap: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    names: tuple[str, str] = ("a", "b"),
    threshold_b: float | None = None,
) -> dict:
    """Per-class comparison of two systems on the same clips at one threshold.

    Args:
        y_true: (N,) 0/1 labels (usually test).
        prob_a, prob_b: (N,) probabilities of the two systems.
        threshold: operating threshold (chosen on validation beforehand).
        n_bootstrap, seed, alpha: paired bootstrap settings.
        names: labels of the two systems in the result.
        threshold_b: system b's own threshold when it differs (each chosen on validation).

    Returns:
        dict with each system's metrics, ``delta`` (b - a), ``mcnemar`` and paired
        bootstrap CIs (``*_diff_ci`` = [diff, low, high]) for accuracy and balanced accuracy.
    """
    y, pa = check_pair(y_true, prob_a)
    _, pb = check_pair(y_true, prob_b)
    keys = ("accuracy", "balanced_accuracy", "acc_nonviolent", "acc_violent", "class_gap", "fpr", "roc_auc")
    tb = threshold if threshold_b is None else threshold_b
    ma, mb = binary_metrics(y, pa, threshold), binary_metrics(y, pb, tb)
    out = {
        names[0]: {k: ma[k] for k in keys},
        names[1]: {k: mb[k] for k in keys},
        "delta": {k: mb[k] - ma[k] for k in keys},
        "threshold": float(threshold),
        "threshold_b": float(tb),
        "mcnemar": mcnemar_test(y, predict_labels(pa, threshold), predict_labels(pb, tb)),
    }
    for name in ("accuracy", "balanced_accuracy"):
        out[f"{name}_diff_ci"] = list(
            paired_bootstrap_diff(
                y,
                pa,
                pb,
                metric_function(name, threshold),
                n=n_bootstrap,
                seed=seed,
                alpha=alpha,
                metric_fn_b=metric_function(name, tb),
            )
        )
    return out


def describe_comparison(what: str, diff_ci, p_value: float, alpha: float = 0.05, metric: str = "test accuracy") -> str:
    """One sentence a stakeholder can read: the paired difference, its CI and whether it is significant.

    Args:
        what: the comparison, e.g. "TTA vs no TTA" (b vs a).
        diff_ci: [difference, low, high] of ``metric`` (b - a), as fractions.
        p_value: McNemar p-value of the same paired comparison.
    Returns:
        e.g. "TTA vs no TTA: test accuracy +1.6 pp (95% CI -1.6 to +4.7 pp, McNemar p = 0.62) — not
        significant: the interval includes no change."
    """
    diff, low, high = (float(v) for v in diff_ci)
    outcome = comparison_outcome(diff_ci, p_value, alpha)
    if outcome == "unknown":
        return f"{what}: {metric} difference could not be estimated (too few clips of a class)."
    p_text = f"McNemar p = {p_value:.2g}" if p_value is not None and math.isfinite(p_value) else "McNemar p n/a"
    head = f"{what}: {metric} {100 * diff:+.1f} pp (95% CI {100 * low:+.1f} to {100 * high:+.1f} pp, {p_text})"
    return (
        head
        + {
            "gain": " — a significant gain.",
            "loss": " — a significant loss.",
            "no change": " — no clip changed its prediction: no measurable effect.",
            "not significant": " — not significant: the interval includes no change.",
        }[outcome]
    )


def ci_excludes_zero(low: float, high: float) -> bool:
    """Whether a confidence interval of a difference excludes no difference (significant at its level); False
    when either end could not be estimated."""
    return bool(math.isfinite(low) and math.isfinite(high) and (low > 0 or high < 0))


def comparison_outcome(diff_ci, p_value: float, alpha: float = 0.05) -> str:
    """What a paired comparison shows: "gain" or "loss" (significant, the CI excludes no change),
    "no change" (no clip changed), "not significant", or "unknown" (the difference could not be estimated)."""
    diff, low, high = (float(v) for v in diff_ci)
    if not all(math.isfinite(v) for v in (diff, low, high)):
        return "unknown"
    significant = p_value is not None and math.isfinite(p_value) and p_value < alpha
    if significant and low > 0:
        return "gain"
    if significant and high < 0:
        return "loss"
    return "no change" if low == high == 0 else "not significant"


def decision_in_words(change: str, diff_ci, p_value: float, alpha: float = 0.05) -> str:
    """What a paired comparison means for the decision to adopt ``change``, in plain words.

    Args:
        change: what would be adopted, e.g. "test-time augmentation" or "the ensemble".
        diff_ci: [difference, low, high] of test accuracy (with - without), as fractions.
        p_value: the McNemar p-value of the same comparison.
    Returns:
        e.g. "Not worth it on this evidence: test-time augmentation made no significant difference on these
        test clips (the 95% interval includes no change)."
    """
    diff, outcome = 100 * float(diff_ci[0]), comparison_outcome(diff_ci, p_value, alpha)
    return {
        "unknown": f"Undecided: too few test clips of a class to measure what {change} changes.",
        "gain": f"Worth it: {change} labels significantly more test clips correctly ({diff:+.1f} pp).",
        "loss": f"Not worth it: {change} labels significantly fewer test clips correctly ({diff:+.1f} pp).",
        "no change": f"Not worth it on this evidence: {change} changed no prediction on these test clips.",
        "not significant": f"Not worth it on this evidence: {change} made no significant difference on these "
        "test clips (the 95% interval includes no change).",
    }[outcome]


def difference_rows(comparison: dict) -> list[dict]:
    """The accuracy and balanced-accuracy differences of a ``compare_paired`` result as rows for a table:
    metric, the change in percentage points and its 95% CI, in words (e.g. "+1.6 pp (95% CI -1.6 to +4.7 pp)")."""
    rows = []
    for label, key in (("accuracy", "accuracy_diff_ci"), ("balanced accuracy", "balanced_accuracy_diff_ci")):
        diff, low, high = (100 * float(v) for v in comparison[key])
        rows.append(
            {
                "metric (test)": label,
                "change": f"{diff:+.1f} pp",
                "95% CI of the change": f"{low:+.1f} to {high:+.1f} pp",
            }
        )
    return rows


def mcnemar_in_words(mcnemar: dict, change: str) -> dict:
    """A ``mcnemar_test`` result as labelled counts: the clips ``change`` fixed, the clips it broke, the p-value."""
    return {
        f"clips {change} fixed (wrong before, right after)": int(mcnemar["c"]),
        f"clips {change} broke (right before, wrong after)": int(mcnemar["b"]),
        "p-value (McNemar test)": float(mcnemar["p_value"]),
    }


COMPARED_METRICS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "acc_nonviolent": "accuracy on non-violent clips",
    "acc_violent": "accuracy on violent clips",
    "class_gap": "gap between the classes",
    "fpr": "false-alarm rate (non-violent clips flagged)",
    "roc_auc": "ROC AUC",
}


def before_after_rows(comparison: dict, labels: tuple[str, str], keys: tuple[str, str]) -> list[dict]:
    """A ``compare_paired`` result as one row per metric: its name in words, both systems in percent and the
    change in percentage points (text, e.g. ``{"metric (test)": "accuracy", "without TTA": "93.8%", ...}``).

    Args:
        comparison: the ``compare_paired`` result.
        labels: the column headings of the two systems, e.g. ``("without TTA", "with TTA")``.
        keys: the two systems' keys in ``comparison``, e.g. ``("without", "with")``.
    """

    def pct(value):
        return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}%"

    rows = []
    for key, words in COMPARED_METRICS.items():
        a, b = (comparison[k].get(key) for k in keys)
        change = comparison["delta"].get(key)
        rows.append(
            {
                "metric (test)": words,
                labels[0]: pct(a),
                labels[1]: pct(b),
                "change": "n/a" if change is None or not math.isfinite(change) else f"{100 * change:+.1f} pp",
            }
        )
    return rows
